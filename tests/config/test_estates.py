"""The three estates drive the demo and the other tests: they must load clean and stay generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.inventory import build_polls
from lab.estates.generate import render_all

from .conftest import ESTATES

RECORDINGS = {p.stem for p in (ESTATES.parent / "snmprec").glob("*.snmprec")}


@pytest.mark.parametrize("name", ["mlhg", "ofdt", "vsgp", "vsgp-demo"])
def test_estate_loads_and_every_lab_device_has_a_recording(name: str, lab_secrets: Path) -> None:
    config = load_config(ESTATES / f"{name}.yaml", lab_secrets, environ={})
    polls = build_polls(config)
    assert polls
    for poll in polls:
        if poll.collector != "snmp":
            continue
        client, device = poll.target.tags["client"], poll.target.name
        assert poll.target.address == "127.0.0.1"
        assert poll.target.port == 1161
        # the lab convention: community = <client>/<device>
        assert poll.target.credentials == {"community": f"{client}/{device}"}
        lab = config.device(client, device).extensions.get("x-lab")
        assert lab is not None and lab["walk"] in RECORDINGS


def test_estate_counts_follow_the_tenders(lab_secrets: Path) -> None:
    vsgp = load_config(ESTATES / "vsgp.yaml", lab_secrets, environ={})
    devices = [d for _, d in vsgp.client("vsgp").devices()]
    switch_models = ("C9", "WS-C2960L", "TP-SG", "S5212F")
    assert sum(1 for d in devices if d.tags.get("model", "").startswith(switch_models)) == 147
    assert sum(1 for d in devices if d.tags.get("role") == "ups") == 7
    assert sum(1 for d in devices if d.tags.get("model") == "FPR-2120") == 2
    mlhg = load_config(ESTATES / "mlhg.yaml", lab_secrets, environ={})
    assert len([s for s in mlhg.client("mlhg").sites if s.name not in ("luckybus", "cloud")]) == 8


def test_lab_port_comes_from_the_environment(lab_secrets: Path) -> None:
    config = load_config(ESTATES / "vsgp-demo.yaml", lab_secrets, environ={"VIGIE_LAB_SNMP_PORT": "16100"})
    assert {p.target.port for p in build_polls(config) if p.collector == "snmp"} == {16100}


@pytest.mark.parametrize("estate", ["mlhg.yaml", "ofdt.yaml", "vsgp.yaml", "vsgp-demo.yaml"])
def test_every_collector_the_estates_name_is_installed(lab_secrets: Path, estate: str) -> None:
    # a collector not installed would load with a warning and its devices go unwatched
    assert load_config(ESTATES / estate, lab_secrets, environ={}).warnings == []


def test_generated_files_are_up_to_date() -> None:
    for path, text in render_all().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m lab.estates.generate"
