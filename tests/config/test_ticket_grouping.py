"""ticket_grouping: documented defaults, a client overriding the keys it sets, "..." for no
grouping, bad values refused naming the key."""

from __future__ import annotations

from agent.config import load_config

from .test_config import MINIMAL, SECRETS, Write, config_text, errors_of


def _load(write: Write, text: str):
    return load_config(write("c.yaml", config_text(text)), write("s.yaml", SECRETS), environ={})


def test_the_defaults_group_by_client_site_and_alertname(write: Write) -> None:
    grouping = _load(write, MINIMAL).ticket_grouping_for("acme")
    assert grouping.group_by == ["client", "site", "alertname"] and grouping.grouped
    assert (grouping.group_wait_s, grouping.group_interval_s, grouping.repeat_interval_s) == (0.0, 300.0, 14400.0)


def test_a_client_overrides_the_keys_it_sets(write: Write) -> None:
    config = _load(write, """
    ticket_grouping: {group_by: [site], group_wait_s: 10, repeat_interval_s: 3600}
    clients:
      - name: acme
        display_name: Acme
        ticket_grouping: {group_wait_s: 5}
      - name: solo
        display_name: Solo
        ticket_grouping: {group_by: ["..."]}
    """)
    acme = config.ticket_grouping_for("acme")
    assert (acme.group_by, acme.group_wait_s, acme.group_interval_s, acme.repeat_interval_s) == (
        ["site"], 5.0, 300.0, 3600.0)
    assert not config.ticket_grouping_for("solo").grouped


def test_bad_grouping_values_are_refused_naming_the_key(write: Write) -> None:
    path = write("c.yaml", config_text("""
    ticket_grouping: {group_wait_s: 600, group_intervall_s: 60}
    clients:
      - name: acme
        display_name: Acme
        ticket_grouping: {group_by: ["bad label"], repeat_interval_s: 0}
    """))
    errors = errors_of(path, write("s.yaml", SECRETS))
    culprits = sorted(e.split(": ")[1] for e in errors)
    assert culprits == ["clients[acme].ticket_grouping.group_by[0]", "clients[acme].ticket_grouping.repeat_interval_s",
                        "ticket_grouping.group_intervall_s", "ticket_grouping.group_wait_s"], errors


def test_no_grouping_stands_alone(write: Write) -> None:
    path = write("c.yaml", config_text("""
    ticket_grouping: {group_by: ["...", site]}
    """))
    (error,) = errors_of(path, write("s.yaml", SECRETS))
    assert ": ticket_grouping: " in error and "stands alone" in error, error
