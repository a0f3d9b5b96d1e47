"""The store-outage drill's agent process: the real agent (agent.runner.Agent, its InfluxDB store
behind the disk spool) fed hostile points at a steady rate, SIGTERMed and started again by the test.

    python -m tests.drills.outage_agent --config C --secrets S --progress FILE --base-ms T --total N --rate R

Point ``seq`` (0 <= seq < N) is series ``seq % len(HOSTILE_TAGS)``, timestamp ``T + seq`` ms, field
``seq = seq``. The points handed to the agent's pipeline so far are counted in ``--progress``
(replaced atomically after each batch); a restarted process goes on from there. SIGTERM stops the
generator, then the agent as `vigie run` does (the queued batches are delivered to the spool).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from agent.api import Sample
from agent.config import load_config
from agent.runner import Agent

MEASUREMENT = "drill_point"
# Tag values a device or an operator may write (an ifAlias, a site name): every character the line
# protocol escapes, a line break, unicode, backslashes.
HOSTILE_TAGS = [
    {"client": "drill", "device": "sw-1", "if_alias": 'say "hi", a=b c'},
    {"client": "drill", "device": "sw-2", "if_alias": "back\\slash\\, trailing\\"},
    {"client": "drill", "device": "sw-3", "if_alias": "Liaison Montréal→Québec ✓ 日本"},
    {"client": "drill", "device": "sw-4", "if_alias": "two\nlines\ttab", "odd key=,": "x y"},
]
# A string field of the same kind rides every line (VictoriaMetrics keeps numbers only: it must not
# break the line that carries them).
HOSTILE_TEXT = 'quote " comma , equals = space \\ backslash\nnewline ünïcödé'
BATCH = 50


def point(seq: int, base_ms: int) -> Sample:
    tags = HOSTILE_TAGS[seq % len(HOSTILE_TAGS)]
    return Sample(MEASUREMENT, dict(tags), {"seq": seq, "note": HOSTILE_TEXT}, (base_ms + seq) * 1_000_000)


def read_progress(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def write_progress(path: Path, sent: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(sent))
    os.replace(tmp, path)


async def main(args: argparse.Namespace) -> None:
    agent = Agent(load_config(args.config, secrets_path=args.secrets), health_interval_s=1.0)
    await agent.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sent = read_progress(args.progress)
    try:
        while not stop.is_set():
            if sent < args.total:
                batch = [point(seq, args.base_ms) for seq in range(sent, min(args.total, sent + BATCH))]
                await agent.pipeline.submit(batch)
                sent += len(batch)
                write_progress(args.progress, sent)
            try:
                await asyncio.wait_for(stop.wait(), BATCH / args.rate)
            except TimeoutError:
                pass
    finally:
        await agent.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--secrets", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--base-ms", type=int, required=True)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    asyncio.run(main(parser.parse_args()))
