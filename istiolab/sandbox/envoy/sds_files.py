"""A proxy's certificates, delivered as SDS files it watches (as xds_files.py does for the rest).

In Istio, pilot-agent holds the workload's key and certificate and serves them to its Envoy over
SDS (the Secret Discovery Service) on a Unix socket, under two resource names that every Istio
TLS context uses:

    default   the workload's key and certificate chain   (tls_certificate_sds_secret_configs)
    ROOTCA    the mesh's root certificate, to check peers  (validation_context_sds_secret_config)

A sandbox proxy reads each of them from a file in its xDS directory instead, a DiscoveryResponse
with one `Secret` in it, watched and reloaded like `lds.json`:

    sds_default.json      {"name": "default", "tls_certificate": {certificate_chain, private_key}}
    sds_ROOTCA.json       {"name": "ROOTCA", "validation_context": {trusted_ca}}

The PEM is inline in those files rather than named by path, so replacing the SDS file is all a
rotation takes: Envoy applies the new certificate at once, without dropping a request (checked
on Envoy 1.40; open connections keep the certificate they were set up with). It reports the
version of each secret it applied in the stats `sds.default.version_text` and
`sds.ROOTCA.version_text`, and a file it refused in `sds.<name>.update_rejected`. Because the
key is in it, `sds_default.json` is readable by its owner only, as all these files are (the mode
the temporary file gets). Envoy's admin API never shows the key: its config dump prints
`[redacted]`.

For learners, the same certificates are also written as PEM files, in the layout of Istio's
/etc/certs: `cert-chain.pem`, `key.pem` (owner only) and `root-cert.pem`. Envoy does not read
them.

A listener or cluster whose TLS context names an SDS file that does not exist yet is rejected
whole ("paths must refer to an existing path in the system", Envoy 1.40), and not retried when
the file appears: write the secrets before the listeners and clusters that use them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..files import PRIVATE_MODE, PUBLIC_MODE, write_atomically
from ..security.ca import WorkloadCertificate
from . import xds_files

# Names of resources, not secrets themselves (hence the noqa for the password check).
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
DEFAULT_SECRET = "default"  # noqa: S105 - Istio's name for the workload's key and certificate
ROOT_SECRET = "ROOTCA"  # noqa: S105 - Istio's name for the root peers are checked against

CERT_CHAIN_FILE = "cert-chain.pem"
KEY_FILE = "key.pem"
ROOT_CERT_FILE = "root-cert.pem"

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def sds_path(xds_dir: str | os.PathLike[str], secret_name: str) -> Path:
    """The file holding the secret `secret_name` (`sds_default.json`, `sds_ROOTCA.json`)."""
    if not secret_name:
        raise ValueError("a secret needs a name")
    return Path(xds_dir) / f"sds_{_UNSAFE_IN_FILE_NAME.sub('_', secret_name)}.json"


def secret_config(xds_dir: str | os.PathLike[str], secret_name: str) -> dict[str, Any]:
    """An SdsSecretConfig reading `secret_name` from its file: an item of a TLS context's
    `tls_certificate_sds_secret_configs`, or its `validation_context_sds_secret_config`."""
    return {
        "name": secret_name,
        "sds_config": xds_files.config_source(sds_path(xds_dir, secret_name)),
    }


def tls_certificate_secret(certificate: WorkloadCertificate) -> dict[str, Any]:
    """The `default` secret: the workload's chain and key."""
    return {
        "name": DEFAULT_SECRET,
        "tls_certificate": {
            "certificate_chain": {"inline_string": certificate.chain_pem.decode("ascii")},
            "private_key": {"inline_string": certificate.key_pem.decode("ascii")},
        },
    }


def root_secret(root_pem: bytes) -> dict[str, Any]:
    """The `ROOTCA` secret: the root certificate a peer's chain must lead to."""
    return {
        "name": ROOT_SECRET,
        "validation_context": {"trusted_ca": {"inline_string": root_pem.decode("ascii")}},
    }


def write_secrets(
    xds_dir: str | os.PathLike[str],
    version: str,
    certificate: WorkloadCertificate,
    root_pem: bytes,
) -> list[Path]:
    """Write both secrets at `version`, then the PEM files; each file replaced atomically.

    The root goes first: after a change of root, a proxy then trusts the new root before it
    presents a certificate signed by it.
    """
    directory = Path(xds_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for secret in (root_secret(root_pem), tls_certificate_secret(certificate)):
        # write_atomically's temporary file is mkstemp's, readable by its owner only, and
        # keeps that mode when renamed: the key in sds_default.json is never readable by others.
        written.append(
            xds_files.write_atomically(
                sds_path(directory, secret["name"]),
                xds_files.discovery_response(version, SECRET_TYPE, [secret]),
            )
        )
    for name, data, mode in (
        (ROOT_CERT_FILE, root_pem, PUBLIC_MODE),
        (KEY_FILE, certificate.key_pem, PRIVATE_MODE),
        (CERT_CHAIN_FILE, certificate.chain_pem, PUBLIC_MODE),
    ):
        written.append(write_atomically(directory / name, data, mode=mode))
    return written


def read_secret(xds_dir: str | os.PathLike[str], secret_name: str) -> dict[str, Any] | None:
    """The secret as its file holds it now, or None when there is no such file (or it is not
    one written by write_secrets)."""
    try:
        response = xds_files.read(sds_path(xds_dir, secret_name))
        [secret] = response["resources"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return secret if isinstance(secret, dict) and secret.get("name") == secret_name else None
