"""TLS from files for every TCP listener (gRPC and HTTP), re-read when the files change, and
start-up warnings about exposed plaintext listeners.

With `tls_cert_file` + `tls_key_file` every TCP listen address serves TLS, the HTTP port too; Unix
sockets stay plaintext (only processes that can open the socket file reach them). With
`tls_client_ca_file` the handshake requires a client certificate signed by that CA (mTLS); grpcio
cannot ask for an optional one, so on TCP it is all or nothing. An unreadable file at start-up stops
the server rather than serving plaintext.

Rotation: `ServerCertificates` checks the files' identity (inode, mtime, size) before each new
handshake, a few stat calls, and re-reads them when any changed (cert-manager, a rotated Kubernetes
Secret, which swaps all files at once). gRPC gets the new set through
`grpc.dynamic_ssl_server_credentials` (its fetcher is asked before each handshake); the HTTP port's
SSLContext switches each new connection to the context of the newest set in its server-name
callback (called on every ClientHello, with or without SNI). Connections already open keep the
certificates they were made with. A new set is taken only when it loads as a whole (PEM, the key
matches the certificate, the CA parses); otherwise the error is logged once and the previous set
stays in force, so a half-written rotation never breaks handshakes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import ssl
import threading
from pathlib import Path

import grpc

from rerankd.config import Settings

_LOG = logging.getLogger("rerankd.tls")
_Signature = tuple[tuple[int, int, int] | None, ...]


class TlsConfigError(ValueError):
    """A TLS file is missing or unusable (the message names the setting and path, not the content)."""


class _Changing(TlsConfigError):
    """A file changed while the set was read (at start-up: retry the start)."""

    def __init__(self) -> None:
        super().__init__("the TLS files changed while they were read")


def _read(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting}: cannot read {path} ({type(exc).__name__})") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{setting}: {path} is not a PEM file")
    return data


@dataclasses.dataclass(frozen=True, slots=True)
class _CertificateSet:
    """One consistent read of the files: the PEM bytes, the HTTP context built from them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    signature: _Signature
    context: ssl.SSLContext
    generation: int = 0  # 0 for the set read at start-up, +1 per set taken after it

    def grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert)], root_certificates=self.client_ca
        )


class ServerCertificates:
    """The server certificate, key and client CA files, re-read when they change (see module doc)."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> None:
        self.files: tuple[tuple[Path, str], ...] = (
            (cert_file, "tls_cert_file"),
            (key_file, "tls_key_file"),
            *(((client_ca_file, "tls_client_ca_file"),) if client_ca_file is not None else ()),
        )
        self.mutual = client_ca_file is not None
        self._lock = threading.Lock()  # gRPC asks from its own threads, HTTP from the event loop
        self._refused: _Signature | None = None
        self._grpc_generation = 0
        self._current = self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerCertificates | None:
        """The settings' TLS files, read now (TlsConfigError if unusable); None without TLS."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)

    def _signature(self) -> _Signature:
        found: list[tuple[int, int, int] | None] = []
        for path, _ in self.files:
            try:
                stat = os.stat(path)
            except OSError:
                found.append(None)
            else:
                found.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def _load(self) -> _CertificateSet:
        """Read and check every file; TlsConfigError names the setting (and path) at fault."""
        before = self._signature()
        cert, key, *ca = (_read(path, setting) for path, setting in self.files)
        client_ca = ca[0] if ca else None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.files[0][0], self.files[1][0])
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"tls_cert_file/tls_key_file: {self.files[0][0]} and {self.files[1][0]} are not a usable"
                f" certificate chain and matching key ({type(exc).__name__})"
            ) from None
        if client_ca is not None:
            try:
                context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
            except (ValueError, ssl.SSLError) as exc:
                raise TlsConfigError(
                    f"tls_client_ca_file: {self.files[2][0]} holds no usable CA certificate"
                    f" ({type(exc).__name__})"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED
        if self._signature() != before:
            raise _Changing
        return _CertificateSet(cert, key, client_ca, before, context)

    @property
    def generation(self) -> int:
        """How many new sets have been taken since start-up."""
        return self._current.generation

    def refresh(self) -> bool:
        """Take the files again if any changed since the set in use; True when a new set was taken."""
        signature = self._signature()
        if signature == self._current.signature or signature == self._refused:
            return False
        with self._lock:
            if signature == self._current.signature:
                return False
            try:
                loaded = self._load()
            except _Changing:
                return False  # a file changed while it was read: the next handshake reads it again
            except TlsConfigError as exc:
                if signature != self._refused:
                    _LOG.error("keeping the previous TLS certificates: %s", exc)
                self._refused = signature
                return False
            self._current = dataclasses.replace(loaded, generation=self._current.generation + 1)
            self._refused = None
        _LOG.info("TLS certificates reloaded (set %d)", self._current.generation)
        return True

    # -- gRPC -----------------------------------------------------------------------------------

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for grpc.aio TCP ports that follow the files."""
        return grpc.dynamic_ssl_server_credentials(
            self._current.grpc_configuration(),
            self._grpc_fetch,
            require_client_authentication=self.mutual,
        )

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each handshake: a new configuration, or None to keep its own."""
        try:
            self.refresh()
            current = self._current  # one read: its generation and its files go together
            if current.generation == self._grpc_generation:
                return None
            self._grpc_generation = current.generation
            return current.grpc_configuration()
        except Exception:  # raised into grpc's core this would fail the handshake
            _LOG.exception("TLS certificate check failed; keeping the certificates in use")
            return None

    # -- HTTP -----------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for the HTTP port whose new connections use the newest set of files."""
        base = self._current.context

        def newest(
            connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            try:
                self.refresh()
            except Exception:
                _LOG.exception("TLS certificate check failed; keeping the certificates in use")
            context = self._current.context
            if context is not connection.context:
                connection.context = context

        base.sni_callback = newest
        return base


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC TCP listeners that follow the files, or None without TLS."""
    certificates = ServerCertificates.from_settings(settings)
    return certificates.grpc_credentials() if certificates is not None else None


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
    """Log a warning for each non-loopback listener that lacks TLS or caller authentication, and for
    an HTTP API that mTLS alone would leave refusing everyone."""
    tls = settings.tls_cert_file is not None
    for address in settings.listen_addresses():
        if is_loopback(address):
            continue
        if not authenticated:
            _LOG.warning("%s is reachable off this host and callers are not authenticated", address)
        if not tls:
            _LOG.warning("%s is reachable off this host without TLS: tokens and text go in clear", address)
    http_address = f"{settings.http_host or settings.host}:{settings.http_port}"
    if (
        settings.http_enabled
        and settings.tls_client_ca_file is not None
        and settings.auth_tokens_file is None
    ):
        _LOG.warning(
            "the HTTP API cannot name callers by client certificate: with no auth_tokens_file every"
            " HTTP call is refused UNAUTHENTICATED"
        )
    if settings.http_enabled and not is_loopback(http_address) and not tls:
        _LOG.warning(
            "the HTTP API on %s is plaintext: set the TLS files or terminate TLS in front", http_address
        )
