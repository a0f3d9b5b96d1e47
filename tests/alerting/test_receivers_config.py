"""`vigie check-config` takes the e-mail, webhook and Teams receivers by their entry points and
checks their options (the field named, as for every plugin) when the config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main

CLIENT = """  - name: {name}
    display_name: {name}
    ticketing: {ticketing}
    sites:
      - name: s
        devices:
          - {{name: sw-{name}, address: 127.0.0.1, credentials: sw, collectors: {{snmp: }}}}
"""
EMAIL = ("{kind: email, to: [support@itsm.example.org], sender: noc@vigie.example.net, host: smtp.example.net, "
         "username: vigie, password: {secret: smtp-password}}")
WEBHOOK = '{kind: webhook, url: "https://itsm.example.org/hooks/vigie", secret: {secret: hook-key}}'
TEAMS = "{kind: teams, url: {secret: teams-flow}}"


def check(tmp_path: Path, capsys, **ticketing: str) -> tuple[int, str]:
    config = tmp_path / "vigie.yaml"
    config.write_text("clients:\n" + "".join(CLIENT.format(name=n, ticketing=t) for n, t in ticketing.items()))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text('sw: {community: public}\nsmtp-password: pw\nhook-key: k\nteams-flow: "https://x/y?sig=s"\n')
    secrets.chmod(0o600)
    code = main(["check-config", str(config), "--secrets", str(secrets)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_three_receivers_are_accepted(tmp_path, capsys):
    code, out = check(tmp_path, capsys, vsgp=EMAIL, ofdt=WEBHOOK, cdg=TEAMS)
    assert code == 0 and "3 client(s)" in out


@pytest.mark.parametrize(
    ("ticketing", "culprit"),
    [
        (EMAIL.replace("host:", "smtp_host:"), "clients[vsgp].ticketing.smtp_host: unknown option"),
        (EMAIL.replace(", password: {secret: smtp-password}", ""), "username and password go together"),
        (WEBHOOK.replace("https://", "ftp://"), "clients[vsgp].ticketing.url"),
        (TEAMS.replace("{secret: teams-flow}", '"https://x/y?sig=inline"'), "clients[vsgp].ticketing.url"),
    ],
)
def test_bad_options_are_named(tmp_path, capsys, ticketing, culprit):
    code, out = check(tmp_path, capsys, vsgp=ticketing)
    assert code == 2 and culprit in out
