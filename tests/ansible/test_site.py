"""The site playbook's inventory: the example splits the clients between its pollers, and the shard
check refuses a client owned twice or by none (it would be ticketed twice, or not watched)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent


def check_shards(inventory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE / "check-shards.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_example_inventory_splits_the_clients() -> None:
    done = check_shards(ANSIBLE / "inventory/example")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 pollers own the 3 clients once each" in done.stdout


@pytest.mark.parametrize(("shards", "culprit"), [
    ({"poller-a": ["vsgp", "ofdt"], "poller-b": ["ofdt", "mlhg"]}, "owned twice"),
    ({"poller-a": ["vsgp"], "poller-b": ["mlhg"]}, "left out"),
])
def test_bad_shards_are_refused(tmp_path: Path, shards: dict[str, list[str]], culprit: str) -> None:
    example = ANSIBLE / "inventory/example"
    inventory = tmp_path / "inventory"
    (inventory / "group_vars/vigie_pollers").mkdir(parents=True)
    (inventory / "group_vars/all.yml").write_text((example / "group_vars/all.yml").read_text())
    (inventory / "group_vars/vigie_pollers/main.yml").write_text(
        (example / "group_vars/vigie_pollers/main.yml").read_text())
    hosts = {"all": {"children": {"vigie_pollers": {"hosts": {
        name: {"vigie_shard": owned} for name, owned in shards.items()}}}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    done = check_shards(inventory)
    assert done.returncode != 0, (culprit, done.stdout)
    assert "must own each client of" in done.stdout, done.stdout


def test_every_variable_documented() -> None:
    """defaults/main.yml holds every variable of the role, each preceded by its comment, and the
    role's README names each one."""
    role = ANSIBLE / "roles/vigie"
    lines = (role / "defaults/main.yml").read_text().splitlines()
    defaults = yaml.safe_load("\n".join(lines))
    readme = (role / "README.md").read_text()
    assert defaults and all(name.startswith("vigie_") for name in defaults)
    assert [name for name in defaults if f"`{name}`" not in readme] == []
    undocumented = []
    for i, line in enumerate(lines):
        if line.startswith("vigie_"):
            above = next((lines[j] for j in range(i - 1, -1, -1) if not lines[j].startswith("vigie_")), "")
            if not above.startswith("#"):
                undocumented.append(line.split(":", 1)[0])
    assert undocumented == []
