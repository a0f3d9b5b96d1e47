"""The vigie wheel installed in production carries no lab: no simulator, no vendor fake, no GPL
device walk (they are the vigie-lab distribution, lab/pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_vigie_wheel_has_no_lab(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), ROOT],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("vigie-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "agent", "alerting", "collectors", "dashboards", "probes", wheel.name.split("-py")[0] + ".dist-info"
    }
    assert not [name for name in names if name.endswith(".snmprec")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lab" not in zipfile.ZipFile(wheel).read(entry_points).decode()
    # the SNMP profiles and rules, data of the collector, are in
    assert any(name.startswith("collectors/snmp/profiles/rules/") for name in names)
