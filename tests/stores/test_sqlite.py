import sqlite3

from agent.api import Sample
from agent.stores import build_store
from agent.stores.sqlite import NS_PER_DAY, SeriesPoints, SqliteStore

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def iface(device: str, ifname: str, ts: int, **fields) -> Sample:
    tags = {"client": "mairie", "site": "hdv", "device": device, "ifName": ifname}
    return Sample("snmp_interface", tags, fields, ts)


async def test_write_and_query_by_tags_fields_and_range(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite", clock_ns=lambda: T0)
    await store.write(
        [
            iface("sw1", "ge0", T0, in_bps=1.5, oper_status="up", errors=3, up=True),
            iface("sw1", "ge1", T0, in_bps=2.0, oper_status="down"),
            iface("sw2", "ge0", T0, in_bps=None, oper_status="up"),
            iface("sw1", "ge0", T0 + 60 * S, in_bps=1.0, oper_status="up"),
        ]
    )
    assert await store.series("snmp_interface", {"device": "sw1"}) == [
        {"client": "mairie", "device": "sw1", "ifName": "ge0", "site": "hdv"},
        {"client": "mairie", "device": "sw1", "ifName": "ge1", "site": "hdv"},
    ]
    assert len(await store.series("snmp_interface")) == 3
    assert await store.series("snmp_interface", {"device": "nope"}) == []

    points = await store.points("snmp_interface", "in_bps", {"device": "sw1", "ifName": "ge0"})
    assert points == [SeriesPoints(points[0].tags, [(T0, 1.5), (T0 + 60 * S, 1.0)])]
    # None is unknown: nothing stored, not 0.
    assert await store.points("snmp_interface", "in_bps", {"device": "sw2"}) == []
    windowed = await store.points("snmp_interface", "oper_status", None, T0 + 1, T0 + 61 * S)
    assert [p.points for p in windowed] == [[(T0 + 60 * S, "up")]]
    # Types survive: ints stay ints, 1.0 stays a float, bools are 0/1.
    assert (await store.points("snmp_interface", "errors"))[0].points == [(T0, 3)]
    assert type((await store.points("snmp_interface", "in_bps", {"ifName": "ge1"}))[0].points[0][1]) is float
    assert (await store.points("snmp_interface", "up"))[0].points == [(T0, 1)]
    await store.close()


async def test_rewriting_a_point_replaces_it(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite", clock_ns=lambda: T0)
    await store.write([iface("sw1", "ge0", T0, in_bps=1.0)])
    await store.write([iface("sw1", "ge0", T0, in_bps=2.0)])
    assert (await store.points("snmp_interface", "in_bps"))[0].points == [(T0, 2.0)]
    await store.close()


async def test_file_is_wal_and_survives_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path, clock_ns=lambda: T0)
    await store.write([iface("sw1", "ge0", T0, in_bps=1.0)])
    await store.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = SqliteStore(path, clock_ns=lambda: T0)
    await again.write([iface("sw1", "ge0", T0 + S, in_bps=2.0)])
    assert (await again.points("snmp_interface", "in_bps"))[0].points == [(T0, 1.0), (T0 + S, 2.0)]
    await again.close()


async def test_retention_is_incremental_and_drops_empty_series(tmp_path):
    now = [T0 - 3 * NS_PER_DAY]
    store = SqliteStore(tmp_path / "s.sqlite", retention_days=2, clock_ns=lambda: now[0])
    old = [iface("old", f"ge{i}", T0 - 3 * NS_PER_DAY + i, in_bps=1.0, oper_status="up") for i in range(10)]
    # Written while they are recent: the write's own retention step keeps them.
    await store.write(old + [iface("new", "ge0", T0, in_bps=1.0)])
    now[0] = T0
    assert await store.prune(T0, max_rows=5) == 5
    assert len(await store.series("snmp_interface")) == 11  # backlog left: series kept meanwhile
    assert await store.prune(T0, max_rows=100) == 15
    assert await store.series("snmp_interface") == [
        {"client": "mairie", "device": "new", "ifName": "ge0", "site": "hdv"}
    ]
    assert await store.prune(T0) == 0
    # A later write reuses nothing stale from the id cache.
    await store.write([iface("old", "ge0", T0, in_bps=4.0)])
    assert (await store.points("snmp_interface", "in_bps", {"device": "old"}))[0].points == [(T0, 4.0)]
    await store.close()


async def test_write_takes_a_retention_step_at_the_clock_time(tmp_path):
    now = [T0]
    store = SqliteStore(tmp_path / "s.sqlite", retention_days=1, clock_ns=lambda: now[0])
    await store.write([iface("sw1", "ge0", T0, in_bps=1.0)])
    now[0] = T0 + 2 * NS_PER_DAY
    await store.write([iface("sw1", "ge0", now[0], in_bps=2.0)])
    assert (await store.points("snmp_interface", "in_bps"))[0].points == [(now[0], 2.0)]
    await store.close()


def test_build_store_sqlite(tmp_path):
    store = build_store({"kind": "sqlite", "retention_days": 30}, tmp_path, secrets=None)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "samples.sqlite"
    assert store.retention_ns == 30 * NS_PER_DAY


async def test_a_counter64_near_its_top_is_kept_not_the_batch_lost(tmp_path):
    """sqlite3 raises OverflowError on integers beyond signed 64 bits: that rolled the whole batch back."""
    from agent.state import StateDB
    from agent.stores.sqlite import SqliteStore

    top = Sample("snmp_interface", {"device": "sw1", "if_index": "1"}, {"in_octets": 2**64 - 1, "up": True}, 10**18)
    other = Sample("snmp_cpu", {"device": "sw1"}, {"usage_percent": 12}, 10**18)
    store = SqliteStore(tmp_path / "samples.sqlite", retention_days=400)
    await store.write([top, other])
    await store.close()
    state = StateDB(tmp_path / "state.sqlite")
    state.update([top, other], 10**18)
    values = {(s.measurement, s.field): s.value for s in state.latest()}
    assert values[("snmp_interface", "in_octets")] == float(2**64 - 1) and values[("snmp_cpu", "usage_percent")] == 12
    state.close()


def test_series_ids_are_found_again_by_digest_whoever_wrote_them(tmp_path):
    """The id cache keeps a digest of each series' key: a series written by one cache is found by
    another (read all at once, or looked up one by one), hostile tags included, and series that
    differ by a tag value or a measurement stay apart."""
    from agent.db import SERIES_SCHEMA, open_db
    from agent.stores.sqlite import SeriesIds

    conn = open_db(tmp_path / "ids.sqlite", SERIES_SCHEMA)
    writer = SeriesIds()
    hostile = {"device": "sw\ud800\x00'\"", "ifAlias": "é\n"}
    ids = {
        "a": writer.get(conn, "snmp_interface", {"device": "sw1", "ifName": "ge0"}),
        "hostile": writer.get(conn, "snmp_interface", hostile),
        "other measurement": writer.get(conn, "snmp_system", {"device": "sw1", "ifName": "ge0"}),
        "other value": writer.get(conn, "snmp_interface", {"device": "sw1", "ifName": "ge1"}),
    }
    assert len(set(ids.values())) == 4
    # An empty tag is no tag (the line-protocol form): the same series.
    assert writer.get(conn, "snmp_interface", {"device": "sw1", "ifName": "ge0", "site": ""}) == ids["a"]
    new_tags: list[tuple[int, str, str]] = []
    for reader in (SeriesIds(read_all=True), SeriesIds()):
        assert reader.get(conn, "snmp_interface", hostile, new_tags) == ids["hostile"]
        assert reader.get(conn, "snmp_system", {"ifName": "ge0", "device": "sw1"}, new_tags) == ids["other measurement"]
    assert new_tags == []
    assert conn.execute("SELECT count(*) FROM series").fetchone() == (4,)
    # SQLite cannot bind a lone surrogate: it is stored as U+FFFD, not a batch rolled back.
    stored = conn.execute("SELECT value FROM series_tag WHERE key = 'device' AND series_id = ?", (ids["hostile"],))
    assert stored.fetchone() == ("sw\ufffd\x00'\"",)
    fresh = SeriesIds(read_all=True).get(conn, "snmp_interface", {"device": "sw3"}, new_tags)
    assert new_tags == [(fresh, "device", "sw3")]
    conn.close()
