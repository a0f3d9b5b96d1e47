"""What changed on a device and its parents in the hour before an alert: the lines a ticket
carries so the engineer who opens it starts from the likely cause.

Read from the agent's own state when the alert is queued for its ticket: a reboot (sysUpTime
below the hour), a configuration change (the CLI archive's ``changed``), a failover (a change of
HA state), a maintenance window that has just ended. Each line names the device, what happened
and how long before the alert; none is a diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.api.alerts import Alert
from agent.maintenance import MaintenanceCalendar
from agent.state import StateDB

WINDOW_S = 3600.0
NS = 1_000_000_000

_TEXTS = {
    "fr": {
        "reboot": "{device} a redémarré il y a {minutes} min (sysUpTime)",
        "config": "{device} : configuration modifiée il y a {minutes} min{by}",
        "by": " par {user}",
        "failover": "{device} : bascule de {measurement} ({value}) il y a {minutes} min",
        "maintenance": "{device} : fin de la maintenance {name} il y a {minutes} min",
        "head": "Changements de la dernière heure (équipement et parents) :",
    },
    "en": {
        "reboot": "{device} rebooted {minutes} min ago (sysUpTime)",
        "config": "{device}: configuration changed {minutes} min ago{by}",
        "by": " by {user}",
        "failover": "{device}: {measurement} failover ({value}) {minutes} min ago",
        "maintenance": "{device}: maintenance {name} ended {minutes} min ago",
        "head": "Changes in the last hour (device and parents):",
    },
}
# HA state series whose change is a failover
FAILOVER_FIELDS = (("snmp_failover", "state"), ("snmp_ha", "state"), ("omada_gateway", "active_wan"))


@dataclass(frozen=True)
class Correlator:
    state: StateDB
    maintenance: MaintenanceCalendar
    # the dependency graph as it is now (the engine's: configured parents, and discovered ones)
    parents: Callable[[], Mapping[tuple[str, str], str]]
    window_s: float = WINDOW_S

    def lines(self, alert: Alert, now: float, language: str = "fr") -> list[str]:
        """The changes of the last ``window_s`` on the alert's device and its parents, oldest
        first, headed; empty when nothing changed (or the alert names no device)."""
        if not alert.device:
            return []
        words = _TEXTS.get(language, _TEXTS["en"])
        found: list[tuple[float, str]] = []
        for device in self._chain(alert.client, alert.device):
            found += self._of(alert.client, device, now, words)
        if not found:
            return []
        return [words["head"], *(f"- {text}" for _, text in sorted(found))]

    def _chain(self, client: str, device: str) -> Iterable[str]:
        seen, parents = [device], self.parents()
        while (parent := parents.get((client, seen[-1]))) is not None and parent not in seen:
            seen.append(parent)
        return seen

    def _of(self, client: str, device: str, now: float, words: Mapping[str, str]) -> list[tuple[float, str]]:
        since = now - self.window_s
        tags = {"client": client, "device": device}
        found: list[tuple[float, str]] = []

        def minutes(at: float) -> int:
            return max(0, round((now - at) / 60))

        for row in self.state.latest("snmp_system", tags):
            if row.field == "uptime_s" and isinstance(row.value, (int, float)) and row.value < self.window_s:
                booted = row.timestamp_ns / NS - float(row.value)
                found.append((booted, words["reboot"].format(device=device, minutes=minutes(booted))))
        config = _fields(self.state.latest("cisco_cli_config", tags))
        if config.get("changed") in (True, 1) and config["_at"] >= since:  # the rollups keep bools as 0/1
            user = config.get("changed_by")
            by = words["by"].format(user=user) if user else ""
            found.append((config["_at"], words["config"].format(device=device, minutes=minutes(config["_at"]), by=by)))
        for measurement, field_name in FAILOVER_FIELDS:
            # from a day before: the state the device was in when the hour began
            spans = self.state.intervals(measurement, field_name, int((since - 86400) * NS), int(now * NS), tags)
            previous = None
            for span in (s for s in spans if s.value is not None):  # unknown gaps are no change
                at = span.start_ns / NS
                if previous is not None and span.value != previous and at >= since:
                    found.append((at, words["failover"].format(device=device, measurement=measurement,
                                                               value=span.value, minutes=minutes(at))))
                previous = span.value
        labels = {**self._tags_of(client, device), "client": client, "device": device}
        for window in self.maintenance.windows():
            if not window.selects(labels):
                continue
            zone = self.maintenance.zones.get(client)
            span = window.span_at(since, zone) if zone is not None else None
            if span is not None and since <= span[1] <= now:
                found.append((span[1], words["maintenance"].format(device=device, name=window.name,
                                                                   minutes=minutes(span[1]))))
        return found

    def _tags_of(self, client: str, device: str) -> Mapping[str, str]:
        rows = self.state.latest("collection", {"client": client, "device": device})
        return rows[0].tags if rows else {}


def _fields(rows: Sequence) -> dict:
    """The latest values of one series as {field: value}, with ``_at`` its newest timestamp."""
    found: dict = {"_at": 0.0}
    for row in rows:
        found[row.field] = row.value
        found["_at"] = max(found["_at"], row.timestamp_ns / NS)
    return found
