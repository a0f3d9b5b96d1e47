"""The ICMP probe: 127.0.0.1 answers; an address that does not answer, inside a network namespace
the test creates, is 100 % loss — a measurement, not an error of the probe — and the fast-path
rule makes the site down after three silent runs 5 s apart."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent.api import Sample
from agent.config.schema import BUILTIN_RULES
from alerting.engine import AlertEngine
from probes.icmp import PLUGIN, IcmpOptions
from probes.icmp.client import choose_socket, datagram_allowed, read_ping_group_range

from .conftest import SILENT, collect_in
from .helpers import T0, engine, firing, of, run_poll, status, target


def _can_ping_here() -> str | None:
    kind = choose_socket("auto", read_ping_group_range())
    if kind == "raw" and os.geteuid() != 0:
        return "no datagram ICMP socket for this user (net.ipv4.ping_group_range) and no root for a raw one"
    return None


async def test_loopback_answers_every_echo() -> None:
    if (reason := _can_ping_here()) is not None:
        pytest.skip(reason)
    samples = await run_poll(PLUGIN, {"count": 3, "spacing_s": 0.05}, target("127.0.0.1"))
    assert status(samples)["status"] == "ok"
    (sample,) = of(samples, "icmp")
    fields = sample.fields
    assert (fields["sent"], fields["received"], fields["loss_percent"]) == (3, 3, 0.0)
    assert 0 < fields["rtt_min_ms"] <= fields["rtt_avg_ms"] <= fields["rtt_max_ms"]
    assert fields["socket"] == choose_socket("auto", read_ping_group_range())


def test_a_silent_target_is_100_percent_loss_not_an_error_and_the_site_is_down_within_20_s(netns, tmp_path) -> None:
    code, lines = collect_in(netns, f"icmp://{SILENT}?count=2&spacing_s=0.05&timeout_s=0.5")
    assert code == 1, lines  # `vigie collect` says the run was not ok ...
    icmp, collection = lines
    assert icmp["measurement"] == "icmp"
    assert icmp["fields"] | {"socket": None} == {
        "sent": 2, "received": 0, "loss_percent": 100.0, "rtt_min_ms": None, "rtt_avg_ms": None,
        "rtt_max_ms": None, "jitter_ms": None, "socket": None,
    }
    # ... because the target did not answer, not because the probe failed
    assert collection["fields"]["status"] == "unreachable" and collection["fields"]["reachable"] is False
    assert "100 % loss" in collection["fields"]["error"]
    # Three such runs 5 s apart (the probe's interval) through the real engine: down at the third,
    # also when the third waited a few milliseconds less for its echoes than the first (stamped
    # when they end) and the engine sees it at once.
    alerts = engine(tmp_path, PLUGIN)
    tags = {"client": "acme", "site": "agence-12", "device": "rtr-agence-12", "collector": "icmp"}
    for run, at in enumerate((T0, T0 + 5.002, T0 + 9.996)):
        sample = Sample("collection", tags, collection["fields"], int(at * 1e9))
        alerts.evaluate([sample], now=at)
        assert (firing(alerts) != []) == (run == 2)
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("icmp_down", "critical")
    assert summary == "rtr-agence-12 (agence-12) answers no ping (three runs in a row, 100 % loss)"


def test_the_echoes_of_a_run_do_not_wait_for_each_other(netns) -> None:
    # One after the other, a silent target's five echoes (1 s timeout each) would take 5.2 s; each
    # waited for on its own socket, the run ends with the last one's timeout, 1.2 s after it began.
    # The 3 s bound is the verdict's headroom: serial waits could not pass it on any machine.
    code, lines = collect_in(netns, f"icmp://{SILENT}?count=5&spacing_s=0.05&timeout_s=1")
    icmp, collection = lines
    assert (icmp["fields"]["sent"], icmp["fields"]["received"]) == (5, 0)
    assert 1.0 <= collection["fields"]["duration_s"] < 3.0, collection
    # and many echoes in flight at once still each find their own reply, whatever the socket kind
    for group_range, kind in (("1 0", "raw"), ("0 2147483647", "datagram")):
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv4.ping_group_range={group_range}"],
                       check=True)
        code, lines = collect_in(netns, "icmp://127.0.0.1?count=20&spacing_s=0.01")
        assert code == 0, lines
        assert (lines[0]["fields"]["received"], lines[0]["fields"]["socket"]) == (20, kind)


def test_a_dead_device_is_one_alert_not_icmp_down_and_device_unreachable(tmp_path) -> None:
    # a router watched by ICMP (every 5 s) and SNMP (every 60 s) dies: three minutes later the
    # fast path has fired, and the kernel's device_unreachable of both collectors is held under it
    rules = [*PLUGIN.default_rules(), *BUILTIN_RULES]
    alerts = AlertEngine(str(tmp_path / "alerts.db"), rules, clock=lambda: T0)
    down = {"status": "unreachable", "reachable": False, "error": "no answer"}
    base = {"client": "acme", "site": "agence-12", "device": "rtr-agence-12"}
    for second in range(0, 181, 5):
        at = T0 + second
        batch = [Sample("collection", {**base, "collector": "icmp"}, down, int(at * 1e9))]
        if second % 60 == 0:
            batch.append(Sample("collection", {**base, "collector": "snmp"}, down, int(at * 1e9)))
        alerts.evaluate(batch, now=at + 1)
    assert [rule for rule, _, _ in firing(alerts)] == ["icmp_down"]


def test_datagram_sockets_where_ping_group_range_allows_them(netns) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
                   check=True)
    code, lines = collect_in(netns, "icmp://127.0.0.1?count=2&spacing_s=0.05")
    assert code == 0, lines
    assert lines[0]["fields"]["socket"] == "datagram" and lines[0]["fields"]["received"] == 2


def test_the_socket_kind_follows_the_range_and_the_groups() -> None:
    assert datagram_allowed("0 2147483647", [1000]) and not datagram_allowed("1 0", [0])
    assert datagram_allowed("100 200", [5, 150]) and not datagram_allowed("garbage", [0])


def test_a_run_must_fit_in_its_interval() -> None:
    with pytest.raises(ValueError, match="longer than interval_s"):
        IcmpOptions(count=10, spacing_s=1, timeout_s=2, interval_s=5)
