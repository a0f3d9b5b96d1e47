"""The compact store's chunk codec: every value round-trips exactly, whatever the order of arrival."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.stores.codec import (
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    add_segment,
    chunk_rows,
    decode_chunk,
    encode_rows,
    finish_chunk,
)
from tests.stores.helpers import bits_float, float_bits

T0 = 1_700_000_000_000_000_000

# Any double by its bits: NaNs with payloads, -0.0, infinities, subnormals.
any_float = st.integers(0, 2**64 - 1).map(bits_float)
# Counter64 and beyond, negatives too.
any_int = st.integers(-(2**70), 2**70)
# Every code point, lone surrogates, NUL and newlines included.
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=40)
field_value = st.one_of(
    any_int.map(lambda v: (KIND_INT, v)),
    any_float.map(lambda v: (KIND_FLOAT, v)),
    any_text.map(lambda v: (KIND_STR, v)),
)
# A row: some of fields 1..4 present (absent = None, never stored), one kind per field per row.
row_values = st.dictionaries(st.integers(1, 4), field_value, max_size=4).map(
    lambda d: {(field, kind): value for field, (kind, value) in d.items()}
)
# Timestamps: a 60 s step with ns jitter, some repeats and big jumps.
steps = st.one_of(st.just(60_000_000_000), st.integers(59_990_000_000, 60_010_000_000), st.integers(1, 2**40))


def exact(rows):
    """Rows with floats by their bits, so NaN == NaN and -0.0 != 0.0."""
    return [
        (ts, {key: float_bits(v) if key[1] == KIND_FLOAT else (type(v), v) for key, v in values.items()})
        for ts, values in rows
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(steps, row_values), max_size=60), st.integers(-(2**62), 2**62))
def test_in_order_rows_round_trip_exactly(rows, start):
    expected = []
    ts = start
    for step, values in rows:
        ts += step
        expected.append((ts, values))
    data = encode_rows(expected)
    assert exact(chunk_rows(data)) == exact(expected)
    # Finished (timestamps maybe in the linear form), the chunk is no bigger and reads the same.
    finished = finish_chunk(data)
    assert len(finished) <= len(data)
    assert exact(chunk_rows(finished)) == exact(expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), row_values), max_size=50))
def test_out_of_order_and_replayed_rows_merge_last_write_wins(rows):
    expected: dict[int, dict] = {}
    for offset, values in rows:
        held = expected.setdefault(T0 + offset, {})
        for key in values:
            for stale in [k for k in held if k[0] == key[0]]:
                del held[stale]
        held.update(values)
    decoded = chunk_rows(encode_rows((T0 + offset, values) for offset, values in rows))
    assert exact(decoded) == exact(sorted(expected.items()))


def test_decoding_one_field_leaves_the_others_out_and_marks_absent_rows():
    data = encode_rows([
        (T0, {(1, KIND_FLOAT): 1.5, (2, KIND_STR): "up"}),
        (T0 + 1, {(2, KIND_STR): "up"}),
        (T0 + 2, {(1, KIND_FLOAT): math.inf, (2, KIND_STR): "down"}),
    ])
    timestamps, columns = decode_chunk(data, [1])
    assert timestamps == [T0, T0 + 1, T0 + 2]
    assert columns == {(1, KIND_FLOAT): [1.5, None, math.inf]}


def test_a_polled_series_finishes_with_linear_timestamps_smaller_than_delta_of_delta():
    jitter = random.Random(14)
    data = encode_rows((T0 + i * 60_000_000_000 + int(jitter.gauss(0, 2e6)), {(1, KIND_INT): i}) for i in range(120))
    finished = finish_chunk(data)
    assert finished[0] != data[0] and len(finished) < len(data)
    assert chunk_rows(finished) == chunk_rows(data)
    assert finish_chunk(finished) == finished


def test_steady_values_cost_about_a_bit():
    """A constant gauge, a constant state and a fixed step: the chunk is a few bytes, not rows."""
    steady = {(1, KIND_FLOAT): 0.0, (2, KIND_INT): 10**9, (3, KIND_STR): "up"}
    assert len(encode_rows((T0 + i * 60_000_000_000, steady) for i in range(120))) < 120 * 3 * 2 / 8 + 40


@pytest.mark.parametrize("cut", [1, 5, 12])
def test_a_truncated_chunk_is_an_error_not_garbage(cut):
    chunk = encode_rows((T0 + i * 61_234_567, {(1, KIND_FLOAT): i / 7, (2, KIND_INT): i * 12345}) for i in range(10))
    for data in (chunk, finish_chunk(chunk)):
        with pytest.raises((ValueError, IndexError)):
            chunk_rows(data[:-cut])


def test_segments_read_in_order_and_finish_into_one_chunk_the_later_row_winning():
    first = encode_rows([(T0, {(1, KIND_INT): 1}), (T0 + 1, {(1, KIND_INT): 2, (2, KIND_STR): "a"})])
    # A replayed bucket (T0 + 1) and a field of another kind only in the second segment.
    second = encode_rows([(T0 + 1, {(1, KIND_INT): 20}), (T0 + 2, {(3, KIND_FLOAT): 0.5})])
    container = add_segment(add_segment(None, first), second)
    assert add_segment(first, second) == container
    timestamps, columns = decode_chunk(container)
    assert timestamps == [T0, T0 + 1, T0 + 1, T0 + 2]
    assert columns == {
        (1, KIND_INT): [1, 2, 20, None],
        (2, KIND_STR): [None, "a", None, None],
        (3, KIND_FLOAT): [None, None, None, 0.5],
    }
    assert chunk_rows(finish_chunk(container)) == [
        (T0, {(1, KIND_INT): 1}),
        (T0 + 1, {(1, KIND_INT): 20, (2, KIND_STR): "a"}),
        (T0 + 2, {(3, KIND_FLOAT): 0.5}),
    ]
    with pytest.raises(ValueError):
        decode_chunk(container[:-3])
