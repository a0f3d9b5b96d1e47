"""The TCP probe: connect to each port of a list, report its state and the handshake's latency.

Options: ``ports`` (one or more), ``timeout_s`` (per connection; the ports are tried at once).
The device's ``address`` is the host; its ``port`` is not read (a device often carries SNMP's
there). Measurement ``tcp_port`` (docs/METRICS.md, "Probes"); README.md beside this file.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from probes.tcp.client import PortResult, connect_all

__all__ = ["PLUGIN", "TcpOptions", "TcpProbe", "default_rules", "target_from_url"]

MEASUREMENT = "tcp_port"


def _not_bool(value: Any) -> Any:
    # pydantic reads `timeout_s: true` as 1: a typo must be an error
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Port = Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)]


class TcpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ports: Annotated[list[Port], Field(min_length=1, max_length=256)]
    timeout_s: Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)] = 3.0


def evaluate(result: PortResult) -> dict[str, Any]:
    """The fields of one port's sample: ``status`` up/down, the latency when it answered."""
    return {
        "status": "up" if result.outcome == "open" else "down",
        "outcome": result.outcome,
        "connect_ms": None if result.connect_s is None else round(result.connect_s * 1000, 3),
        "error": result.error,
    }


class TcpProbe:
    def __init__(
        self, options: TcpOptions, context: CollectorContext, *, monotonic: Callable[[], float] = time.perf_counter
    ) -> None:
        self.options = options
        self.monotonic = monotonic

    async def collect(self, target: Target, sink: Sink) -> None:
        try:
            results = await connect_all(target.address, self.options.ports, self.options.timeout_s, self.monotonic)
        except socket.gaierror as exc:
            raise CollectError(f"{target.address}: cannot resolve: {exc.strerror or exc}") from None
        for result in results:
            sink.emit(MEASUREMENT, evaluate(result), {"port": str(result.port)})
        if all(r.outcome == "silent" for r in results):
            # Nothing answered, not even a reset: the host is not there (or not reachable).
            ports = ", ".join(str(r.port) for r in results)
            raise Unreachable(f"{target.address}: no answer on port(s) {ports} within {self.options.timeout_s:g} s")


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="tcp_port_down",
            measurement=MEASUREMENT,
            when="status == 'down'",
            # two polls at the default 60 s: one dropped SYN must not page anyone
            for_s=120,
            severity="major",
            summary="{device} ({site}) TCP port {port} does not accept connections ({outcome})",
        )
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``tcp://HOST:PORT`` or ``tcp://HOST?ports=22,443[&timeout_s=2]``."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"{url!r}: expected tcp://HOST:PORT or tcp://HOST?ports=P1,P2")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    ports = [p for p in query.pop("ports", "").split(",") if p]
    if parts.port is not None:
        ports.insert(0, str(parts.port))
    if not ports:
        raise ValueError(f"{url!r}: no port (tcp://HOST:PORT or ?ports=P1,P2)")
    options: dict[str, Any] = {"ports": ports}
    if "timeout_s" in query:
        options["timeout_s"] = query.pop("timeout_s")
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    return Target(name=parts.hostname, address=parts.hostname), options


PLUGIN = PluginSpec(
    name="tcp",
    kind="probe",
    factory=TcpProbe,
    options=TcpOptions,
    default_rules=default_rules,
    state_fields=frozenset({(MEASUREMENT, "status")}),
    url_schemes={"tcp": target_from_url},
    description="TCP connect to a list of ports: state and handshake latency",
)
