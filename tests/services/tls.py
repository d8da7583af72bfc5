"""A throwaway CA and server certificate (``openssl``) for TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_tls(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 (``openssl``), as file paths.

    Returns ``{"ca": ..., "cert": ..., "key": ...}``: what the Redis ``tls-*-file``
    directives and a client's ``ssl_ca_certs`` need.
    """

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_key, ca, key, csr, cert, ext = (
        directory / name for name in ("ca.key", "ca.crt", "r.key", "r.csr", "r.crt", "ext.cnf")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test-ca", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}
