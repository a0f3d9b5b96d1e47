"""One query definition, two languages: InfluxQL (InfluxDB 1.8+, 2.x through DBRP, 3.x) and PromQL
(a Prometheus-compatible store fed vigie's line protocol: VictoriaMetrics).

A `Series` names a field of a measurement (docs/METRICS.md), the tags it is split by, fixed tag
matches, how the values of one series are reduced over time and how the series are combined. The
languages differ in what they can say:

- VictoriaMetrics stores line protocol's numeric fields as `<measurement>_<field>` series whose
  labels are the tags; bools become 0/1 and string fields are not stored at all. A series over a
  `str` field has no PromQL form (`NoPromQL`): the Prometheus build leaves its panel out and says so.
- InfluxQL cannot average a boolean (`mean` has no boolean iterator): the share of true values is
  two counts (the true ones, all of them) divided by a Grafana server-side math expression.
- Combining series (the number of devices, the sum of PoE draws) is an aggregation `by` tags in
  PromQL and a subquery grouped by every tag (`GROUP BY *`) in InfluxQL.

Dashboard variables: every series of a measurement with the base tags is scoped by `$client`,
`$site`, `$device` (multi-value, "All" = every value), as `=~ /^$var$/` (InfluxQL) and `=~"$var"`
(PromQL, the variable's "All" value being `.*`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Reduce = Literal["last", "mean", "max", "min", "sum", "count"]
SCOPE_TAGS = ("client", "site", "device")
_PROM_OVER_TIME = {"last": "last_over_time", "mean": "avg_over_time", "max": "max_over_time",
                   "min": "min_over_time", "sum": "sum_over_time", "count": "count_over_time"}
_PROM_ACROSS = {"last": "max", "mean": "avg", "max": "max", "min": "min", "sum": "sum", "count": "count"}


class NoPromQL(ValueError):
    """The series reads a string field: a Prometheus-compatible store keeps none."""


@dataclass(frozen=True)
class Series:
    measurement: str
    field: str
    by: tuple[str, ...] = ("client", "device")
    match: Mapping[str, str] = field(default_factory=dict)  # tag -> regex (anchored)
    over_time: Reduce = "last"
    # Combining: None keeps one series per `by`; else the series are reduced by `across` per `by`,
    # after being reduced per `per` first (None: each stored series; ("client",): one per client,
    # so that `across="count"` counts clients).
    across: Reduce | None = None
    per: tuple[str, ...] | None = None
    # Only the series whose value (reduced over time, then per `per`) equals this, before combining:
    # `equals=False, across="count"` counts the devices whose last `reachable` is false.
    equals: bool | float | None = None
    true_share: bool = False  # a bool field, as the percentage of true values
    scale: float = 1.0
    legend: str = ""
    scoped: bool = True  # the client/site/device variables apply (False: vigie_agent, receivers' health)
    numeric: bool = True  # False for a str field (the builder sets it from the registry)

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag the series names: grouped by, matched, scoped."""
        scope = SCOPE_TAGS if self.scoped else ()
        return tuple(dict.fromkeys((*self.by, *(self.per or ()), *self.match, *scope)))


# ------------------------------------------------------------------------------------- InfluxQL
def _influx_where(series: Series) -> str:
    conditions = ["$timeFilter"]
    if series.scoped:
        conditions += [f'"{tag}" =~ /^${tag}$/' for tag in SCOPE_TAGS]
    conditions += [f'"{tag}" =~ /^{regex}$/' for tag, regex in series.match.items()]
    return " AND ".join(conditions)


def _influx_group(tags: tuple[str, ...] | None, timed: bool, fill: bool = True) -> str:
    parts = (["time($__interval)"] if timed else []) + (["*"] if tags is None else [f'"{t}"' for t in tags])
    return (" GROUP BY " + ", ".join(parts) if parts else "") + (" fill(none)" if timed and fill else "")


def influxql(series: Series, timed: bool) -> list[str]:
    """The InfluxQL statement(s) of a series: one, or for `true_share` the true count and the count."""
    selected = f'"{series.field}"'
    where = _influx_where(series)
    group = _influx_group(series.by, timed)
    if series.true_share:
        base = f'FROM "{series.measurement}" WHERE {where}'
        return [f"SELECT count({selected}) {base} AND {selected} = true{group}",
                f"SELECT count({selected}) {base}{group}"]
    scale = f" * {series.scale:g}" if series.scale != 1 else ""
    if series.equals is not None:
        value = str(series.equals).lower() if isinstance(series.equals, bool) else f"{series.equals:g}"
        per = tuple(dict.fromkeys((*series.by, *(series.per or ()))))
        inner = (f'SELECT {series.over_time}({selected}) AS "v" FROM "{series.measurement}" WHERE {where}'
                 f"{_influx_group(per if series.per is not None else None, timed, fill=False)}")
        outer = f'{series.across}("v"){scale}' if series.across else '"v"'
        return [f'SELECT {outer} AS "value" FROM ({inner}) WHERE $timeFilter AND "v" = {value}{group}']
    if series.across is None:
        return [f'SELECT {series.over_time}({selected}){scale} AS "value" FROM "{series.measurement}"'
                f" WHERE {where}{group}"]
    per = None if series.per is None else tuple(dict.fromkeys((*series.by, *series.per)))
    inner = (f'SELECT {series.over_time}({selected}) AS "v" FROM "{series.measurement}" WHERE {where}'
             f"{_influx_group(per, timed, fill=False)}")
    return [f'SELECT {series.across}("v"){scale} AS "value" FROM ({inner}) WHERE $timeFilter{group}']


# --------------------------------------------------------------------------------------- PromQL
def metric(series: Series) -> str:
    return f"{series.measurement}_{series.field}"


def _prom_selector(series: Series) -> str:
    matchers = [f'{tag}=~"${tag}"' for tag in SCOPE_TAGS] if series.scoped else []
    matchers += [f'{tag}=~"{regex}"' for tag, regex in series.match.items()]
    return metric(series) + ("{" + ", ".join(matchers) + "}" if matchers else "")


def _by(tags: tuple[str, ...]) -> str:
    return f" by ({', '.join(tags)})" if tags else ""


def promql(series: Series, timed: bool) -> str:
    if not series.numeric:
        raise NoPromQL(f"{series.measurement}.{series.field} is a string field")
    window = "$__interval" if timed else "$__range"
    expr = f"{_PROM_OVER_TIME['mean' if series.true_share else series.over_time]}({_prom_selector(series)}[{window}])"
    if series.per is not None:
        expr = f"max{_by(tuple(dict.fromkeys((*series.by, *series.per))))} ({expr})"
    if series.equals is not None:
        expr = f"({expr}) == {float(series.equals):g}"
    if series.true_share:
        across = _PROM_ACROSS[series.across or "mean"]
    else:
        across = _PROM_ACROSS[series.across or "last"]
    expr = f"{across}{_by(series.by)} ({expr})"
    scale = 100.0 * series.scale if series.true_share else series.scale
    expr = expr if scale == 1 else f"{expr} * {scale:g}"
    # A count or total of nothing is 0, not "no data" (PromQL's count of no series is no series).
    return f"{expr}{ZERO_FALLBACK}" if series.across in ("count", "sum") and not series.by else expr


ZERO_FALLBACK = " or vector(0)"
