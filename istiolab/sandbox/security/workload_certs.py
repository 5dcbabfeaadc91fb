"""When a proxy gets a new certificate: pilot-agent's part of workload identity.

In Istio, pilot-agent runs beside each Envoy. It makes a key, sends istiod a certificate signing
request authenticated with the pod's service account token, and serves the certificate it gets
back to Envoy over SDS. It keeps the certificate in memory only and asks for a new one once
RENEWAL_RATIO of its lifetime is left (halfway, by default), so a proxy never presents an
expired certificate and never needs a restart for a new one.

In the sandbox the control plane plays pilot-agent for every proxy. It calls
ensure_workload_secrets for each proxy whenever it reconciles, and again before the earliest
renewal time comes: the call issues a certificate only when one is needed and otherwise leaves
the files alone, so calling it often costs nothing. The certificate in force is read back from
the proxy's SDS file, so a restarted control plane keeps the certificates it issued before.

ISTIOLAB_CERT_TTL (seconds) shortens the lifetime for a lab or a test, like istiod's
DEFAULT_WORKLOAD_CERT_TTL: with 60, every proxy gets a new certificate every 30 seconds, which
`istiolab proxy-config secret` shows as a new serial number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ...errors import IstiolabError
from ..envoy import sds_files
from .ca import DEFAULT_CERT_TTL, CertificateAuthority, WorkloadCertificate

CERT_TTL_VARIABLE = "ISTIOLAB_CERT_TTL"


def cert_ttl_from_environ(environ: Mapping[str, str] = os.environ) -> timedelta:
    """The workload certificate lifetime: ISTIOLAB_CERT_TTL seconds, else DEFAULT_CERT_TTL."""
    value = environ.get(CERT_TTL_VARIABLE, "").strip()
    if not value:
        return DEFAULT_CERT_TTL
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise IstiolabError(
            f"{CERT_TTL_VARIABLE}={value!r} is not a certificate lifetime: it must be a whole "
            "number of seconds above 0",
            fix=f"set it to e.g. {CERT_TTL_VARIABLE}=60 (a new certificate every 30 s), or unset "
            "it for istiod's default of 24 hours",
        )
    return timedelta(seconds=seconds)


def ensure_workload_secrets(
    ca: CertificateAuthority,
    xds_dir: str | os.PathLike[str],
    spiffe_id: str,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> WorkloadCertificate:
    """Issue a certificate when the proxy has none, when its identity changed, when the root
    changed, when it outlives `ttl`, or once its renewal time has passed; otherwise keep the
    current one (read back from the files). Writes the SDS files only when something changed,
    atomically. Returns the certificate in force."""
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    current = current_certificate(xds_dir)
    if current is not None and renewal_reason(ca, current, spiffe_id, ttl=ttl, now=now) is None:
        if not _files_hold(xds_dir, current, ca.root_pem):
            sds_files.write_secrets(xds_dir, secrets_version(current), current, ca.root_pem)
        return current
    certificate = ca.issue(spiffe_id, ttl, now=now)
    sds_files.write_secrets(xds_dir, secrets_version(certificate), certificate, ca.root_pem)
    return certificate


def renewal_reason(
    ca: CertificateAuthority,
    current: WorkloadCertificate | None,
    spiffe_id: str,
    *,
    ttl: timedelta,
    now: datetime,
) -> str | None:
    """Why `current` must be replaced (for a log line), or None while it is good."""
    if current is None:
        return "no certificate yet"
    if current.spiffe_id != spiffe_id:
        return f"the identity changed from {current.spiffe_id}"
    if not ca.signed(current):
        return "the mesh's root certificate changed"
    if now >= current.renew_at():
        return f"its renewal time passed ({current.renew_at():%Y-%m-%dT%H:%M:%SZ})"
    if current.not_after - current.issued_at > ttl:
        return f"the certificate lifetime is now {ttl.total_seconds():g} s"
    return None


def current_certificate(xds_dir: str | os.PathLike[str]) -> WorkloadCertificate | None:
    """The certificate the proxy's `default` SDS file holds, or None if there is none (or it
    cannot be read: then a new one is issued)."""
    secret = sds_files.read_secret(xds_dir, sds_files.DEFAULT_SECRET)
    if secret is None:
        return None
    try:
        tls = secret["tls_certificate"]
        chain = tls["certificate_chain"]["inline_string"].encode("ascii")
        key = tls["private_key"]["inline_string"].encode("ascii")
        return WorkloadCertificate.from_pem(chain, key)
    except (TypeError, KeyError, AttributeError, UnicodeError, ValueError):
        return None


def secrets_version(certificate: WorkloadCertificate) -> str:
    """The version of a proxy's SDS files: the serial number of the certificate in them."""
    return f"{certificate.serial:x}"


def _files_hold(xds_dir: str | os.PathLike[str], current: WorkloadCertificate, root: bytes) -> bool:
    """Whether the ROOTCA secret and the PEM copies match the certificate in force."""
    directory = Path(xds_dir)
    expected = {
        sds_files.ROOT_CERT_FILE: root,
        sds_files.CERT_CHAIN_FILE: current.chain_pem,
        sds_files.KEY_FILE: current.key_pem,
    }
    for name, data in expected.items():
        try:
            if (directory / name).read_bytes() != data:
                return False
        except OSError:
            return False
    secret = sds_files.read_secret(directory, sds_files.ROOT_SECRET) or {}
    return secret.get("validation_context") == sds_files.root_secret(root)["validation_context"]
