"""The lldp and cdp profiles on the real walks of lab/snmprec/: every recording that carries an
LLDP or CDP neighbour table (found by its OIDs, not listed by hand) yields one snmp_neighbor per
entry, the same neighbours LibreNMS found where its record has them, and what docs/CONFIGURATION.md
says each recording yields. The address decoding on a hand-written walk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.api import Target
from collectors.snmp import SnmpCollector
from collectors.snmp.engine import Row
from collectors.snmp.profile import ProfileSet
from lab.snmpsim import SnmpLab

from ..e2e.helpers import vigie
from ..snmp.expected import load_expected

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "lab" / "snmprec"
LLDP_REM_SYS_NAME = "1.0.8802.1.1.2.1.4.1.1.9."
LLDP_REM_CHASSIS = "1.0.8802.1.1.2.1.4.1.1.5."
CDP_DEVICE_ID = "1.3.6.1.4.1.9.9.23.1.2.1.1.6."


def records(walk: str, prefix: str) -> dict[str, str]:
    """index -> value of the recording's column ``prefix`` (read from the file, not through SNMP)."""
    found = {}
    for line in (RECORDINGS / f"{walk}.snmprec").read_text(encoding="utf-8", errors="replace").splitlines():
        oid, _, rest = line.partition("|")
        if oid.startswith(prefix):
            found[oid[len(prefix):]] = rest.partition("|")[2]
    return found


def carrying() -> dict[str, dict[str, int]]:
    """walk -> {protocol: entries} for every recording with an lldpRemTable or cdpCacheTable."""
    found = {}
    for path in sorted(RECORDINGS.glob("*.snmprec")):
        counts = {"lldp": len(records(path.stem, LLDP_REM_CHASSIS)), "cdp": len(records(path.stem, CDP_DEVICE_ID))}
        if any(counts.values()):
            found[path.stem] = {k: v for k, v in counts.items() if v}
    return found


def documented() -> dict[str, dict[str, int]]:
    """The table of docs/CONFIGURATION.md's topology section: | `walk` | protocol | entries | ..."""
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    section = text[text.index("### Which lab recordings carry neighbour tables"):]
    section = section[: section.index("\n#", 1)]
    table: dict[str, dict[str, int]] = {}
    for walk, protocol, entries in re.findall(r"^\| `([^`]+)` \| (lldp|cdp) \| (\d+) \|", section, re.M):
        table.setdefault(walk, {})[protocol] = int(entries)
    return table


_POLLED: dict[str, list[Row]] = {}


async def poll(lab: SnmpLab, device: str) -> list[Row]:
    """One poll of ``device`` by the real collector, once per session (a walk does not change)."""
    if device not in _POLLED:
        target = Target(device, lab.host, lab.port, {"community": device})
        _POLLED[device] = await SnmpCollector({}, profiles=ProfileSet.load()).poll(target)
    return _POLLED[device]


async def neighbours(lab: SnmpLab, device: str) -> list[Row]:
    return [r for r in await poll(lab, device) if r.measurement == "snmp_neighbor"]


def test_the_documented_recordings_are_those_that_carry_neighbour_tables() -> None:
    assert documented() == carrying()
    # the shared copy the other helpers read holds the same recordings
    shared = Path("/work/shared/snmprec")
    if shared.is_dir():
        for walk in carrying():
            assert (shared / f"{walk}.snmprec").read_bytes() == (RECORDINGS / f"{walk}.snmprec").read_bytes()


@pytest.mark.parametrize("walk", sorted(carrying()))
async def test_one_sample_per_neighbour_entry(lab: SnmpLab, walk: str) -> None:
    rows = await neighbours(lab, walk)
    entries = carrying()[walk]
    assert {p: sum(r.tags["protocol"] == p for r in rows) for p in entries} == entries
    names = records(walk, LLDP_REM_SYS_NAME) | records(walk, CDP_DEVICE_ID)
    named = sorted(v for v in names.values() if v not in ("", "Not Advertised"))
    assert sorted(r.tags["remote_name"] for r in rows if "remote_name" in r.tags) == named
    for row in rows:
        assert row.tags["local_port"] and row.tags["remote_port"] and isinstance(row.fields["local_port_index"], int)


@pytest.mark.parametrize("walk", ["ios_2960x", "iosxe_c9400-svl", "procurve_e2910"])
async def test_the_neighbours_librenms_found(lab: SnmpLab, walk: str) -> None:
    links = load_expected(walk)["discovery-protocols"]["discovery"]["links"]
    rows = await neighbours(lab, walk)
    ours = sorted((r.tags["protocol"], r.tags["remote_name"], r.tags["local_port"], r.tags["remote_port"])
                  for r in rows)
    theirs = sorted((link["protocol"], link["remote_hostname"], link["ifName"], link["remote_port"]) for link in links)
    # LibreNMS writes a local LLDP port id with the chassis id ("41 (000000000000)"): ours is the id
    assert [o[:3] for o in ours] == [t[:3] for t in theirs]
    assert all(t[3] == o[3] or t[3].startswith(o[3] + " (") for o, t in zip(ours, theirs, strict=True))
    platforms = sorted(link["remote_platform"] for link in links if link["remote_platform"])
    assert sorted(r.fields["remote_platform"] for r in rows if r.fields.get("remote_platform")) == platforms


async def test_cdp_addresses_and_lldp_chassis_on_the_real_walks(lab: SnmpLab) -> None:
    by_name = {r.tags["remote_name"]: r.tags for r in await neighbours(lab, "ios_2960x")}
    assert by_name["acme-fr-ap-011"]["remote_address"] == "172.27.49.84"  # AC1B3154
    assert by_name["acme-fr-s-001"]["remote_address"] == "10.54.64.5"  # 0A364005
    dell = await neighbours(lab, "dell-os10")
    core = next(r.tags for r in dell if r.tags.get("remote_name") == "core-1")
    # lldpRemPortIdSubtype local(7) "517": the port description names it
    assert (core["remote_chassis_id"], core["remote_port"], core["local_port"]) == ("e4:fc:82:36:23:c0", "ae3",
                                                                                   "ethernet1/1/29")
    procurve = await neighbours(lab, "procurve_e2910")
    assert all("remote_chassis_id" not in r.tags for r in procurve)  # all-zero (redacted) MAC: unknown


async def test_management_addresses_from_the_index_and_printable_octets(lab: SnmpLab) -> None:
    rows = {(r.tags["protocol"], r.tags["local_port"]): r for r in await neighbours(lab, "synthetic")}
    core = rows[("lldp", "Gi1/0/1")].tags
    assert (core["remote_name"], core["remote_address"], core["remote_chassis_id"], core["remote_port"]) == (
        "core-1.example.org", "10.1.2.3", "a0:b1:c2:d3:e4:f5", "ge-0/0/1")
    server = rows[("lldp", "Gi1/0/2")].tags
    assert (server["remote_address"], server["remote_chassis_id"], server["remote_port"]) == (
        "fe80::1", "srv-7", "aa:bb:cc:dd:ee:ff")
    nameless = rows[("lldp", "uplink port 3")]
    assert "remote_name" not in nameless.tags and nameless.tags["remote_port"] == "517"
    assert nameless.tags["remote_chassis_id"] == "f4:8e:38:55:de:f6" and nameless.fields["remote_description"] is None
    assert rows[("cdp", "Gi1/0/1")].tags["remote_address"] == "10.32.65.66"  # the octets of "\n AB"
    assert rows[("cdp", "Gi1/0/2")].tags["remote_address"] == "10.9.32.0"  # "\n\t " lost its NUL
    assert rows[("cdp", "Gi1/0/2")].tags["remote_name"] == "ap-cour.example.org"


async def test_the_device_own_identity(lab: SnmpLab) -> None:
    (local,) = [r for r in await poll(lab, "synthetic") if r.measurement == "snmp_lldp_local"]
    assert local.fields == {"chassis_id": "00:11:22:33:44:aa", "sys_name": "sw-synth.example.org"}


def test_vigie_collect_shows_the_neighbours(lab: SnmpLab) -> None:
    # the hand-written walk: a small one (the command, not the profile, is under test here)
    done = vigie("collect", f"snmp://synthetic@{lab.host}:{lab.port}", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    samples = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    heard = sorted((s["tags"]["protocol"], s["tags"].get("remote_address", "-")) for s in samples
                   if s["measurement"] == "snmp_neighbor")
    assert heard == [("cdp", "10.32.65.66"), ("cdp", "10.9.32.0"), ("lldp", "-"), ("lldp", "10.1.2.3"),
                     ("lldp", "fe80::1")]
