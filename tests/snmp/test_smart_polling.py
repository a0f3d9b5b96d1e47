"""Smart polling against snmpsim: the static interface columns are walked at discovery cadence
and reused in between, and a poll that reuses them gives the samples a full poll gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pysnmp.proto import rfc1902

from agent.api import Target, stable_fraction
from collectors.snmp import SnmpCollector
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import (
    REDISCOVER_AFTER_S,
    STATIC_COLUMNS,
    SYS_UPTIME,
    Snapshot,
    StaticColumns,
)
from lab.snmpsim import SnmpLab, recording

IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"
DEVICE = "smart_switch"


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    """A 2960X of this module's own, which its tests change."""
    with SnmpLab({DEVICE: recording("ios_2960x")}) as running:
        yield running


@pytest.fixture
def target(lab: SnmpLab):
    return lambda device: Target(device, lab.host, lab.port, {"community": device})


class Walks:
    """The column OIDs a collector's client walked."""

    def __init__(self, collector: SnmpCollector, target) -> None:
        self.oids: list[str] = []
        client = collector._client_for(target)
        walk_columns = client.walk_columns

        async def counted(oids, budget=None):
            self.oids.extend(oids)
            return await walk_columns(oids, budget)

        client.walk_columns = counted  # type: ignore[method-assign]

    def take(self) -> set[str]:
        taken, self.oids = set(self.oids), []
        return taken


def content(rows) -> list:
    """Rows as sample content, rates left out (two collectors read the counters at other times)."""
    return sorted(
        (r.measurement, sorted(r.tags.items()),
         sorted((k, v) for k, v in r.fields.items() if not k.endswith(("_bps", "_ps"))))
        for r in rows
    )


async def test_static_columns_are_reused_and_the_samples_stay_those_of_a_full_poll(lab, target) -> None:
    now = [1000.0]
    smart = SnmpCollector(clock=lambda: now[0])
    walks = Walks(smart, target(DEVICE))
    await smart.poll(target(DEVICE))
    assert STATIC_COLUMNS & walks.take()  # discovery: the ifTable and ifXTable names, speeds, aliases
    now[0] += 60
    reused = await smart.poll(target(DEVICE))
    walked = walks.take()
    assert not STATIC_COLUMNS & walked
    assert "1.3.6.1.2.1.2.2.1.8" in walked  # ifOperStatus, and the counters, every poll
    full = SnmpCollector(rediscover_after_s=0.0)  # every poll a discovery
    await full.poll(target(DEVICE))  # two polls each, for seen_before (was_up)
    assert content(reused) == content(await full.poll(target(DEVICE)))
    assert any(r.tags.get("if_name") for r in reused if r.measurement == "snmp_interface")


async def test_an_alias_change_shows_at_the_next_discovery_and_a_reboot_rediscovers(lab, target) -> None:
    now = [1000.0]
    collector = SnmpCollector(clock=lambda: now[0])
    walks = Walks(collector, target(DEVICE))
    first = [r for r in await collector.poll(target(DEVICE)) if r.measurement == "snmp_interface"]
    index, alias = first[0].tags["if_index"], first[0].tags.get("if_alias")
    uptime = next(r.fields["uptime_s"] for r in await collector.poll(target(DEVICE))
                  if r.measurement == "snmp_system")
    walks.take()

    def alias_of(rows) -> str | None:
        return next(r.tags.get("if_alias") for r in rows if r.measurement == "snmp_interface"
                    and r.tags["if_index"] == index)

    lab.set_values(DEVICE, {f"{IF_ALIAS}.{index}": rfc1902.OctetString("uplink to core")})
    try:
        now[0] += 60
        assert alias_of(await collector.poll(target(DEVICE))) == alias  # between discoveries
        assert IF_ALIAS not in walks.take()
        now[0] += REDISCOVER_AFTER_S
        assert alias_of(await collector.poll(target(DEVICE))) == "uplink to core"  # hourly discovery
        assert IF_ALIAS in walks.take()
        now[0] += 60
        await collector.poll(target(DEVICE))
        assert IF_ALIAS not in walks.take()
        # A reboot (sysUpTime back) may have renumbered the interfaces: discovered again at once.
        lab.set_values(DEVICE, {SYS_UPTIME: rfc1902.TimeTicks(100)})
        now[0] += 60
        await collector.poll(target(DEVICE))
        assert IF_ALIAS in walks.take()
    finally:
        lab.set_values(DEVICE, {f"{IF_ALIAS}.{index}": rfc1902.OctetString(alias or ""),
                                SYS_UPTIME: rfc1902.TimeTicks(int((uptime or 0) * 100))})


@pytest.mark.parametrize("column", ["1.3.6.1.2.1.2.2.1.8"])  # ifOperStatus
async def test_a_status_change_rediscovers_at_once(lab, target, column) -> None:
    collector = SnmpCollector()
    walks = Walks(collector, target(DEVICE))
    rows = [r for r in await collector.poll(target(DEVICE)) if r.measurement == "snmp_interface"]
    walks.take()
    index = int(rows[0].tags["if_index"])
    was = rows[0].fields["oper_status"]
    lab.set_oper_status(DEVICE, index, "down" if was == "up" else "up")
    try:
        await collector.poll(target(DEVICE))
        assert STATIC_COLUMNS & walks.take()  # a link that came up may have renegotiated its speed
    finally:
        lab.set_oper_status(DEVICE, index, was)


def test_a_fleet_discovered_at_once_rediscovers_spread_over_the_hour_then_hourly() -> None:
    """A thousand switches discovered when the agent starts do not all walk their static columns
    again in one minute an hour later (that minute costs twice a normal one)."""
    now = [0.0]
    columns = sorted(STATIC_COLUMNS)

    def uptime(ticks: int) -> dict[str, SnmpValue]:
        return {SYS_UPTIME: SnmpValue(ticks, "timeticks")}

    snapshot = Snapshot(columns={oid: {"1": SnmpValue(1, "integer")} for oid in columns}, scalars=uptime(100))
    fleet = [StaticColumns(lambda: now[0], spread=stable_fraction(f"127.0.0.1:{20_000 + i}")) for i in range(1000)]
    for device in fleet:
        device.remember(columns, {}, snapshot)
    per_minute = []
    for minute in range(1, 3 * 60 + 1):
        now[0] = minute * 60.0
        due = [device for device in fleet if not device.reusable(columns, {}, uptime(100 + minute * 6000))]
        for device in due:
            device.remember(columns, {}, snapshot)
        per_minute.append(len(due))
    assert sum(per_minute[:29]) == 0  # none before half the period
    assert sum(per_minute[:60]) == 1000  # every one within the hour
    assert max(per_minute) <= 3 * 1000 / 30  # about a thirtieth of the fleet a minute, never all of it
    assert sum(per_minute[60:120]) == sum(per_minute[120:]) == 1000  # then each once an hour, still spread
    assert max(per_minute[60:]) <= 3 * 1000 / 30


def test_the_spread_is_of_the_device_and_a_bad_one_is_refused() -> None:
    assert stable_fraction("10.0.0.1:161") != stable_fraction("10.0.0.2:161")
    assert 0.0 <= stable_fraction("switch.example:None") < 1.0
    with pytest.raises(ValueError, match="spread"):
        StaticColumns(spread=1.0)
