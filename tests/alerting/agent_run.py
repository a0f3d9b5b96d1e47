"""One agent cycle (engine + dispatcher against a GLPI), run as a subprocess by the crash tests.

    python -m tests.alerting.agent_run --state DIR --glpi URL --now T --oper down|up [--devices N]
        [--group-wait S]

``--devices``: that many switches of one site (default one); ``--group-wait``: their alerts are
grouped by [client, site, alertname] (default: one ticket per alert).

Set VIGIE_TEST_CRASH_AT=after_open to SIGKILL the process right after the ticket POST succeeded
and before the link is recorded. Prints the cycle's result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from alerting.engine import AlertEngine
from alerting.notifier import DispatchResult, Grouping, TicketDispatcher
from alerting.ticketing.glpi import GlpiConnector

from .helpers import IF_DOWN, iface


async def cycle(args: argparse.Namespace) -> dict:
    now = args.now
    engine = AlertEngine(os.path.join(args.state, "alerts.sqlite"), [IF_DOWN], clock=lambda: now)
    glpi = GlpiConnector(args.glpi, "app-token", "user-token", backoff_s=0)
    result = DispatchResult()
    grouping = None if args.group_wait is None else Grouping(wait_s=args.group_wait)
    dispatcher = TicketDispatcher(
        os.path.join(args.state, "tickets.sqlite"), {"vsgp": glpi}, clock=lambda: now, on_result=result.extend,
        grouping_for=lambda client: grouping,
    )
    devices = ["sw-core-1"] if args.devices == 1 else [f"sw-{i:03d}" for i in range(args.devices)]
    try:
        await dispatcher.start(engine.firing)  # takes up what an earlier cycle left in the outbox
        transitions = engine.evaluate([iface(now, args.oper, device=d) for d in devices], now)
        await dispatcher.record(transitions, now)
        await dispatcher.settle()
        return {
            "transitions": [t.state for t in transitions],
            "opened": [link.ticket_id for link in result.opened],
            "reattached": [link.ticket_id for link in result.reattached],
            "solved": [link.ticket_id for link in result.solved],
            "failed": result.failed,
            "links": [[link.state, link.ticket_id, link.time_to_ticket_s] for link in dispatcher.links()],
            "groups": [[group.state, group.ticket_id] for group in dispatcher.groups()],
        }
    finally:
        await dispatcher.stop()
        await glpi.close()
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--glpi", required=True)
    parser.add_argument("--now", type=float, required=True)
    parser.add_argument("--oper", choices=("down", "up"), required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--group-wait", type=float)
    print(json.dumps(asyncio.run(cycle(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
