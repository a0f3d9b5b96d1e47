"""The Linux collector against a real OpenSSH server on loopback (tests/ssh/sshd.py): the host's own
/proc, df and pg_isready; Docker, systemctl and apt-get by recorded stand-ins (say so: the sandbox
has no Docker daemon, no systemd as PID 1, no package lists to refresh)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from alerting.engine import AlertEngine
from collectors.ssh.client import Result
from collectors.ssh.host import Unparsable
from collectors.ssh.linux import (
    PLUGIN,
    parse_apt_upgrade,
    parse_df,
    parse_failed_units,
    parse_load,
    parse_meminfo,
    parse_pg_isready,
)

from .helpers import T0, build, of, run, status, target
from .sshd import FIXTURES, Sshd, free_port, keygen

OPTIONS = {"docker": True, "command_timeout_s": 5}
LIGHT = {**OPTIONS, "systemd": False, "updates": False}  # fewer commands where a test needs none of them


def login(sshd: Sshd) -> dict[str, str]:
    return {"user": sshd.user, "private_key_file": str(sshd.client_key)}


def meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


async def test_a_debian_host_read_over_real_ssh(sshd: Sshd, tmp_path: Path) -> None:
    collector = build(PLUGIN, OPTIONS, tmp_path / "state")
    samples = await run(PLUGIN, collector, target(sshd.port, login(sshd)))
    assert status(samples)["status"] == "ok", status(samples)

    (load,) = of(samples, "linux_load")
    assert load.fields["cpus"] == len(os.sched_getaffinity(0)) or load.fields["cpus"] == os.cpu_count()
    assert load.fields["load15"] >= 0
    (memory,) = of(samples, "linux_memory")
    assert memory.fields["total_bytes"] == meminfo_total()
    assert 0 <= memory.fields["used_percent"] <= 100
    mounts = {s.tags["mount"]: s.fields for s in of(samples, "linux_filesystem")}
    assert "/" in mounts and 0 <= mounts["/"]["free_percent"] <= 100
    assert not any(f["fs_type"] == "tmpfs" for f in mounts.values())  # excluded by default

    (systemd,) = of(samples, "linux_systemd")
    assert systemd.fields == {"failed_units": 1, "failed": "logrotate.service"}
    (updates,) = of(samples, "linux_updates")
    assert updates.fields == {"pending": 3, "security": 2}
    containers = {s.tags["container"]: s.fields for s in of(samples, "linux_docker_container")}
    assert len(containers) == 4 and all(c["running"] for c in containers.values())

    (key,) = of(samples, "ssh_host_key")
    assert key.fields["changed"] is False and key.fields["first_contact"] is True and key.tags["collector"] == "linux"
    recorded = (tmp_path / "state" / "known_hosts").read_text()
    assert recorded.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert recorded.split()[2] == (sshd.directory / "host_ed25519.pub").read_text().split()[1]


async def test_the_connection_is_kept_between_runs_and_reopened_when_lost(sshd: Sshd, tmp_path: Path) -> None:
    collector = build(PLUGIN, LIGHT, tmp_path / "state")
    tgt = target(sshd.port, login(sshd))
    await run(PLUGIN, collector, tgt)
    first = collector.session
    samples = await run(PLUGIN, collector, tgt)
    assert collector.session is first and status(samples)["status"] == "ok"
    (key,) = of(samples, "ssh_host_key")
    assert key.fields["first_contact"] is False

    sshd.drop_connections()  # the kept connection dies while idle: the next run opens another
    samples = await run(PLUGIN, collector, tgt)
    assert status(samples)["status"] == "ok", status(samples)
    assert collector.session is not first and len(of(samples, "linux_load")) == 1


async def test_a_changed_host_key_is_refused_and_alerted(sshd: Sshd, tmp_path: Path) -> None:
    state = tmp_path / "state"
    tgt = target(sshd.port, login(sshd))
    assert status(await run(PLUGIN, build(PLUGIN, LIGHT, state), tgt))["status"] == "ok"

    sshd.start(keygen(sshd.directory / "host_ed25519_reinstalled"))
    samples = await run(PLUGIN, build(PLUGIN, LIGHT, state), tgt)
    run_status = status(samples)
    assert run_status["status"] == "error"
    assert "SSH host key changed" in run_status["error"] and run_status["error"].count("SHA256:") == 2
    assert not of(samples, "linux_load")  # nothing was run on that connection
    (key,) = of(samples, "ssh_host_key")
    assert key.fields["changed"] is True and key.fields["recorded_fingerprint"] != key.fields["fingerprint"]

    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: T0)
    engine.evaluate(samples, T0)
    (alert,) = engine.firing()
    assert alert.rule == "linux_host_key_changed" and alert.severity == "critical"
    assert key.fields["fingerprint"] in alert.summary
    engine.close()


async def test_one_command_answering_garbage_is_named_and_the_rest_kept(sshd: Sshd, tmp_path: Path) -> None:
    (sshd.data / "docker-ps.jsonl").write_text("Cannot connect to the Docker daemon... just kidding {\n")
    samples = await run(PLUGIN, build(PLUGIN, OPTIONS, tmp_path / "state"), target(sshd.port, login(sshd)))
    run_status = status(samples)
    assert run_status["status"] == "partial"
    assert run_status["error"].startswith("docker ps: output not understood: container line")
    assert of(samples, "linux_load") and of(samples, "linux_memory") and of(samples, "linux_updates")


async def test_a_command_past_its_deadline_fails_alone(sshd: Sshd, tmp_path: Path) -> None:
    # the docker stand-in replaced by one that hangs, as a docker CLI facing a wedged daemon does
    hanging = sshd.directory / "bin" / "docker"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    collector = build(PLUGIN, {**LIGHT, "command_timeout_s": 1}, tmp_path / "state")
    tgt = target(sshd.port, login(sshd))
    samples = await run(PLUGIN, collector, tgt)
    assert status(samples)["status"] == "partial"
    assert status(samples)["error"] == "docker ps: no exit status within 1 s"
    assert of(samples, "linux_load") and of(samples, "linux_filesystem")
    shutil.copy(FIXTURES / "bin" / "docker", hanging)
    samples = await run(PLUGIN, collector, tgt)  # the same connection still serves
    assert status(samples)["status"] == "ok" and len(of(samples, "linux_docker_container")) == 4


async def test_pg_isready_against_a_closed_port_says_no_response(sshd: Sshd, tmp_path: Path) -> None:
    options = {"postgresql": True, "postgresql_host": "127.0.0.1", "postgresql_port": free_port(), "systemd": False,
               "updates": False}
    samples = await run(PLUGIN, build(PLUGIN, options, tmp_path / "state"), target(sshd.port, login(sshd)))
    (pg,) = of(samples, "linux_postgresql")
    assert pg.fields["accepting"] is False and pg.fields["state"] == "no_response"
    assert "no response" in pg.fields["message"]


async def test_a_wrong_key_is_a_refused_login_and_a_closed_port_unreachable(sshd: Sshd, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    samples = await run(PLUGIN, build(PLUGIN, OPTIONS, tmp_path / "state"),
                        target(sshd.port, {"user": sshd.user, "private_key": stranger.read_text()}))
    assert status(samples)["status"] == "error"
    assert status(samples)["error"] == f"ssh 127.0.0.1:{sshd.port}: login as '{sshd.user}' refused (key)"

    samples = await run(PLUGIN, build(PLUGIN, OPTIONS, tmp_path / "state"), target(free_port(), login(sshd)))
    assert status(samples)["status"] == "unreachable" and "Connection refused" in status(samples)["error"]


def test_options_and_credentials_are_checked_without_io() -> None:
    with pytest.raises(ValueError, match="command_timeout_s"):
        PLUGIN.options.model_validate({"command_timeout_s": 0})
    with pytest.raises(ValueError, match="exactly one of password, private_key, private_key_file"):
        PLUGIN.credentials.model_validate({"user": "root"})


async def test_a_poll_timeout_drops_the_connection_and_never_holds_the_loop(sshd: Sshd, tmp_path: Path) -> None:
    (sshd.directory / "bin" / "docker").write_text("#!/bin/sh\nexec sleep 30\n")
    collector = build(PLUGIN, {**LIGHT, "command_timeout_s": 20}, tmp_path / "state")
    tgt = target(sshd.port, login(sshd))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    beating = asyncio.create_task(ticker())
    samples = await run(PLUGIN, collector, tgt, timeout_s=2)
    beating.cancel()
    assert status(samples)["status"] == "timeout"
    assert ticks >= 20  # the loop went on while paramiko waited in its thread (2 s / 0.05 s = 40)
    assert collector.session is None  # cancelled mid-command: the connection is not reused
    shutil.copy(FIXTURES / "bin" / "docker", sshd.directory / "bin" / "docker")
    assert status(await run(PLUGIN, collector, tgt))["status"] == "ok"


@pytest.mark.parametrize(("status_code", "output", "state"), [
    (0, "127.0.0.1:5432 - accepting connections\n", "accepting"),
    (1, "127.0.0.1:5432 - rejecting connections\n", "rejecting"),
    (2, "127.0.0.1:5432 - no response\n", "no_response"),
])
def test_pg_isready_says_it_by_exit_status(status_code: int, output: str, state: str) -> None:
    # pg_isready 15's own lines (src/bin/scripts/pg_isready.c), for the states a test server cannot be put in
    ((_, fields, _),) = parse_pg_isready(Result(status_code, output, "", 0.01))
    assert fields == {"accepting": state == "accepting", "state": state, "message": output.strip()}


@pytest.mark.parametrize(("parse", "output", "message"), [
    (parse_meminfo, "MemFree: 12 kB\n", "no MemTotal / MemAvailable"),
    (parse_df, "df: /srv: Permission denied\n", "no df header"),
    (parse_load, "0.1 0.2\n", "expected /proc/loadavg then nproc"),
    (parse_apt_upgrade, "E: Could not open lock file\n", "neither Inst lines nor apt's summary line"),
    (parse_failed_units, "Failed to connect to bus: Host is down\n", "is not a unit name"),
])
def test_output_a_parser_cannot_read_says_what(parse: Callable[[Result], list], output: str, message: str) -> None:
    with pytest.raises(Unparsable, match=message):
        parse(Result(0, output, "", 0.01))


async def test_the_recorded_key_type_is_asked_for_first(sshd: Sshd, tmp_path: Path) -> None:
    # a server with two host keys; the operator seeded known_hosts with its ECDSA one (ssh-keyscan
    # -t ecdsa), which paramiko would not choose by itself (it prefers Ed25519)
    ecdsa = keygen(sshd.directory / "host_ecdsa", "ecdsa")
    sshd.start_with_keys([sshd.directory / "host_ed25519", ecdsa])
    state = tmp_path / "state"
    state.mkdir()
    public = (sshd.directory / "host_ecdsa.pub").read_text().split()
    (state / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {public[0]} {public[1]}\n")
    samples = await run(PLUGIN, build(PLUGIN, LIGHT, state), target(sshd.port, login(sshd)))
    assert status(samples)["status"] == "ok", status(samples)
    (key,) = of(samples, "ssh_host_key")
    assert key.fields["key_type"] == "ecdsa-sha2-nistp256" and key.fields["changed"] is False
    assert len((state / "known_hosts").read_text().splitlines()) == 1  # nothing new recorded
