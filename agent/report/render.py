"""The reports as HTML (Jinja2 templates in ``templates/``), readable in Outlook: table layout,
inline CSS, no JavaScript. Charts are referenced by ``cid:NAME`` in a mail and by ``NAME.png``
beside the file on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jinja2 import Environment, PackageLoader, select_autoescape

from agent.report.charts import Chart
from agent.report.data import EXPIRY_WARN_DAYS, Availability, Capacity, DailyReport, MonthlyReport, TicketItem
from agent.report.words import duration, number, pct, size, when, words

_ENV = Environment(loader=PackageLoader("agent.report", "templates"), autoescape=select_autoescape(["html"]))

RED, ORANGE, GREEN = "color:#c62828;font-weight:bold;", "color:#b26a00;", "color:#2e7d32;"
SEVERITY_STYLE = {"critical": RED, "major": RED, "minor": ORANGE, "warning": ORANGE}
MAIL_AVAILABILITY_ROWS = 40
RESULT_STYLE = {"failed": RED, "missing": RED, "warning": ORANGE, "success": GREEN}


def on_disk(name: str) -> str:
    return f"{name}.png"


def in_mail(name: str) -> str:
    return f"cid:{name}"


def _cell(text: str, style: str = "") -> dict[str, str]:
    return {"text": text, "style": style}


def status_sentence(report: DailyReport) -> tuple[str, bool]:
    """The overall status in one sentence, and whether all is well."""
    w, target = words(report.language), number(report.target_pct, report.language, 0)
    if not any(a.day_pct is not None for a in report.availability):
        return w["status_no_data"], False  # nothing observed is not "all normal"
    items = []
    if below := report.below_target:
        items.append(w["status_below"].format(n=len(below), target=target))
    if firing := [a for a in report.alerts if a.state == "firing" and a.severity == "critical"]:
        items.append(w["status_firing"].format(n=len(firing)))
    if failed := report.failed_backups:
        items.append(w["status_backups"].format(n=len(failed)))
    expiring = [e for e in report.expiries.rows if e.days_left is not None and e.days_left < EXPIRY_WARN_DAYS]
    if expiring:
        items.append(w["status_expiring"].format(n=len(expiring), days=EXPIRY_WARN_DAYS))
    if report.tickets_open:
        items.append(w["status_open"].format(n=len(report.tickets_open)))
    if not items:
        return w["status_ok"].format(target=target), True
    return w["status_bad"].format(items=", ".join(items)), False


def mailed_availability(rows: Sequence[Availability]) -> tuple[list[Availability], int]:
    """The services the mail lists, and how many it leaves to the XLSX: every one up to
    ``MAIL_AVAILABILITY_ROWS``; past that (a large estate: webmails clip a mail past ~100 KB) only
    those below the target or not fully known, the others counted in one line."""
    if len(rows) <= MAIL_AVAILABILITY_ROWS:
        return list(rows), 0
    shown = [a for a in rows if a.meets_target is not True or a.unknown_pct > 0]
    return shown, len(rows) - len(shown)


def _availability_rows(rows: Sequence[Availability], target: float, lang: str) -> list[list]:
    def styled(value: float | None) -> dict[str, str]:
        return _cell(pct(value, lang), "" if value is None else GREEN if value >= target else RED)

    return [
        [a.device, a.site, a.service, styled(a.service_hours_pct), styled(a.day_pct), duration(a.down_s),
         pct(a.unknown_pct, lang)]
        for a in rows
    ]


def _capacity_rows(rows: Sequence[Capacity], lang: str) -> list[list]:
    w = words(lang)
    return [
        [w[f"kind_{c.kind}"], c.device, c.name,
         _cell(number(c.used_pct, lang), RED if (c.used_pct or 0) >= 90 else ORANGE if (c.used_pct or 0) >= 80 else ""),
         size(c.size, c.kind), number(c.trend_pct_per_day, lang, 2),
         _cell(number(c.days_to_full, lang, 0), RED if c.days_to_full is not None and c.days_to_full < 30 else "")]
        for c in rows
    ]


def _ticket_rows(rows: Sequence[TicketItem], lang: str) -> list[list]:
    return [
        [t.ticket_id or "-", t.device, t.title, t.status, when(t.opened_at, lang), when(t.solved_at, lang),
         number(t.age_h, lang), number(t.service_age_h, lang)]
        for t in rows
    ]


def _backup_summary(report: DailyReport, w: dict[str, str]) -> str:
    results = [b.result for b in report.backups.rows]
    return w["backup_summary"].format(
        total=len(results), success=results.count("success"), warning=results.count("warning"),
        failed=results.count("failed"), missing=results.count("missing") + results.count("none"),
    )


def daily_html(report: DailyReport, charts: Sequence[Chart], src: Callable[[str], str]) -> str:
    lang, w = report.language, words(report.language)
    sentence, good = status_sentence(report)
    shown, left = mailed_availability(report.availability)
    sla = report.sla
    if sla.critical:
        # KPI 3 as the contract words it first (taken in charge in the ITSM), then vigie's own part
        taken_line = w["sla_taken_line"].format(taken=sla.taken_in_time, critical=sla.critical,
                                                pct=pct(sla.taken_in_time_pct, lang),
                                                p50=duration(sla.p50_onset_to_taken_s),
                                                p99=duration(sla.p99_onset_to_taken_s))
        sla_line = w["sla_line"].format(in_time=sla.ticketed_in_time, critical=sla.critical,
                                        pct=pct(sla.in_time_pct, lang), p99=duration(sla.p99_onset_to_ticket_s))
        if sla.without_ticket:
            sla_line += " " + w["sla_missing"].format(n=sla.without_ticket)
    else:
        taken_line, sla_line = "", w["sla_none"]
    return _ENV.get_template("daily.html").render(
        w=w, lang=lang, src=src, charts={c.name for c in charts},
        heading=f"{w['daily_title']} — {report.display_name} — {when(report.day, lang)}",
        status_sentence=sentence, status_colour="#2e7d32" if good else "#c62828",
        generated=when(report.generated_at, lang), timezone=report.timezone,
        availability_note=w["availability_note"].format(target=number(report.target_pct, lang, 0)),
        availability_rows=_availability_rows(shown, report.target_pct, lang),
        availability_left=w["availability_left"].format(n=left) if left else "",
        alert_rows=[
            [_cell(a.severity, SEVERITY_STYLE.get(a.severity, "")), a.device, a.rule, a.summary, a.state,
             when(a.started_at, lang), when(a.resolved_at, lang)]
            for a in report.alerts
        ],
        ticket_tables=[
            (w["tickets_opened"], _ticket_rows(report.tickets_opened, lang)),
            (w["tickets_solved"], _ticket_rows(report.tickets_solved, lang)),
            (w["tickets_open"], _ticket_rows(report.tickets_open, lang)),
        ],
        sla_line=sla_line, sla_taken_line=taken_line,
        backups=report.backups, backup_summary=_backup_summary(report, w),
        backup_rows=[[b.device, b.job, _cell(b.result, RESULT_STYLE.get(b.result, "")),
                      number(b.last_success_age_h, lang)] for b in report.backups.rows],
        capacity=report.capacity, capacity_rows=_capacity_rows(report.capacity.rows, lang),
        expiries=report.expiries,
        expiry_rows=[[w[f"kind_{e.kind}"], e.device, e.name, when(e.expires_on, lang),
                      _cell(number(e.days_left, lang, 0),
                            RED if e.days_left is not None and e.days_left < EXPIRY_WARN_DAYS else "")]
                     for e in report.expiries.rows],
        m365=report.m365,
        m365_rows=[[i.service, i.title, i.status, "-" if i.resolved is None else w["yes" if i.resolved else "no"]]
                   for i in report.m365.rows],
        config_changes=report.config_changes,
        change_rows=[[c.device, when(c.at, lang), c.detail] for c in report.config_changes.rows],
    )


def monthly_sentence(report: MonthlyReport) -> tuple[str, bool]:
    w, lang = words(report.language), report.language
    last = report.kpis[-1]
    if last.availability_pct is None:
        return w["status_no_data"], False
    below = [a for a in report.availability if a.meets_target is False]
    target = number(report.target_pct, lang, 0)
    if not below:
        return w["month_ok"].format(target=target), True
    return w["status_bad"].format(items=w["status_below"].format(n=len(below), target=target)
                                  + f" ({w['availability']} {pct(last.availability_pct, lang)})"), False


def monthly_html(report: MonthlyReport, charts: Sequence[Chart], src: Callable[[str], str]) -> str:
    lang, w = report.language, words(report.language)
    sentence, good = monthly_sentence(report)
    shown, left = mailed_availability(report.availability)
    return _ENV.get_template("monthly.html").render(
        w=w, lang=lang, src=src, charts={c.name for c in charts},
        heading=f"{w['monthly_title']} — {report.display_name} — {report.month.strftime('%m/%Y')}",
        status_sentence=sentence, status_colour="#2e7d32" if good else "#c62828",
        generated=when(report.generated_at, lang), timezone=report.timezone,
        availability_note=w["availability_note"].format(target=number(report.target_pct, lang, 0)),
        kpi_rows=[
            [k.month.strftime("%m/%Y"), pct(k.availability_pct, lang), pct(k.service_hours_pct, lang), k.alerts,
             k.critical_alerts, k.tickets_opened, pct(k.sla_in_time_pct, lang),
             number(k.p99_onset_to_ticket_s, lang, 0)]
            for k in report.kpis
        ],
        availability_rows=_availability_rows(shown, report.target_pct, lang),
        availability_left=w["availability_left"].format(n=left) if left else "",
        capacity=report.capacity, capacity_rows=_capacity_rows(report.capacity.rows, lang),
    )
