"""Dashboards from their definitions (dashboards.catalog) with grafana-foundation-sdk's builders.

`build(spec, language)` turns a `DashboardSpec` into the SDK's dashboard model for one query
language: `influxdb` (InfluxQL targets; a `true_share` series is two hidden counts and a math
expression) or `prometheus` (PromQL targets; a panel whose every series reads a string field has no
PromQL form and is left out, named in `Built.left_out`). The SDK has no InfluxDB query builder, so
`InfluxQuery` is one: the InfluxDB plugin's raw-query target.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import expr as expr_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prom_models

from dashboards.query import Series, influxql, promql

Language = Literal["influxdb", "prometheus"]
LANGUAGES: tuple[Language, ...] = ("influxdb", "prometheus")
DATASOURCE_UID = "vigie"
DEVICE_DASHBOARD = "vigie-device"
DEVICE_LINK = (f"/d/{DEVICE_DASHBOARD}?var-client=${{__field.labels.client}}"
               "&var-device=${__field.labels.device}&${__url_time_range}")
REFS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ------------------------------------------------------------------------------ definitions
@dataclass(frozen=True)
class PanelSpec:
    title: str
    series: tuple[Series, ...]
    kind: Literal["timeseries", "stat", "table"] = "timeseries"
    unit: str = ""
    description: str = ""
    device_link: bool = False  # a data link from each series to its device's detail dashboard
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: Sequence[tuple[str, Sequence[PanelSpec]]]
    tags: tuple[str, ...] = ()
    time_from: str = "now-6h"

    def panels(self) -> list[PanelSpec]:
        return [panel for _, panels in self.rows for panel in panels]

    def series(self) -> list[Series]:
        return [series for panel in self.panels() for series in panel.series]


# ------------------------------------------------------------------------- the InfluxQL target
class InfluxQuery(cogvariants.Dataquery):
    """The InfluxDB data source's raw InfluxQL target (public/app/plugins/datasource/influxdb)."""

    def __init__(self, ref_id: str, query: str, result_format: str, alias: str, hide: bool) -> None:
        self.ref_id, self.query, self.result_format, self.alias, self.hide = ref_id, query, result_format, alias, hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": True,
                                      "resultFormat": self.result_format}
        if self.alias:
            payload["alias"] = self.alias
        if self.hide:
            payload["hide"] = True
        return payload


class InfluxQueryBuilder(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, ref_id: str, query: str, *, table: bool, alias: str = "", hide: bool = False) -> None:
        self._query = InfluxQuery(ref_id, query, "table" if table else "time_series", alias, hide)

    def build(self) -> InfluxQuery:
        return self._query


# ---------------------------------------------------------------------------------- building
@dataclass
class Built:
    dashboard: models.Dashboard
    left_out: list[str] = field(default_factory=list)  # panels with no form in this language, and why

    def to_json(self) -> str:
        return json.dumps(self.dashboard, cls=JSONEncoder, indent=2, ensure_ascii=False, sort_keys=True)


def datasource(language: Language) -> models.DataSourceRef:
    return models.DataSourceRef(type_val=language, uid=DATASOURCE_UID)


def _legend(series: Series, language: Language) -> str:
    if series.legend:
        text = series.legend
    else:
        text = " ".join("{{" + tag + "}}" for tag in series.by) or series.field
    if language == "influxdb":
        for tag in (*series.by, *series.match):
            text = text.replace("{{" + tag + "}}", f"$tag_{tag}")
    return text


def _targets(panel: PanelSpec, language: Language) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    timed = panel.kind == "timeseries"
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    refs = iter(REFS)
    for series in panel.series:
        legend = _legend(series, language)
        if language == "prometheus":
            query = prometheus.Dataquery().expr(promql(series, timed)).ref_id(next(refs)).legend_format(legend)
            query = query.range() if timed else query.instant().format(prom_models.PromQueryFormat.TABLE)
            targets.append(query)
            continue
        statements = influxql(series, timed)
        if len(statements) == 1:
            targets.append(InfluxQueryBuilder(next(refs), statements[0], table=not timed, alias=legend))
            continue
        true_ref, all_ref, share_ref = next(refs), next(refs), next(refs)
        targets.append(InfluxQueryBuilder(true_ref, statements[0], table=False, alias=legend, hide=True))
        targets.append(InfluxQueryBuilder(all_ref, statements[1], table=False, alias=legend, hide=True))
        targets.append(expr_builders.TypeMath().ref_id(share_ref)
                       .expression(f"${true_ref} / ${all_ref} * {100 * series.scale:g}"))
    return targets


def _panel(panel: PanelSpec, language: Language) -> cogbuilder.Builder[models.Panel]:
    builder: typing.Any
    if panel.kind == "timeseries":
        builder = timeseries.Panel().line_width(1).fill_opacity(10).legend(
            common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM).show_legend(True)
        )
    elif panel.kind == "stat":
        builder = stat.Panel().reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        if all(s.across in ("count", "sum") and not s.by for s in panel.series):
            builder = builder.no_value("0")  # InfluxQL's count of no rows is no rows
    else:
        builder = table.Panel()
    builder = builder.title(panel.title).datasource(datasource(language)).span(panel.width).height(panel.height)
    if panel.description:
        builder = builder.description(panel.description)
    if panel.unit:
        builder = builder.unit(panel.unit)
    if panel.device_link:
        builder = builder.data_links([dash.DashboardLink("device detail: ${__field.labels.device}").url(DEVICE_LINK)])
    for target in _targets(panel, language):
        builder = builder.with_target(target)
    return builder


def _variables(language: Language) -> list[cogbuilder.Builder[models.VariableModel]]:
    """client, site, device: multi-value, each scoped by the ones before it. "All" is `.*`, not the
    list of values: it must match the series without the tag (no `site`) and stay short."""
    variables = []
    for n, tag in enumerate(("client", "site", "device")):
        before = ("client", "site")[:n]
        if language == "influxdb":
            where = " AND ".join(f'"{t}" =~ /^${t}$/' for t in before)
            query = f'SHOW TAG VALUES FROM "collection" WITH KEY = "{tag}"' + (f" WHERE {where}" if where else "")
        else:
            matchers = ", ".join(f'{t}=~"${t}"' for t in before)
            query = f"label_values(collection_samples{{{matchers}}}, {tag})" if matchers else \
                f"label_values(collection_samples, {tag})"
        variable = (dash.QueryVariable(tag).label(tag).datasource(datasource(language)).query(query)
                    .multi(True).include_all(True).refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                    .sort(models.VariableSort.ALPHABETICAL_ASC).all_value(".*"))
        variables.append(variable)
    return variables


def build(spec: DashboardSpec, language: Language, numeric: typing.Callable[[Series], bool]) -> Built:
    """`numeric(series)`: whether the series' field is stored as a number (the registry knows)."""
    left_out = []
    board = (dash.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags(["vigie", *spec.tags])
             .refresh("1m").time(spec.time_from, "now").timezone("browser").editable()
             .tooltip(models.DashboardCursorSync.CROSSHAIR))
    for variable in _variables(language):
        board = board.with_variable(variable)
    board = board.link(dash.DashboardLink("vigie").type(models.DashboardLinkType.DASHBOARDS).tags(["vigie"])
                       .as_dropdown(True).include_vars(True).keep_time(True))
    for row_title, panels in spec.rows:
        kept = []
        for panel in panels:
            series = tuple(replace(s, numeric=numeric(s)) for s in panel.series)
            if language == "prometheus":
                series = tuple(s for s in series if s.numeric)
                if not series:
                    left_out.append(f"{spec.uid}: {panel.title!r}: only string fields, which a Prometheus store drops")
                    continue
            kept.append(replace(panel, series=series))
        if not kept:
            continue
        board = board.with_row(dash.Row(row_title))
        for panel in kept:
            board = board.with_panel(_panel(panel, language))
    return Built(board.build(), left_out)
