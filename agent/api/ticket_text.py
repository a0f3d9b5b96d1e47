"""What a ticket says: title, body, solution and follow-ups, in the client's language and timezone.

The title carries the alert's idempotency key (``[vigie:<fingerprint>:<fired_at>]``) and so does
the body's last line: that is how a connector finds a ticket again after a crash. Everything else
is for the people who read the ticket: labels in the client's language, times in the client's
zone ("2026-12-01 21:15:03 CET"). Label keys and the severity name vigie uses (``critical``...)
are shown as they are, since rules, dashboards and ``vigie alerts`` use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.api.alerts import Alert

LANGUAGES = ("fr", "en")

_WORDS = {
    "fr": {
        "severity": "Gravité",
        "rule": "Règle",
        "started": "Début",
        "fired": "Déclenchement",
        "resolved": "Fin",
        "colon": " : ",
        "recovered": "Rétabli",
        "reattached": (
            "vigie a retrouvé ce ticket encore ouvert après un redémarrage et l'a rattaché à l'alerte, "
            "toujours active ({summary}) : aucun second ticket n'a été ouvert."
        ),
        "after_the_fact": (
            "Ticket ouvert après coup : l'alerte s'est déclenchée le {fired} et s'est résolue le {resolved} "
            "pendant que {itsm} était injoignable. Il est résolu aussitôt pour figurer dans les statistiques."
        ),
    },
    "en": {
        "severity": "Severity",
        "rule": "Rule",
        "started": "Started",
        "fired": "Fired",
        "resolved": "Resolved",
        "colon": ": ",
        "recovered": "Recovered",
        "reattached": (
            "vigie found this ticket still open after a restart and re-attached it to the alert, still "
            "firing ({summary}): no second ticket was opened."
        ),
        "after_the_fact": (
            "Ticket opened after the fact: the alert fired at {fired} and resolved at {resolved} while "
            "{itsm} was unreachable. It is solved at once so that it counts in the statistics."
        ),
    },
}

# Severity names in French; other languages show vigie's own.
_SEVERITIES = {"fr": {"critical": "critique", "major": "majeure", "minor": "mineure", "warning": "avertissement"}}

# How the follow-ups name an ITSM, by connector name then language; other connectors by their name.
ITSM_NAMES = {"glpi": {"fr": "GLPI", "en": "GLPI"}, "log": {"fr": "le journal des tickets", "en": "the ticket log"}}


@dataclass(frozen=True)
class TicketLocale:
    """The language (``fr`` or ``en``) and timezone (IANA name) a client reads its tickets in."""

    timezone: str = "Europe/Paris"
    language: str = "fr"

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"ticket language {self.language!r}: one of {', '.join(LANGUAGES)}")
        ZoneInfo(self.timezone)  # an unknown zone fails here, at configuration time

    def time(self, ts: float | None) -> str:
        if ts is None:
            return "-"
        return datetime.fromtimestamp(ts, ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")

    def word(self, key: str) -> str:
        return _WORDS[self.language][key]

    def line(self, key: str, value: str) -> str:
        return f"{self.word(key)}{self.word('colon')}{value}"


DEFAULT_LOCALE = TicketLocale()


def ticket_title(alert: Alert) -> str:
    return f"[{alert.idempotency_key}] {alert.summary}"


def ticket_body(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    severity = alert.severity
    if (translated := _SEVERITIES.get(locale.language, {}).get(severity)) is not None:
        severity = f"{translated} ({severity})"
    lines = [
        alert.summary,
        "",
        locale.line("severity", severity),
        locale.line("rule", alert.rule),
        *(f"{k}{locale.word('colon')}{v}" for k, v in sorted(alert.labels.items()) if k != "alertname"),
        locale.line("started", locale.time(alert.started_at)),
        locale.line("fired", locale.time(alert.fired_at)),
        "",
        f"[{alert.idempotency_key}]",
    ]
    return "\n".join(lines)


def solution_text(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    parts = [f"{locale.word('recovered')}{locale.word('colon')}{alert.summary}."]
    if alert.resolved_at is not None:
        parts.append(locale.line("resolved", locale.time(alert.resolved_at)) + ".")
    parts.append(f"[{alert.idempotency_key}]")
    return " ".join(parts)


def reattached_text(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    return f"{locale.word('reattached').format(summary=alert.summary)} [{alert.idempotency_key}]"


def after_the_fact_text(alert: Alert, itsm: str, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """The follow-up of a ticket opened and solved once the ITSM is back, for an alert that fired
    and resolved while it could not be reached (so that it counts in the client's statistics)."""
    text = locale.word("after_the_fact").format(
        fired=locale.time(alert.fired_at),
        resolved=locale.time(alert.resolved_at),
        itsm=ITSM_NAMES.get(itsm, {}).get(locale.language, itsm),
    )
    return f"{text} [{alert.idempotency_key}]"
