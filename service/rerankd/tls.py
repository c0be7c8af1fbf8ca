"""TLS server credentials from files, and start-up warnings about exposed plaintext listeners.

With `tls_cert_file` + `tls_key_file` every TCP listen address serves TLS; Unix sockets stay
plaintext (only processes that can open the socket file reach them). With `tls_client_ca_file` the
handshake requires a client certificate signed by that CA (mTLS); grpcio cannot ask for an optional
one, so on TCP it is all or nothing. Files are read once, at start-up; an unreadable file stops the
server rather than serving plaintext.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import grpc

from rerankd.config import Settings

_LOG = logging.getLogger("rerankd.tls")


class TlsConfigError(ValueError):
    """A TLS file is missing or unusable (the message names the setting and path, not the content)."""


def _read(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting}: cannot read {path} ({type(exc).__name__})") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{setting}: {path} is not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the TCP listeners, or None when TLS is not configured."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert = _read(settings.tls_cert_file, "tls_cert_file")
    key = _read(settings.tls_key_file, "tls_key_file")
    client_ca = (
        _read(settings.tls_client_ca_file, "tls_client_ca_file")
        if settings.tls_client_ca_file is not None
        else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def is_loopback(address: str) -> bool:
    """Whether a listen address (host:port, [v6]:port or unix:...) is reachable only from this host."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(settings: Settings, authenticated: bool) -> None:
    """Log a warning for each non-loopback listener that lacks TLS or caller authentication."""
    tls = settings.tls_cert_file is not None
    for address in settings.listen_addresses():
        if is_loopback(address):
            continue
        if not authenticated:
            _LOG.warning("%s is reachable off this host and callers are not authenticated", address)
        if not tls:
            _LOG.warning("%s is reachable off this host without TLS: tokens and text go in clear", address)
    http_address = f"{settings.http_host or settings.host}:{settings.http_port}"
    if settings.http_enabled and not is_loopback(http_address):
        _LOG.warning("the HTTP API on %s is plaintext: terminate TLS in front of it", http_address)
