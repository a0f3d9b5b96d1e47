"""The configuration archive: secrets masked, volatile lines out, a git commit per change."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from collectors.cisco_cli.archive import ConfigArchive, Masker, normalise
from lab.ios_device import DeviceState

T0 = 1_800_000_000.0


def _config(**changes: str) -> str:
    state = DeviceState("sw-acme-01", "vigie", "pw", "en")
    for key, value in changes.items():
        setattr(state, key, value)
    return state.running_config()


# every secret the lab's configuration carries, as written on the device
SECRETS = [
    "$9$8lNpzZp0yK1Wcr$eQqwQ2vVbpsa3ycXfTn3b6Rp2kHh1YnJ0LuTWfMvSkA",
    "$9$mR0e3a1l9t0eDk$8tFj6ZQ0b7rJb3ZrI4v1eH3n5ZkqUo8yPqgJ1xWdN2c",
    "0822455D0A16544541", "vsgp-ro-2026", "vsgp-rw-2026", "AuthPass2026!", "PrivPass2026!", "104D000A061843595F",
    "02050D480809", "045802150C2E1D1C5A", "110A1016141D5A5E57", "0508571C22431F5B4A", "13061E010803557878",
    "104D000A0618", "0822455D0A16", r"FLgBaJHXdYY_AcHZZMgQ\]^LFTQaAiA",
]


def test_every_secret_is_masked_and_the_rest_kept(tmp_path: Path) -> None:
    text = _config()
    assert all(secret in text for secret in SECRETS)  # the device does print them
    stored = normalise(text, Masker(tmp_path / "mask.key")).text
    for secret in SECRETS:
        assert secret not in stored, secret
    masked = re.findall(r"<masked:[0-9a-f]{8}>", stored)
    assert len(masked) == 18  # one per secret printed: the RO community and the line password twice
    for kept in ("enable secret 9 <masked:", "username admin privilege 15 secret 9 <masked:", "key chain OSPF-KEYS",
                 " key 1\n", "  key-string 7 <masked:", "snmp-server host 10.10.0.20 version 2c <masked:",
                 "ntp authentication-key 1 md5 <masked:", "crypto isakmp key 6 <masked:", " address 10.99.0.1",
                 "ntp server 10.10.0.123 key 1\n", "\nend\n"):
        assert kept in stored, kept
    assert "ntp clock-period" not in stored and "Current configuration" not in stored
    assert "Last configuration change" not in stored and "NVRAM config last updated" not in stored


def test_the_same_secret_masks_the_same_under_one_key_and_differently_under_another(tmp_path: Path) -> None:
    one, other = Masker(tmp_path / "a.key"), Masker(tmp_path / "b.key")
    assert one.token("vsgp-ro-2026") == Masker(tmp_path / "a.key").token("vsgp-ro-2026")
    assert one.token("vsgp-ro-2026") != one.token("vsgp-ro-2027")
    assert one.token("vsgp-ro-2026") != other.token("vsgp-ro-2026")
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600


def test_the_change_stamp_is_read_then_left_out(tmp_path: Path) -> None:
    config = normalise(_config(changed_by="jdupont", changed_at="10:12:13 CET Tue Dec 1 2026"),
                       Masker(tmp_path / "k"))
    assert (config.changed_at, config.changed_by) == ("10:12:13 CET Tue Dec 1 2026", "jdupont")


def _git_log(root: Path) -> list[str]:
    done = subprocess.run(["git", "-C", str(root), "log", "--format=%at %an %s"], capture_output=True, text=True,
                          check=True)
    return done.stdout.splitlines()


def test_a_baseline_then_one_commit_per_change_and_none_for_volatile_lines(tmp_path: Path) -> None:
    masker = Masker(tmp_path / "mask.key")
    archive = ConfigArchive(tmp_path / "configs")
    first = archive.store("sw-acme-01", normalise(_config(), masker), T0)
    assert (first.baseline, first.changed, first.versions, first.diff) == (True, False, 1, None)

    # only the volatile lines move: the stamp, the NVRAM time, ntp's clock period, the size
    volatile = _config(changed_at="11:00:00 CET Tue Dec 1 2026").replace(
        "ntp clock-period 36028797018963968", "ntp clock-period 36028797018963712")
    same = archive.store("sw-acme-01", normalise(volatile, masker), T0 + 86400)
    assert (same.changed, same.versions, same.commit) == (False, 1, first.commit)

    rotated = normalise(_config(community="vsgp-ro-2027", uplink_description="UPLINK fed-2", changed_by="jdupont"),
                        masker)
    change = archive.store("sw-acme-01", rotated, T0 + 2 * 86400)
    assert (change.changed, change.versions, change.lines_added, change.lines_removed) == (True, 2, 3, 3)
    assert change.diff is not None
    lines = change.diff.splitlines()
    assert lines[0] == f"--- sw-acme-01 {first.commit[:10]}"
    assert lines[1] == f"+++ sw-acme-01 {change.commit[:10]}, changed by jdupont"
    assert "- description UPLINK fed" in lines and "+ description UPLINK fed-2" in lines
    removed = [line for line in lines if line.startswith("-snmp-server community")]
    added = [line for line in lines if line.startswith("+snmp-server community")]
    assert removed and added and removed != added  # a rotated secret is a changed line...
    assert "vsgp-ro-2026" not in change.diff and "vsgp-ro-2027" not in change.diff  # ...never shown
    assert _git_log(tmp_path / "configs") == [
        f"{int(T0 + 2 * 86400)} vigie sw-acme-01: running-config changed at 08:01:57 CET Mon Nov 30 2026 by jdupont",
        f"{int(T0)} vigie sw-acme-01: baseline",
    ]
    assert (tmp_path / "configs" / "sw-acme-01.cfg").read_text() == rotated.text


def test_a_long_diff_is_cut_and_says_where_the_rest_is(tmp_path: Path) -> None:
    masker = Masker(tmp_path / "mask.key")
    archive = ConfigArchive(tmp_path / "configs", max_diff_lines=10)
    archive.store("sw", normalise(_config(), masker), T0)
    grown = _config().replace("end\n", "".join(f"vlan {n}\n name V{n}\n!\n" for n in range(100, 140)) + "end\n")
    change = archive.store("sw", normalise(grown, masker), T0 + 60)
    assert change.diff is not None and change.lines_added == 120
    assert len(change.diff.splitlines()) == 11
    assert change.diff.splitlines()[-1].startswith("... ") and "git -C" in change.diff


def test_the_devices_of_one_client_commit_to_their_archive_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    masker = Masker(tmp_path / "mask.key")
    archive = ConfigArchive(tmp_path / "configs")
    names = [f"sw-{n:02d}" for n in range(8)]
    with ThreadPoolExecutor(8) as pool:  # as the agent's worker threads do, one per switch
        stored = list(pool.map(lambda name: archive.store(name, normalise(_config(), masker), T0), names))
    assert all(s.baseline and s.versions == 1 for s in stored)
    assert sorted(line.split(" ", 2)[2] for line in _git_log(tmp_path / "configs")) == [
        f"{name}: baseline" for name in names]
