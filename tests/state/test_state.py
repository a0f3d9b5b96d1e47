import datetime as dt
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from agent.api import Sample
from agent.config import load_config
from agent.runner import state_retention_days
from agent.state import STATE_FIELDS, Interval, Latest, StateDB, tz_by_client
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS
from collectors.snmp import PLUGIN as SNMP

S = 1_000_000_000
MIN = 60 * S
T0 = 1_700_000_000 * S
TAGS = {"client": "mairie", "site": "hdv", "device": "sw1", "collector": "snmp"}


def status(value, ts, device="sw1"):
    return Sample("collection", {**TAGS, "device": device}, {"status": value, "duration_s": 0.5}, ts)


@pytest.fixture
def db(tmp_path):
    # the kernel's state field and the SNMP plugin's, as the agent gives them
    state = StateDB(tmp_path / "state.sqlite", stale_after_ns=10 * MIN, state_fields=STATE_FIELDS | SNMP.state_fields)
    yield state
    state.close()


def test_latest_keeps_the_newest_value_including_unknown(db):
    db.update([Sample("collection", TAGS, {"status": "error", "error": "timeout"}, T0)], T0)
    db.update([Sample("collection", TAGS, {"status": "ok", "error": None}, T0 + MIN)], T0 + MIN)
    # An older, late batch does not overwrite newer values.
    db.update([Sample("collection", TAGS, {"status": "timeout", "error": "late"}, T0 + 30 * S)], T0 + MIN)
    assert db.latest("collection") == [
        Latest("collection", TAGS, "error", None, T0 + MIN),
        Latest("collection", TAGS, "status", "ok", T0 + MIN),
    ]
    assert db.latest(tag_filter={"device": "other"}) == []


def test_state_flipping_several_times_gives_intervals_and_availability(db):
    flips = ["ok", "ok", "unreachable", "ok", "unreachable", "unreachable", "ok", "ok"]
    for i, value in enumerate(flips):
        db.update([status(value, T0 + i * MIN)], T0 + i * MIN)
    end = T0 + 8 * MIN
    assert [
        (iv.value, (iv.start_ns - T0) // MIN, (iv.end_ns - T0) // MIN)
        for iv in db.intervals("collection", "status", T0, end)
    ] == [
        ("ok", 0, 2),
        ("unreachable", 2, 3),
        ("ok", 3, 4),
        ("unreachable", 4, 6),
        ("ok", 6, 8),
    ]
    assert db.availability("collection", "status", {"ok"}, T0, end) == pytest.approx(5 / 8)
    # Window clipping: [2.5 min, 4.5 min) is 0.5 down, 1 up, 0.5 down.
    clipped = db.intervals("collection", "status", T0 + 150 * S, T0 + 270 * S)
    assert [(iv.value, iv.end_ns - iv.start_ns) for iv in clipped] == [
        ("unreachable", 30 * S),
        ("ok", 60 * S),
        ("unreachable", 30 * S),
    ]
    assert db.availability("collection", "status", ["ok"], T0 + 150 * S, T0 + 270 * S) == pytest.approx(0.5)


def test_silence_beyond_staleness_is_unknown_and_not_counted(db):
    db.update([status("ok", T0)], T0)
    db.update([status("ok", T0 + MIN)], T0 + MIN)
    # Silent for an hour, then back up: ok holds 10 min after the last report, then unknown.
    db.update([status("ok", T0 + 61 * MIN)], T0 + 61 * MIN)
    window = (T0, T0 + 62 * MIN)
    got = [
        (iv.value, (iv.start_ns - T0) // MIN, (iv.end_ns - T0) // MIN)
        for iv in db.intervals("collection", "status", *window)
    ]
    assert got == [("ok", 0, 11), (None, 11, 61), ("ok", 61, 62)]
    assert db.durations("collection", "status", *window) == {"ok": 12 * MIN, None: 50 * MIN}
    assert db.availability("collection", "status", {"ok"}, *window) == 1.0


def test_window_before_first_report_and_after_open_interval_goes_stale(db):
    db.update([status("unreachable", T0)], T0)
    window = (T0 - 5 * MIN, T0 + 30 * MIN)
    assert db.intervals("collection", "status", *window) == [
        Interval(TAGS, None, T0 - 5 * MIN, T0),
        Interval(TAGS, "unreachable", T0, T0 + 10 * MIN),
        Interval(TAGS, None, T0 + 10 * MIN, T0 + 30 * MIN),
    ]
    assert db.availability("collection", "status", {"ok"}, *window) == 0.0
    assert db.availability("collection", "status", {"ok"}, T0 - 5 * MIN, T0) is None
    assert db.availability("collection", "status", {"ok"}, T0, T0) is None


def test_unknown_state_value_and_multiple_series(db):
    db.update([status("ok", T0), status("ok", T0, device="sw2")], T0)
    db.update([status(None, T0 + MIN), status("unreachable", T0 + MIN, device="sw2")], T0 + MIN)
    db.update([status("ok", T0 + 2 * MIN), status("unreachable", T0 + 2 * MIN, device="sw2")], T0 + 2 * MIN)
    window = (T0, T0 + 2 * MIN)
    assert db.durations("collection", "status", *window, tag_filter={"device": "sw1"}) == {
        "ok": MIN,
        None: MIN,
    }
    # Combined over both devices: 2 ok minutes out of 3 known.
    assert db.availability("collection", "status", {"ok"}, *window) == pytest.approx(1 / 3 * 2)
    assert db.availability("collection", "status", {"ok"}, *window, tag_filter={"device": "sw2"}) == 0.5


def test_out_of_order_state_is_ignored_and_future_timestamps_are_clamped(db):
    db.update([status("ok", T0), status("unreachable", T0 + 2 * MIN)], T0 + 2 * MIN)
    db.update([status("ok", T0 + MIN)], T0 + 3 * MIN)
    # A device clock an hour ahead must not hold the state open into the future.
    db.update([status("ok", T0 + 63 * MIN)], T0 + 3 * MIN)
    got = [
        (iv.value, (iv.start_ns - T0) // MIN, (iv.end_ns - T0) // MIN)
        for iv in db.intervals("collection", "status", T0, T0 + 4 * MIN)
    ]
    assert got == [("ok", 0, 2), ("unreachable", 2, 3), ("ok", 3, 4)]


def test_state_fields_are_declarative(tmp_path):
    db = StateDB(tmp_path / "s.sqlite", state_fields={("ups", "on_battery")})
    db.update(
        [Sample("ups", TAGS, {"on_battery": False}, T0), Sample("ups", TAGS, {"on_battery": True}, T0 + MIN)], T0 + MIN
    )
    assert db.availability("ups", "on_battery", {False}, T0, T0 + 2 * MIN) == 0.5
    assert db.intervals("collection", "status", T0, T0 + MIN) == []
    db.close()


def test_daily_aggregates_follow_the_local_date_across_midnight(db):
    paris = ZoneInfo("Europe/Paris")

    def at(day, hour, minute):
        return int(dt.datetime(2024, 3, day, hour, minute, tzinfo=paris).timestamp()) * S

    cpu = [(at(1, 23, 0), 10.0), (at(1, 23, 59), 30), (at(2, 0, 1), 50.0), (at(2, 0, 30), 70.0)]
    # 23:59 Paris on 1 March is 22:59 UTC: still 1 March locally, but 00:01 is 2 March.
    db.update([Sample("snmp_cpu", TAGS, {"load": v, "state": "ok", "flag": True}, ts) for ts, v in cpu], at(2, 1, 0))
    days = db.daily("snmp_cpu", "load", dt.date(2024, 3, 1), dt.date(2024, 3, 2))
    assert [(d.day, d.min, d.max, d.avg, d.count, d.last) for d in days] == [
        (dt.date(2024, 3, 1), 10.0, 30.0, 20.0, 2, 30.0),
        (dt.date(2024, 3, 2), 50.0, 70.0, 60.0, 2, 70.0),
    ]
    assert db.daily("snmp_cpu", "load", dt.date(2024, 3, 2), dt.date(2024, 3, 2))[0].count == 2
    # Strings and bools are not aggregated.
    assert db.daily("snmp_cpu", "flag", dt.date(2024, 3, 1), dt.date(2024, 3, 2)) == []
    assert db.daily("snmp_cpu", "state", dt.date(2024, 3, 1), dt.date(2024, 3, 2)) == []


def test_daily_uses_each_clients_timezone(tmp_path):
    db = StateDB(tmp_path / "s.sqlite", tz_for=tz_by_client({"cd971": "America/Guadeloupe"}))
    ts = int(dt.datetime(2024, 3, 2, 2, 0, tzinfo=dt.UTC).timestamp()) * S
    db.update([Sample("m", {**TAGS, "client": "cd971"}, {"v": 1.0}, ts), Sample("m", TAGS, {"v": 2.0}, ts)], ts)
    days = {d.tags["client"]: d.day for d in db.daily("m", "v", dt.date(2024, 3, 1), dt.date(2024, 3, 2))}
    assert days == {"cd971": dt.date(2024, 3, 1), "mairie": dt.date(2024, 3, 2)}
    db.close()


def test_rollups_survive_reopen(tmp_path):
    db = StateDB(tmp_path / "s.sqlite")
    db.update([status("ok", T0)], T0)
    db.close()
    again = StateDB(tmp_path / "s.sqlite")
    again.update([status("unreachable", T0 + MIN)], T0 + MIN)
    assert again.availability("collection", "status", {"ok"}, T0, T0 + 2 * MIN) == 0.5
    again.close()


DAY = 86_400 * S


def table_rows(db, table):
    with sqlite3.connect(db.path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_retention_drops_finished_intervals_but_never_open_ones_or_latest(tmp_path):
    db = StateDB(tmp_path / "s.sqlite", stale_after_ns=10 * MIN, retention_days=1)
    for i, value in enumerate(["ok", "unreachable", "ok", "unreachable", "ok"]):
        db.update([status(value, T0 + i * MIN)], T0 + i * MIN)
    # sw2 reported once, long ago: its open interval and latest value are its current state.
    db.update([status("ok", T0, device="sw2")], T0 + 4 * MIN)
    db.update([], T0 + DAY + 150 * S)
    window = (T0, T0 + 5 * MIN)
    assert [
        (iv.value, (iv.start_ns - T0) // MIN, (iv.end_ns - T0) // MIN)
        for iv in db.intervals("collection", "status", *window, tag_filter={"device": "sw1"})
    ] == [(None, 0, 2), ("ok", 2, 3), ("unreachable", 3, 4), ("ok", 4, 5)]
    assert db.durations("collection", "status", *window, tag_filter={"device": "sw2"}) == {"ok": 5 * MIN}
    assert {(lt.tags["device"], lt.field) for lt in db.latest("collection")} == {
        ("sw1", "status"),
        ("sw1", "duration_s"),
        ("sw2", "status"),
        ("sw2", "duration_s"),
    }
    db.close()


def test_retention_deletes_a_bounded_number_of_rows_per_update(tmp_path):
    db = StateDB(tmp_path / "s.sqlite", retention_days=1, prune_step_rows=3)
    for i in range(11):
        db.update([status("ok" if i % 2 else "unreachable", T0 + i * MIN)], T0 + i * MIN)
    assert table_rows(db, "state_interval") == 11  # 10 finished, 1 open
    counts = []
    for step in range(5):
        db.update([], T0 + 2 * DAY + step * MIN)
        counts.append(table_rows(db, "state_interval"))
    assert counts == [8, 5, 2, 1, 1]
    db.close()


def test_retention_drops_daily_rows_only_once_the_whole_local_day_is_past(tmp_path):
    zones = tz_by_client({"pacific": "Etc/GMT+12"})  # UTC-12: the latest end of any local date
    db = StateDB(tmp_path / "s.sqlite", tz_for=zones, retention_days=1)

    def utc(day, hour):
        return int(dt.datetime(2024, 3, day, hour, tzinfo=dt.UTC).timestamp()) * S

    def cpu(ts, client="mairie"):
        return Sample("snmp_cpu", {**TAGS, "client": client}, {"load": 1.0}, ts)

    db.update([cpu(utc(1, 12)), cpu(utc(3, 12)), cpu(utc(5, 11)), cpu(utc(5, 11), client="pacific")], utc(5, 11))
    # Cutoff 5 March 10:00 UTC: Paris' 1 and 3 March are past. The 5 March 11:00 UTC samples are
    # inside the retention: Paris' 5 March and the Pacific's 4 March (local) must both stay.
    db.update([], utc(5, 10) + DAY)
    days = db.daily("snmp_cpu", "load", dt.date(2024, 3, 1), dt.date(2024, 3, 5))
    assert {(d.tags["client"], d.day.day) for d in days} == {("mairie", 5), ("pacific", 4)}
    db.close()


def test_agent_keeps_rollups_as_long_as_the_embedded_store_keeps_points(tmp_path):
    def retention(store: str):
        path = tmp_path / "vigie.yaml"
        path.write_text(f"agent: {{store: {store}}}\n")
        return state_retention_days(load_config(path, environ={"VIGIE_SECRET_T": "token"}))

    assert retention("{kind: sqlite, retention_days: 30}") == 30
    influx = "{kind: influxdb, url: 'http://tsdb:8086', org: noc, bucket: vigie, token: {secret: t}}"
    assert retention(influx) == DEFAULT_RETENTION_DAYS


def test_series_rows_are_written_once_across_a_reopen_and_a_failed_batch(tmp_path):
    # The ids of the series already in the file are read at the first update, and the tag rows of
    # the series a batch creates are written with it: a reopen must not duplicate a series, a
    # rolled-back batch must not leave an id remembered that the file does not hold.
    db = StateDB(tmp_path / "s.sqlite")
    db.update([status("ok", T0)], T0)
    db.close()
    again = StateDB(tmp_path / "s.sqlite")
    again.update([status("ok", T0 + MIN), status("ok", T0 + MIN, device="sw2")], T0 + MIN)
    with pytest.raises(sqlite3.Error):  # a value SQLite cannot bind: the whole batch rolls back
        again.update([status("ok", T0 + 2 * MIN, device="sw3"),
                      Sample("collection", {**TAGS, "device": "sw3"}, {"error": ["not", "a", "value"]},
                             T0 + 2 * MIN)], T0 + 2 * MIN)
    again.update([status("ok", T0 + 3 * MIN, device="sw3")], T0 + 3 * MIN)
    assert table_rows(again, "series") == 3
    assert table_rows(again, "series_tag") == 3 * len(TAGS)
    sw1 = again.latest("collection", {"device": "sw1"})
    assert [lt.timestamp_ns for lt in sw1 if lt.field == "status"] == [T0 + MIN]
    assert {lt.tags["device"] for lt in again.latest("collection", {"device": "sw3"})} == {"sw3"}
    again.close()


def test_a_lone_surrogate_in_a_tag_or_a_value_is_kept_as_a_replacement_character(db):
    """SQLite cannot bind text that is no UTF-8 (decoded with surrogateescape): the batch was
    rolled back whole. The text is stored with U+FFFD in its place, and the rest of the batch too."""
    broken = b"caf\xe9".decode("utf-8", "surrogateescape")
    db.update(
        [
            Sample("collection", {**TAGS, "device": broken}, {"status": "ok", "error": broken}, T0),
            status("ok", T0, device="sw2"),
        ],
        T0,
    )
    found = {(latest.tags["device"], latest.field): latest.value for latest in db.latest("collection")}
    assert found[("caf\ufffd", "error")] == "caf\ufffd"
    assert found[("sw2", "status")] == "ok"
