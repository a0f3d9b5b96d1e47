"""The real agent as a subprocess, the estate it reads, and what it leaves in its state directory.

Every wait polls for an outcome with a generous deadline (`DEADLINE_S`): under CPU load a step
takes longer, never a different path. No assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alerting.notifier import CRASH_ENV

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
POLL_S = 0.2

# Lab walk used by the alert tests: TP-Link JetStream T1600G-28TS, small, with interfaces.
WALK = "jetstream_t1600g-28ts"
UP_IF_INDEX = 49175  # gigabitEthernet 1/0/23: admin up, oper up in the recording
UP_IF_NAME = "gigabitEthernet 1/0/23"

APP_TOKEN = "e2e-app-token"
USER_TOKEN = "e2e-user-token"


# -- estate -----------------------------------------------------------------------------------


def device(name: str, port: int, *, interval_s: float = 2, timeout_s: float = 2) -> dict[str, Any]:
    """A lab device, written as docs/CONFIGURATION.md's lab convention says (secret
    `lab-<client>-<device>`, filled in by :func:`write_estate`)."""
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "collectors": {"snmp": {"profile": "auto", "retries": 1, "timeout_s": 1}},
        "interval_s": interval_s,
        "timeout_s": timeout_s,
        "jitter_s": 0,
    }


def uplink_rule(if_name: str = UP_IF_NAME) -> dict[str, Any]:
    return {
        "name": "uplink_down",
        "measurement": "snmp_interface",
        "when": "admin_status == 'up' and oper_status == 'down'",
        "match": {"if_name": f"~^{if_name}$"},
        "for_s": 0,
        "severity": "critical",
        "summary": "{device} {if_name} down",
    }


def unreachable_rule(for_s: float = 3) -> dict[str, Any]:
    return {
        "name": "device_unreachable",
        "measurement": "collection",
        "when": "status in ('unreachable', 'timeout')",
        "for_s": for_s,
        "severity": "critical",
        "summary": "{device} unreachable",
    }


def glpi_ticketing(url: str, client: str) -> dict[str, Any]:
    return {
        "kind": "glpi",
        "url": url,
        "app_token": {"secret": f"{client}-glpi-app"},
        "user_token": {"secret": f"{client}-glpi-user"},
        "entity_id": 0,
    }


def write_estate(
    directory: Path,
    clients: Mapping[str, Sequence[dict[str, Any]]],
    rules: Sequence[dict[str, Any]],
    ticketing: Mapping[str, dict[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """config.yaml + secrets.yaml (mode 0600) for ``clients`` (client -> devices, one site each);
    ``settings``: more top-level keys (``ticket_grouping``...)."""
    secrets: dict[str, Any] = {}
    config_clients = []
    for client, devices in clients.items():
        for dev in devices:
            dev["credentials"] = f"lab-{client}-{dev['name']}"
            secrets[dev["credentials"]] = {"community": f"{client}/{dev['name']}"}
        entry: dict[str, Any] = {
            "name": client,
            "display_name": client.upper(),
            "sites": [{"name": "hq", "devices": list(devices)}],
        }
        if ticketing and client in ticketing:
            entry["ticketing"] = ticketing[client]
            secrets[f"{client}-glpi-app"] = APP_TOKEN
            secrets[f"{client}-glpi-user"] = USER_TOKEN
        config_clients.append(entry)
    config = {
        "agent": {"state_dir": str(directory / "unused-state"), "store": {"kind": "sqlite"}},
        "rules": list(rules),
        "clients": config_clients,
        **(settings or {}),
    }
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path = directory / "secrets.yaml"
    secrets_path.write_text(yaml.safe_dump(secrets, sort_keys=False))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


# -- the agent process ------------------------------------------------------------------------


def vigie(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    """One `vigie` command, run to completion."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV and not k.startswith("VIGIE_SECRET_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class AgentProcess:
    """`vigie run` in a subprocess; its output goes to a log file the failures print."""

    def __init__(
        self,
        config: Path,
        secrets: Path,
        state_dir: Path,
        *,
        clients: str | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "agent",
    ) -> None:
        self.args = ["run", "--config", str(config), "--secrets", str(secrets), "--state-dir", str(state_dir)]
        if clients:
            self.args += ["--clients", clients]
        self.state_dir = state_dir
        self.env = _env(env)
        self.log_path = state_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> AgentProcess:
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"===== run {self.runs}: vigie {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> int:
        """SIGKILL (no clean-up of any kind), then reap."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        return await asyncio.to_thread(self.proc.wait, DEADLINE_S)

    async def terminate(self) -> int:
        """SIGTERM: the agent's own graceful stop. Waits off the event loop: the agent's last words
        (solving, killSession) may go to a fake served by this loop."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, DEADLINE_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agent did not stop on SIGTERM\n{self.log_text()}") from None

    def ensure_stopped(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=DEADLINE_S)

    def log_text(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]


async def eventually(
    predicate: Callable[[], Any],
    what: str,
    *,
    agents: Sequence[AgentProcess] = (),
    deadline_s: float = DEADLINE_S,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with the agents' logs after the
    deadline, or at once when an agent that should be running has exited. Yields to the event
    loop between tries, so an in-process fake GLPI keeps serving."""
    limit = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if result:
            return result
        for agent in agents:
            if not agent.alive:
                code = agent.proc.returncode if agent.proc else None
                raise AssertionError(f"agent exited ({code}) while waiting for {what}\n{agent.log_text()}")
        if time.monotonic() > limit:
            logs = "\n".join(agent.log_text() for agent in agents)
            raise AssertionError(f"gave up waiting {deadline_s:.0f} s for {what}\n{logs}")
        await asyncio.sleep(POLL_S)


# -- what the agent left on disk --------------------------------------------------------------


def query_sqlite(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read one of the agent's SQLite files while it may be writing it (WAL: readers never block
    it); a missing file or a schema not created yet reads as no rows."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(path, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc) or "locked" in str(exc):
            return []
        raise


def collections(state_dir: Path, client: str, dev: str, since_ns: int = 0) -> list[tuple[int, str]]:
    """(timestamp_ns, status) of every `collection` sample of a device in the samples store."""
    return query_sqlite(
        state_dir / "samples.sqlite",
        "SELECT p.ts, p.value FROM point_str p"
        " JOIN field f ON f.id = p.field_id AND f.name = 'status'"
        " JOIN series s ON s.id = p.series_id AND s.measurement = 'collection'"
        " JOIN series_tag c ON c.series_id = s.id AND c.key = 'client' AND c.value = ?"
        " JOIN series_tag d ON d.series_id = s.id AND d.key = 'device' AND d.value = ?"
        " WHERE p.ts >= ? ORDER BY p.ts",
        (client, dev, since_ns),
    )


def interface_oper(state_dir: Path, client: str, dev: str, if_name: str) -> str | None:
    """The last `oper_status` the agent stored for one interface (state rollups)."""
    rows = query_sqlite(
        state_dir / "state.sqlite",
        "SELECT l.value FROM latest l JOIN series s ON s.id = l.series_id"
        " WHERE s.measurement = 'snmp_interface' AND l.field = 'oper_status'"
        " AND json_extract(s.tags, '$.client') = ? AND json_extract(s.tags, '$.device') = ?"
        " AND json_extract(s.tags, '$.if_name') = ?",
        (client, dev, if_name),
    )
    return rows[0][0] if rows else None


def ticket_links(state_dir: Path) -> list[tuple[str, str, str | None, int]]:
    """(rule, state, ticket_id, reused) of every row of the dispatcher's outbox."""
    return query_sqlite(
        state_dir / "ticket-outbox.sqlite",
        "SELECT rule, state, ticket_id, reused FROM ticket_links ORDER BY queued_at",
    )


async def polls_after(
    state_dir: Path, client: str, dev: str, count: int, *, since_ns: int, agents: Sequence[AgentProcess] = ()
) -> list[tuple[int, str]]:
    """Wait until the device has been polled ``count`` times since ``since_ns``."""
    return await eventually(
        lambda: (rows := collections(state_dir, client, dev, since_ns)) and len(rows) >= count and rows,
        f"{count} poll(s) of {client}/{dev}",
        agents=agents,
    )
