"""`vigie report --config F --client X [--date YYYY-MM-DD | --month YYYY-MM] --out DIR [--send]`:
one report on demand, written to DIR, archived under the state directory, mailed with --send."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from agent.config import Config
from agent.report.build import Built, archive, build_daily, build_monthly, mail, write
from agent.report.data import config_change_rules
from agent.statedir import StateDir

EXIT_NOT_SENT = 1
EXIT_NO_STATE = 1


def yesterday(config: Config, client: str, now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, config.client(client).zone).date() - dt.timedelta(days=1)


def run(
    config: Config, client: str, *, day: dt.date | None, month: dt.date | None, out: Path, send: bool,
    state_dir: Path | None = None, now: float | None = None,
) -> int:
    now = time.time() if now is None else now
    files = StateDir(state_dir or Path(config.agent.state_dir))
    if not files.state_db.is_file():
        print(f"vigie report: {files.path}: no agent state here — has `vigie run` used this state directory? "
              "(give --state-dir)", file=sys.stderr)
        return EXIT_NO_STATE
    found = config.client(client)
    built: Built = (build_monthly(files, found, month, now) if month is not None
                    else build_daily(files, found, day or yesterday(config, client, now), now,
                                     change_rules=config_change_rules(config, client)))
    for path in write(built, out):
        print(path)
    if not send:
        archive(built, files, None, now)
        return 0
    smtp = config.agent.smtp
    if smtp is None:
        print("vigie report: --send: no agent.smtp in the config", file=sys.stderr)
        return EXIT_NOT_SENT
    if not found.report.recipients:
        print(f"vigie report: --send: no clients[{client}].report.recipients", file=sys.stderr)
        return EXIT_NOT_SENT
    password = config.secret_text(smtp.password) if smtp.password else None
    delivery = mail(built, smtp, password, found.report.recipients, now, sleep=time.sleep)
    archive(built, files, delivery, now)
    if not delivery.sent:
        print(f"vigie report: not sent after {delivery.attempts} attempt(s): {delivery.error}", file=sys.stderr)
        return EXIT_NOT_SENT
    print(f"sent to {', '.join(delivery.recipients)} ({delivery.attempts} attempt(s))")
    return 0
