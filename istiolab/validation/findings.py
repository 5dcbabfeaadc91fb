"""What validation reports: findings with Istio-style codes, and the report that holds them.

A finding reads like a line of `istioctl analyze` (one line, wrapped here):

    Error [IST0101] (VirtualService default/reviews labs/03/vs.yaml:12) Referenced
    host+subset in destinationrule not found: "reviews+v4"
      field: spec.http[0].route[0].destination.subset
      fix: ...

Codes starting with IST are Istio's own (istio/istio pkg/config/analysis/msg/messages.yaml) and
keep Istio's message text. Codes starting with ISTL are this course's, for what Istio has no
analyzer message for; `CODES` says which is which.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loading import Document, Skipped


class Severity(enum.Enum):
    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: Severity
    origin: str  # "istio" (the same code and message as istioctl analyze) or "istiolab"
    description: str


_ALL_CODES = (
    Code(
        "IST0101",
        "ReferencedResourceNotFound",
        Severity.ERROR,
        "istio",
        "A resource being referenced does not exist.",
    ),
    Code(
        "IST0106",
        "SchemaValidationError",
        Severity.ERROR,
        "istio",
        "The resource has a schema validation error.",
    ),
    Code(
        "IST0118",
        "PortNameIsNotUnderNamingConvention",
        Severity.INFO,
        "istio",
        "Port name is not under naming convention. Protocol detection is applied to the port.",
    ),
    # istioctl reports IST0173 as an Error against the pods running in a cluster. Offline, with
    # only the Deployments in the files given, it is a Warning here: Istio's own
    # destination-rule-all.yaml names subsets (ratings v2, details v2) that Bookinfo does not
    # deploy by default.
    Code(
        "IST0173",
        "DestinationRuleSubsetNotSelectPods",
        Severity.WARNING,
        "istio",
        "A subset in a DestinationRule does not select any pods.",
    ),
    Code(
        "IST0174",
        "UnknownDestinationRuleHost",
        Severity.WARNING,
        "istio",
        "The host of a DestinationRule does not match a service in the mesh.",
    ),
    Code(
        "ISTL0001",
        "RouteWeightsDoNotAddUpTo100",
        Severity.ERROR,
        "istiolab",
        "The weights of a route with several destinations do not add up to 100.",
    ),
    Code(
        "ISTL0002",
        "YamlSyntaxError",
        Severity.ERROR,
        "istiolab",
        "The file is not valid YAML.",
    ),
    Code(
        "ISTL0003",
        "UnknownKind",
        Severity.ERROR,
        "istiolab",
        "The apiVersion and kind are neither Kubernetes, Istio nor Gateway API kinds.",
    ),
    Code(
        "ISTL0004",
        "KustomizeBuildFailed",
        Severity.ERROR,
        "istiolab",
        "`kubectl kustomize` could not build a kustomization directory.",
    ),
    Code(
        "ISTL0010",
        "NotSupportedBySandbox",
        Severity.ERROR,
        "istiolab",
        "Valid for a cluster, but beyond what the sandbox mesh runs (e.g. a non-Bookinfo image).",
    ),
)
CODES: dict[str, Code] = {code.code: code for code in _ALL_CODES}

REFERENCED_RESOURCE_NOT_FOUND = "IST0101"
SCHEMA_VALIDATION_ERROR = "IST0106"
PORT_NAME_NOT_UNDER_NAMING_CONVENTION = "IST0118"
DESTINATION_RULE_SUBSET_NOT_SELECT_PODS = "IST0173"
UNKNOWN_DESTINATION_RULE_HOST = "IST0174"
ROUTE_WEIGHTS_NOT_100 = "ISTL0001"
YAML_SYNTAX_ERROR = "ISTL0002"
UNKNOWN_KIND = "ISTL0003"
KUSTOMIZE_BUILD_FAILED = "ISTL0004"
NOT_SUPPORTED_BY_SANDBOX = "ISTL0010"


@dataclass(frozen=True)
class Finding:
    """One problem, located as precisely as the input allows.

    `resource` is "Kind namespace/name" once the document says what it is, else empty and
    `document` (0-based, within `file`) says which document. `path` is the field, written like
    kubectl writes it: spec.http[0].route[0].destination.subset.
    """

    code: str
    message: str
    fix: str = ""
    file: str = ""
    line: int | None = None
    column: int | None = None
    document: int | None = None
    resource: str = ""
    path: str = ""
    severity: Severity = field(default=Severity.ERROR)

    @classmethod
    def of(cls, code: str, message: str, **kwargs: object) -> Finding:
        """A finding with the severity its code has (`severity=` overrides it)."""
        kwargs.setdefault("severity", CODES[code].severity)
        return cls(code=code, message=message, **kwargs)  # type: ignore[arg-type]

    @property
    def origin(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def heading(self) -> str:
        if self.resource:
            where = f"{self.resource} {self.origin}" if self.file else self.resource
        elif self.document is not None:
            where = f"document {self.document + 1} of {self.origin}"
        else:
            where = self.origin
        return f"{self.severity} [{self.code}] ({where}) {self.message}"

    def format(self) -> str:
        lines = [self.heading()]
        if self.path:
            lines.append(f"  field: {self.path}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def sort_key(self) -> tuple[str, int, int, str, str]:
        order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
        return (self.file, self.line or 0, order[self.severity], self.code, self.message)


@dataclass
class Report:
    """The outcome of one validation: every finding, and what was read.

    `resources` are the documents validated; `known` the ones given only as context (references
    may point at them, nothing is reported about them); `skipped` the files or documents that
    are not API resources (a kind cluster config, a kustomization), each with the reason.
    """

    findings: list[Finding] = field(default_factory=list)
    resources: list[Document] = field(default_factory=list)
    known: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """No errors: warnings and infos do not make a resource set invalid."""
        return not self.errors

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)
        self.findings.sort(key=Finding.sort_key)


NO_ISSUES = "No validation issues found."


def format_findings(findings: Sequence[Finding]) -> str:
    return "\n".join(f.format() for f in findings)


def format_report(report: Report, *, show_skipped: bool = True) -> str:
    """The report as `istiolab validate` prints it."""
    parts: list[str] = []
    if show_skipped:
        parts.extend(f"Skipped {s.where}: {s.reason}" for s in report.skipped)
    if report.findings:
        parts.append(format_findings(report.findings))
        counts = [
            f"{len(report.errors)} error(s)",
            f"{len(report.warnings)} warning(s)",
            f"{len(report.findings) - len(report.errors) - len(report.warnings)} info",
        ]
        parts.append(f"{', '.join(counts)} in {len(report.resources)} resource(s).")
    else:
        parts.append(NO_ISSUES)
    return "\n".join(parts)
