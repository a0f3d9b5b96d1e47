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
        "impacted": "Site {site} : {count} équipement(s) derrière {device}, injoignables avec lui "
                    "(sans ticket à eux) : {devices}",
        "flapping": "Alerte instable (flapping) : l'objet change d'état sans cesse ; un seul ticket, résolu "
                    "quand il sera resté stable.",
        "reopened": "L'alerte s'est redéclenchée le {fired} ({summary}) : ce ticket est rouvert plutôt qu'un nouveau.",
        "reattached": (
            "vigie a retrouvé ce ticket encore ouvert après un redémarrage et l'a rattaché à l'alerte, "
            "toujours active ({summary}) : aucun second ticket n'a été ouvert."
        ),
        "after_the_fact": (
            "Ticket ouvert après coup : l'alerte s'est déclenchée le {fired} et s'est résolue le {resolved} "
            "pendant que {itsm} était injoignable. Il est résolu aussitôt pour figurer dans les statistiques."
        ),
        "group_summary": "{count} alertes sur {where} : {rules}",
        "group_members": "Alertes de ce ticket ({count}) :",
        "group_joined": "Nouvelles alertes dans ce ticket ({count}) :",
        "group_resolved": "Alertes rétablies ({count}) :",
        "group_still": "Toujours en cours : {count} alerte(s).",
        "group_reminder": "Rappel : ce groupe d'alertes est toujours actif.",
    },
    "en": {
        "severity": "Severity",
        "rule": "Rule",
        "started": "Started",
        "fired": "Fired",
        "resolved": "Resolved",
        "colon": ": ",
        "recovered": "Recovered",
        "impacted": "Site {site}: {count} device(s) behind {device}, unreachable with it (no ticket of their own): "
                    "{devices}",
        "flapping": "Flapping alert: the object keeps changing state; one ticket, solved once it has stayed stable.",
        "reopened": "The alert fired again at {fired} ({summary}): this ticket is reopened instead of a new one.",
        "reattached": (
            "vigie found this ticket still open after a restart and re-attached it to the alert, still "
            "firing ({summary}): no second ticket was opened."
        ),
        "after_the_fact": (
            "Ticket opened after the fact: the alert fired at {fired} and resolved at {resolved} while "
            "{itsm} was unreachable. It is solved at once so that it counts in the statistics."
        ),
        "group_summary": "{count} alerts on {where}: {rules}",
        "group_members": "Alerts on this ticket ({count}):",
        "group_joined": "New alerts on this ticket ({count}):",
        "group_resolved": "Resolved alerts ({count}):",
        "group_still": "Still firing: {count} alert(s).",
        "group_reminder": "Reminder: this group of alerts is still firing.",
    },
}

# Severity names in French; other languages show vigie's own.
_SEVERITIES = {"fr": {"critical": "critique", "major": "majeure", "minor": "mineure", "warning": "avertissement"}}

# How the follow-ups name an ITSM, by connector name then language; other connectors by their name.
ITSM_NAMES = {
    "glpi": {"fr": "GLPI", "en": "GLPI"},
    "log": {"fr": "le journal des tickets", "en": "the ticket log"},
    "email": {"fr": "la passerelle e-mail de l'ITSM", "en": "the ITSM's mail gateway"},
    "webhook": {"fr": "le webhook", "en": "the webhook"},
    "teams": {"fr": "le canal Teams", "en": "the Teams channel"},
}


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


def headline(alert: Alert) -> str:
    """The summary's first line: a title and a solution are one line; a summary that carries more
    (a configuration diff) keeps the rest for the ticket's body."""
    return alert.summary.split("\n", 1)[0]


def ticket_title(alert: Alert) -> str:
    return f"[{alert.idempotency_key}] {headline(alert)}"


def _severity(severity: str, locale: TicketLocale) -> str:
    if (translated := _SEVERITIES.get(locale.language, {}).get(severity)) is not None:
        return f"{translated} ({severity})"
    return severity


def ticket_body(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    severity = _severity(alert.severity, locale)
    lines = [
        alert.summary,
        *(("", locale.word("flapping")) if alert.flapping else ()),
        *(("", locale.word("impacted").format(site=alert.labels.get("site", "?"), count=len(alert.impacted),
                                             device=alert.device, devices=", ".join(alert.impacted)))
          if alert.impacted else ()),
        *(("", *alert.context) if alert.context else ()),
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
    parts = [f"{locale.word('recovered')}{locale.word('colon')}{headline(alert)}."]
    if alert.resolved_at is not None:
        parts.append(locale.line("resolved", locale.time(alert.resolved_at)) + ".")
    parts.append(f"[{alert.idempotency_key}]")
    return " ".join(parts)


def reattached_text(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    return f"{locale.word('reattached').format(summary=alert.summary)} [{alert.idempotency_key}]"


def reopened_text(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """The follow-up of a solved ticket reopened by its alert firing again soon after."""
    text = locale.word("reopened").format(fired=locale.time(alert.fired_at), summary=headline(alert))
    return f"{text} [{alert.idempotency_key}]"


def after_the_fact_text(alert: Alert, itsm: str, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """The follow-up of a ticket opened and solved once the ITSM is back, for an alert that fired
    and resolved while it could not be reached (so that it counts in the client's statistics)."""
    text = locale.word("after_the_fact").format(
        fired=locale.time(alert.fired_at),
        resolved=locale.time(alert.resolved_at),
        itsm=ITSM_NAMES.get(itsm, {}).get(locale.language, itsm),
    )
    return f"{text} [{alert.idempotency_key}]"


def group_summary(count: int, labels: dict[str, str], rules: list[str], locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """The headline of a ticket gathering several alerts: "12 alerts on site hdv: interface_down"
    (the group's labels other than client and alertname say where; the rules say what)."""
    where = ", ".join(f"{k} {v}" for k, v in labels.items() if k not in ("client", "alertname") and v)
    return locale.word("group_summary").format(count=count, where=where or labels.get("client", "?"),
                                               rules=", ".join(rules))


def member_line(alert: Alert, locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """One alert of a group, as its ticket lists it."""
    if alert.resolved_at is not None:
        return f"- {headline(alert)} ({locale.word('resolved').lower()} {locale.time(alert.resolved_at)})"
    return f"- {headline(alert)} ({_severity(alert.severity, locale)}, {locale.time(alert.fired_at)})"


def group_followup_text(joined: list[Alert], resolved: list[Alert], firing: int, key: str,
                        locale: TicketLocale = DEFAULT_LOCALE) -> str:
    """A group ticket's follow-up: the alerts that joined and resolved since the last one, or a
    reminder when there is nothing new (Alertmanager's group_interval and repeat_interval)."""
    lines = [] if joined or resolved else [locale.word("group_reminder")]
    if joined:
        lines += [locale.word("group_joined").format(count=len(joined)), *(member_line(a, locale) for a in joined)]
    if resolved:
        lines += [locale.word("group_resolved").format(count=len(resolved)),
                  *(member_line(a, locale) for a in resolved)]
    lines += [locale.word("group_still").format(count=firing), f"[{key}]"]
    return "\n".join(lines)
