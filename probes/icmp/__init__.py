"""The ICMP probe: loss and round-trip times over N echo requests per run; the fast path of site
reachability (a site that stops answering pings for 15 s is down).

Options (README.md beside this file): ``count`` (echo requests per run), ``spacing_s`` (between
them), ``timeout_s`` (the wait for each reply), ``socket`` (``auto`` | ``datagram`` | ``raw``, see
probes/icmp/client.py), ``interval_s`` (how often the probe wants to run: 5 s). Measurement
``icmp`` (docs/METRICS.md, "Probes"), whose ``socket`` field says which kind of socket was used.

A silent target is a measurement, not a failure of the probe: the ``icmp`` sample says 100 % loss
and the run ends ``unreachable`` (the kernel's word for "the target did not answer"), so the
device counts as down for the alert engine's inhibition of what stands behind it, as an SNMP
timeout does. The probe's own failures (no socket it may open, a name that does not resolve) are
``error`` runs with no sample.
"""

from __future__ import annotations

import statistics
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import icmplib
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from agent.api.rules import Inhibition
from probes.icmp.client import Echoes, EchoUnavailable, choose_socket, echo, read_ping_group_range

__all__ = ["PLUGIN", "IcmpOptions", "IcmpProbe", "default_rules", "evaluate", "target_from_url"]

MEASUREMENT = "icmp"
DEFAULT_INTERVAL_S = 5.0


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Seconds = Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)]


class IcmpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[int, Field(ge=1, le=100), BeforeValidator(_not_bool)] = 3
    spacing_s: Annotated[float, Field(ge=0.01, le=10), BeforeValidator(_not_bool)] = 0.2
    timeout_s: Seconds = 1.0
    socket: Literal["auto", "datagram", "raw"] = "auto"
    # A short interval: three silent runs 5 s apart (icmp_down's for_s = 8 s) make a site down
    # within 11.4 to 16.4 s of its last answer.
    interval_s: Annotated[float, Field(ge=1, le=3600), BeforeValidator(_not_bool)] = DEFAULT_INTERVAL_S

    @model_validator(mode="after")
    def _fits_its_interval(self) -> IcmpOptions:
        # a silent target's run: the last request goes out at its slot and is waited for
        run_s = (self.count - 1) * self.spacing_s + self.timeout_s
        if run_s >= self.interval_s:
            raise ValueError(f"a run takes up to {run_s:g} s (count, spacing_s, timeout_s): "
                             f"longer than interval_s ({self.interval_s:g})")
        return self


def evaluate(echoes: Echoes) -> dict[str, Any]:
    rtts_ms = [rtt * 1000 for rtt in echoes.rtts_s]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "sent": echoes.sent,
        "received": echoes.received,
        "loss_percent": round(100 * (echoes.sent - echoes.received) / echoes.sent, 3) if echoes.sent else None,
        # no reply, no round trip: unknown, never 0
        "rtt_min_ms": ms(min(rtts_ms)) if rtts_ms else None,
        "rtt_avg_ms": ms(statistics.fmean(rtts_ms)) if rtts_ms else None,
        "rtt_max_ms": ms(max(rtts_ms)) if rtts_ms else None,
        "jitter_ms": ms(echoes.jitter_s * 1000) if echoes.jitter_s is not None else None,
        "socket": echoes.socket,
    }


class IcmpProbe:
    def __init__(self, options: IcmpOptions, context: CollectorContext) -> None:
        self.options = options

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        kind = choose_socket(options.socket, read_ping_group_range())
        try:
            echoes = await echo(target.address, options.count, options.spacing_s, options.timeout_s, kind)
        except icmplib.NameLookupError:
            raise CollectError(f"{target.address}: cannot resolve") from None
        except EchoUnavailable as exc:
            raise CollectError(str(exc)) from None
        sink.emit(MEASUREMENT, evaluate(echoes))
        if echoes.received == 0:
            raise Unreachable(
                f"{target.address}: no echo reply to {echoes.sent} request(s) within {options.timeout_s:g} s "
                f"(100 % loss, {kind} socket)"
            )


def default_rules() -> list[Rule]:
    return [
        Rule(
            # the fast path: on `collection`, so the device's own silence does not hold it back,
            # while an unreachable parent (the site's router behind a core that is down) does
            name="icmp_down",
            measurement="collection",
            match={"collector": "icmp"},
            when="status == 'unreachable'",
            # three silent runs: at the 5 s interval the first and the third are 10 s apart, give or
            # take how long each waited for its echoes; a hold-down of exactly 10 s would miss the
            # third by milliseconds now and then and wait for a fourth (+5 s)
            for_s=8,
            severity="critical",
            summary="{device} ({site}) answers no ping (three runs in a row, 100 % loss)",
            # one outage, one alert: the same device's `device_unreachable` (its ICMP run and its
            # other collectors', 120 s later) is this outage seen slower
            inhibits=[Inhibition(rule="device_unreachable", equal=("client", "device"), required=False)],
        ),
        Rule(
            name="icmp_packet_loss",
            measurement=MEASUREMENT,
            when="0 < loss_percent < 100",
            # a lossy link (a 4G backup) over two minutes, not one lost echo
            for_s=120,
            severity="warning",
            summary="{device} ({site}) loses {loss_percent} % of its pings (RTT {rtt_avg_ms} ms)",
        ),
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``icmp://HOST[?count=N&spacing_s=S&timeout_s=S&socket=auto|datagram|raw]``."""
    parts = urlsplit(url)
    if parts.scheme != "icmp" or not parts.hostname or parts.port is not None:
        raise ValueError(f"{url!r}: expected icmp://HOST[?count=N&timeout_s=S]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options = {key: query.pop(key) for key in ("count", "spacing_s", "timeout_s", "socket") if key in query}
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    return Target(name=parts.hostname, address=parts.hostname), options


PLUGIN = PluginSpec(
    name="icmp",
    kind="probe",
    factory=IcmpProbe,
    options=IcmpOptions,
    default_rules=default_rules,
    url_schemes={"icmp": target_from_url},
    description="ICMP echo: loss and RTT over N requests, datagram or raw sockets",
)
