"""The Ansible role for real: ansible-lint (production profile), two runs into a scratch root (the
second changes nothing), a config that `vigie check-config` refuses left out, and the rendered
unit checked by systemd-analyze (verify, and the security exposure, printed and below 3.0).

The role runs against localhost (connection local) with `vigie_root` set to a scratch directory:
nothing is written to the real /opt, /etc or systemd. What needs a real systemd (enabling and
starting the service, daemon-reload and restart handlers) is skipped by `vigie_manage_service:
false`, and no account is created (`vigie_create_user: false`): the service account is Debian's
existing `daemon`. systemd-analyze reads the unit under the same root (`--root`), where the test
lays a copy of the host's /usr/lib/systemd/system for the targets the unit names.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOK = Path(__file__).with_name("scratch.yml")
USER = GROUP = "daemon"
EXPOSURE_LIMIT = 3.0

pytestmark = pytest.mark.timeout(600)

CONFIG = {
    "agent": {"store": {"kind": "sqlite", "retention_days": 30}},
    "clients": [
        {
            "name": client,
            "display_name": client.upper(),
            "sites": [{"name": "hq", "devices": [
                {"name": "gw", "address": "127.0.0.1", "credentials": f"{client}-gw",
                 "collectors": {"snmp": {"profile": "auto"}}},
            ]}],
        }
        for client in ("acme", "globex")
    ],
}
SECRETS = {"acme-gw": {"community": "acme-canary-community"}, "globex-gw": {"community": "globex-canary"}}


def role_vars(root: Path, source: Path, **overrides: object) -> dict[str, object]:
    return {
        "vigie_root": str(root),
        "vigie_source_dir": str(source),
        "vigie_user": USER,
        "vigie_group": GROUP,
        "vigie_create_user": False,
        "vigie_manage_service": False,
        "vigie_shard": ["acme"],
        "vigie_config": CONFIG,
        "vigie_secrets": SECRETS,
        "vigie_grafana_dashboards": True,
        "vigie_grafana_group": GROUP,
        "vigie_grafana_datasource": "prometheus",
        "vigie_grafana_datasource_url": "http://127.0.0.1:8428",
        **overrides,
    }


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.returncode = done.returncode
        self.output = done.stdout + done.stderr
        recap = re.search(r"^scratch\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                          done.stdout, re.M)
        assert recap, self.output
        self.ok, self.changed, self.unreachable, self.failed = map(int, recap.groups())

    def changed_tasks(self) -> list[str]:
        """The tasks that reported a change, for the failure message."""
        changed, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.split("[", 1)[1].split("]", 1)[0]
            elif line.startswith("changed:"):
                changed.append(task)
        return changed


def play(tmp: Path, variables: dict[str, object], name: str) -> Run:
    vars_file = tmp / f"{name}.json"
    vars_file.write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"), "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"),
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "scratch,", str(PLAYBOOK), "-e", f"@{vars_file}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540,
    )
    (tmp / f"{name}.log").write_text(done.stdout + done.stderr)
    return Run(done)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, list[Run]]:
    """The role run twice into a scratch root, from a snapshot of the repository's HEAD (the shared
    working tree may change between the two runs; the wheel must not)."""
    tmp = tmp_path_factory.mktemp("ansible")
    source = tmp / "src"
    source.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    root = tmp / "root"
    for directory in ("etc", "opt", "var/lib", "usr/lib/systemd"):
        (root / directory).mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    runs = [play(tmp, role_vars(root, source), f"run{i}") for i in (1, 2)]
    return tmp, root, source, runs


def test_ansible_lint_production_profile() -> None:
    done = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor", ".",
         str(PLAYBOOK)],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_second_run_changes_nothing(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    first, second = deployed[3]
    assert first.returncode == 0 and first.failed == 0, first.output
    assert first.changed >= 6, first.output  # directories, wheel, virtualenv, secrets, config, unit
    assert second.returncode == 0 and second.failed == 0, second.output
    assert second.changed == 0, (second.changed_tasks(), second.output)
    print(f"\nrole: first run ok={first.ok} changed={first.changed}; second run ok={second.ok} changed=0")


def test_files_owned_and_private(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    _, root, _, _ = deployed
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid

    def owner_mode(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    secrets = root / "etc/vigie/secrets.yaml"
    assert owner_mode(secrets) == (uid, gid, 0o600)
    assert yaml.safe_load(secrets.read_text()) == SECRETS
    config_file = root / "etc/vigie/vigie.yaml"
    assert owner_mode(config_file) == (0, gid, 0o640)
    assert owner_mode(root / "etc/vigie") == (0, gid, 0o750)
    assert owner_mode(root / "var/lib/vigie") == (uid, gid, 0o750)
    config = yaml.safe_load(config_file.read_text())
    assert config["agent"]["state_dir"] == "/var/lib/vigie"
    assert config["agent"]["shard"] == ["acme"]
    assert config["clients"] == CONFIG["clients"]
    assert "canary" not in config_file.read_text()
    # the code belongs to root: the service account can run it, not change it
    assert owner_mode(root / "opt/vigie/venv/bin/vigie")[0] == 0


def test_installed_vigie_accepts_the_rendered_config(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    _, root, _, _ = deployed
    done = subprocess.run(
        [str(root / "opt/vigie/venv/bin/vigie"), "check-config", str(root / "etc/vigie/vigie.yaml"),
         "--secrets", str(root / "etc/vigie/secrets.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 client(s), 1 poll(s)" in done.stdout  # polls of the shard only: acme's


def test_dashboards_provisioned(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    _, root, _, _ = deployed
    gid = grp.getgrnam(GROUP).gr_gid
    boards = sorted((root / "var/lib/grafana/dashboards/vigie").glob("*.json"))
    assert len(boards) >= 10, boards
    for board in boards:
        model = json.loads(board.read_text())
        assert model["uid"].startswith("vigie"), board
        assert board.stat().st_gid == gid and stat.S_IMODE(board.stat().st_mode) == 0o640
    provisioning = root / "etc/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/vigie.yaml").read_text())["datasources"][0]
    assert (datasource["uid"], datasource["type"], datasource["url"]) == ("vigie", "prometheus", "http://127.0.0.1:8428")
    provider = yaml.safe_load((provisioning / "dashboards/vigie.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/vigie"
    # every panel's datasource is the provisioned one
    panels = [panel for board in boards for panel in json.loads(board.read_text()).get("panels", [])]
    assert panels and all(panel["datasource"]["uid"] == "vigie" for panel in panels if panel.get("datasource"))


def test_systemd_analyze_verify(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    _, root, _, _ = deployed
    unit = (root / "etc/systemd/system/vigie.service").read_text()
    for line in ("Type=notify", "WatchdogSec=60", "User=daemon", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/vigie",
                 "AmbientCapabilities=CAP_NET_RAW CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_BIND_SERVICE",
                 "ExecStart=/opt/vigie/venv/bin/vigie run --config /etc/vigie/vigie.yaml "
                 "--secrets /etc/vigie/secrets.yaml"):
        assert line in unit.splitlines(), line
    done = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "vigie.service"],
                          capture_output=True, text=True, timeout=120)
    # an unknown key or a missing binary is only a warning on stderr: none is allowed
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stdout + done.stderr


def test_systemd_analyze_security_exposure(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    _, root, _, _ = deployed
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager",
                           "vigie.service"], capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for vigie\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    exposure = float(found.group(1))
    print(f"\nsystemd-analyze security vigie.service: exposure {exposure} (limit {EXPOSURE_LIMIT})")
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith("✗")))
    assert exposure < EXPOSURE_LIMIT


def test_a_refused_config_is_not_installed(deployed: tuple[Path, Path, Path, list[Run]]) -> None:
    """A config naming a secret that the secrets file lacks: `vigie check-config` refuses it in the
    template's validation, the play fails, the config in use stays as it was."""
    tmp, root, source, _ = deployed
    config_file = root / "etc/vigie/vigie.yaml"
    before = config_file.read_bytes()
    broken = json.loads(json.dumps(CONFIG))
    broken["clients"][0]["sites"][0]["devices"][0]["credentials"] = "no-such-secret"
    run = play(tmp, role_vars(root, source, vigie_config=broken), "refused")
    assert run.returncode != 0 and run.failed == 1, run.output
    assert "failed to validate" in run.output and "no-such-secret" in run.output, run.output
    assert config_file.read_bytes() == before
