"""A small lab for the web app's tests: the lab's SNMP responder playing four recorded devices of
two clients (alpha, beta), a real agent polling them, faults as the lab injects them (a device
gone silent), and the web users of both clients and the NOC."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from agent.config import Config, load_config
from agent.plugins import Plugins
from lab.processes import Child
from lab.walks import recording

# community -> recording; the community is "<client>/<device>" as in the lab's estates
DEVICES = {
    "alpha/alpha-core": "iosxe_c9300",
    "alpha/alpha-fw": "asa",
    "beta/beta-srv-zz": "linux_lsi",
    "beta/beta-nas-zz": "qnap",
}
PASSWORDS = {"noc": "noc-password-123", "dsi-alpha": "alpha-password-123", "dsi-beta": "beta-password-123"}
TOKENS = {"dsi-alpha": "alpha-token-0123456789abcdef", "dsi-beta": "beta-token-0123456789abcdef"}
# argon2 at its lowest cost: every login of the tests verifies one (the agent's own hashes, made by
# `vigie web hash-password`, carry the library's default cost; a hash names its own parameters)
_HASHES = {name: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)
           for name, password in PASSWORDS.items()}


@dataclass
class Responder:
    port: int
    effects: Path

    def silence(self, *communities: str) -> None:
        """The lab's fault `down`: the devices drop every request (written atomically, seen at once)."""
        staged = self.effects.with_suffix(".tmp")
        staged.write_text(json.dumps([{"community": c, "silent": True} for c in communities]))
        os.replace(staged, self.effects)


@pytest.fixture(scope="session")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Responder]:
    directory = tmp_path_factory.mktemp("snmp")
    devices = directory / "devices.json"
    devices.write_text(json.dumps({c: str(recording(name)) for c, name in DEVICES.items()}))
    effects = directory / "effects.json"
    effects.write_text("[]")
    child = Child("responder", [sys.executable, "-m", "lab.snmp_responder", "--devices", str(devices),
                                "--effects", str(effects), "--listen", "127.0.0.1:0"],
                  log=directory / "responder.log", stdout_pipe=True)
    child.start()
    try:
        ready = child.read_line(60)
        port = int(re.search(r"udp 127\.0\.0\.1:(\d+)", ready).group(1))  # type: ignore[union-attr]
        yield Responder(port, effects)
    finally:
        child.stop()


def lab_config(tmp_path: Path, responder: Responder, *, web_listen: str | None = None,
               refresh_s: float = 30, interval_s: float = 2) -> Config:
    """Two clients of two devices each, polled every ``interval_s`` over SNMP, tickets in the
    built-in log; ``device_unreachable`` fires at the first silent poll and ``backup_coverage_gap``
    at the first gap (the lab's pace)."""
    devices = {}
    for community in DEVICES:
        client, device = community.split("/")
        devices.setdefault(client, []).append(
            f"{{name: {device}, address: 127.0.0.1, port: {responder.port}, credentials: lab-{device},"
            f" collectors: {{snmp: }}}}")
    clients = ""
    for client, lines in devices.items():
        display = "Beta Secret Corp" if client == "beta" else "Alpha Hospital"
        clients += textwrap.dedent(f"""\
          - name: {client}
            display_name: {display}
            rules: [{{name: device_unreachable, for_s: 0}}, {{name: backup_coverage_gap, for_s: 0}}]
            sites:
              - name: {client}-site
                devices:
        """)
        clients += "".join(f"              - {line}\n" for line in lines)
    web = ""
    if web_listen is not None:
        web = f"  web_listen: \"{web_listen}\"\n"
    users = textwrap.dedent(f"""\
      web:
        refresh_s: {refresh_s}
        users:
          - {{name: noc, role: noc, password_hash: "{_HASHES['noc']}"}}
          - {{name: dsi-alpha, role: dsi, client: alpha, password_hash: "{_HASHES['dsi-alpha']}",
             token: {{secret: web-alpha}}}}
          - {{name: dsi-beta, role: dsi, client: beta, password_hash: "{_HASHES['dsi-beta']}",
             token: {{secret: web-beta}}}}
    """)
    text = (f"agent:\n  state_dir: {tmp_path / 'state'}\n{web}"
            + textwrap.indent(users, "  ")
            + f"defaults:\n  interval_s: {interval_s}\n  timeout_s: {min(3.0, interval_s)}\n  jitter_s: 0\n"
            + "  collectors:\n    snmp: {profile: auto, retries: 1, timeout_s: 1}\n"
            + "clients:\n" + clients)
    path = tmp_path / "vigie.yaml"
    path.write_text(text)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("".join(f"lab-{c.split('/')[1]}: {{community: {c}}}\n" for c in DEVICES)
                       + f"web-alpha: {TOKENS['dsi-alpha']}\nweb-beta: {TOKENS['dsi-beta']}\n")
    secrets.chmod(0o600)
    return load_config(path, secrets, environ={}, plugins=Plugins.discover())
