"""A TLS handshake with a server, and what its certificate says. No vigie import.

The handshake verifies the chain against the CA bundle (or the system's trust store) without
checking the name, so a wrong name and a broken chain are told apart; the name is then matched
here against the certificate's subjectAltName (RFC 6125: one wildcard, leftmost label only). When
the chain does not verify, a second handshake without verification reads the certificate anyway:
an expired or self-signed certificate still has a date and an issuer worth reporting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID


class HandshakeFailed(Exception):
    """The server accepted the connection, but no TLS handshake completed."""


@dataclass(frozen=True)
class Certificate:
    subject: str  # the commonName, else the whole RFC 4514 name
    issuer: str  # RFC 4514
    serial: str  # hex
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


@dataclass(frozen=True)
class Handshake:
    certificate: Certificate
    chain_error: str | None  # None: the chain verified
    tls_version: str | None
    elapsed_s: float  # the first (verifying) handshake, connection included


def verifying_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_bundle)
    context.check_hostname = False  # matched separately, so a name error is not a chain error
    return context


def _reading_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _handshake(
    host: str, port: int, server_name: str, context: ssl.SSLContext, timeout_s: float
) -> tuple[bytes, str | None]:
    async with asyncio.timeout(timeout_s):
        _, writer = await asyncio.open_connection(host, port)  # OSError, TimeoutError: nothing there
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await writer.start_tls(context, server_hostname=server_name)
        except ssl.SSLError:
            raise  # an OSError too, but the server spoke TLS: the caller reads what it refused
        except (OSError, TimeoutError) as exc:
            # connected, then reset, closed or silent: a server that does not speak TLS there
            raise HandshakeFailed(f"TLS handshake failed: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True), ssl_object.version()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # the answer is read; how the server closes does not change it


async def handshake(
    host: str,
    port: int,
    server_name: str,
    verifying: ssl.SSLContext,
    timeout_s: float,
    monotonic: Callable[[], float] = time.perf_counter,
) -> Handshake:
    """Raises OSError / TimeoutError when nothing accepts the connection, HandshakeFailed when the
    server does not complete a TLS handshake."""
    started = monotonic()
    chain_error = None
    try:
        der, version = await _handshake(host, port, server_name, verifying, timeout_s)
    except ssl.SSLCertVerificationError as exc:
        chain_error = exc.verify_message or exc.reason or str(exc)
        try:
            der, version = await _handshake(host, port, server_name, _reading_context(), timeout_s)
        except ssl.SSLError as again:
            raise HandshakeFailed(f"TLS handshake failed: {again.reason or again}") from None
    except ssl.SSLError as exc:
        raise HandshakeFailed(f"TLS handshake failed: {exc.reason or exc}") from None
    elapsed = monotonic() - started
    return Handshake(parse(der), chain_error, version, elapsed)


def _common_name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def parse(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
        ip_addresses = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ip_addresses = (), ()
    return Certificate(
        subject=_common_name(cert.subject),
        # the whole name: "CN=R11,O=Let's Encrypt,C=US" says more than "R11"
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )


def hostname_matches(certificate: Certificate, name: str) -> bool:
    """RFC 6125 matching on subjectAltName only (browsers ignore the commonName)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return any(ipaddress.ip_address(ip) == address for ip in certificate.ip_addresses)
    wanted = name.lower().rstrip(".").split(".")
    for pattern in certificate.dns_names:
        labels = pattern.lower().rstrip(".").split(".")
        if len(labels) != len(wanted):
            continue
        first_ok = labels[0] == wanted[0] or (labels[0] == "*" and len(labels) > 2)
        if first_ok and labels[1:] == wanted[1:]:
            return True
    return False
