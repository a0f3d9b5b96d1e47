"""One device with a bad collector option or an uninstalled collector never stops the others."""

from pathlib import Path

from agent.cli import main
from agent.inventory import Poll
from agent.runner import CollectorFactory, usable_polls
from agent.api import Target


def _poll(name: str, collector: str, options: dict) -> Poll:
    target = Target(name=name, address="127.0.0.1", tags={"client": "c", "site": "s", "device": name})
    return Poll(target=target, collector=collector, options=options, interval_s=60, timeout_s=10, jitter_s=0)


def test_bad_options_and_missing_collectors_are_reported_and_left_out() -> None:
    polls = [
        _poll("good", "snmp", {"profile": "auto"}),
        _poll("typo", "snmp", {"timeout": 3}),
        _poll("vcenter", "vsphere-not-installed", {}),
    ]
    usable, problems = usable_polls(polls, CollectorFactory())
    assert [p.target.name for p in usable] == ["good"]
    assert len(problems.bad_options) == 1 and "c/typo: collector snmp" in problems.bad_options[0]
    assert "timeout" in problems.bad_options[0]
    assert len(problems.not_installed) == 1 and "c/vcenter" in problems.not_installed[0]


def test_check_config_fails_on_a_bad_collector_option(tmp_path: Path, capsys) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("sw: {community: public}\n")
    secrets.chmod(0o600)
    config = tmp_path / "vigie.yaml"
    config.write_text(
        "clients:\n"
        "  - name: c\n    display_name: C\n    timezone: Europe/Paris\n    sites:\n"
        "      - name: s\n        devices:\n"
        "          - {name: sw, address: 127.0.0.1, credentials: sw, collectors: {snmp: {max_repetition: 10}}}\n"
    )
    assert main(["check-config", str(config), "--secrets", str(secrets)]) == 2
    err = capsys.readouterr().err
    assert "c/sw: collector snmp" in err and "max_repetition" in err
