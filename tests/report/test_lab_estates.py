"""The report of every client of the lab's estates (lab/estates/*.yaml, their whole inventories):
a day of polls written through the real StateDB (one device down an hour in service hours), then
the report renders in chromium, its workbook reads back as typed tables, and it is mailed to the
loopback SMTP server with its charts inline."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from html import unescape
from pathlib import Path

import openpyxl
import pytest

from agent.api import Sample, SecretRef
from agent.config import Config
from agent.config.loader import read_yaml
from agent.config.schema import SmtpSettings
from agent.report.build import build_daily, mail, write
from agent.report.render import MAIL_AVAILABILITY_ROWS
from agent.state import StateDB
from agent.statedir import StateDir
from tests.report import lab_day
from tests.report.conftest import SMTP_PASSWORD, SMTP_USER
from tests.report.test_report import screenshot

ESTATES = sorted((Path(__file__).parents[2] / "lab" / "estates").glob("[a-z]*.yaml"))
ESTATES = [p for p in ESTATES if p.name != "secrets.yaml"]
STEP_S = 600  # the rollups' staleness horizon: each state holds until the next poll


def _estate(path: Path) -> Config:
    # the shape only: the lab's secrets and the collectors' own options are other tests' business
    raw, problems = read_yaml(path, {})
    assert not problems
    return Config.model_validate(raw)


@pytest.mark.parametrize("estate", ESTATES, ids=[p.stem for p in ESTATES])
def test_every_lab_client_gets_its_report(estate: Path, tmp_path: Path, smtp) -> None:
    config = _estate(estate)
    files = StateDir(tmp_path / "state").create()
    polls = [(c.name, site.name, device.name, collector)
             for c in config.clients for site, device in c.devices() for collector in device.collectors]
    down = polls[0]
    state = StateDB(files.state_db)
    start, end = lab_day._at(0), lab_day._at(0, 0, lab_day.DAY + dt.timedelta(days=1))
    for t in range(int(start), int(end), STEP_S):
        ns = t * 1_000_000_000
        state.update([
            Sample("collection", {"client": c, "site": s, "device": d, "collector": k},
                   {"status": "timeout" if (c, s, d, k) == down and lab_day._at(9) <= t < lab_day._at(10) else "ok"},
                   ns)
            for c, s, d, k in polls
        ], ns)
    state.close()
    for client in config.clients:
        built = build_daily(files, client, lab_day.DAY, end + 7.5 * 3600)
        out = tmp_path / client.name
        write(built, out)
        html = out / f"{client.name}-{lab_day.DAY.isoformat()}.html"
        text = unescape(html.read_text(encoding="utf-8"))
        services = [(d, k) for c, _, d, k in polls if c == client.name]
        if len(services) <= MAIL_AVAILABILITY_ROWS:
            assert all(f">{device}<" in text for device, _ in services)  # every polled device has its row
        else:  # a large estate: the mail lists what is below the target, the XLSX everything
            others = len(services) - (client.name == down[0])
            assert f"{others} autre(s) service(s) à l'objectif sans temps inconnu" in text
        if client.name == down[0]:
            assert f">{down[2]}<" in text and "sous l'objectif de 99 %" in text
        image = screenshot(html, tmp_path).convert("RGB")
        assert len(image.getcolors(maxcolors=1_000_000) or ()) > 100
        book = openpyxl.load_workbook(out / f"{client.name}-{lab_day.DAY.isoformat()}.xlsx")
        rows = list(book["Availability"].iter_rows(min_row=2, values_only=True))
        assert len(rows) == sum(1 for c, *_ in polls if c == client.name)
        assert all(isinstance(r[0], dt.datetime) and isinstance(r[5], float | int) for r in rows)
        # mailed to the loopback SMTP server (STARTTLS, AUTH), every chart inline
        relay = SmtpSettings(host="127.0.0.1", port=smtp.port, sender="vigie@noc.example.org", username=SMTP_USER,
                             password=SecretRef(secret="smtp"), ca_bundle=smtp.ca_file, retries=0)
        delivery = mail(built, relay, SMTP_PASSWORD, [f"dsi@{client.name}.example.org"], end, sleep=lambda _s: None)
        assert delivery.sent, delivery.error
        message = email.message_from_bytes(smtp.mailbox.messages[-1][2], policy=email.policy.default)
        cids = set(re.findall(r'src="cid:([^"]+)"', message.get_body(preferencelist=("html",)).get_content()))
        assert cids and cids == {part["Content-ID"].strip("<>") for part in message.walk() if part["Content-ID"]}
