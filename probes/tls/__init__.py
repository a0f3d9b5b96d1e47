"""The TLS probe: a server's certificate — days to expiry, chain validity against a CA bundle,
hostname match, issuer.

Options (README.md beside this file): ``port`` (443), ``server_name`` (the name sent as SNI and
matched against the certificate; default the device's address), ``ca_bundle`` (default the
system's trust store), ``timeout_s``. Measurement ``tls_certificate`` (docs/METRICS.md, "Probes").
Default rules: warning under 21 days, critical under 7 (a Let's Encrypt renewal that silently
fails is noticed three weeks ahead), a chain that does not verify, a name the certificate does not
cover.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from probes.tls.client import Handshake, HandshakeFailed, handshake, hostname_matches, verifying_context

__all__ = ["PLUGIN", "TlsOptions", "TlsProbe", "default_rules", "evaluate", "target_from_url"]

MEASUREMENT = "tls_certificate"
WARNING_DAYS = 21
CRITICAL_DAYS = 7


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


class TlsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)] = 443
    server_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.:-]+$", max_length=253)] | None = None
    ca_bundle: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)] = 5.0


def evaluate(result: Handshake, server_name: str, now: dt.datetime) -> dict[str, Any]:
    cert = result.certificate
    return {
        "expires_in_days": round((cert.not_after - now).total_seconds() / 86400, 3),
        "not_after": cert.not_after.isoformat(),
        "not_before": cert.not_before.isoformat(),
        "issuer": cert.issuer,
        "subject": cert.subject,
        "serial": cert.serial,
        "chain_valid": result.chain_error is None,
        "hostname_valid": hostname_matches(cert, server_name),
        "verify_error": result.chain_error,
        "tls_version": result.tls_version,
        "handshake_ms": round(result.elapsed_s * 1000, 3),
    }


class TlsProbe:
    def __init__(
        self,
        options: TlsOptions,
        context: CollectorContext,
        *,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.options = options
        try:
            self.verifying = verifying_context(str(options.ca_bundle) if options.ca_bundle else None)
        except OSError as exc:
            raise ValueError(f"ca_bundle: {exc}") from None
        self.clock = context.clock
        self.monotonic = monotonic

    async def collect(self, target: Target, sink: Sink) -> None:
        name = self.options.server_name or target.address
        where = f"{target.address}:{self.options.port}"
        try:
            result = await handshake(
                target.address, self.options.port, name, self.verifying, self.options.timeout_s, self.monotonic
            )
        except socket.gaierror as exc:
            raise CollectError(f"{target.address}: cannot resolve: {exc.strerror or exc}") from None
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"{where}: {getattr(exc, 'strerror', None) or exc or 'no answer'}") from None
        except HandshakeFailed as exc:
            raise CollectError(f"{where}: {exc}") from None
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        sink.emit(MEASUREMENT, evaluate(result, name, now), {"server_name": name, "port": str(self.options.port)})


def default_rules() -> list[Rule]:
    where = "{device}: certificate of {server_name}:{port}"
    return [
        Rule(
            name="tls_certificate_expiring",
            measurement=MEASUREMENT,
            when=f"{CRITICAL_DAYS} <= expires_in_days < {WARNING_DAYS}",
            severity="warning",
            summary=f"{where} expires in {{expires_in_days}} days ({{not_after}}, {{issuer}})",
        ),
        Rule(
            name="tls_certificate_expiry_critical",
            measurement=MEASUREMENT,
            # an expired certificate is here too: negative days
            when=f"expires_in_days < {CRITICAL_DAYS}",
            severity="critical",
            summary=f"{where} expires in {{expires_in_days}} days ({{not_after}}, {{issuer}})",
        ),
        Rule(
            name="tls_chain_invalid",
            measurement=MEASUREMENT,
            when="chain_valid == False",
            for_s=300,
            severity="major",
            summary=f"{where} does not verify: {{verify_error}}",
        ),
        Rule(
            name="tls_hostname_mismatch",
            measurement=MEASUREMENT,
            when="hostname_valid == False",
            for_s=300,
            severity="major",
            summary=f"{where} does not name {{server_name}}",
        ),
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``tls://HOST[:PORT][?server_name=NAME&timeout_s=S]`` (port 443 when not given)."""
    parts = urlsplit(url)
    if parts.scheme != "tls" or not parts.hostname:
        raise ValueError(f"{url!r}: expected tls://HOST[:PORT][?server_name=NAME]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, Any] = {"port": parts.port or 443}
    for key in ("server_name", "timeout_s", "ca_bundle"):
        if key in query:
            options[key] = query.pop(key)
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    return Target(name=parts.hostname, address=parts.hostname), options


PLUGIN = PluginSpec(
    name="tls",
    kind="probe",
    factory=TlsProbe,
    options=TlsOptions,
    default_rules=default_rules,
    url_schemes={"tls": target_from_url},
    description="TLS certificate: days to expiry, chain validity, hostname match, issuer",
)
