"""The read-only views (`vigie status`, `vigie alerts`, `vigie tickets`) over a state directory the
kernel's own parts wrote: the rollups (StateDB), the alert engine and the ticket dispatcher with
the built-in log for one client and an ITSM for another, driven on a given clock.

The estate (one client on the built-in log, one on an ITSM, one whose ITSM refuses):

    acme   core (ok) <- dist-siege-batiment-principal (timeout) <- acc-01 (unreachable)
           srv (snmp timeout, ping ok)   printer (in the config only)
    beta   fw (ok, then a skipped turn)  ->  its uplink goes down: a ticket in the ITSM
    gamma  sw (unreachable)              ->  its ITSM refuses: no ticket, the error shown
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from agent.api import DeviceInfo, Sample
from agent.api.alerts import Alert
from agent.api.rules import Rule
from agent.api.tickets import TicketError, TicketRef
from agent.cli import main
from agent.state import StateDB
from agent.statedir import StateDir
from agent.views import (
    DOWN,
    UNKNOWN,
    UNREACHABLE,
    UP,
    Receiver,
    alert_rows,
    device_statuses,
    ticket_places,
    ticket_rows,
)
from agent.views.terminal import alerts_view, status_view, tickets_view
from alerting.engine import AlertEngine
from alerting.notifier import TicketDispatcher
from alerting.ticketing.log import TicketLog

T0 = 1_700_000_000.0
DIST = "dist-siege-batiment-principal"  # long enough to wrap in 80 columns if a layout cut names
UPLINK_RULE = "core_uplink_interface_down_on_distribution"
ITSM_URL = "https://itsm.beta.example.org/apirest.php"

UNREACHABLE_RULE = Rule(
    name="device_unreachable",
    measurement="collection",
    when="status in ('unreachable', 'timeout')",
    for_s=0,
    severity="critical",
    summary="{device} ne répond plus",
)
UPLINK_DOWN = Rule(
    name=UPLINK_RULE,
    measurement="snmp_interface",
    when="admin_status == 'up' and oper_status == 'down'",
    for_s=0,
    severity="major",
    summary="{device} {if_name} down",
)
PARENTS = {("acme", DIST): "core", ("acme", "acc-01"): DIST}


def inventory() -> list[DeviceInfo]:
    def dev(client: str, name: str, parent: str | None = None, collectors: tuple[str, ...] = ("snmp",)) -> DeviceInfo:
        return DeviceInfo(client, "siege", name, "127.0.0.1", {}, collectors, parent)

    return [
        dev("acme", "core"),
        dev("acme", DIST, "core"),
        dev("acme", "acc-01", DIST),
        dev("acme", "srv", collectors=("snmp", "ping")),
        dev("acme", "printer"),
        dev("beta", "fw"),
        dev("gamma", "sw"),
    ]


def collection(t: float, client: str, device: str, status: str, *, collector: str = "snmp", error: str | None = None):
    tags = {"client": client, "site": "siege", "device": device, "collector": collector}
    fields = {
        "status": status,
        "reachable": status in ("ok", "partial", "error"),
        "duration_s": 0.25,
        "samples": 40 if status == "ok" else 0,
        "error": error,
    }
    return Sample("collection", tags, fields, int(t * 1e9))


def interface(t: float, client: str, device: str, oper: str) -> Sample:
    tags = {"client": client, "site": "siege", "device": device, "if_index": "1", "if_name": "Te1/0/1"}
    return Sample("snmp_interface", tags, {"admin_status": "up", "oper_status": oper}, int(t * 1e9))


class Itsm:
    """An ITSM that answers: tickets numbered from 100, each with its URL."""

    name = "itsm"

    def __init__(self) -> None:
        self.opened: list[Alert] = []

    async def open(self, alert: Alert) -> TicketRef:
        self.opened.append(alert)
        number = 99 + len(self.opened)
        return TicketRef(self.name, str(number), f"https://itsm.beta.example.org/front/ticket.form.php?id={number}")

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        return None

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        return None

    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        return None

    async def close(self) -> None:
        return None


class RefusingItsm(Itsm):
    async def open(self, alert: Alert) -> TicketRef:
        error = TicketError("itsm: HTTP 403 Forbidden: the user token has no right on entity 0")
        error.retryable = False
        raise error


@pytest.fixture
async def files(tmp_path: Path) -> StateDir:
    files = StateDir(tmp_path / "state").create()
    now = T0
    state = StateDB(files.state_db)
    engine = AlertEngine(
        str(files.alerts_db),
        [UNREACHABLE_RULE, UPLINK_DOWN],
        lambda: now,
        parents=PARENTS,
        unreachable_statuses=("unreachable", "timeout"),
    )
    log = TicketLog(str(files.path / "tickets.sqlite"), lambda: now)
    dispatcher = TicketDispatcher(
        str(files.outbox_db), {"acme": log, "beta": Itsm(), "gamma": RefusingItsm()}, lambda: now
    )
    await dispatcher.start()

    async def cycle(samples: list[Sample], *, engine_sees: bool = True) -> None:
        state.update(samples, int(now * 1e9))
        if engine_sees:
            await dispatcher.record(engine.evaluate(samples, now), now)
        await dispatcher.settle()

    await cycle(
        [
            collection(now, "acme", "core", "ok"),
            collection(now, "acme", DIST, "timeout", error="no complete answer within 10 s"),
            collection(now, "acme", "acc-01", "unreachable", error="no valid SNMP answer within 2s x2"),
            collection(now, "acme", "srv", "timeout", error="no complete answer within 10 s"),
            collection(now, "acme", "srv", "ok", collector="ping"),
            collection(now, "beta", "fw", "ok"),
            collection(now, "gamma", "sw", "unreachable", error="no valid SNMP answer within 2s x2"),
            interface(now, "acme", "core", "down"),
            interface(now, "beta", "fw", "down"),
        ]
    )
    now = T0 + 60
    await cycle([interface(now, "acme", "core", "up")])  # resolved: the log's ticket is solved
    now = T0 + 90
    # A turn that did not run is no news for the engine (the runner keeps it out); the rollups keep it.
    await cycle([collection(now, "beta", "fw", "skipped", error="previous run still going")], engine_sees=False)
    await dispatcher.stop()
    await log.close()
    engine.close()
    state.close()
    return files


def by_name(statuses) -> dict[str, object]:
    return {f"{s.client}/{s.device}": s for s in statuses}


async def test_status_of_every_configured_device(files: StateDir) -> None:
    found = by_name(device_statuses(files, inventory()))
    assert list(found) == [
        "acme/acc-01",
        "acme/core",
        f"acme/{DIST}",
        "acme/printer",
        "acme/srv",
        "beta/fw",
        "gamma/sw",
    ]
    assert {name: (s.state, s.behind) for name, s in found.items()} == {
        "acme/acc-01": (UNREACHABLE, f"acme/{DIST}"),  # down behind its parent, itself down
        "acme/core": (UP, None),
        f"acme/{DIST}": (DOWN, None),
        "acme/printer": (UNKNOWN, None),  # never polled
        "acme/srv": (UP, None),  # its SNMP times out, but it answers ping: the engine's own test
        "beta/fw": (UP, None),  # its last turn was skipped: no news, the last observation holds
        "gamma/sw": (DOWN, None),
    }
    fw = found["beta/fw"]
    assert [(c.collector, c.status, c.error) for c in fw.collectors] == [
        ("snmp", "skipped", "previous run still going")
    ]
    assert fw.last_poll_at == T0 + 90 and fw.firing == 1
    srv = found["acme/srv"]
    assert [(c.collector, c.status) for c in srv.collectors] == [("snmp", "timeout"), ("ping", "ok")]
    assert found["acme/printer"].collectors[0].status is None and found["acme/printer"].last_poll_at is None
    assert found[f"acme/{DIST}"].collectors[0].error == "no complete answer within 10 s"
    assert [s.device for s in device_statuses(files, inventory(), client="beta")] == ["fw"]


async def test_status_without_the_config_reads_the_parents_off_the_engine(files: StateDir) -> None:
    found = by_name(device_statuses(files))
    assert "acme/printer" not in found  # only the config knows a device never polled
    # acc-01's device_unreachable is held pending by the engine, inhibited by its parent
    assert (found["acme/acc-01"].state, found["acme/acc-01"].behind) == (UNREACHABLE, f"acme/{DIST}")
    assert found[f"acme/{DIST}"].state == DOWN and found["acme/srv"].state == UP


async def test_alerts_name_client_device_rule_and_what_holds_them(files: StateDir) -> None:
    rows = alert_rows(files)
    assert [(a.state, a.severity, a.client, a.device, a.rule) for a in rows] == [
        ("firing", "critical", "acme", DIST, "device_unreachable"),
        ("firing", "critical", "acme", "srv", "device_unreachable"),
        ("firing", "critical", "gamma", "sw", "device_unreachable"),
        ("firing", "major", "beta", "fw", UPLINK_RULE),
        ("pending", "critical", "acme", "acc-01", "device_unreachable"),
    ]
    assert rows[-1].inhibited_by == f"acme/{DIST}" and rows[-1].since == T0
    assert rows[0].since == T0 and rows[0].summary == f"{DIST} ne répond plus"
    resolved = [a for a in alert_rows(files, include_resolved=True) if a.state == "resolved"]
    assert [(a.device, a.rule, a.since) for a in resolved] == [("core", UPLINK_RULE, T0 + 60)]
    assert [a.device for a in alert_rows(files, client="beta")] == ["fw"]


async def test_tickets_of_the_log_and_of_an_itsm(files: StateDir) -> None:
    tickets = ticket_rows(files)
    assert [(t.client, t.device, t.receiver, t.ticket_id, t.status) for t in tickets] == [
        ("acme", "core", "log", "3", "solved"),
        ("acme", DIST, "log", "1", "open"),
        ("acme", "srv", "log", "2", "open"),
        ("beta", "fw", "itsm", "100", "open"),
        ("gamma", "sw", "itsm", None, "failed"),
    ]
    solved = tickets[0]
    assert (solved.opened_at, solved.solved_at, solved.time_to_ticket_s) == (T0, T0 + 60, 0.0)
    assert solved.title.endswith("core Te1/0/1 down") and solved.title.startswith("[vigie:")
    itsm = tickets[3]
    assert itsm.url == "https://itsm.beta.example.org/front/ticket.form.php?id=100"
    assert itsm.title.endswith("fw Te1/0/1 down")
    assert "403 Forbidden" in (tickets[4].error or "")
    places = ticket_places(tickets, [Receiver("acme", "log", None), Receiver("beta", "itsm", ITSM_URL)])
    assert [(p.client, p.receiver, p.where) for p in places] == [("acme", "log", None), ("beta", "itsm", ITSM_URL)]
    assert [(p.client, p.receiver) for p in ticket_places(tickets)] == [
        ("acme", "log"),
        ("beta", "itsm"),
        ("gamma", "itsm"),
    ]


# -- 80 columns --------------------------------------------------------------------------------


def rendered(renderable) -> list[str]:
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    console.print(renderable, crop=False)  # as the commands print: an overlong line would show
    lines = console.export_text().splitlines()
    console.file.close()
    return lines


def assert_fits_with_names_whole(lines: list[str], names: set[str]) -> None:
    """No line over 80 columns, but one holding a single word longer than that (a path: it is left
    whole to the terminal), and every name whole on one line."""
    assert lines, "nothing rendered"
    overlong = [line for line in lines if len(line.rstrip()) > 80 and " " in line.strip()]
    assert not overlong, "\n".join(lines)
    cut = {name for name in names if not any(name in line for line in lines)}
    assert not cut, f"cut or missing: {cut}\n" + "\n".join(lines)


async def test_alerts_fit_80_columns_with_every_name_whole(files: StateDir) -> None:
    rows = alert_rows(files, include_resolved=True)
    lines = rendered(alerts_view(rows, T0 + 90))
    names = {f"{a.client}/{a.device}" for a in rows} | {a.rule for a in rows} | {f"acme/{DIST}"}
    assert_fits_with_names_whole(lines, names | {"inhibited by acme/" + DIST})
    assert [line.split()[:2] for line in lines[1:] if not line.startswith(" ")] == [[a.severity, a.state] for a in rows]
    assert lines[0].split() == ["severity", "state", "since", "alert"]


async def test_status_fits_80_columns_with_every_name_whole(files: StateDir) -> None:
    statuses = device_statuses(files, inventory())
    lines = rendered(status_view(statuses, T0 + 90, installed=frozenset({"snmp"})))
    assert_fits_with_names_whole(lines, {f"{s.client}/{s.device}" for s in statuses} | {f"behind acme/{DIST}"})
    assert {line.split()[0] for line in lines[2:] if not line.startswith(" ")} == {UP, DOWN, UNREACHABLE, UNKNOWN}
    text = "\n".join(lines)
    assert "7 device(s) of acme, beta, gamma: 3 up, 2 down, 1 unreachable, 1 unknown" in text
    assert "ping: collector not installed" not in text  # srv's ping has run: it is installed somewhere
    assert "printer" in text and "snmp: never polled" in text


async def test_tickets_fit_80_columns_with_every_name_and_url_whole(files: StateDir) -> None:
    tickets = ticket_rows(files)
    places = ticket_places(tickets, [Receiver("acme", "log", None), Receiver("beta", "itsm", ITSM_URL)])
    lines = rendered(tickets_view(tickets, places, T0 + 90))
    names = {f"{t.client}/{t.device}" for t in tickets} | {t.rule for t in tickets} | {t.url for t in tickets if t.url}
    assert_fits_with_names_whole(lines, names | {"log#3 solved", "itsm#100 open", "beta: tickets in itsm:", ITSM_URL})


# -- read-only, while the agent runs -------------------------------------------------------------


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_views_write_nothing_and_read_beside_a_writer(files: StateDir) -> None:
    import sqlite3

    before = contents(files.path)
    writer = sqlite3.connect(files.alerts_db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")  # the engine in the middle of a batch
    writer.execute("DELETE FROM alerts")
    try:
        assert len(alert_rows(files)) == 5  # the last committed batch, without waiting for this one
        assert len(device_statuses(files)) == 6
        assert len(ticket_rows(files)) == 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    after = contents(files.path)
    assert {name: data for name, data in after.items() if not name.endswith(("-wal", "-shm"))} == {
        name: data for name, data in before.items() if not name.endswith(("-wal", "-shm"))
    }


def test_views_of_a_directory_no_agent_used_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = StateDir(tmp_path / "never")
    assert device_statuses(missing) == [] and alert_rows(missing) == [] and ticket_rows(missing) == []
    for command in ("status", "alerts", "tickets"):
        assert main([command, "--state-dir", str(missing.path)]) == 1
        assert "no agent state here" in capsys.readouterr().err
    assert not missing.path.exists()


# -- the commands ------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, files: StateDir) -> Iterator[Path]:
    """The estate's config, naming credentials whose secrets file does not exist: the views need none."""

    def devices(client: str) -> list[dict]:
        return [
            {
                "name": d.name,
                "address": "127.0.0.1",
                "collectors": {c: {} for c in d.collectors},
                "credentials": f"lab-{client}-{d.name}",
                **({"parent": d.parent} if d.parent else {}),
            }
            for d in inventory()
            if d.client == client
        ]

    raw = {
        "agent": {"state_dir": str(files.path)},
        "clients": [
            {"name": "acme", "display_name": "ACME", "sites": [{"name": "siege", "devices": devices("acme")}]},
            {
                "name": "beta",
                "display_name": "Beta",
                "ticketing": {"kind": "glpi", "url": ITSM_URL, "user_token": {"secret": "beta-glpi"}, "entity_id": 0},
                "sites": [{"name": "siege", "devices": devices("beta")}],
            },
        ],
    }
    path = tmp_path / "vigie.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    yield path


async def test_commands_read_the_state_dir_of_the_config_without_secrets(
    config: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["status", "--config", str(config), "--json"]) == 0
    statuses = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["client"], s["device"], s["state"]) for s in statuses if s["client"] == "acme"] == [
        ("acme", "acc-01", UNREACHABLE),
        ("acme", "core", UP),
        ("acme", DIST, DOWN),
        ("acme", "printer", UNKNOWN),
        ("acme", "srv", UP),
    ]
    assert {s["device"]: s["last_poll_at"] for s in statuses if s["client"] == "beta"} == {"fw": T0 + 90}
    assert main(["status", "--config", str(config), "--client", "beta"]) == 0
    out = capsys.readouterr().out
    assert "beta/fw" in out and "acme/" not in out

    assert main(["alerts", "--config", str(config), "--json", "--all"]) == 0
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {a["inhibited_by"] for a in alerts} == {None, f"acme/{DIST}"}

    assert main(["tickets", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "itsm#100 open" in out and "https://itsm.beta.example.org/front/ticket.form.php?id=100" in out
    assert f"beta: tickets in glpi:\n  {ITSM_URL}\n" in out
    assert "acme: tickets in the built-in log (all listed here)" in out


def test_a_config_of_the_wrong_shape_is_refused_naming_file_and_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "vigie.yaml"
    path.write_text("clients:\n  - name: acme\n    display_name: ACME\n    sites: [{name: hq, devices: [{name: x}]}]\n")
    assert main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4: clients[acme].sites[hq].devices[x].address: required key missing" in err


def test_devices_a_controller_reports_on_have_a_state(tmp_path: Path) -> None:
    # three Meraki APs known only through the Dashboard's samples (no poll of their own)
    files = StateDir(tmp_path / "state").create()
    state = StateDB(files.state_db)
    offline = Rule(name="ap_offline", measurement="meraki_device", when="status == 'offline'", severity="major")
    engine = AlertEngine(str(files.alerts_db), [offline], clock=lambda: T0)
    samples = [
        Sample("meraki_device", {"client": "acme", "site": "siege", "device": name}, {"status": status},
               int(at * 1e9))
        for name, status, at in (("ap-1", "online", T0), ("ap-2", "offline", T0), ("ap-3", "online", T0 - 3600))
    ]
    samples.append(Sample("collection", {"client": "acme", "site": "siege", "device": "meraki", "collector": "meraki"},
                          {"status": "ok"}, int(T0 * 1e9)))
    state.update(samples, int(T0 * 1e9))
    engine.evaluate(samples, now=T0)
    state.close()
    engine.close()

    def ap(name: str) -> DeviceInfo:
        return DeviceInfo("acme", "siege", name, "", {}, (), "sw-1")

    found = by_name(device_statuses(files, [ap("ap-1"), ap("ap-2"), ap("ap-3")]))
    # up while reported, down while its alert fires, unknown once nothing speaks of it
    assert {name: s.state for name, s in found.items()} == {"acme/ap-1": UP, "acme/ap-2": DOWN, "acme/ap-3": UNKNOWN}


def test_latest_values_of_some_measurements_of_a_client(tmp_path: Path) -> None:
    # what the backup coverage and the inventory read: a few measurements, not every interface
    from agent.views.latest import latest_series

    files = StateDir(tmp_path / "state").create()
    state = StateDB(files.state_db)
    at = int(T0 * 1e9)
    samples = [Sample("snmp_interface", {"client": client, "device": "sw", "if_name": f"Gi1/0/{port}"},
                      {"oper_status": "up"}, at) for client in ("acme", "beta") for port in range(3)]
    samples += [Sample("snmp_system", {"client": client, "device": "sw"}, {"uptime_s": 10.0, "sys_descr": "IOS"}, at)
                for client in ("acme", "beta")]
    samples.append(Sample("veeam_job", {"client": "acme", "device": "vbr", "job": "daily"}, {"result": "Success"}, at))
    state.update(samples, at)
    state.close()

    def read(**kwargs: object) -> list[tuple[str, dict, dict]]:
        return [(s.measurement, s.tags, s.fields) for s in latest_series(files, "acme", **kwargs)]

    assert len(read()) == 5
    assert read(measurements=("snmp_system", "veeam_job")) == [
        ("snmp_system", {"client": "acme", "device": "sw"}, {"sys_descr": "IOS", "uptime_s": 10.0}),
        ("veeam_job", {"client": "acme", "device": "vbr", "job": "daily"}, {"result": "Success"}),
    ]
    assert read(measurements=()) == []
    assert read(device="vbr", measurements=("snmp_system", "veeam_job")) == read(measurements=("veeam_job",))
