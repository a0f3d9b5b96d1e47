r"""Line protocol: hostile text written to a real VictoriaMetrics comes back exactly (line breaks and
other controls as their visible `\n` text), and no line ever splits into a fake series."""

import pytest

from agent.api import Sample
from agent.stores.influx import InfluxStore
from agent.stores.line_protocol import EncodedLine, _SeriesHeads, encode

MS = 1_000_000
T0 = 1_700_000_000_000 * MS
GHOST = f"ghost,device=evil v=666 {T0}"

# (what a device sent, what the store must hold): only C0 controls and DEL change, to visible text.
HOSTILE_TEXT = [
    (
        "Cisco IOS Software, C2960X Software\r\nTechnical Support: http://www.cisco.com/techsupport",
        r"Cisco IOS Software, C2960X Software\r\nTechnical Support: http://www.cisco.com/techsupport",
    ),
    ("uplink\nto core", r"uplink\nto core"),
    (f"crafted\n{GHOST}\n", rf"crafted\n{GHOST}\n"),
    ("tab\there", r"tab\there"),
    ("nul\x00bell\x07del\x7f", r"nul\x00bell\x07del\x7f"),
    ('say "hi"', 'say "hi"'),
    ("C:\\Windows\\System32", "C:\\Windows\\System32"),
    ("ends with a backslash\\", "ends with a backslash\\"),
    ("two\\\\backslashes", "two\\\\backslashes"),
    ("backslash before comma\\,", "backslash before comma\\,"),
    ("backslash before space\\ x", "backslash before space\\ x"),
    ("backslash before equals\\=x", "backslash before equals\\=x"),
    ("a,b", "a,b"),
    ("a b", "a b"),
    ("a=b", "a=b"),
    ("=", "="),
    ("  leading and trailing  ", "  leading and trailing  "),
    ("Bâtiment B — 2ᵉ étage 🚀", "Bâtiment B — 2ᵉ étage 🚀"),
    ("# not a comment", "# not a comment"),
    # Longer than what the encoder keeps in its cache: escaped on every line.
    ("long, " * 40 + "\n= end", "long, " * 40 + r"\n= end"),
]


def test_escaping_per_element():
    sample = Sample(
        "snmp system",
        {"a,b": "x y", "c=d": "e=f", "empty": "", "": "no key", "back": "tail\\"},
        {"descr": 'line1\r\nline2 "quoted" \\ end', "f k": 1.5, 'q"k': 2, "up": True},
        T0,
    )
    assert encode(sample) == EncodedLine(
        r"snmp\ system,a\,b=x\ y,back=tail\\,c\=d=e\=f "
        r'descr="line1\\r\\nline2 \"quoted\" \\ end",f\ k=1.5,q\"k=2i,up=true '
        f"{T0}",
        (),
    )


def test_unrepresentable_fields_are_left_out_and_named():
    sample = Sample(
        "m",
        {"device": "d"},
        {"nan": float("nan"), "inf": float("-inf"), "big": 2**63, "min": -(2**63), "": 1.0, "ok": 0.5},
        T0,
    )
    assert encode(sample) == EncodedLine(f"m,device=d min=-9223372036854775808i,ok=0.5 {T0}", ("", "big", "inf", "nan"))
    only_bad = Sample("m", {}, {"nan": float("nan"), "unknown": None}, T0)
    assert encode(only_bad) == EncodedLine(None, ("nan",))
    assert encode(Sample("", {}, {"v": 1.0}, T0)) == EncodedLine(None, ("v",))
    assert encode(Sample("m", {}, {"unknown": None}, T0)) == EncodedLine(None, ())


def test_lone_surrogates_become_replacement_characters():
    text = b"caf\xe9".decode("utf-8", "surrogateescape")
    encoded = encode(Sample("m", {"t": text}, {"s": text}, T0))
    assert encoded.text == f'm,t=caf\ufffd s="caf\ufffd" {T0}'
    assert encoded.text.encode("utf-8")


async def test_hostile_text_round_trips_through_victoriametrics(victoria):
    samples = [
        Sample("hostile", {"probe": str(i), "alias": raw}, {"v": float(i), "descr": raw}, T0 + i * MS)
        for i, (raw, _) in enumerate(HOSTILE_TEXT)
    ]
    # Hostile names too: a tag key, and a measurement the field name is appended to.
    samples.append(Sample("hostile", {"probe": "keys", "if alias,\n=x": "k"}, {"v": -1.0}, T0))
    samples.append(Sample("hostile name,x", {"probe": "measurement"}, {"v": -2.0}, T0))
    store = InfluxStore(victoria.url, "org", "vigie", "")
    await store.write(samples)
    await store.close()

    series = victoria.series('{__name__=~".+"}')
    # Nothing else than what was written: no line split off into a series of its own.
    assert {labels["__name__"] for labels, _, _ in series} == {"hostile_v", "hostile_descr", "hostile name,x_v"}
    stored = {labels["probe"]: (labels, values) for labels, _, values in series if labels["__name__"] == "hostile_v"}
    for i, (raw, expected) in enumerate(HOSTILE_TEXT):
        labels, values = stored[str(i)]
        assert (labels["alias"], values) == (expected, [float(i)]), raw
    assert stored["keys"] == ({"__name__": "hostile_v", "probe": "keys", r"if alias,\n=x": "k"}, [-1.0])
    assert [(labels, values) for labels, _, values in series if labels["__name__"] == "hostile name,x_v"] == [
        ({"__name__": "hostile name,x_v", "probe": "measurement"}, [-2.0])
    ]
    # The string field made it too (VictoriaMetrics keeps a string as a number, 0 for text).
    assert len([labels for labels, _, _ in series if labels["__name__"] == "hostile_descr"]) == len(HOSTILE_TEXT)


async def test_empty_tag_values_are_skipped_not_written(victoria):
    store = InfluxStore(victoria.url, "org", "vigie", "")
    await store.write([Sample("m", {"device": "d", "site": ""}, {"v": 1.0}, T0)])
    await store.close()
    assert [labels for labels, _, _ in victoria.series('{__name__="m_v"}')] == [{"__name__": "m_v", "device": "d"}]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**64 - 1])
async def test_unrepresentable_field_is_counted_once_sent_and_the_rest_of_the_point_kept(victoria, value):
    store = InfluxStore(victoria.url, "org", "vigie", "")
    await store.write([Sample("m", {"device": "d"}, {"bad": value, "good": 1.0}, T0)])
    await store.close()
    assert store.unrepresentable_fields == 1 and store.stats() == {"unrepresentable_fields": 1}
    assert [name for name, _, _ in victoria.export('{__name__=~"m_.*"}')] == ["m_good"]


def test_cached_series_heads_never_stand_for_another_tag_set():
    # Equal keys of different text (1 == True == 1.0) are not cached; tag order does not matter.
    for value, text in [(1, "1"), (True, "True"), (1.0, "1.0"), ("1", "1")]:
        assert encode(Sample("m", {"t": value}, {"v": 1.0}, T0)).text == f"m,t={text} v=1.0 {T0}"
    assert encode(Sample("m", {"b": "2", "a": "1"}, {"v": 1.0}, T0)) == encode(
        Sample("m", {"a": "1", "b": "2"}, {"v": 1.0}, T0)
    )


def test_a_full_series_cache_keeps_its_entries_then_starts_afresh():
    heads = _SeriesHeads(size=2)
    series = [("m", {"device": f"d{i}", "if": "Gi1/0/1"}) for i in range(3)]
    for _ in range(5):  # more series than entries, in a cycle, as polls bring them back
        assert [heads.get(*s) for s in series] == [f"m,device=d{i},if=Gi1/0/1" for i in range(3)]
    assert list(heads._heads) == [(m, tuple(tags.items())) for m, tags in series[:2]]  # the first ones kept
    renamed = [("m", {"device": f"d{i}", "if": "Gi1/0/2"}) for i in range(3)]
    for _ in range(5):  # the old series are gone: emptied and refilled with the new ones
        assert [heads.get(*s) for s in renamed] == [f"m,device=d{i},if=Gi1/0/2" for i in range(3)]
    assert len(heads._heads) == 2 and set(heads._heads) < {(m, tuple(tags.items())) for m, tags in renamed}
    assert (
        heads.get("", {"device": "d"}) is None
        and heads.get("m", {"device": ["unhashable"]}) == "m,device=['unhashable']"
    )
