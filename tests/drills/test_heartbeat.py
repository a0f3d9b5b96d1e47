"""Who watches the watcher: two `vigie run` processes, one per client (shards), beat in a shared
directory; the one SIGKILLed is ticketed by its peer to the NOC's client, solved when it is back;
a shared place that cannot be reached raises `supervision_down` on the agent itself."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from agent.config.schema import BUILTIN_RULES, AgentSettings
from agent.heartbeat import OWN, PEER, Heartbeat, device_name
from alerting.engine import AlertEngine
from tests.e2e.helpers import AgentProcess, device, eventually, query_sqlite, ticket_links, write_estate

NOC, OTHER = "noc", "beta"
INTERVAL_S, TIMEOUT_S = 0.3, 1.5


def shards(tmp_path: Path) -> tuple[Path, Path]:
    # a device each, on a port nobody answers: an agent needs something to poll
    config, secrets = write_estate(tmp_path, {NOC: [device("sw", 9, interval_s=60)],
                                              OTHER: [device("sw", 9, interval_s=60)]}, [])
    raw = yaml.safe_load(config.read_text())
    del raw["rules"]  # the built-in rules, agent_silent among them
    raw["agent"].update(heartbeat_dir=str(tmp_path / "shared"), heartbeat_interval_s=INTERVAL_S,
                        heartbeat_timeout_s=TIMEOUT_S, noc_client=NOC)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config, secrets


def silent_tickets(state: Path) -> list[tuple[str, str, str | None, int]]:
    return [link for link in ticket_links(state) if link[0] == "agent_silent"]


async def test_a_silent_agent_is_ticketed_by_its_peer_and_solved_when_it_beats_again(tmp_path: Path) -> None:
    config, secrets = shards(tmp_path)
    watcher = AgentProcess(config, secrets, tmp_path / "noc-state", clients=NOC, name="noc")
    watched = AgentProcess(config, secrets, tmp_path / "beta-state", clients=OTHER, name="beta")
    beats = tmp_path / "shared" / "heartbeats.db"
    try:
        watcher.start()
        watched.start()
        await eventually(lambda: len(query_sqlite(beats, "SELECT agent FROM heartbeat")) == 2, "both agents' beats",
                         agents=[watcher, watched])
        await watched.kill()
        killed_at = time.time()
        await eventually(lambda: silent_tickets(watcher.state_dir), "the peer's agent_silent alert", agents=[watcher])
        alerted_at = time.time()
        # silence -> alert: the timeout, a beat, the engine; 2 minutes at the defaults. The bound is loose on
        # purpose (a loaded CI machine): what it catches is a silence never noticed, not a slow second.
        assert alerted_at - killed_at <= TIMEOUT_S + 2 * INTERVAL_S + 15.0
        # the link is written 'opening' before the ITSM is called, 'open' once it answered
        (_, state, ticket, _), = await eventually(
            lambda: [link for link in silent_tickets(watcher.state_dir) if link[1] == "open"],
            "the peer's agent_silent ticket open", agents=[watcher])
        assert ticket
        (client,), = query_sqlite(watcher.state_dir / "ticket-outbox.sqlite",
                                  "SELECT client FROM ticket_links WHERE rule = 'agent_silent'")
        assert client == NOC

        watched.start()
        await eventually(lambda: [s for _, s, _, _ in silent_tickets(watcher.state_dir)] == ["solved"],
                         "the ticket solved once the peer beats again", agents=[watcher, watched])
        assert len(silent_tickets(watcher.state_dir)) == 1
        assert await watched.terminate() == 0
        assert await watcher.terminate() == 0
    finally:
        watcher.ensure_stopped()
        watched.ensure_stopped()


def test_the_defaults_ticket_a_silent_agent_within_two_minutes() -> None:
    settings = AgentSettings()
    (rule,) = [r for r in BUILTIN_RULES if r.name == "agent_silent"]
    # silent for the timeout, then seen at the next beat, then the rule's own delay
    assert settings.heartbeat_timeout_s + settings.heartbeat_interval_s + rule.for_s <= 120


def test_a_shared_place_out_of_reach_raises_supervision_down(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    now = [1_800_000_000.0]
    heartbeat = Heartbeat(blocker / "beats", "noc", [NOC], NOC, TIMEOUT_S, lambda: now[0])
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), list(BUILTIN_RULES), lambda: now[0])
    try:
        (own,) = heartbeat.beat()
        assert own.measurement == OWN and own.fields["ok"] is False and "not-a-directory" in own.fields["error"]
        assert own.tags == {"client": NOC, "device": device_name("noc"), "agent": "noc"}
        engine.evaluate([own], now[0])
        now[0] += 31
        (own,) = heartbeat.beat()
        fired = engine.evaluate([own], now[0])
        assert [(t.alert.rule, t.state) for t in fired] == [("supervision_down", "firing")]
    finally:
        engine.close()


def test_peers_are_reported_with_their_silence(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    peer = Heartbeat(tmp_path, "beta", [OTHER], NOC, TIMEOUT_S, lambda: now[0])
    watcher = Heartbeat(tmp_path, "noc", [NOC], NOC, TIMEOUT_S, lambda: now[0])
    peer.beat()
    now[0] += 1.0
    _, seen = watcher.beat()
    assert (seen.measurement, seen.tags["agent"]) == (PEER, "beta")
    assert (seen.fields["up"], seen.fields["silent_s"]) == (True, 1.0)
    now[0] += TIMEOUT_S
    _, seen = watcher.beat()
    assert seen.fields["up"] is False and seen.fields["clients"] == OTHER and seen.fields["stopped"] is False
    peer.stopped()
    _, seen = watcher.beat()
    assert seen.fields["stopped"] is True and seen.fields["up"] is True  # the stop is its last beat
