"""A mid-walk SNMP failure yields `partial` through the scheduler, not `ok` (issue 6), and a device
that answers its system GET and no walk is `unreachable` (issue 7 item 6)."""

from __future__ import annotations

from agent.inventory import Poll
from agent.scheduler import COLLECTION, Scheduler
from collectors.snmp import SnmpCollector
from tests.snmp import hostile
from tests.snmp.test_hostile_agent import Start, start, target, walk_index

__all__ = ["start"]  # the fixture


async def test_partial_reaches_the_collection_sample(start: Start) -> None:
    agent = await start(ports=60)
    silent: list[bool] = []

    def die_after_30_descr(request: dict, reply: bytes) -> list[bytes]:
        index = walk_index(request, hostile.IF_DESCR)
        if index is not None and index >= 30:
            silent.append(True)
        return [] if silent else [reply]

    agent.mangle = die_after_30_descr
    poll = Poll(target(agent), "snmp", {"timeout_s": 0.2, "retries": 1, "max_repetitions": 10},
                interval_s=60, timeout_s=30, jitter_s=0)

    async def discard(_samples) -> None:
        return None

    scheduler = Scheduler([poll], lambda p: SnmpCollector(p.options), discard)
    samples = await scheduler.run_poll(poll)
    (collection,) = [s for s in samples if s.measurement == COLLECTION]
    assert collection.fields["status"] == "partial"
    assert collection.fields["reachable"] is True
    assert collection.fields["error"].startswith("walk of table interface failed for ")
    assert collection.fields["samples"] == len(samples) - 1 > 30

    agent.mangle = lambda request, reply: [reply]
    agent.walk_answers = 0
    (collection,) = [s for s in await scheduler.run_poll(poll) if s.measurement == COLLECTION]
    assert (collection.fields["status"], collection.fields["reachable"]) == ("unreachable", False)
