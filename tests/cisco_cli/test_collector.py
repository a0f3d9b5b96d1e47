"""The collector against the lab's IOS-XE device over real SSH (netmiko -> paramiko server):
what it reads, the backup schedule, and every way a run fails, each named."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.api.hostkeys import fingerprint
from alerting.engine import AlertEngine
from collectors.cisco_cli import PLUGIN
from lab.ios_device import IosDevice
from tests.metrics_doc import check, documented

from .conftest import LOGIN, Clock, build, of, run_poll, status


async def test_one_run_reads_version_environment_ports_and_the_baseline(device: IosDevice, tmp_path: Path) -> None:
    samples = await run_poll(build(device, tmp_path))
    assert status(samples)["status"] == "ok", status(samples)
    (dev,) = of(samples, "cisco_cli_device")
    assert dev.fields["hostname"] == "sw-acme-01" and dev.fields["version"] == "16.12.4"
    assert dev.fields["serial"] == "CAT23XXXXXX" and dev.fields["uptime_s"] == 4_295_640
    assert [(s.tags["psu"], s.fields["ok"]) for s in of(samples, "cisco_cli_psu")] == [
        ("1A", True), ("1B", None), ("2A", True), ("2B", None)]
    assert len(of(samples, "cisco_cli_fan")) == 10 and len(of(samples, "cisco_cli_temperature")) == 6
    ports = of(samples, "cisco_cli_port")
    assert len(ports) == 48 and not any(p.fields["err_disabled"] for p in ports)
    (config,) = of(samples, "cisco_cli_config")
    assert config.fields["changed"] is False and config.fields["versions"] == 1 and config.fields["diff"] is None
    assert "show running-config" in device.commands
    stored = (tmp_path / "configs" / "sw-acme-01.cfg").read_text()
    assert "vsgp-ro-2026" not in stored and "<masked:" in stored
    # every field emitted is in docs/METRICS.md, with the type written there
    check(samples, documented("cisco_cli"))
    # first contact: the key is recorded
    known = (tmp_path / "known_hosts").read_text().split()
    assert known[0] == f"[127.0.0.1]:{device.address[1]}" and known[1] == device.host_key.get_name()


async def test_the_running_config_is_read_once_per_backup_interval(device: IosDevice, tmp_path: Path) -> None:
    clock = Clock()
    collector = build(device, tmp_path, clock, backup_interval_s=3600)
    await run_poll(collector)
    clock.now += 600
    samples = await run_poll(collector)
    assert device.commands.count("show running-config") == 1
    (config,) = of(samples, "cisco_cli_config")
    assert config.fields["changed"] is False and config.fields["backup_age_s"] == 600
    clock.now += 3000
    await run_poll(collector)
    assert device.commands.count("show running-config") == 2


async def test_a_changed_line_is_a_new_version_a_masked_diff_and_a_warning(device: IosDevice, tmp_path: Path) -> None:
    clock = Clock()
    collector = build(device, tmp_path, clock, backup_interval_s=60)
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=clock)
    engine.evaluate(await run_poll(collector), clock.now)
    assert engine.firing() == []  # the baseline opens nothing

    device.state.community = "vsgp-ro-2027"
    device.state.changed_by = "jdupont"
    clock.now += 60
    samples = await run_poll(collector)
    (config,) = of(samples, "cisco_cli_config")
    assert config.fields["changed"] is True and config.fields["versions"] == 2
    assert config.fields["changed_by"] == "jdupont" and (config.fields["lines_added"], config.fields["lines_removed"]) \
        == (2, 2)
    assert "-snmp-server community <masked:" in config.fields["diff"]
    assert "vsgp-ro-202" not in config.fields["diff"]
    engine.evaluate(samples, clock.now)
    (alert,) = engine.firing()
    assert (alert.rule, alert.severity) == ("cisco_cli_config_changed", "warning")
    headline, _, body = alert.summary.partition("\n\n")
    assert headline == f"sw-acme-01: running configuration changed (+2 -2 lines), archived as {config.fields['commit']}"
    assert body == config.fields["diff"]

    clock.now += 60  # nothing changed since: the alert resolves, the next change gets a ticket of its own
    engine.evaluate(await run_poll(collector), clock.now)
    assert engine.firing() == []


async def test_a_failed_psu_and_fan_and_an_err_disabled_port_fire_their_rules(device: IosDevice, tmp_path: Path) \
        -> None:
    clock = Clock()
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=clock)
    psu = device.state.psu("2A")
    psu.status, psu.sys_pwr = "No Input Power", "Bad"
    device.state.fans[1].state, device.state.fans[1].speed = "FAILED", 0
    device.state.port("Gi1/0/7").status = "err-disabled"
    collector = build(device, tmp_path, clock)
    engine.evaluate(await run_poll(collector), clock.now)
    assert [a.rule for a in engine.firing()] == ["cisco_cli_port_err_disabled"]
    clock.now += 61  # the PSU and fan rules wait a minute (a PSU being swapped)
    engine.evaluate(await run_poll(collector), clock.now)
    assert sorted((a.rule, a.severity, a.summary) for a in engine.firing()) == [
        ("cisco_cli_fan_failed", "major", "sw-acme-01: fan 2 of switch 1 is FAILED"),
        ("cisco_cli_port_err_disabled", "minor", "sw-acme-01: port Gi1/0/7 (Bureau 107) is err-disabled"),
        ("cisco_cli_psu_failed", "major", "sw-acme-01: power supply 2A No Input Power (PWR-C1-350WAC-P DCC2337B0HT)"),
    ]


async def test_an_output_not_understood_or_refused_names_its_command_and_the_rest_is_kept(
    device: IosDevice, tmp_path: Path
) -> None:
    device.state.overrides["show environment all"] = "Environmental monitoring is being rewritten, try later\n"
    device.state.overrides["show interfaces status"] = "                 ^\n% Invalid input detected at '^' marker.\n"
    device.state.overrides["show running-config"] = "Building configuration...\n\nhostname sw-acme-01\n!\ninterf"
    samples = await run_poll(build(device, tmp_path))
    result = status(samples)
    assert result["status"] == "partial"
    assert result["error"] == (
        "show environment all: output not understood (unexpected line 'Environmental monitoring is being rewritten, "
        "try later'); show interfaces status: refused by the device: % Invalid input detected at '^' marker.; "
        "show running-config: output not understood (no final 'end' line: the configuration is incomplete)"
    )
    assert of(samples, "cisco_cli_device") and of(samples, "cisco_cli_psu")
    assert not of(samples, "cisco_cli_fan") and not of(samples, "cisco_cli_port")
    (config,) = of(samples, "cisco_cli_config")  # nothing archived: nothing known yet
    assert set(config.fields.values()) == {None} and not (tmp_path / "configs").exists()


async def test_a_command_that_hangs_times_out_alone_and_the_rest_is_said_not_run(device: IosDevice, tmp_path: Path) \
        -> None:
    device.state.stalled.add("show environment power all")
    samples = await run_poll(build(device, tmp_path, command_timeout_s=1))
    result = status(samples)
    assert result["status"] == "partial"
    assert result["error"] == (
        "show environment power all: no prompt within 1 s; show interfaces status: not run: the session ended before "
        "it; show running-config: not run: the session ended before it"
    )
    assert of(samples, "cisco_cli_device") and of(samples, "cisco_cli_fan")


async def test_the_event_loop_is_not_held_while_the_device_is_slow(device: IosDevice, tmp_path: Path) -> None:
    device.state.stalled.add("show version")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    samples = await run_poll(build(device, tmp_path, command_timeout_s=1.5))
    ticker.cancel()
    assert status(samples)["status"] == "error"  # every command failed: the first hung, the rest not run
    assert ticks >= 20  # 1.5 s of session: the loop kept turning


async def test_a_changed_host_key_is_refused_and_nothing_is_sent(device: IosDevice, tmp_path: Path) -> None:
    collector = build(device, tmp_path)
    assert status(await run_poll(collector))["status"] == "ok"
    recorded = fingerprint(device.host_key.asbytes())
    device.change_host_key()
    logins, commands = device.logins, len(device.commands)
    samples = await run_poll(collector)
    result = status(samples)
    assert result["status"] == "error"
    assert result["error"] == (
        f"[127.0.0.1]:{device.address[1]}: SSH host key changed (recorded {recorded}, shown "
        f"{fingerprint(device.host_key.asbytes())}): refused; if the change is expected, remove its line from "
        f"{tmp_path / 'known_hosts'}"
    )
    # no login, no command (the first session's own `exit` may arrive late)
    assert device.logins == logins and [c for c in device.commands[commands:] if c not in ("", "exit")] == []
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    engine.evaluate(samples, time.time())
    (alert,) = engine.firing()
    assert (alert.rule, alert.severity, alert.summary) == ("cisco_cli_host_key_changed", "critical",
                                                           f"sw-acme-01: {result['error']}")


async def test_refused_logins_and_a_silent_port_are_told_apart(device: IosDevice, tmp_path: Path) -> None:
    where = f"127.0.0.1:{device.address[1]}"
    wrong = status(await run_poll(build(device, tmp_path), {**LOGIN, "password": "nope"}))
    assert (wrong["status"], wrong["error"]) == ("error", f"{where}: SSH login refused for user 'vigie'")
    no_enable = status(await run_poll(build(device, tmp_path), {**LOGIN, "enable_secret": "nope"}))
    assert no_enable["status"] == "error" and no_enable["error"].startswith(f"{where}: enable refused")
    unprivileged = status(await run_poll(build(device, tmp_path), {"username": "vigie", "password": "lab-pass-2026"}))
    assert unprivileged["status"] == "error" and "give no enable_secret" in unprivileged["error"]
    port = device.address[1]
    device.stop()
    gone = status(await run_poll(build(device, tmp_path, connect_timeout_s=2)))
    assert gone["status"] == "unreachable" and gone["error"].startswith(f"127.0.0.1:{port}: TCP connection")


async def test_a_login_from_the_options_when_the_device_secret_is_its_snmp_one(device: IosDevice, tmp_path: Path) \
        -> None:
    from agent.api import CollectorContext

    secrets = {"tacacs-vigie": LOGIN["password"], "tacacs-enable": LOGIN["enable_secret"]}
    context = CollectorContext("acme", "sw-acme-01", tmp_path, secret=lambda ref: secrets[ref.secret])
    options = PLUGIN.options.model_validate({
        "port": device.address[1], "username": "vigie", "password": {"secret": "tacacs-vigie"},
        "enable_secret": {"secret": "tacacs-enable"},
    })
    samples = await run_poll(PLUGIN.factory(options, context), {"community": "vsgp/sw-acme-01"})
    assert status(samples)["status"] == "ok"
    none = status(await run_poll(build(device, tmp_path), {"community": "vsgp/sw-acme-01"}))
    assert none["status"] == "error" and "no SSH login" in none["error"]
