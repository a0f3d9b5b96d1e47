"""SIGKILL at the receivers' crash seam, for e-mail, webhook and Teams: the agent (engine, outbox,
the receiver built from its entry point) runs as a subprocess killed right after the peer took a
message and before the record said so, then restarts: nothing lost, nothing doubled (one
Message-ID / delivery id per event, each event processed once by a peer that drops known ids).

This module is also the subprocess (one agent cycle):

    python -m tests.alerting.test_receivers_sigkill --kind K --state DIR --options JSON
        --secrets JSON --times T[,T...] --oper down|up
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

from aiohttp import web

from agent.api import ReceiverContext
from alerting.engine import AlertEngine
from alerting.notifier import CRASH_ENV, DispatchResult, TicketDispatcher

from .helpers import IF_DOWN, T0, iface
from .test_receivers_email import PASSWORD, USER, free_port
from .test_receivers_email import gateway as gateway  # noqa: PLC0414 - the fixture, used here by name
from .test_receivers_email import pki as pki  # noqa: PLC0414
from .test_receivers_teams import PATH, SIG, Workflow
from .test_receivers_webhook import SECRET, Receiver

ROOT = Path(__file__).resolve().parents[2]


async def cycle(args: argparse.Namespace) -> dict:
    times = [float(t) for t in args.times.split(",")]
    now = times[-1]
    secrets = json.loads(args.secrets)
    (entry,) = entry_points(group="vigie.ticketing", name=args.kind)  # the receiver as the agent finds it
    spec = entry.load()
    context = ReceiverContext("vsgp", "Europe/Paris", "fr", Path(args.state), lambda ref: secrets[ref.secret])
    receiver = spec.factory(spec.options.model_validate(json.loads(args.options)), context)
    engine = AlertEngine(os.path.join(args.state, "alerts.sqlite"), [IF_DOWN], clock=lambda: now)
    result = DispatchResult()
    dispatcher = TicketDispatcher(
        os.path.join(args.state, "outbox.sqlite"), {"vsgp": receiver}, clock=lambda: now, on_result=result.extend
    )
    try:
        await dispatcher.start(engine.firing)
        for t in times:
            await dispatcher.record(engine.evaluate([iface(t, args.oper)], t), t)
        await dispatcher.settle()
        return {
            "opened": [link.ticket_id for link in result.opened],
            "reattached": [link.ticket_id for link in result.reattached],
            "solved": [link.ticket_id for link in result.solved],
            "links": [[link.state, link.ticket_id] for link in dispatcher.links()],
        }
    finally:
        await dispatcher.stop()
        await receiver.close()
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--kind", "--state", "--options", "--secrets", "--times"):
        parser.add_argument(option, required=True)
    parser.add_argument("--oper", choices=("down", "up"), required=True)
    print(json.dumps(asyncio.run(cycle(parser.parse_args()))), flush=True)


async def run_agent(kind, state, options, secrets, times, oper, crash=False):
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = "after_send"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.alerting.test_receivers_sigkill", "--kind", kind, "--state", str(state),
        "--options", json.dumps(options), "--secrets", json.dumps(secrets),
        "--times", ",".join(str(t) for t in times), "--oper", oper,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    if crash:
        assert proc.returncode == -signal.SIGKILL, err.decode()
        return None
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def serve(handler, path, ssl_context=None):
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, port


async def kill_twice_and_restart(kind, state, options, secrets):
    """Killed after the opening's send, restarted while firing; killed after the solution's send,
    restarted after the recovery; restarted once more."""
    assert await run_agent(kind, state, options, secrets, [T0, T0 + 60], "down", crash=True) is None
    out = await run_agent(kind, state, options, secrets, [T0 + 90], "down")
    ticket = out["reattached"][0]
    assert out["opened"] == [] and out["links"] == [["open", ticket]]
    assert await run_agent(kind, state, options, secrets, [T0 + 180], "up", crash=True) is None
    out = await run_agent(kind, state, options, secrets, [T0 + 240], "up")
    assert out["solved"] == [ticket] and out["links"] == [["solved", ticket]]
    out = await run_agent(kind, state, options, secrets, [T0 + 300], "up")
    assert out["opened"] == out["reattached"] == out["solved"] == []
    return ticket


def once_per_event(ids: Counter, ticket: str) -> None:
    """Each event sent under one id: the opening and solution twice (the copy after each kill),
    the re-attachment's follow-up once, nothing else."""
    assert ids[f"{ticket}-open"] == ids[f"{ticket}-solve"] == 2
    assert len(ids) == 3 and sorted(ids.values()) == [1, 2, 2]


async def test_email(tmp_path, gateway, pki):
    ca_file, _ = pki
    options = {"to": ["support@itsm.example.org"], "sender": "noc@vigie.example.net", "host": "127.0.0.1",
               "port": gateway.port, "ca_bundle": str(ca_file), "username": USER,
               "password": {"secret": "smtp"}, "timeout_s": 5}
    ticket = await kill_twice_and_restart("email", tmp_path, options, {"smtp": PASSWORD})
    mails = gateway.parsed()
    once_per_event(Counter(str(m["Message-ID"]).strip("<>").split("@")[0] for m in mails), ticket)
    # a gateway dropping known Message-IDs files one mail per event, all on one thread
    filed = {str(m["Message-ID"]): m for m in mails}
    assert len(filed) == 3
    assert all(m["In-Reply-To"] == f"<{ticket}-open@vigie.example.net>" for m in filed.values() if m["In-Reply-To"])


async def test_webhook(tmp_path):
    peer = Receiver()
    runner, port = await serve(peer.handle, "/hooks/vigie")
    try:
        options = {"url": f"http://127.0.0.1:{port}/hooks/vigie", "secret": {"secret": "hook"}}
        ticket = await kill_twice_and_restart("webhook", tmp_path, options, {"hook": SECRET})
    finally:
        await runner.cleanup()
    once_per_event(Counter(headers["X-Vigie-Delivery"] for headers, _ in peer.received), ticket)
    assert [body["event"] for body in peer.processed.values()] == ["open", "followup", "solve"]


async def test_teams(tmp_path, pki):
    ca_file, context = pki
    flow = Workflow()
    runner, port = await serve(flow.handle, PATH, context)
    try:
        url = f"https://127.0.0.1:{port}{PATH}?api-version=1&sig={SIG}"
        ticket = await kill_twice_and_restart("teams", tmp_path, {"url": {"secret": "flow"}, "ca_bundle": str(ca_file)},
                                              {"flow": url})
    finally:
        await runner.cleanup()
    once_per_event(Counter(_delivery_of(card) for card in flow.posts), ticket)
    # Teams keeps no id: each copy is the same card again (the only doubling, never a loss)
    assert flow.posts[0] == flow.posts[1] and flow.posts[3] == flow.posts[4]


def _delivery_of(card: dict) -> str:
    """A card's footer: ``[<key>] <delivery>`` for an opening, ``<delivery> ↩ <opening>`` after."""
    footer = card["attachments"][0]["content"]["body"][-1]["text"].split()
    return footer[0] if "↩" in footer else footer[-1]


if __name__ == "__main__":
    main()
