from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.api import Rule
from agent.config import BUILTIN_RULES, ConfigError, french_holidays, load_config
from agent.inventory import build_polls
from agent.plugins import Plugins

Write = Callable[..., Path]

SECRETS = (
    "sw: {community: s3cret}\n"
    "v3: {user: noc, auth_protocol: sha, auth_key: authkey12, priv_protocol: aes, priv_key: privkey12}\n"
)


def config_text(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


def errors_of(path: Path, secrets: Path | None = None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, secrets, environ={} if environ is None else environ)
    return caught.value.errors


MINIMAL = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {name: sw1, address: 10.0.0.1, credentials: sw, collectors: {snmp: }}
"""


def test_minimal_config_loads(write: Write) -> None:
    config = load_config(write("c.yaml", config_text(MINIMAL)), write("s.yaml", SECRETS), environ={})
    (poll,) = build_polls(config)
    assert poll.target.tags == {"client": "acme", "site": "hq", "device": "sw1"}
    assert poll.target.credentials == {"community": "s3cret"}
    assert (poll.interval_s, poll.timeout_s, poll.jitter_s) == (60.0, 10.0, 5.0)
    # no `rules:` key: the kernel's built-in rules, and under them the installed plugins' own
    shipped = Plugins.discover().default_rules()
    assert config.rules_for("acme") == [*shipped, *BUILTIN_RULES]


def test_every_mistake_is_reported_with_its_line(write: Write) -> None:
    path = write(
        "c.yaml",
        config_text("""
        agent:
          shard: [acme, nobody]
        clients:
          - name: acme
            display_name: Acme
            timezone: Europe/Pariss
            sites:
              - name: hq
                devices:
                  - name: sw1
                    address: 10.0.0.1
                    port: 70000
                    credentials: sw
                    collectors: {snmp: }
                    parent: ghost
                  - name: sw1
                    address: 10.0.0.2
                    intreval_s: 30
                  - name: sw3
                    credentials: missing-one
                    collectors: {snmp: {community: public}}
        """),
    )
    errors = errors_of(path, write("s.yaml", SECRETS))
    expected = [
        "2: agent.shard[1]: unknown client 'nobody'",
        "6: clients[acme].timezone: unknown IANA time zone 'Europe/Pariss'",
        "12: clients[acme].sites[hq].devices[sw1].port: Input should be less than or equal to 65535",
        "15: clients[acme].sites[hq].devices[sw1].parent: unknown parent 'ghost'",
        "16: clients[acme].sites[hq].devices[sw1].name: duplicate device name 'sw1'",
        "18: clients[acme].sites[hq].devices[sw1].intreval_s: unknown key",
        "19: clients[acme].sites[hq].devices[sw3].address: required key missing",
        "20: clients[acme].sites[hq].devices[sw3].credentials: secret 'missing-one' not found",
        "21: clients[acme].sites[hq].devices[sw3].collectors.snmp.community: inline secret refused",
    ]
    assert len(errors) == len(expected), "\n".join(errors)
    for error, want in zip(errors, expected, strict=True):
        assert error.startswith(f"{path}:{want}"), f"{error!r} does not start with {want!r}"


def test_unknown_keys_are_refused_at_every_level(write: Write) -> None:
    path = write(
        "c.yaml",
        config_text("""
        agent: {state_dir: var, treads: 4}
        defaults: {interval: 60}
        colients: []
        """),
    )
    errors = errors_of(path)
    assert [e.split(": ")[1] for e in errors] == ["agent.treads", "defaults.interval", "colients"]
    assert all("unknown key" in e for e in errors)


def test_duplicate_yaml_key_is_an_error(write: Write) -> None:
    path = write("c.yaml", "agent:\n  threads: 4\n  threads: 8\n")
    assert errors_of(path) == [f"{path}:3: duplicate key 'threads' (first at line 2)"]


def test_yaml_syntax_error_names_the_line(write: Write) -> None:
    path = write("c.yaml", "agent:\n  threads: [4\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:") and "invalid YAML" in error


def test_secrets_file_readable_by_others_is_refused(write: Write) -> None:
    config = write("c.yaml", config_text(MINIMAL))
    secrets = write("s.yaml", SECRETS, mode=0o644)
    errors = errors_of(config, secrets)
    assert errors == [
        f"{secrets}: secrets file is accessible by group or others (mode 0644); run `chmod 600 {secrets}`"
    ]


def test_secrets_from_environment(write: Write) -> None:
    text = config_text(MINIMAL).replace("credentials: sw", "credentials: lab.sw-1") + config_text("""
        agent:
          store: {kind: influxdb, url: "http://127.0.0.1:8086", org: noc, bucket: vigie, token: {secret: influx}}
        """)
    environ = {"VIGIE_SECRET_LAB_SW_1": '{"community": "from-env"}', "VIGIE_SECRET_INFLUX": "tok-123"}
    config = load_config(write("c.yaml", text), None, environ=environ)
    assert build_polls(config)[0].target.credentials == {"community": "from-env"}
    assert config.agent.store.kind == "influxdb"
    assert config.secret_text(config.plugin_options("store").token) == "tok-123"
    assert "tok-123" not in repr(config)


def test_missing_secret_names_the_device(write: Write) -> None:
    path = write("c.yaml", config_text(MINIMAL).replace("credentials: sw", "credentials: nope"))
    (error,) = errors_of(path, write("s.yaml", SECRETS))
    assert error == (
        f"{path}:7: clients[acme].sites[hq].devices[sw1].credentials: secret 'nope' not found "
        f"(looked in $VIGIE_SECRET_NOPE and {path.parent / 's.yaml'})"
    )


def test_bad_snmp_credentials_are_refused_without_echoing_them(write: Write) -> None:
    path = write("c.yaml", config_text(MINIMAL).replace("credentials: sw", "credentials: v3"))
    secrets = write("s.yaml", "v3: {user: noc, auth_protocol: sha, auth_key: short}\n")
    (error,) = errors_of(path, secrets)
    assert "devices[sw1].credentials: secret 'v3' is not snmp credentials: auth_key" in error
    assert "short" not in error


def test_parent_cycle_is_reported(write: Write) -> None:
    path = write(
        "c.yaml",
        config_text("""
        clients:
          - name: acme
            display_name: Acme
            sites:
              - name: hq
                devices:
                  - {name: a, address: 10.0.0.1, parent: c}
                  - {name: b, address: 10.0.0.2, parent: a}
                  - {name: c, address: 10.0.0.3, parent: b}
                  - {name: d, address: 10.0.0.4, parent: d}
        """),
    )
    errors = errors_of(path)
    assert any(":7: " in e and "dependency cycle: a -> c -> b -> a" in e for e in errors), errors
    assert any(":10: " in e and "devices[d].parent: a device cannot be its own parent" in e for e in errors), errors


THREE_CLIENTS = """
agent: {shard: [beta]}
clients:
  - name: alpha
    display_name: Alpha
    sites: [{name: hq, devices: [{name: sw1, address: 10.0.0.1, credentials: sw, collectors: {snmp: }}]}]
  - name: beta
    display_name: Beta
    sites: [{name: hq, devices: [{name: sw1, address: 10.0.1.1, credentials: sw, collectors: {snmp: }}]}]
  - name: gamma
    display_name: Gamma
    sites: [{name: hq, devices: [{name: sw1, address: 10.0.2.1, credentials: sw, collectors: {snmp: }, parent: sw1}]}]
"""


def test_shard_selection(write: Write) -> None:
    secrets = write("s.yaml", SECRETS)
    text = config_text(THREE_CLIENTS).replace(", parent: sw1", "")
    config = load_config(write("c.yaml", text), secrets, environ={})
    assert {p.target.tags["client"] for p in build_polls(config)} == {"beta"}
    assert {p.target.tags["client"] for p in build_polls(config, {"alpha", "gamma"})} == {"alpha", "gamma"}
    with pytest.raises(ConfigError) as caught:
        build_polls(config, {"alpha", "omega"})
    assert caught.value.errors == [f"{config.source}: unknown client 'omega' (known: alpha, beta, gamma)"]
    unsharded = load_config(write("c2.yaml", text.replace("agent: {shard: [beta]}\n", "")), secrets, environ={})
    assert len(build_polls(unsharded)) == 3


def test_french_holidays_2026() -> None:
    holidays = french_holidays(2026)
    assert len(holidays) == 11
    assert holidays[date(2026, 4, 6)] == "Lundi de Pâques"
    assert holidays[date(2026, 5, 14)] == "Ascension"
    assert holidays[date(2026, 5, 25)] == "Lundi de Pentecôte"
    assert date(2026, 7, 14) in holidays and date(2026, 11, 11) in holidays


def test_service_hours_follow_timezone_and_holidays(write: Write) -> None:
    text = config_text(MINIMAL).replace(
        "display_name: Acme",
        'display_name: Acme\n    service_hours: {days: [mon, tue, wed, thu, fri], start: "08:00", end: 17:00}\n'
        "    holidays: [fr, 2026-07-13]",
    )
    client = load_config(write("c.yaml", text), write("s.yaml", SECRETS), environ={}).client("acme")
    paris = ZoneInfo("Europe/Paris")
    assert client.service_hours.end.hour == 17  # unquoted 17:00 stays a time, not YAML 1.1's 1020
    assert client.in_service(datetime(2026, 4, 7, 9, 0, tzinfo=paris))
    assert not client.in_service(datetime(2026, 4, 6, 9, 0, tzinfo=paris))  # Easter Monday
    assert not client.in_service(datetime(2026, 7, 13, 9, 0, tzinfo=paris))  # explicit date
    assert not client.in_service(datetime(2026, 4, 7, 17, 0, tzinfo=paris))
    assert not client.in_service(datetime(2026, 4, 11, 10, 0, tzinfo=paris))  # Saturday
    assert client.in_service(datetime(2026, 4, 7, 6, 30, tzinfo=ZoneInfo("UTC")))  # 08:30 in Paris


def test_lookup_order_device_site_client_global_builtin(write: Write) -> None:
    text = config_text("""
    defaults:
      interval_s: 300
      timeout_s: 20
      credentials: sw
      collectors:
        snmp: {profile: auto, retries: 1, max_repetitions: 10}
    clients:
      - name: acme
        display_name: Acme
        defaults:
          interval_s: 120
          collectors:
            snmp: {retries: 2}
        sites:
          - name: hq
            defaults:
              timeout_s: 15
              collectors:
                snmp: {max_repetitions: 25}
            devices:
              - name: own
                address: 10.0.0.1
                interval_s: 30
                credentials: v3
                collectors: {snmp: {profile: cisco_ios}}
              - {name: inherits, address: 10.0.0.2, collectors: {snmp: }}
    """)
    config = load_config(write("c.yaml", text), write("s.yaml", SECRETS), environ={})
    polls = {p.target.name: p for p in build_polls(config)}
    own, inherits = polls["own"], polls["inherits"]
    assert (own.interval_s, own.timeout_s, own.jitter_s) == (30, 15, 5.0)  # device, site, built-in
    assert (inherits.interval_s, inherits.timeout_s) == (120, 15)  # client, site
    assert own.target.credentials["user"] == "noc"  # device
    assert inherits.target.credentials == {"community": "s3cret"}  # global defaults
    lookup = ("profile", "retries", "max_repetitions")
    assert [getattr(own.options, key) for key in lookup] == ["cisco_ios", 2, 25]
    assert [getattr(inherits.options, key) for key in lookup] == ["auto", 2, 25]


def test_timeout_longer_than_interval_is_an_error(write: Write) -> None:
    path = write("c.yaml", config_text(MINIMAL).replace("collectors: {snmp: }", "collectors: {snmp: }, interval_s: 5"))
    assert errors_of(path, write("s.yaml", SECRETS)) == [
        f"{path}:7: clients[acme].sites[hq].devices[sw1].jitter_s: jitter_s (5) must be shorter than interval_s (5)",
        f"{path}:7: clients[acme].sites[hq].devices[sw1].timeout_s: timeout_s (10) is longer than interval_s (5)",
    ]


def test_environment_interpolation(write: Write) -> None:
    text = config_text(MINIMAL).replace("address: 10.0.0.1", 'address: "${SW_ADDR}", port: "${PORT:-1161}"')
    config = load_config(write("c.yaml", text), write("s.yaml", SECRETS), environ={"SW_ADDR": "192.0.2.7"})
    target = build_polls(config)[0].target
    assert (target.address, target.port) == ("192.0.2.7", 1161)
    path = write("c2.yaml", text)
    errors = errors_of(path, write("s.yaml", SECRETS))
    assert f"{path}:7: environment variable SW_ADDR is not set (use ${{SW_ADDR:-default}})" in errors


def test_inline_secret_in_store_and_ticketing_is_refused(write: Write) -> None:
    path = write(
        "c.yaml",
        config_text("""
        agent:
          store: {kind: influxdb, url: "http://x:8086", org: o, bucket: b, token: "${INFLUX_TOKEN:-abc}"}
        clients:
          - name: acme
            display_name: Acme
            ticketing: {kind: glpi, url: "https://glpi", app_token: abc, user_token: {secret: glpi-user}, entity_id: 0}
        """),
    )
    errors = errors_of(path, write("s.yaml", "glpi-user: u\n"))
    assert any(e.startswith(f"{path}:2: agent.store.token: inline secret refused") for e in errors), errors
    assert any(e.startswith(f"{path}:6: clients[acme].ticketing.app_token: inline secret refused") for e in errors)


RULES = """
rules:
  - name: cpu_high
    measurement: snmp_cpu
    when: "usage_percent > 90"
    for_s: 300
    severity: minor
    summary: "{device} CPU {usage_percent}%"
  - name: disk_full
    measurement: snmp_storage
    when: "used_percent >= 95"
    severity: major
clients:
  - name: acme
    display_name: Acme
    rules:
      - {name: cpu_high, for_s: 900}
      - {name: disk_full, enabled: false}
      - name: ups_site_on_battery
        measurement: snmp_ups
        when: "on_battery == True"
        match: {role: "~^ups$"}
        severity: critical
        summary: "{device} on battery"
  - name: other
    display_name: Other
"""


def test_client_rules_override_disable_and_add(write: Write) -> None:
    config = load_config(write("c.yaml", config_text(RULES)), None, environ={})
    written = {"cpu_high", "disk_full", "ups_site_on_battery"}  # the SNMP plugin ships others beside them
    acme = {r.name: r for r in config.rules_for("acme") if r.name in written}
    assert set(acme) == {"cpu_high", "ups_site_on_battery"}
    assert acme["cpu_high"].for_s == 900 and acme["cpu_high"].when == "usage_percent > 90"
    assert [r.name for r in config.rules_for("other") if r.name in written] == ["cpu_high", "disk_full"]
    assert isinstance(acme["ups_site_on_battery"], Rule)


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("__import__('os').system('x')", "Call is not allowed"),
        ("fields.value > 1", "Attribute is not allowed"),
        ("x ** 99999", "Pow is not allowed"),
        ("value >", "syntax error"),
        ("status in (a, 'b')", "may only hold constants"),
    ],
)
def test_rule_when_is_a_restricted_expression(write: Write, when: str, message: str) -> None:
    quoted = "'" + when.replace("'", "''") + "'"  # a YAML single-quoted scalar
    path = write("c.yaml", config_text(RULES).replace('"usage_percent > 90"', quoted))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: rules[cpu_high].when: ") and message in error, error


def test_new_client_rule_must_be_complete(write: Write) -> None:
    text = config_text(RULES).replace('        when: "on_battery == True"\n', "")
    (error,) = errors_of(write("c.yaml", text))
    assert ":18: clients[acme].rules[ups_site_on_battery]: give when (a condition on the samples)" in error, error


def test_parents_mapping(write: Write) -> None:
    text = config_text(THREE_CLIENTS).replace(", parent: sw1", "")
    text = text.replace(
        "{name: sw1, address: 10.0.2.1, credentials: sw, collectors: {snmp: }}",
        "{name: sw1, address: 10.0.2.1}, {name: sw2, address: 10.0.2.2, parent: sw1}",
    )
    config = load_config(write("c.yaml", text), write("s.yaml", SECRETS), environ={})
    assert config.parents() == {("gamma", "sw2"): "sw1"}
    assert config.device("gamma", "sw2").parent == "sw1"


def test_one_broken_client_does_not_hide_another_clients_problems(write: Write) -> None:
    text = config_text(THREE_CLIENTS).replace(", parent: sw1", ", interval_s: 5")
    text = text.replace("display_name: Alpha", "display_name: Alpha\n    timezon: UTC")
    path = write("c.yaml", text)
    errors = errors_of(path, write("s.yaml", SECRETS))
    assert any(e.startswith(f"{path}:5: clients[alpha].timezon: unknown key") for e in errors), errors
    assert any("clients[gamma].sites[hq].devices[sw1].timeout_s: timeout_s (10) is longer" in e for e in errors)


def test_gtr_clocks_run_in_the_service_window_across_weekends_and_holidays(write: Write) -> None:
    # the agency: Mon-Fri 08:00-17:00, French public holidays excluded (its CCTP's window)
    text = config_text(MINIMAL).replace(
        "display_name: Acme",
        'display_name: Acme\n    service_hours: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "17:00"}\n'
        "    holidays: [fr]",
    )
    client = load_config(write("c.yaml", text), write("s.yaml", SECRETS), environ={}).client("acme")
    paris = ZoneInfo("Europe/Paris")
    friday = datetime(2026, 12, 4, 16, 30, tzinfo=paris)
    # Critique, 4 h: 30 min on Friday, 3 h 30 on Monday morning
    assert client.service_deadline(friday, 4 * 3600) == datetime(2026, 12, 7, 11, 30, tzinfo=paris)
    # Bloquant, 8 h: Friday's 30 min, Monday's 9 h cover it
    assert client.service_deadline(friday, 8 * 3600) == datetime(2026, 12, 7, 15, 30, tzinfo=paris)
    # opened on 14 July (Wednesday 2027): counts from the next working morning
    bastille = datetime(2027, 7, 14, 10, 0, tzinfo=paris)
    assert client.service_deadline(bastille, 4 * 3600) == datetime(2027, 7, 15, 12, 0, tzinfo=paris)
    # at night, in UTC: the clock starts at 08:00 Paris time
    night = datetime(2026, 12, 8, 2, 0, tzinfo=ZoneInfo("UTC"))
    assert client.service_deadline(night, 3600) == datetime(2026, 12, 8, 9, 0, tzinfo=paris)
    # a restore time counted the same way: Friday 16:30 to Monday 09:00 is 1 h 30 of service time
    assert client.service_seconds(friday, datetime(2026, 12, 7, 9, 0, tzinfo=paris)) == 5400
    # across the change to summer time (Sunday 29 March 2026): the window keeps its wall-clock hours
    assert client.service_deadline(datetime(2026, 3, 27, 16, 0, tzinfo=paris), 2 * 3600) == datetime(
        2026, 3, 30, 9, 0, tzinfo=paris)


def test_a_collector_not_installed_is_a_warning_naming_its_line(write: Write) -> None:
    text = config_text(MINIMAL).replace("collectors: {snmp: }", "collectors: {snmp: , quantum_probe: }")
    path = write("c.yaml", text)
    config = load_config(path, write("s.yaml", SECRETS), environ={})
    (warning,) = config.warnings
    assert warning.startswith(f"{path}:") and "no collector plugin named 'quantum_probe'" in warning
    assert [p.collector for p in build_polls(config)] == ["snmp"]  # the device is still polled by the others
