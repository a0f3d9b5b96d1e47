"""The slow drills of issue 14: the 10-minute store outage, the ITSM storm, and the fuzzers with many examples.

    python bench/bench_drills.py [--outage-s 600] [--rate 200] [--fuzz-examples 2000] [--skip-outage]
                                 [--storm glpi,log,email,webhook,teams] [--storm-devices 12] [--storm-kills 12]

Store outage (tests/drills/store_outage.py): victoria-metrics stopped ``--outage-s`` under
``--rate`` hostile points/s, the agent SIGTERMed and restarted in the middle; printed: points sent,
during the outage, stored, duplicates, missing, how long after the server's return the last point
arrived (the spool's backoff reaches 300 s after a long outage). Goal: every point exactly once.

ITSM storm (tests/drills/itsm_storm.py), for each connector: ``--storm-devices`` devices down while
the peer is out, ``--storm-kills`` SIGKILLs of the agent at random moments (half during the outage,
a quarter while the openings go out, a quarter while the solutions do); printed: tickets, copies
the peer got (same id, same bytes: at-least-once connectors only) against the kills, and the problems
found (`make test` runs 6 devices and 4 kills).

Fuzzers (tests/drills/test_fuzz_*.py): the same properties as `make test`, with
``--fuzz-examples`` examples each instead of 50. Loopback only; every server stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.drills.itsm_storm import CONNECTORS, storm  # noqa: E402
from tests.drills.store_outage import drill  # noqa: E402


def outage(outage_s: float, rate: float) -> bool:
    with tempfile.TemporaryDirectory(prefix="vigie-drill-outage-") as tmp:
        started = time.monotonic()
        result = asyncio.run(drill(Path(tmp), outage_s=outage_s, rate=rate, settle_s=outage_s + 400))
        took = time.monotonic() - started
    ok = not result.missing and result.duplicates == 0 and not result.wrong_tags and result.stored == result.sent
    print(f"store outage {outage_s:.0f} s at {rate:.0f} points/s, SIGTERM + restart mid-outage ({took:.0f} s):")
    print(f"  sent {result.sent:,} ({result.sent_during_outage:,} during the outage), stored {result.stored:,},"
          f" duplicates {result.duplicates}, missing {len(result.missing)}, hostile tag sets altered"
          f" {len(result.wrong_tags)}; last point in {result.recovered_in_s:.1f} s after the server's return")
    print(f"  goal: every point exactly once -> {'PASS' if ok else 'FAIL'}")
    return ok


def itsm_storm(connector: str, devices: int, kills: int) -> bool:
    outage_kills, opening_kills = kills // 2, kills // 4
    with tempfile.TemporaryDirectory(prefix=f"vigie-drill-storm-{connector}-") as tmp:
        started = time.monotonic()
        result = asyncio.run(storm(Path(tmp), connector, devices=devices, seed=int(started), outage_kills=outage_kills,
                                   opening_kills=opening_kills, solving_kills=kills - outage_kills - opening_kills,
                                   deadline_s=300))
        took = time.monotonic() - started
    tickets = len({r.ticket for r in result.receipts if r.event == "open"})
    print(f"ITSM storm, {connector}: {devices} devices down during the outage, {result.kills} SIGKILLs ({took:.0f} s):"
          f" {tickets} tickets for {len(result.links)} alerts, {result.copies} copies (at most {result.kills}),"
          f" {'PASS' if not result.problems else 'FAIL: ' + '; '.join(result.problems)}")
    return not result.problems


def fuzz(examples: int) -> bool:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "-p", "no:cacheprovider",
         *sorted(str(p) for p in (REPO / "tests" / "drills").glob("test_fuzz_*.py"))],
        cwd=REPO, env={**os.environ, "VIGIE_FUZZ_EXAMPLES": str(examples)}, capture_output=True, text=True,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:]
    print(f"fuzzers, {examples:,} examples each ({time.monotonic() - started:.0f} s): {summary}")
    if run.returncode:
        print(run.stdout[-6000:])
    return run.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--fuzz-examples", type=int, default=2000)
    parser.add_argument("--skip-outage", action="store_true")
    parser.add_argument("--storm", default=",".join(CONNECTORS), help="connectors to storm, or none")
    parser.add_argument("--storm-devices", type=int, default=12)
    parser.add_argument("--storm-kills", type=int, default=12)
    parser.add_argument("--skip-fuzz", action="store_true")
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    ok = fuzz(args.fuzz_examples) if not args.skip_fuzz else True
    for connector in [c for c in args.storm.split(",") if c and c != "none"]:
        ok = itsm_storm(connector, args.storm_devices, args.storm_kills) and ok
    if not args.skip_outage:
        ok = outage(args.outage_s, args.rate) and ok
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
