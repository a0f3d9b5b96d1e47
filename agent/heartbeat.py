"""Who watches the watcher: agents sharding a NOC (one per group of clients, ``agent.shard``) beat in
a shared place and ticket a peer that fell silent.

Each agent, every ``agent.heartbeat_interval_s``, writes its own row in ``heartbeats.db`` (SQLite)
under ``agent.heartbeat_dir`` — a directory every agent reaches (a local disk for agents on one
host; a shared mount otherwise) — and reads the others'. For each peer it emits a ``vigie_peer``
sample (``up`` false once the peer has not beaten for ``agent.heartbeat_timeout_s``); the built-in
rule ``agent_silent`` fires on it and the ticket goes to the NOC's receiver: ``agent.noc_client``
when this agent serves that client, else the first client this agent serves. The peer's next beat
resolves the alert (its ticket is solved). When the shared place itself cannot be written or read,
the agent's own ``vigie_heartbeat`` sample says so (``ok`` false) and ``supervision_down`` fires:
supervision that is down raises a ticket itself. Limit: when every agent is down, nobody tickets;
the systemd watchdog (agent/watchdog.py) restarts a hung one on its host.

One short connection per beat, rollback journal (not WAL, which needs shared memory a network mount
does not give): a removed or remounted file is picked up again at the next beat.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from agent.api import Sample

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeats.db"
PEER = "vigie_peer"
OWN = "vigie_heartbeat"
# A beat that waits on another agent's write longer than this is a failed beat, not a hang.
LOCK_TIMEOUT_S = 5.0


def device_name(agent: str) -> str:
    """The ``device`` tag the samples about ``agent`` carry: not an inventory device of the client."""
    return f"vigie-agent-{agent}"


class Heartbeat:
    def __init__(
        self,
        directory: Path,
        agent: str,
        clients: list[str],
        noc_client: str,
        timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.path = Path(directory) / HEARTBEAT_FILE
        self.agent = agent
        self.clients = ",".join(clients)
        self.noc_client = noc_client
        self.timeout_s = timeout_s
        self.clock = clock
        self._started_at = clock()

    def beat(self) -> list[Sample]:
        """Write this agent's beat, read the peers': a ``vigie_peer`` sample per peer and this agent's
        own ``vigie_heartbeat``. Never raises: a failure is the ``ok: false`` sample."""
        now = self.clock()
        at = int(now * 1e9)
        own_tags = {"client": self.noc_client, "device": device_name(self.agent), "agent": self.agent}
        try:
            peers = self._write_and_read(now)
        except (OSError, sqlite3.Error) as exc:
            log.warning("heartbeat: %s: %s: peers are not supervised", self.path, exc)
            return [Sample(OWN, own_tags, {"ok": False, "error": f"{self.path}: {exc}", "peers": None}, at)]
        samples = [Sample(OWN, own_tags, {"ok": True, "error": "", "peers": len(peers)}, at)]
        for agent, clients, beat_at, stopped in peers:
            silent_s = max(0.0, now - beat_at)
            samples.append(Sample(
                PEER,
                {"client": self.noc_client, "device": device_name(agent), "agent": agent},
                {"up": silent_s <= self.timeout_s, "silent_s": round(silent_s, 1), "stopped": bool(stopped),
                 "clients": clients},
                at,
            ))
        return samples

    def stopped(self) -> None:
        """Marks this agent stopped on purpose (its peers still ticket the silence: nobody watches its
        clients meanwhile, but the ticket says it was a stop, not a crash)."""
        try:
            with self._connect() as db:
                db.execute("UPDATE heartbeat SET stopped = 1, beat_at = ? WHERE agent = ?", (self.clock(), self.agent))
        except (OSError, sqlite3.Error) as exc:
            log.warning("heartbeat: %s: could not record the stop: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
        db.execute(
            "CREATE TABLE IF NOT EXISTS heartbeat (agent TEXT PRIMARY KEY, clients TEXT NOT NULL,"
            " beat_at REAL NOT NULL, started_at REAL NOT NULL, stopped INTEGER NOT NULL DEFAULT 0)"
        )
        return db

    def _write_and_read(self, now: float) -> list[tuple[str, str, float, int]]:
        db = self._connect()
        try:
            with db:
                db.execute(
                    "INSERT INTO heartbeat (agent, clients, beat_at, started_at, stopped) VALUES (?, ?, ?, ?, 0)"
                    " ON CONFLICT (agent) DO UPDATE SET clients = excluded.clients, beat_at = excluded.beat_at,"
                    " started_at = excluded.started_at, stopped = 0",
                    (self.agent, self.clients, now, self._started_at),
                )
            return db.execute(
                "SELECT agent, clients, beat_at, stopped FROM heartbeat WHERE agent != ? ORDER BY agent", (self.agent,)
            ).fetchall()
        finally:
            db.close()
