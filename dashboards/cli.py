"""`vigie dashboards build --out DIR [--datasource influxdb|prometheus]`.

Writes, under DIR:

- `dashboards/<uid>.json`: every dashboard of dashboards.catalog, for the chosen query language;
- `provisioning/datasources/vigie.yaml`: the data source the dashboards name (uid `vigie`), at
  `--url` (InfluxDB: InfluxQL over `--database`; 2.x maps it to a bucket by DBRP, 3.x serves it);
- `provisioning/dashboards/vigie.yaml`: a file provider loading DIR/dashboards into the folder `vigie`.

A Grafana started with `GF_PATHS_PROVISIONING=DIR/provisioning` loads them (README: "Dashboards").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from dashboards.build import DATASOURCE_UID, LANGUAGES, Language, build
from dashboards.catalog import DASHBOARDS
from dashboards.query import Series
from dashboards.registry import field_types

DEFAULT_URLS = {"influxdb": "http://127.0.0.1:8086", "prometheus": "http://127.0.0.1:8428"}


def numeric_from_snapshot() -> Callable[[Series], bool]:
    types = field_types()

    def numeric(series: Series) -> bool:
        return set(types[series.measurement][series.field]) != {"str"}

    return numeric


def datasource_file(language: Language, url: str, database: str) -> dict[str, object]:
    source: dict[str, object] = {"name": "vigie", "uid": DATASOURCE_UID, "type": language, "access": "proxy",
                                 "url": url, "isDefault": True, "editable": True}
    if language == "influxdb":
        source["jsonData"] = {"dbName": database, "httpMode": "GET"}
    return {"apiVersion": 1, "datasources": [source]}


def provider_file(dashboards_dir: Path) -> dict[str, object]:
    return {"apiVersion": 1, "providers": [{
        "name": "vigie", "folder": "vigie", "type": "file", "disableDeletion": False, "allowUiUpdates": False,
        "updateIntervalSeconds": 60, "options": {"path": str(dashboards_dir), "foldersFromFilesStructure": False},
    }]}


def write(out: Path, language: Language, url: str | None = None, database: str = "vigie") -> list[str]:
    """Writes everything; returns the panels left out of this language's build (and why)."""
    numeric = numeric_from_snapshot()
    boards = out / "dashboards"
    boards.mkdir(parents=True, exist_ok=True)
    left_out: list[str] = []
    for spec in DASHBOARDS:
        built = build(spec, language, numeric)
        (boards / f"{spec.uid}.json").write_text(built.to_json() + "\n", encoding="utf-8")
        left_out += built.left_out
    provisioning = out / "provisioning"
    for kind, content in (("datasources", datasource_file(language, url or DEFAULT_URLS[language], database)),
                          ("dashboards", provider_file(boards.resolve()))):
        (provisioning / kind).mkdir(parents=True, exist_ok=True)
        (provisioning / kind / "vigie.yaml").write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return left_out


def _build(args: argparse.Namespace) -> int:
    left_out = write(args.out, args.datasource, args.url, args.database)
    print(f"{len(DASHBOARDS)} dashboards ({args.datasource}) in {args.out / 'dashboards'}; "
          f"provisioning in {args.out / 'provisioning'}")
    for line in left_out:
        print(f"left out: {line}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dashboards = subparsers.add_parser("dashboards", help="Grafana dashboards for vigie's measurements")
    commands = dashboards.add_subparsers(dest="dashboards_command", required=True)
    p = commands.add_parser("build", help="write the dashboards' JSON and Grafana provisioning files")
    p.add_argument("--out", type=Path, required=True, help="directory to write (created)")
    p.add_argument("--datasource", choices=LANGUAGES, default="influxdb",
                   help="query language: influxdb (InfluxQL) or prometheus (PromQL, e.g. VictoriaMetrics)")
    p.add_argument("--url", default=None, help="the data source's URL in the provisioning file "
                   f"(default {DEFAULT_URLS['influxdb']} / {DEFAULT_URLS['prometheus']})")
    p.add_argument("--database", default="vigie", help="InfluxDB database (2.x: mapped to the bucket by DBRP)")
    p.set_defaults(func=_build)
