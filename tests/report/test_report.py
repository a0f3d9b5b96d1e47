"""`vigie report` on a lab day (tests/report/lab_day.py): the HTML renders in headless chromium, the
XLSX reads back as typed Excel tables, --send delivers to a real SMTP server (aiosmtpd, STARTTLS,
AUTH) with the charts inline, and a send that fails is retried and archived as failed."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html as html_lib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from PIL import Image

from agent.cli import main
from agent.report.data import archived
from tests.report import lab_day

DATE = lab_day.DAY.isoformat()
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def vigie(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=timeout)


def _args(lab, client: str, args: tuple[str, ...]) -> list[str]:
    return ["report", "--config", str(lab.config_file), "--secrets", str(lab.secrets_file), "--client", client, *args]


def report(lab, *args: str, client: str = "acme") -> subprocess.CompletedProcess[str]:
    """`vigie report` as a subprocess, as an operator runs it."""
    return vigie(*_args(lab, client, args))


def report_here(capsys, lab, *args: str, client: str = "acme") -> tuple[int, str]:
    """The same command in this process (the interpreter and plugins already loaded): rc, stderr."""
    capsys.readouterr()
    rc = main(_args(lab, client, args))
    return rc, capsys.readouterr().err


def screenshot(html: Path, tmp: Path) -> Image.Image:
    shot = tmp / f"{html.stem}.png"
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium'}", f"--screenshot={shot}",
                    "--window-size=820,2400", html.as_uri()], capture_output=True, timeout=90, check=True)
    return Image.open(shot)


@pytest.fixture(scope="module")
def acme_day(written_lab) -> Path:
    """`vigie report --date` of the lab day for acme: the folder it wrote."""
    out = written_lab.folder / "out"
    done = report(written_lab, "--date", DATE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_daily_report_renders_in_chromium_and_says_the_day(written_lab, acme_day, tmp_path) -> None:
    lab, out = written_lab, acme_day
    html = out / f"acme-{DATE}.html"
    assert {p.name for p in out.iterdir()} == {
        f"acme-{DATE}.html", f"acme-{DATE}.xlsx", f"acme-{DATE}-availability.png", f"acme-{DATE}-capacity.png"}
    text = html.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "<style" not in text.lower()  # Outlook: inline CSS, no JavaScript
    # the overall status comes first, in French
    body = html_lib.unescape(re.sub(r"<[^>]+>", " ", text.split("<body", 1)[1].split(">", 1)[1]))
    first = " ".join(body.split())
    assert first.startswith("Rapport quotidien de santé du SI — Agence ACME — 30/11/2026 Points d'attention :")
    assert "2 service(s) sous l'objectif de 99 %" in first  # sw-access (40 min down), web (down from 22:00)
    # sw-access: 40 min down in the 10 service hours and in the 24 h; fw's skipped half hour is unknown
    assert re.search(r">sw-access<.*?93,33 %.*?97,22 %.*?40 min 00 s", text, re.S)
    assert re.search(r">fw<.*?100,00 %.*?100,00 %.*?0 s.*?2,08 %", text, re.S)
    assert re.search(r">web<.*?100,00 %.*?91,67 %.*?2 h 00 min", text, re.S)
    assert "2 alerte(s) critique(s) sur 2 ticketée(s) en moins de 5 minutes (100,00 %)" in text
    # KPI 3 as the contract words it, read back from the log: sw-access taken after 270 s, web after 370 s
    assert ("1 alerte(s) critique(s) sur 2 prise(s) en charge dans l'outil de tickets en moins de 5 minutes "
            "(50,00 %) ; délai début -> prise en charge : médiane 4 min 30 s, 99e centile 6 min 10 s.") \
        in html_lib.unescape(text)
    assert re.search(r">sql-nightly<.*?failed", text, re.S) and re.search(r">archive-copy<.*?missing", text, re.S)
    assert "2 sauvegarde(s) en échec ou manquante(s)" in first and "old-nas" not in text
    assert "4 tâche(s) : 1 réussie(s), 1 avec avertissement, 1 en échec, 1 manquante(s)" in first
    assert re.search(r">ds-prod<.*?80,0.*?1,00.*?>20<", text, re.S)  # a point a day: 20 days to full
    assert "intranet.acme.example" in text and "Retards de distribution des messages" in text
    assert "Réunions Teams interrompues" in html_lib.unescape(text) and "Lenteurs SharePoint" not in text
    assert re.search(r">sw-core<.*?30/11/2026 16:12.*?running configuration changed \(\+3 -1 lines\)", text, re.S)
    assert "Source non supervisée" not in text
    for chart in ("availability", "capacity"):
        assert f'src="acme-{DATE}-{chart}.png"' in text
    image = screenshot(html, tmp_path).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert image.size[0] >= 800 and colours is not None and len(colours) > 100  # not a blank page
    assert (lab.files.path / "reports" / "acme" / DATE / f"acme-{DATE}.html").is_file()  # archived


def test_xlsx_sheets_are_typed_excel_tables(acme_day) -> None:
    book = openpyxl.load_workbook(acme_day / f"acme-{DATE}.xlsx")
    assert book.sheetnames == ["Availability", "Alerts", "Tickets_opened", "Tickets_solved", "Tickets_open", "SLA",
                               "Backups", "Capacity", "Expiries", "M365", "Config_changes"]
    for sheet in book.worksheets:
        assert len(sheet.tables) == 1, sheet.title
        table = next(iter(sheet.tables.values()))
        assert table.ref == f"A1:{sheet.cell(1, sheet.max_column).column_letter}{sheet.max_row}"
        assert sheet.freeze_panes == "A2" and not sheet.merged_cells.ranges
    rows = {r[1]: r for r in book["Availability"].iter_rows(min_row=2, values_only=True)}
    assert isinstance(rows["sw-access"][0], dt.datetime) and rows["sw-access"][0].date() == lab_day.DAY
    assert abs(rows["sw-access"][4] - 100 * 9.333333 / 10) < 0.01 and abs(rows["sw-access"][6] - 2400) < 1
    assert rows["fw"][8] is True
    opened = list(book["Tickets_opened"].iter_rows(min_row=2, values_only=True))
    assert opened and all(isinstance(r[6], dt.datetime) for r in opened)
    expiries = {r[2]: r for r in book["Expiries"].iter_rows(min_row=2, values_only=True)}
    assert isinstance(expiries["intranet.acme.example"][3], dt.datetime)
    assert expiries["intranet.acme.example"][4] == 12.5
    sla = next(book["SLA"].iter_rows(min_row=2, values_only=True))
    # 2 critical alerts, both ticketed within 5 min; p99 onset -> ticket: 2 min (for_s 120 s, then at once)
    assert sla[1:4] == (2, 2, 0) and sla[5] == 120
    assert sla[6:] == (1, 50.0, 0, 270, 370)  # taken in charge within 5 min, share, not taken, p50, p99


def test_a_client_without_the_sources_is_told_so_in_english(written_lab, tmp_path, capsys) -> None:
    rc, err = report_here(capsys, written_lab, "--date", DATE, "--out", str(tmp_path), client="beta")
    assert rc == 0, err
    text = (tmp_path / f"beta-{DATE}.html").read_text(encoding="utf-8")
    assert "Daily IT health report — Beta Association" in text
    # backups, capacity, certificates and domains, M365, configuration changes: one line each
    assert text.count("Source not supervised for this client.") == 5
    assert "All normal: every service met the 99 % target" in text
    book = openpyxl.load_workbook(tmp_path / f"beta-{DATE}.xlsx")
    assert all(len(sheet.tables) == 1 for sheet in book.worksheets)  # empty topics are still tables


def test_send_delivers_over_starttls_with_auth_and_inline_charts(lab, smtp, tmp_path, capsys) -> None:
    rc, err = report_here(capsys, lab, "--date", DATE, "--out", str(tmp_path), "--send")
    assert rc == 0, err
    assert smtp.mailbox.logins == [("vigie", True)]
    [(sender, recipients, raw, encrypted)] = smtp.mailbox.messages
    assert (sender, recipients, encrypted) == ("vigie@noc.example.org", ["dsi@acme.example.org"], True)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == "Rapport quotidien de santé du SI — Agence ACME — 30/11/2026"
    html = mail.get_body(preferencelist=("html",))
    related = {part["Content-ID"].strip("<>"): part for part in mail.walk() if part["Content-ID"]}
    referenced = set(re.findall(r'src="cid:([^"]+)"', html.get_content()))
    assert referenced == {"availability", "capacity"} and referenced <= set(related)
    for cid in referenced:
        assert related[cid].get_content_type() == "image/png"
        assert Image.open(io.BytesIO(related[cid].get_content())).size[0] > 100
    [xlsx] = [p for p in mail.iter_attachments() if p.get_filename() == f"acme-{DATE}.xlsx"]
    assert openpyxl.load_workbook(io.BytesIO(xlsx.get_content())).sheetnames[0] == "Availability"
    record = json.loads((lab.files.path / "reports" / "acme" / DATE / "delivery.json").read_text())
    assert record["sent"] is True and record["attempts"] == 1 and record["recipients"] == ["dsi@acme.example.org"]
    # made again without --send (an operator looking at it): the record of the mailing stays
    rc, err = report_here(capsys, lab, "--date", DATE, "--out", str(tmp_path / "again"))
    assert rc == 0, err
    assert json.loads((lab.files.path / "reports" / "acme" / DATE / "delivery.json").read_text()) == record
    assert archived(lab.files, "acme") == [(DATE, record)]


def test_a_send_to_a_server_that_is_down_is_retried_and_archived_as_failed(lab, smtp, tmp_path, capsys) -> None:
    smtp.stop()
    rc, err = report_here(capsys, lab, "--date", DATE, "--out", str(tmp_path), "--send")
    assert rc == 1
    assert "not sent after 3 attempt(s)" in err and "ConnectionRefusedError" in err
    record = json.loads((lab.files.path / "reports" / "acme" / DATE / "delivery.json").read_text())
    assert record["sent"] is False and record["attempts"] == 3 and "127.0.0.1" in record["error"]
    assert (tmp_path / f"acme-{DATE}.html").is_file()  # written all the same


def test_a_wrong_password_is_refused_and_named(lab, smtp, tmp_path, capsys) -> None:
    lab.secrets_file.write_text("smtp-password: wrong\n", encoding="utf-8")
    rc, err = report_here(capsys, lab, "--date", DATE, "--out", str(tmp_path), "--send")
    assert rc == 1 and "SMTPAuthenticationError" in err
    assert smtp.mailbox.messages == [] and smtp.mailbox.logins[0] == ("vigie", False)


def test_monthly_report_covers_13_rolling_months(written_lab, tmp_path, capsys) -> None:
    rc, err = report_here(capsys, written_lab, "--month", "2026-11", "--out", str(tmp_path))
    assert rc == 0, err
    text = (tmp_path / "acme-2026-11.html").read_text(encoding="utf-8")
    assert "Rapport mensuel — Agence ACME — 11/2026" in text
    book = openpyxl.load_workbook(tmp_path / "acme-2026-11.xlsx")
    kpis = list(book["KPIs"].iter_rows(min_row=2, values_only=True))
    assert [r[0].date() for r in kpis][::12] == [dt.date(2025, 11, 1), dt.date(2026, 11, 1)] and len(kpis) == 13
    assert all(r[1] is None for r in kpis[:-1])  # no data before the lab day: unknown, not 0
    november = kpis[-1]
    # the mean of the 7 services: sw-access 97.22, web 91.67, the others 100
    assert abs(november[1] - (97.2222 + 91.6667 + 500) / 7) < 0.01 and november[4] == 2 and november[6] == 100.0
    for chart in ("availability-13m", "alerts-13m"):
        assert (tmp_path / f"acme-2026-11-{chart}.png").is_file()


def test_tickets_still_open_show_their_gtr_clock_in_service_hours(written_lab) -> None:
    from agent.report.data import daily_report

    noon = lab_day._at(12, 0, lab_day.DAY + dt.timedelta(days=1))  # Tuesday 12:00
    report_ = daily_report(written_lab.files, written_lab.config.client("acme"), lab_day.DAY, noon)
    still_open = {t.rule: t for t in report_.tickets_open}
    # opened Monday 22:02 (web down): 13 h 58 min ago, of which Tuesday 08:00-12:00 in service hours
    web = still_open["device_unreachable"]
    assert abs(web.age_h - (14 - 2 / 60)) < 0.01 and abs(web.service_age_h - 4) < 0.01
    # opened Monday 00:00 (certificate): all of Monday's 08:00-18:00, then Tuesday's 4 h
    assert abs(still_open["tls_certificate_expiring"].service_age_h - 14) < 0.01


def test_config_changes_from_the_alerts_else_from_the_archive_versions(written_lab) -> None:
    from agent.report.data import config_change_rules, daily_report

    acme, at = written_lab.config.client("acme"), lab_day._at(7, 30, lab_day.DAY + dt.timedelta(days=1))
    # without a rule on the archive's measurement: the daily rollup of `versions` went from 3 to 4
    [change] = daily_report(written_lab.files, acme, lab_day.DAY, at).config_changes.rows
    assert (change.device, change.at, change.detail) == ("sw-core", None, "1 version(s)")
    rules = config_change_rules(written_lab.config, "acme")
    assert rules == {"cisco_cli_config_changed"}  # the cisco_cli plugin's default rule
    [change] = daily_report(written_lab.files, acme, lab_day.DAY, at, change_rules=rules).config_changes.rows
    assert change.at == dt.datetime.combine(lab_day.DAY, dt.time(16, 12), lab_day.ZONE)
    assert change.detail.startswith("sw-core: running configuration changed (+3 -1 lines)")


def test_no_state_is_an_error_not_an_all_normal_report(written_lab, tmp_path, capsys) -> None:
    rc, err = report_here(capsys, written_lab, "--date", DATE, "--out", str(tmp_path / "out"), "--state-dir",
                          str(tmp_path / "empty"))
    assert rc == 1 and "no agent state here" in err and not (tmp_path / "out").exists()
    # a state directory with nothing of the day: the report says so rather than "all normal"
    from agent.report.data import daily_report
    from agent.report.render import status_sentence

    empty_day = daily_report(written_lab.files, written_lab.config.client("acme"), dt.date(2026, 6, 1), 0.0)
    assert status_sentence(empty_day) == ("Aucune donnée de supervision pour cette période : l'agent n'a rien "
                                          "observé.", False)

