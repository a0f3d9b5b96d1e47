"""Shared builders for the alerting tests (samples, rules, driven time)."""

from __future__ import annotations

from agent.api import Sample
from agent.api.rules import Rule

T0 = 1_700_000_000.0

IF_DOWN = Rule(
    name="interface_down",
    measurement="snmp_interface",
    when="admin_status == 'up' and oper_status == 'down'",
    match={"if_alias": "~(?i)uplink|wan", "role": "core"},
    for_s=60,
    severity="critical",
    summary="{device} {if_name} down",
    labels={"team": "noc"},
)
DEVICE_DOWN = Rule(
    name="device_unreachable",
    measurement="collection",
    when="status == 'unreachable'",
    for_s=0,
    severity="major",
    summary="{device} unreachable",
)


def iface(t: float, oper: str | None, *, device: str = "sw-core-1", admin: str | None = "up", **tags: str) -> Sample:
    base = {
        "client": "vsgp",
        "site": "hdv",
        "device": device,
        "role": "core",
        "if_index": "1",
        "if_name": "Gi0/1",
        "if_alias": "Uplink WAN",
    }
    base.update(tags)
    return Sample("snmp_interface", base, {"admin_status": admin, "oper_status": oper}, int(t * 1e9))


def collection(t: float, status: str, *, device: str, client: str = "vsgp", collector: str = "snmp") -> Sample:
    tags = {"client": client, "site": "hdv", "device": device, "collector": collector}
    return Sample("collection", tags, {"status": status, "duration_s": 0.1, "error": None}, int(t * 1e9))


def firing_alert(severity: str = "critical", fp: str = "0123456789abcdef", fired_at: float = T0 + 60):
    from agent.api.alerts import FIRING, Alert

    return Alert(
        fingerprint=fp,
        rule="interface_down",
        labels={"alertname": "interface_down", "client": "vsgp", "device": "sw-core-1", "if_name": "Gi0/1"},
        severity=severity,
        summary="sw-core-1 Gi0/1 down",
        state=FIRING,
        started_at=T0,
        fired_at=fired_at,
    )
