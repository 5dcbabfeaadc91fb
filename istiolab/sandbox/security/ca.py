"""The mesh's certificate authority: what istiod does as Citadel.

Every workload in an Istio mesh has an identity, a SPIFFE ID made of the trust domain, its
namespace and its service account: `spiffe://cluster.local/ns/default/sa/bookinfo-reviews`.
A workload proves it with an X.509 certificate that the mesh's CA signed, and it trusts a peer
whose certificate chains up to the same root. That is all mutual TLS needs: no DNS names, no
IP addresses, only the identity.

The sandbox's CA follows istiod's own (security/pkg/pki/ca and pki/util in istio/istio):

- With no CA plugged in, istiod creates a self-signed root once, valid for 10 years, with the
  subject O=cluster.local (the trust domain), and keeps it (in the istio-ca-secret). Here it is
  `root-cert.pem` and `root-key.pem` in one directory, created on first use and reused after,
  so certificates issued before a restart of the control plane stay valid.
- A workload certificate has an empty subject and one subject alternative name, the SPIFFE URI.
  With an empty subject the SAN extension is critical, as RFC 5280 requires. Key usage is
  digital signature and key encipherment, extended key usage server and client auth: the same
  certificate serves both ends of a connection. The serial is random, below 2^128.
- Validity starts two minutes before signing (istiod's ClockSkewGracePeriod, for clocks that
  differ between CA and workload) and ends TTL after signing: 24 hours by default (istiod's
  DEFAULT_WORKLOAD_CERT_TTL).
- The chain a workload receives leaves the root out; the root travels on its own, as the
  `ROOTCA` secret (see envoy/sds_files.py).

One difference: istiod signs RSA 2048 keys by default; the sandbox uses ECDSA P-256, which
Istio supports as well, because such a key is generated in well under a millisecond and every
proxy gets a fresh one at each renewal.

pilot-agent, not istiod, decides when to renew: at RENEWAL_RATIO of the certificate's lifetime
before it expires (its SECRET_GRACE_PERIOD_RATIO, 0.5: halfway through). See
workload_certs.py.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ...errors import IstiolabError
from ..files import PRIVATE_MODE, PUBLIC_MODE, write_atomically

TRUST_DOMAIN = "cluster.local"
DEFAULT_CERT_TTL = timedelta(hours=24)  # istiod's DEFAULT_WORKLOAD_CERT_TTL
RENEWAL_RATIO = 0.5  # pilot-agent's SECRET_GRACE_PERIOD_RATIO
CLOCK_SKEW_GRACE_PERIOD = timedelta(minutes=2)  # istiod backdates NotBefore by this much
ROOT_CERT_TTL = timedelta(days=3650)  # istiod's self-signed root: 10 years

ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"

_SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"


@dataclass(frozen=True)
class WorkloadCertificate:
    """A workload's certificate chain (the leaf: the root is not part of it) and its key."""

    spiffe_id: str
    chain_pem: bytes
    key_pem: bytes = field(repr=False)  # never in a log line or a test failure
    serial: int
    not_before: datetime
    not_after: datetime

    @property
    def issued_at(self) -> datetime:
        """When it was signed: its validity starts CLOCK_SKEW_GRACE_PERIOD earlier."""
        return self.not_before + CLOCK_SKEW_GRACE_PERIOD

    def renew_at(self) -> datetime:
        """When pilot-agent would ask for the next one: RENEWAL_RATIO of its lifetime (from
        signing to expiry) before it expires."""
        return self.not_after - (self.not_after - self.issued_at) * RENEWAL_RATIO

    @classmethod
    def from_pem(cls, chain_pem: bytes, key_pem: bytes) -> WorkloadCertificate:
        """Read back a certificate and key written earlier. ValueError if they are not a
        workload certificate with one SPIFFE identity, or the key is not the certificate's."""
        leaf = x509.load_pem_x509_certificate(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if key.public_key() != leaf.public_key():
            raise ValueError("the private key does not belong to the certificate")
        return cls(
            spiffe_id=spiffe_id_of(leaf),
            chain_pem=chain_pem,
            key_pem=key_pem,
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )


def spiffe_id_of(certificate: x509.Certificate) -> str:
    """The one SPIFFE URI in a workload certificate's subject alternative names."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no subject alternative name") from None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or not uris[0].startswith("spiffe://"):
        raise ValueError(f"expected one SPIFFE URI among the certificate's names, found {uris}")
    return uris[0]


class CertificateAuthority:
    """A root certificate and its key, which sign workload certificates."""

    def __init__(self, root: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if key.public_key() != root.public_key():
            raise ValueError("the root key does not belong to the root certificate")
        self.root = root
        self._key = key
        self.root_pem: bytes = root.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """The CA kept in `directory` (root-cert.pem, root-key.pem), created there if absent."""
        directory = Path(directory)
        cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
        if not cert_path.exists() and not key_path.exists():
            ca = cls.create()
            directory.mkdir(parents=True, exist_ok=True)
            # The key first: a root certificate on disk always has its key beside it.
            write_atomically(key_path, ca._private_pem(), mode=PRIVATE_MODE)
            write_atomically(cert_path, ca.root_pem, mode=PUBLIC_MODE)
            return ca
        fix = (
            f"stop the sandbox (istiolab down), delete {cert_path.name} and {key_path.name} in "
            f"{directory} and start it again: a new root is created and every proxy gets a "
            "certificate signed by it"
        )
        try:
            root = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError as missing:
            raise IstiolabError(
                f"the mesh's root CA is incomplete: {missing.filename} is missing", fix=fix
            ) from None
        except ValueError as error:
            raise IstiolabError(
                f"the mesh's root CA in {directory} is unreadable: {error}", fix=fix
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != root.public_key():
            raise IstiolabError(
                f"{key_path.name} is not the key of {cert_path.name} in {directory}", fix=fix
            )
        return cls(root, key)

    @classmethod
    def create(cls, *, now: datetime | None = None) -> CertificateAuthority:
        """A new self-signed root, as istiod makes one when no CA is plugged in."""
        now = _utc_seconds(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN)])
        usage = _key_usage(key_cert_sign=True, crl_sign=True)
        root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(_serial_number())
            .not_valid_before(now - CLOCK_SKEW_GRACE_PERIOD)
            .not_valid_after(now + ROOT_CERT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(root, key)

    def issue(
        self, spiffe_id: str, ttl: timedelta | None = None, *, now: datetime | None = None
    ) -> WorkloadCertificate:
        """A new key and a certificate for `spiffe_id`, valid for `ttl` (DEFAULT_CERT_TTL)."""
        if not spiffe_id.startswith(_SPIFFE_PREFIX) or spiffe_id == _SPIFFE_PREFIX:
            raise ValueError(f"{spiffe_id!r} is not a SPIFFE ID in trust domain {TRUST_DOMAIN}")
        ttl = DEFAULT_CERT_TTL if ttl is None else ttl
        if ttl <= timedelta(0):
            raise ValueError(f"a certificate's TTL must be positive, not {ttl}")
        now = _utc_seconds(now)
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key_id = self.root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # empty, as istiod leaves it: the identity is the SAN
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(_serial_number())
            .not_valid_before(now - CLOCK_SKEW_GRACE_PERIOD)
            .not_valid_after(now + ttl)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_encipherment=True), True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id.value),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return WorkloadCertificate.from_pem(leaf.public_bytes(serialization.Encoding.PEM), key_pem)

    def signed(self, certificate: WorkloadCertificate) -> bool:
        """Whether this CA's root signed `certificate` (false after the root was replaced)."""
        leaf = x509.load_pem_x509_certificate(certificate.chain_pem)
        try:
            leaf.verify_directly_issued_by(self.root)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _serial_number() -> int:
    """Random and positive, below 2^128, as istiod's genSerialNum."""
    return secrets.randbelow(2**128 - 1) + 1


def _utc_seconds(now: datetime | None) -> datetime:
    """`now` (or the current time) in UTC, to the second: the precision a certificate keeps."""
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return now.replace(microsecond=0)
