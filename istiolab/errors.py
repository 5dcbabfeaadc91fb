"""The one error type the `istiolab` command prints without a traceback.

Anything a learner can cause or fix (a missing tool, a busy port, an invalid file) is raised as an
IstiolabError with a message saying what is wrong and, in `fix`, the next thing to do. Anything
else is a bug in istiolab and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a problem (a failed check, an invalid file)
EXIT_USAGE = 2  # the command line itself was wrong (argparse uses 2 as well)


class IstiolabError(Exception):
    def __init__(self, message: str, fix: str = "", exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message
