"""The reports' words in the client's language (French by default, English), and number formats."""

from __future__ import annotations

import datetime as dt

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "daily_title": "Rapport quotidien de santé du SI",
        "monthly_title": "Rapport mensuel",
        "generated": "Généré le",
        "status_ok": "Situation normale : tous les services ont tenu l'objectif de {target} % et aucune alerte "
                     "critique n'est ouverte.",
        "status_bad": "Points d'attention : {items}.",
        "status_no_data": "Aucune donnée de supervision pour cette période : l'agent n'a rien observé.",
        "month_ok": "Tous les services ont tenu l'objectif de {target} % sur le mois.",
        "backup_summary": "{total} tâche(s) : {success} réussie(s), {warning} avec avertissement, {failed} en échec, "
                          "{missing} manquante(s) ou jamais exécutée(s).",
        "status_below": "{n} service(s) sous l'objectif de {target} %",
        "status_firing": "{n} alerte(s) critique(s) en cours",
        "status_backups": "{n} sauvegarde(s) en échec ou manquante(s)",
        "status_expiring": "{n} certificat(s) ou domaine(s) expirant sous {days} jours",
        "status_open": "{n} ticket(s) encore ouvert(s)",
        "availability": "Disponibilité",
        "availability_note": "Objectif {target} %. Le temps sans information (tour non exécuté, agent arrêté) "
                             "est compté comme inconnu, pas comme indisponibilité.",
        "availability_left": "{n} autre(s) service(s) à l'objectif sans temps inconnu : le détail est dans le "
                             "classeur XLSX joint.",
        "device": "Équipement", "site": "Site", "service": "Service", "service_hours": "Heures ouvrées",
        "day_24h": "24 h", "down": "Indisponible", "unknown": "Inconnu", "target": "Objectif",
        "alerts_tickets": "Alertes et tickets du jour",
        "alerts": "Alertes", "rule": "Règle", "severity": "Sévérité", "state": "État", "summary": "Résumé",
        "started": "Début", "fired": "Déclenchée", "resolved": "Résolue",
        "tickets_opened": "Tickets ouverts", "tickets_solved": "Tickets résolus",
        "tickets_open": "Tickets encore ouverts", "ticket": "Ticket", "title": "Titre", "opened": "Ouvert",
        "solved": "Résolu", "age_h": "Âge (h)", "gtr_h": "GTR (h ouvrées)", "status": "Statut",
        "none": "Aucun.",
        "sla": "Engagement de service des alertes",
        "sla_line": "{in_time} alerte(s) critique(s) sur {critical} ticketée(s) en moins de 5 minutes ({pct}) ; "
                    "délai début -> ticket au 99e centile : {p99}.",
        "sla_none": "Aucune alerte critique sur la période.",
        "sla_note": "Début = premier échantillon en défaut enregistré par le moteur d'alertes.",
        "sla_missing": "{n} sans ticket.",
        "sla_taken_line": "{taken} alerte(s) critique(s) sur {critical} prise(s) en charge dans l'outil de tickets "
                          "en moins de 5 minutes ({pct}) ; délai début -> prise en charge : médiane {p50}, "
                          "99e centile {p99}.",
        "backups": "Sauvegardes des dernières 24 h", "job": "Tâche", "result": "Résultat",
        "last_success_h": "Dernier succès (h)",
        "capacity": "Capacité", "kind": "Type", "name": "Nom", "used_pct": "Utilisé (%)", "size": "Taille",
        "trend": "Tendance (pts/jour)", "days_to_full": "Jours avant saturation",
        "expiries": "Certificats et domaines", "expires_on": "Expire le", "days_left": "Jours restants",
        "m365": "Incidents Microsoft 365", "m365_resolved": "Résolu",
        "config_changes": "Changements de configuration", "at": "Date", "change": "Changement",
        "not_supervised": "Source non supervisée pour ce client.",
        "kpis": "Indicateurs sur 13 mois glissants", "month": "Mois", "critical_alerts": "Alertes critiques",
        "sla_pct": "Critiques ticketées < 5 min (%)", "p99": "Début -> ticket p99 (s)",
        "availability_month": "Disponibilité du mois par service",
        "yes": "oui", "no": "non",
        "kind_disk": "disque", "kind_datastore": "datastore", "kind_repository": "dépôt", "kind_licence": "licence",
        "kind_certificate": "certificat", "kind_domain": "domaine",
    },
    "en": {
        "daily_title": "Daily IT health report",
        "monthly_title": "Monthly report",
        "generated": "Generated",
        "status_ok": "All normal: every service met the {target} % target and no critical alert is open.",
        "status_bad": "Needs attention: {items}.",
        "status_no_data": "No supervision data for this period: the agent observed nothing.",
        "month_ok": "Every service met the {target} % target over the month.",
        "backup_summary": "{total} job(s): {success} OK, {warning} warning, {failed} failed, {missing} missing or "
                          "never run.",
        "status_below": "{n} service(s) below the {target} % target",
        "status_firing": "{n} critical alert(s) firing",
        "status_backups": "{n} backup(s) failed or missing",
        "status_expiring": "{n} certificate(s) or domain(s) expiring within {days} days",
        "status_open": "{n} ticket(s) still open",
        "availability": "Availability",
        "availability_note": "Target {target} %. Time without knowledge (turn not run, agent stopped) counts as "
                             "unknown, not as downtime.",
        "availability_left": "{n} other service(s) at the target with no unknown time: see the attached XLSX "
                             "workbook.",
        "device": "Device", "site": "Site", "service": "Service", "service_hours": "Service hours",
        "day_24h": "24 h", "down": "Down", "unknown": "Unknown", "target": "Target",
        "alerts_tickets": "Alerts and tickets of the day",
        "alerts": "Alerts", "rule": "Rule", "severity": "Severity", "state": "State", "summary": "Summary",
        "started": "Started", "fired": "Fired", "resolved": "Resolved",
        "tickets_opened": "Tickets opened", "tickets_solved": "Tickets solved",
        "tickets_open": "Tickets still open", "ticket": "Ticket", "title": "Title", "opened": "Opened",
        "solved": "Solved", "age_h": "Age (h)", "gtr_h": "GTR (service h)", "status": "Status",
        "none": "None.",
        "sla": "Alert SLA",
        "sla_line": "{in_time} of {critical} critical alert(s) ticketed within 5 minutes ({pct}); "
                    "onset -> ticket p99: {p99}.",
        "sla_none": "No critical alert in the period.",
        "sla_note": "Onset = the first bad sample the alert engine recorded.",
        "sla_missing": "{n} without a ticket.",
        "sla_taken_line": "{taken} of {critical} critical alert(s) taken in charge in the ITSM within 5 minutes "
                          "({pct}); onset -> taken in charge: median {p50}, p99 {p99}.",
        "backups": "Backups of the last 24 h", "job": "Job", "result": "Result",
        "last_success_h": "Last success (h)",
        "capacity": "Capacity", "kind": "Kind", "name": "Name", "used_pct": "Used (%)", "size": "Size",
        "trend": "Trend (pts/day)", "days_to_full": "Days to full",
        "expiries": "Certificates and domains", "expires_on": "Expires on", "days_left": "Days left",
        "m365": "Microsoft 365 incidents", "m365_resolved": "Resolved",
        "config_changes": "Configuration changes", "at": "When", "change": "Change",
        "not_supervised": "Source not supervised for this client.",
        "kpis": "KPIs over 13 rolling months", "month": "Month", "critical_alerts": "Critical alerts",
        "sla_pct": "Critical ticketed < 5 min (%)", "p99": "Onset -> ticket p99 (s)",
        "availability_month": "Availability of the month per service",
        "yes": "yes", "no": "no",
        "kind_disk": "disk", "kind_datastore": "datastore", "kind_repository": "repository",
        "kind_licence": "licence", "kind_certificate": "certificate", "kind_domain": "domain",
    },
}


def words(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["fr"])


def pct(value: float | None, language: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f} %"
    return text.replace(".", ",") if language == "fr" else text


def number(value: float | None, language: str, digits: int = 1) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\u202f").replace(".", ",") if language == "fr" else text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def when(value: dt.datetime | dt.date | None, language: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%d/%m/%Y %H:%M" if language == "fr" else "%Y-%m-%d %H:%M")
    return value.strftime("%d/%m/%Y" if language == "fr" else "%Y-%m-%d")


def size(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "licence":
        return f"{value:.0f}"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return "-"
