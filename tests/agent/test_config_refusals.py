"""One validation, one behaviour: `check-config` and `run` refuse the same configs, name the
culprit as FILE:LINE: field, and an uninstalled collector is a warning that leaves the others
watched (issue 7 item 8)."""

from pathlib import Path

import pytest

from agent.cli import main

DEVICES = """clients:
  - name: c
    display_name: C
    timezone: Europe/Paris
    sites:
      - name: s
        devices:
{devices}
"""


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text("sw: {community: public}\n")
    path.chmod(0o600)
    return path


def _config(tmp_path: Path, *devices: str) -> Path:
    path = tmp_path / "vigie.yaml"
    path.write_text(DEVICES.format(devices="\n".join(f"          - {d}" for d in devices)))
    return path


BAD = "{name: typo, address: 127.0.0.1, credentials: sw, collectors: {snmp: {max_repetition: 10, retries: true}}}"
GOOD = "{name: good, address: 127.0.0.1, credentials: sw, collectors: {snmp: }}"


@pytest.mark.parametrize("command", [["check-config"], ["run", "--duration", "0.1"]])
def test_bad_collector_options_are_refused_by_check_config_and_run_alike(tmp_path, secrets, capsys, command) -> None:
    config = _config(tmp_path, GOOD, BAD)
    args = [*command, "--config", str(config)] if command[0] == "run" else [*command, str(config)]
    args += ["--secrets", str(secrets), "--state-dir", str(tmp_path / "state")] if command[0] == "run" else [
        "--secrets", str(secrets)]
    assert main(args) == 2
    err = capsys.readouterr().err
    # every option error at once, each with its line and field
    assert f"{config}:9: clients[c].sites[s].devices[typo].collectors.snmp.max_repetition: unknown option" in err
    assert f"{config}:9: clients[c].sites[s].devices[typo].collectors.snmp.retries: expected a number" in err
    assert "2 error(s)" in err


def test_an_uninstalled_collector_is_a_warning_and_the_rest_is_polled(tmp_path, secrets, capsys) -> None:
    config = _config(tmp_path, GOOD, "{name: vcenter, address: 127.0.0.1, collectors: {vsphere_nope: }}")
    assert main(["check-config", str(config), "--secrets", str(secrets)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "devices[vcenter].collectors.vsphere_nope" in captured.err
    assert "1 poll(s)" in captured.out


@pytest.mark.parametrize("text", ["", "clients: []\n"])
def test_an_empty_config_is_an_error_not_ok(tmp_path, capsys, text) -> None:
    config = tmp_path / "vigie.yaml"
    config.write_text(text)
    assert main(["check-config", str(config)]) == 2
    assert "nothing to poll" in capsys.readouterr().err
