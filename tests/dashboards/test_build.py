"""`vigie dashboards build` as an operator runs it: the dashboards' JSON and Grafana's provisioning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.build import DEVICE_DASHBOARD
from dashboards.catalog import DASHBOARDS
from dashboards.cli import write

VIGIE = str(Path(sys.executable).with_name("vigie"))


def run_build(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([VIGIE, "dashboards", "build", "--out", str(out), *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def boards(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "dashboards").glob("*.json")}


def targets(board: dict) -> list[dict]:
    return [t for panel in board["panels"] for t in panel.get("targets", [])]


@pytest.mark.parametrize("language", ["influxdb", "prometheus"])
def test_build_writes_every_dashboard_and_the_provisioning_grafana_loads(tmp_path: Path, language: str) -> None:
    if language == "prometheus":  # once as an operator runs it: the command, its entry point, its output
        left_out = run_build(tmp_path, "--datasource", language, "--url", "http://127.0.0.1:9999").stderr
    else:
        left_out = "".join(f"left out: {line}\n" for line in write(tmp_path, language, "http://127.0.0.1:9999"))
    written = boards(tmp_path)
    assert set(written) == {spec.uid for spec in DASHBOARDS}
    provider = yaml.safe_load((tmp_path / "provisioning" / "dashboards" / "vigie.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str((tmp_path / "dashboards").resolve())
    (source,) = yaml.safe_load((tmp_path / "provisioning" / "datasources" / "vigie.yaml").read_text())["datasources"]
    assert (source["type"], source["uid"], source["url"]) == (language, "vigie", "http://127.0.0.1:9999")
    for uid, board in written.items():
        assert [v["name"] for v in board["templating"]["list"]] == ["client", "site", "device"], uid
        assert targets(board), uid
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": language, "uid": "vigie"}, (uid, panel["title"])
    queries = [t for board in written.values() for t in targets(board)]
    if language == "influxdb":
        assert all("query" in t or t.get("type") == "math" for t in queries)
        assert any(t.get("type") == "math" for t in queries)  # availability: two counts and their ratio
        assert left_out == ""
    else:
        assert all(t["expr"] for t in queries)
        # string fields have no PromQL form: their panels are left out, and said
        assert "left out: vigie-backups: 'Last result'" in left_out


def test_a_device_panel_links_to_the_device_dashboard_with_the_series_client_and_device(tmp_path: Path) -> None:
    write(tmp_path, "prometheus")
    written = boards(tmp_path)
    assert DEVICE_DASHBOARD in written
    traffic = next(p for p in written["vigie-network"]["panels"] if p["title"] == "Traffic in")
    (link,) = traffic["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith(f"/d/{DEVICE_DASHBOARD}?var-client=${{__field.labels.client}}"
                                  "&var-device=${__field.labels.device}")


def test_the_json_reads_back_as_grafana_foundation_sdk_dashboards(tmp_path: Path) -> None:
    write(tmp_path, "influxdb")
    for uid, board in boards(tmp_path).items():
        model = Dashboard.from_json(board)
        assert (model.uid, len(model.panels or [])) == (uid, len(board["panels"]))
