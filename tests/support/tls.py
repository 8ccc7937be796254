"""Throw-away TLS material for tests, made with openssl at test time and never kept: a CA, a broker
certificate for 127.0.0.1 signed by it (in a PKCS12 keystore), and password files with tight modes."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # PEM certificate of the CA
    ca_key: Path
    keystore: Path  # PKCS12: the broker's key and certificate chain
    keystore_password: str


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str = "telemetry-test-ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)),
    )
    key.chmod(0o600)
    return cert, key


def make_broker_tls(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A CA and a broker keystore whose certificate names `host` (IP SAN) and localhost."""
    ca_file, ca_key = make_ca(directory)
    key, csr, cert = directory / "broker.key", directory / "broker.csr", directory / "broker.pem"
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"),
        *("-keyout", str(key), "-out", str(csr)),
    )
    extensions = directory / "broker.ext"
    extensions.write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca_file), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert)),
    )
    password = secrets.token_hex(12)
    keystore = directory / "broker.p12"
    _openssl(
        *("pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca_file)),
        *("-name", "broker", "-passout", f"pass:{password}", "-out", str(keystore)),
    )
    for secret in (key, keystore):
        secret.chmod(0o600)
    return TlsFiles(ca_file, ca_key, keystore, password)


def password_file(path: Path, password: str, mode: int = 0o600) -> Path:
    path.write_text(password + "\n")
    path.chmod(mode)
    return path
