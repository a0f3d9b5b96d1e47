"""The reports' charts: matplotlib PNGs (Agg backend, no display), attached to the mail by
Content-ID and written beside the HTML."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen before pyplot loads
from matplotlib.figure import Figure  # noqa: E402

from agent.report.data import DailyReport, MonthlyReport  # noqa: E402
from agent.report.words import words  # noqa: E402

GOOD, BAD, UNKNOWN, ACCENT = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"
MAX_BARS = 30
MAX_LINES = 6


@dataclass(frozen=True)
class Chart:
    name: str  # file stem and Content-ID
    png: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _availability_bars(labels: list[str], values: list[float | None], target: float, title: str) -> bytes:
    height = max(2.0, 0.3 * len(labels) + 1)
    figure, axis = plt.subplots(figsize=(7, height))
    shown = [v if v is not None else 0.0 for v in values]
    colours = [UNKNOWN if v is None else GOOD if v >= target else BAD for v in values]
    axis.barh(labels, shown, color=colours)
    axis.axvline(target, color=ACCENT, linestyle="--", linewidth=1)
    low = min([v for v in values if v is not None] + [target])
    axis.set_xlim(max(0.0, min(low - 1, 90.0)), 100.5)
    axis.invert_yaxis()
    axis.set_title(title)
    axis.set_xlabel("%")
    return _png(figure)


def daily_charts(report: DailyReport) -> list[Chart]:
    w = words(report.language)
    charts = []
    rows = sorted(report.availability, key=lambda a: (a.day_pct if a.day_pct is not None else 101.0))[:MAX_BARS]
    if rows:
        charts.append(Chart("availability", _availability_bars(
            [f"{a.device} ({a.service})" for a in rows], [a.day_pct for a in rows], report.target_pct,
            f"{w['availability']} 24 h",
        )))
    if report.capacity.supervised:
        trending = [c for c in report.capacity.rows if len(c.history) >= 2][:MAX_LINES]
        if trending:
            figure, axis = plt.subplots(figsize=(7, 3))
            for item in trending:
                axis.plot([d for d, _ in item.history], [v for _, v in item.history], marker=".",
                          label=f"{item.device} {item.name}")
            axis.set_ylim(0, 100)
            axis.set_ylabel(w["used_pct"])
            axis.set_title(w["capacity"])
            axis.legend(fontsize=7, loc="lower left")
            figure.autofmt_xdate()
            charts.append(Chart("capacity", _png(figure)))
    return charts


def monthly_charts(report: MonthlyReport) -> list[Chart]:
    w = words(report.language)
    labels = [k.month.strftime("%m/%y") for k in report.kpis]
    figure, axis = plt.subplots(figsize=(7, 3))
    values = [k.availability_pct for k in report.kpis]
    axis.bar(labels, [v or 0 for v in values],
             color=[UNKNOWN if v is None else GOOD if v >= report.target_pct else BAD for v in values])
    axis.axhline(report.target_pct, color=ACCENT, linestyle="--", linewidth=1)
    low = min([v for v in values if v is not None] + [report.target_pct])
    axis.set_ylim(max(0.0, min(low - 1, 90.0)), 100.5)
    axis.set_title(w["availability"])
    axis.tick_params(axis="x", labelsize=7)
    charts = [Chart("availability-13m", _png(figure))]
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.bar(labels, [k.alerts for k in report.kpis], color=ACCENT, label=w["alerts"])
    axis.bar(labels, [k.critical_alerts for k in report.kpis], color=BAD, label=w["critical_alerts"])
    axis.plot(labels, [k.tickets_opened for k in report.kpis], color="black", marker="o", label=w["tickets_opened"])
    axis.legend(fontsize=7)
    axis.tick_params(axis="x", labelsize=7)
    axis.set_title(w["alerts"])
    charts.append(Chart("alerts-13m", _png(figure)))
    return charts
