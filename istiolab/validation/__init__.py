"""Offline validation of Kubernetes, Istio and Gateway API YAML, before anything is applied.

The labs' static checks, the sandbox's `istiolab apply` and the `istiolab validate` command all
use this package. It answers the questions the API server, Istio's validation and `istioctl
analyze` would, without a cluster:

    report = validate_paths(["labs/03-request-routing/"], known=["manifests/bookinfo/"])
    if not report.ok:
        print(format_report(report))

- loading.py: files, directories and kustomizations -> documents that know their lines;
- schemas.py: strict schemas (unknown fields rejected) for Kubernetes, Istio, Gateway API;
- references.py: what the resources name exists (hosts, subsets, gateways, selectors);
- findings.py: the findings, their codes (Istio's IST codes where Istio has one) and the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from . import references, schemas
from .findings import CODES, NO_ISSUES, Code, Finding, Report, Severity, format_report
from .loading import Document, Loaded, Skipped, load_paths, load_text


def validate_documents(
    documents: Sequence[Document],
    known: Iterable[Document] = (),
    *,
    skipped: Iterable[Skipped] = (),
) -> Report:
    """Validate resources already read (e.g. from `load_text`): schemas, then references.

    `known` resources may be referenced (a base Bookinfo the lab builds on); nothing is reported
    about them. `skipped` are the documents set aside as not API resources; an IstioOperator
    among them tells which labels the ingress gateways have.
    """
    known = list(known)
    skipped = list(skipped)
    report = Report(resources=list(documents), known=known, skipped=skipped)
    findings: list[Finding] = []
    for document in documents:
        findings.extend(schemas.validate_schema(document))
    others = [s.document for s in skipped if s.document is not None]
    findings.extend(references.analyze(documents, known, others))
    report.extend(findings)
    return report


def validate_text(text: str, file: str = "<stdin>", known: Iterable[Document] = ()) -> Report:
    """Validate one YAML stream (e.g. `istiolab apply -f -`); `file` names it in findings."""
    loaded = load_text(text, file)
    report = validate_documents(loaded.documents, known, skipped=loaded.skipped)
    report.extend(loaded.findings)
    return report


def validate_paths(paths: Iterable[str | Path], known: Iterable[str | Path] = ()) -> Report:
    """Validate YAML files and directories (a kustomization directory is built first).

    `known` paths are context (see validate_documents); a kustomization among them is built when
    kubectl is available and read as plain files otherwise. Raises IstiolabError for a path that
    does not exist; everything wrong inside the files is a finding in the report.
    """
    known = list(known)
    loaded = load_paths(paths)
    context = load_paths(known, kustomize=None) if known else Loaded()
    report = validate_documents(
        loaded.documents,
        context.documents,
        skipped=[*loaded.skipped, *(s for s in context.skipped if s.document is not None)],
    )
    report.skipped = loaded.skipped
    report.extend([*loaded.findings, *context.findings])
    return report


__all__ = [
    "CODES",
    "NO_ISSUES",
    "Code",
    "Document",
    "Finding",
    "Report",
    "Severity",
    "Skipped",
    "format_report",
    "load_paths",
    "load_text",
    "validate_documents",
    "validate_paths",
    "validate_text",
]
