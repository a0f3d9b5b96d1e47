"""The compact store's chunk codec: one series over one time window, as columns.

A chunk holds rows (one per timestamp) of one series. The timestamps are stored once for all the
series' fields (a 48-port switch's interface row has a dozen fields: the timestamp cost is shared),
then one column per (field, kind):

- timestamps and integers: Gorilla's delta-of-delta, in variable-width buckets (a constant step,
  or a constant counter, costs one bit a row); integers of any size, exact;
- floats: Gorilla's XOR against the previous value (a repeated value costs one bit), bit-exact:
  NaN payloads, -0.0 and infinities round-trip;
- strings: runs of (count, text), so a state such as ``admin_status="up"`` costs nothing while it
  holds: the store keeps its changes, and the shared timestamps give every point back exactly.

A field absent from a row (``None``: unknown) is absent from its column: each column carries its
presence as alternating runs (present, absent, present, ...). Booleans are stored as 0/1 integers,
as the row store always did.

``encode_rows`` encodes a batch of rows column by column, each column in one loop. A window that
grows a batch at a time is a container of segments, each a chunk of its own, read as their rows
one after the other and merged into one chunk when the window is finished.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby, islice, pairwise

KIND_INT = 0
KIND_FLOAT = 1
KIND_STR = 2

Value = int | float | str
ColumnKey = tuple[int, int]  # (field id, kind)
Row = tuple[int, dict[ColumnKey, Value]]

# The first byte of a chunk: how its timestamps are encoded. Delta-of-delta while a chunk grows
# (appending is O(1)); a finished chunk may get the linear form (a start, a step and each row's
# fixed-width residual), smaller for a polled series and decoded without a loop a row in Python.
TIMESTAMPS_DOD = 1
TIMESTAMPS_LINEAR = 2
# A container of chunks (segments) of one window, read as their rows in order: a rollup window
# grows a segment at a time without being decoded.
SEGMENTS = 3
# Delta-of-delta buckets: (control bits, control width, payload width). A dod of 0 is the single
# bit 0; a jitter of a few ms in ns timestamps fits the 24-bit bucket, a counter's change of rate
# one of the others; beyond 32 bits, an explicit 16-bit length then the bits.
_DOD_BUCKETS = ((0b10, 2, 8), (0b110, 3, 16), (0b1110, 4, 24), (0b11110, 5, 32))
_DOD_ESCAPE = (0b11111, 5)
_BUCKET_WIDTHS = tuple(width for _, _, width in _DOD_BUCKETS)
# The buckets as the encoder reads them: (the zigzagged dods below, the control shifted in place,
# the bits written); the escape's are below, once its length's width is known.
_DOD_CODES = tuple((1 << width, control << width, cwidth + width) for control, cwidth, width in _DOD_BUCKETS)
_LENGTH_BITS = 16
_MAX_INT_BITS = (1 << _LENGTH_BITS) - 1
_ESCAPE_CODE = _DOD_ESCAPE[0] << _LENGTH_BITS
_ESCAPE_BITS = _DOD_ESCAPE[1] + _LENGTH_BITS


def value_kind(value: Value) -> int:
    """The column kind of a value (bools are integers)."""
    if isinstance(value, str):
        return KIND_STR
    if isinstance(value, float):
        return KIND_FLOAT
    if isinstance(value, int):
        return KIND_INT
    raise TypeError(f"cannot store a {type(value).__name__}")


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


def _varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def encode_ints(values: Iterable[int]) -> bytes:
    """Delta-of-delta of integers (timestamps, counters, gauges), a column in one loop: the bits
    are appended to one Python integer (a chunk is a few hundred bytes) and no call is made a value
    (an encoder object a column, its methods called a value, cost twice as much)."""
    acc = nbits = delta = 0
    prev: int | None = None
    codes = _DOD_CODES
    for value in values:
        if prev is None:
            dod = value
        else:
            step = value - prev
            dod = step - delta
            delta = step
        prev = value
        if dod == 0:
            acc <<= 1
            nbits += 1
            continue
        zz = dod << 1 if dod >= 0 else ((-dod) << 1) - 1
        for limit, code, total in codes:
            if zz < limit:
                acc = (acc << total) | code | zz
                nbits += total
                break
        else:
            length = zz.bit_length()
            if length > _MAX_INT_BITS:
                raise ValueError(f"integer of {length} bits is beyond the codec's {_MAX_INT_BITS}")
            total = _ESCAPE_BITS + length
            acc = (acc << total) | (_ESCAPE_CODE | length) << length | zz
            nbits += total
    pad = -nbits % 8
    return (acc << pad).to_bytes((nbits + pad) // 8, "big")


def _bit_text(data: bytes) -> str:
    """The bits of ``data`` as a text of '0'/'1': the decoders slice it, which is cheaper in
    Python than shifting a long integer or calling a reader per field."""
    return format(int.from_bytes(data, "big"), "b").zfill(len(data) * 8) if data else ""


def decode_ints(data: bytes, count: int) -> list[int]:
    text = _bit_text(data)
    out: list[int] = []
    append = out.append
    pos = prev = delta = 0
    widths = _BUCKET_WIDTHS
    find = text.find
    index = 0
    while index < count:
        if index and text[pos] == "0":
            # A run of dods of 0 (a constant, a steady counter, a regular step) in one go.
            left = count - index
            one = find("1", pos, pos + left)
            run = (one if one >= 0 else pos + left) - pos
            if delta:
                out.extend(range(prev + delta, prev + delta * run + delta, delta))
                prev += delta * run
            else:
                out.extend([prev] * run)
            pos += run
            index += run
            continue
        # The control is the run of 1s before a 0 (at most 5): found in one C call.
        zero = find("0", pos, pos + 5)
        ones = (zero if zero >= 0 else pos + 5) - pos
        if ones == 0:
            pos += 1
            dod = 0
        else:
            if ones < 5:
                pos += ones + 1
                width = widths[ones - 1]
            else:
                pos += 5
                width = int(text[pos : pos + _LENGTH_BITS], 2)
                pos += _LENGTH_BITS
            zz = int(text[pos : pos + width], 2)
            pos += width
            dod = zz >> 1 if not zz & 1 else -((zz + 1) >> 1)
        if index:
            delta += dod
            prev += delta
        else:
            prev = dod
        append(prev)
        index += 1
    if pos > len(text):
        raise ValueError("integer column truncated")
    return out


def encode_floats(values: Sequence[float]) -> bytes:
    """Gorilla XOR of IEEE 754 doubles, on their bits (so bit-exact), a column in one loop."""
    if not values:
        return b""
    count = len(values)
    # One pack and one unpack for the whole column rather than two calls a value.
    patterns = struct.unpack(f">{count}Q", struct.pack(f">{count}d", *values))
    prev = acc = patterns[0]
    nbits = 64
    held_leading, held_trailing = -1, 0
    for current in islice(patterns, 1, None):
        xor = current ^ prev
        prev = current
        if xor == 0:
            acc <<= 1
            nbits += 1
            continue
        leading = 64 - xor.bit_length()
        if leading > 31:
            leading = 31
        trailing = (xor & -xor).bit_length() - 1
        if held_leading >= 0 and leading >= held_leading and trailing >= held_trailing:
            # Fits the previous window: '10' then the window's bits.
            width = 64 - held_leading - held_trailing
            acc = (acc << (2 + width)) | (0b10 << width) | (xor >> held_trailing)
            nbits += 2 + width
            continue
        # '11', the leading zeros (5 bits), the width less one (6 bits), the bits.
        width = 64 - leading - trailing
        acc = (acc << (13 + width)) | (0b11 << 11 | leading << 6 | (width - 1)) << width | (xor >> trailing)
        nbits += 13 + width
        held_leading, held_trailing = leading, trailing
    pad = -nbits % 8
    return (acc << pad).to_bytes((nbits + pad) // 8, "big")


def decode_floats(data: bytes, count: int) -> list[float]:
    if count == 0:
        return []
    text = _bit_text(data)
    current = int(text[:64], 2)
    pos = 64
    patterns = [current]
    append = patterns.append
    leading = trailing = 0
    width = 64
    find = text.find
    index = 1
    while index < count:
        if text[pos] == "0":
            # A run of repeated values in one go.
            left = count - index
            one = find("1", pos, pos + left)
            run = (one if one >= 0 else pos + left) - pos
            patterns.extend([current] * run)
            pos += run
            index += run
            continue
        if text[pos + 1] == "1":
            leading = int(text[pos + 2 : pos + 7], 2)
            width = int(text[pos + 7 : pos + 13], 2) + 1
            trailing = 64 - leading - width
            pos += 13
        else:
            pos += 2
        current ^= int(text[pos : pos + width], 2) << trailing
        pos += width
        append(current)
        index += 1
    if pos > len(text):
        raise ValueError("float column truncated")
    # One pack and one unpack for the whole column rather than two calls a value.
    return list(struct.unpack(f">{count}d", struct.pack(f">{count}Q", *patterns)))


def encode_strs(values: Iterable[str]) -> bytes:
    """Runs of equal strings: a state that holds costs nothing per point."""
    runs = [(text, sum(1 for _ in repeats)) for text, repeats in groupby(values)]
    out = bytearray()
    _varint(len(runs), out)
    for text, count in runs:
        raw = text.encode("utf-8", "surrogatepass")
        _varint(count, out)
        _varint(len(raw), out)
        out += raw
    return bytes(out)


def decode_strs(data: bytes, count: int) -> list[str]:
    runs, pos = _read_varint(data, 0)
    out: list[str] = []
    for _ in range(runs):
        repeat, pos = _read_varint(data, pos)
        size, pos = _read_varint(data, pos)
        out += [data[pos : pos + size].decode("utf-8", "surrogatepass")] * repeat
        pos += size
    if len(out) != count:
        raise ValueError(f"string column holds {len(out)} values, presence says {count}")
    return out


def _presence(rows_at: Sequence[int], rows: int) -> bytes:
    """Which of a chunk's ``rows`` a column has a value in (``rows_at``, ascending), as
    alternating run lengths, present first: [present, absent, present, ...]."""
    out = bytearray()
    if len(rows_at) == rows:
        # Present in every row, as most columns are.
        _varint(1, out)
        _varint(rows, out)
        return bytes(out)
    runs: list[int] = []
    run, last = 0, -1
    for row in rows_at:
        gap = row - last - 1
        if gap:
            runs += (run, gap)
            run = 1
        else:
            run += 1
        last = row
    runs.append(run)
    trailing = rows - last - 1
    if trailing:
        runs.append(trailing)
    _varint(len(runs), out)
    for run in runs:
        _varint(run, out)
    return bytes(out)


def encode_rows(rows: Iterable[Row]) -> bytes:
    """The chunk of ``rows`` merged by timestamp and sorted (``merge_rows``: out-of-order and
    replayed points end here), encoded column by column: its columns in the order their fields
    first appear."""
    merged = merge_rows(rows)
    rows_at: dict[ColumnKey, list[int]] = {}
    columns: dict[ColumnKey, list[Value]] = {}
    for index, (_, held) in enumerate(merged):
        for key, value in held.items():
            column = columns.get(key)
            if column is None:
                rows_at[key] = [index]
                columns[key] = [value]
            else:
                rows_at[key].append(index)
                column.append(value)
    out = bytearray([TIMESTAMPS_DOD])
    _varint(len(merged), out)
    stamps = encode_ints([ts for ts, _ in merged])
    _varint(len(stamps), out)
    out += stamps
    _varint(len(columns), out)
    for (field_id, kind), values in columns.items():
        _varint(field_id, out)
        out.append(kind)
        presence = _presence(rows_at[(field_id, kind)], len(merged))
        if kind == KIND_INT:
            data = encode_ints(map(int, values))  # a bool is stored as the integer it is
        elif kind == KIND_FLOAT:
            data = encode_floats(values)  # type: ignore[arg-type]
        else:
            data = encode_strs(values)  # type: ignore[arg-type]
        _varint(len(presence), out)
        out += presence
        _varint(len(data), out)
        out += data
    return bytes(out)


def merge_rows(rows: Iterable[Row]) -> list[Row]:
    """``rows`` sorted by timestamp, one per timestamp: a later row's fields overwrite an earlier
    one's of the same timestamp (whatever kind they had), its other fields kept."""
    rows = list(rows)
    if all(a[0] < b[0] for a, b in pairwise(rows)):
        return rows  # in order, each timestamp once: as a poll's rows arrive
    merged: dict[int, dict[ColumnKey, Value]] = {}
    for ts, values in rows:
        held = merged.get(ts)
        if held is None:
            merged[ts] = dict(values)
        else:
            for key in values:
                # A field of the new row replaces that field whatever its kind was.
                for stale in [k for k in held if k[0] == key[0]]:
                    del held[stale]
            held.update(values)
    return [(ts, merged[ts]) for ts in sorted(merged)]


def _linear_timestamps(timestamps: Sequence[int]) -> bytes:
    """start, step (zigzag varints), the residuals' width (a byte), then each row's residual over
    start + i * step (none negative: the start is lowered to the smallest) in that many bits."""
    step = (timestamps[-1] - timestamps[0]) // (len(timestamps) - 1) if len(timestamps) > 1 else 1
    offsets = [ts - i * step for i, ts in enumerate(timestamps)]
    first = min(offsets)
    residuals = [offset - first for offset in offsets]
    width = max(residuals).bit_length()
    out = bytearray()
    _varint(_zigzag(first), out)
    _varint(_zigzag(step), out)
    out.append(width)
    if width:
        packed = 0
        for residual in residuals:
            packed = (packed << width) | residual
        bits = width * len(residuals)
        pad = -bits % 8
        out += (packed << pad).to_bytes((bits + pad) // 8, "big")
    return bytes(out)


def _decode_linear(data: bytes, count: int) -> list[int]:
    first, pos = _read_varint(data, 0)
    step, pos = _read_varint(data, pos)
    first, step = _unzigzag(first), _unzigzag(step)
    width = data[pos]
    if step <= 0:
        raise ValueError(f"timestamp step {step} in a linear column")
    line = range(first, first + step * count, step)
    if not width:
        return list(line)
    text = _bit_text(data[pos + 1 :])
    if len(text) < width * count:
        raise ValueError("timestamp column truncated")
    residuals = [int(text[i : i + width], 2) for i in range(0, width * count, width)]
    return list(map(operator.add, line, residuals))


def add_segment(container: bytes | None, segment: bytes) -> bytes:
    """``container`` (None, a chunk or segments) with ``segment`` after what it holds."""
    out = bytearray([SEGMENTS])
    if container:
        if container[0] == SEGMENTS:
            out += container[1:]
        else:
            _varint(len(container), out)
            out += container
    _varint(len(segment), out)
    out += segment
    return bytes(out)


def merge_segments(data: bytes) -> bytes:
    """Segments as one chunk (a later segment's row replacing an earlier one's of the same
    timestamp); a chunk as it is."""
    return encode_rows(chunk_rows(data)) if data[0] == SEGMENTS else data


def segment_count(data: bytes) -> int:
    return len(_segments(data)) if data[0] == SEGMENTS else 1


def _segments(data: bytes) -> list[bytes]:
    pos = 1
    parts = []
    while pos < len(data):
        size, pos = _read_varint(data, pos)
        if pos + size > len(data):
            raise ValueError("segment truncated")
        parts.append(data[pos : pos + size])
        pos += size
    return parts


def finish_chunk(data: bytes) -> bytes:
    """A chunk that will not grow any more: segments merged into one chunk (a later segment's row
    replacing an earlier one's of the same timestamp), its timestamps in the smaller form."""
    data = merge_segments(data)
    if data[0] != TIMESTAMPS_DOD:
        return data
    rows, pos = _read_varint(data, 1)
    size, start = _read_varint(data, pos)
    if rows == 0:
        return data
    linear = _linear_timestamps(decode_ints(data[start : start + size], rows))
    if len(linear) >= size:
        return data
    out = bytearray([TIMESTAMPS_LINEAR])
    _varint(rows, out)
    _varint(len(linear), out)
    out += linear
    out += data[start + size :]
    return bytes(out)


def decode_chunk(data: bytes, field_ids: Iterable[int] | None = None) -> tuple[list[int], dict[ColumnKey, list]]:
    """The timestamps, and for each column kept (all, or those of ``field_ids``) one entry per row:
    the value, or None where the field was absent. Segments read as their rows one after the
    other (timestamps may then repeat: the later row is the newer)."""
    if data and data[0] == SEGMENTS:
        return _decode_segments(data, field_ids)
    if not data or data[0] not in (TIMESTAMPS_DOD, TIMESTAMPS_LINEAR):
        raise ValueError(f"unknown chunk format {data[:1].hex()}")
    wanted = None if field_ids is None else set(field_ids)
    rows, pos = _read_varint(data, 1)
    size, pos = _read_varint(data, pos)
    stamps = data[pos : pos + size]
    pos += size
    ncols, pos = _read_varint(data, pos)
    columns: dict[ColumnKey, list] = {}
    read = _read_varint
    for _ in range(ncols):
        # Headers are mostly one-byte varints: read inline, the columns not wanted skipped unsliced.
        field_id = data[pos]
        pos += 1
        if field_id > 0x7F:
            field_id, pos = read(data, pos - 1)
        kind = data[pos]
        psize = data[pos + 1]
        pos += 2
        if psize > 0x7F:
            psize, pos = read(data, pos - 1)
        presence_at = pos
        pos += psize
        dsize = data[pos]
        pos += 1
        if dsize > 0x7F:
            dsize, pos = read(data, pos - 1)
        if wanted is None or field_id in wanted:
            presence = data[presence_at : presence_at + psize]
            columns[(field_id, kind)] = _decode_column(kind, presence, data[pos : pos + dsize], rows)
        pos += dsize
    if pos > len(data):
        raise ValueError("chunk truncated")
    if not columns and wanted is not None:
        return [], {}
    timestamps = decode_ints(stamps, rows) if data[0] == TIMESTAMPS_DOD else _decode_linear(stamps, rows)
    if len(timestamps) != rows:
        raise ValueError("timestamp column truncated")
    return timestamps, columns


def _decode_segments(data: bytes, field_ids: Iterable[int] | None) -> tuple[list[int], dict[ColumnKey, list]]:
    wanted = None if field_ids is None else list(field_ids)
    timestamps: list[int] = []
    columns: dict[ColumnKey, list] = {}
    for segment in _segments(data):
        stamps, part = decode_chunk(segment, wanted)
        for key, values in part.items():
            columns.setdefault(key, [None] * len(timestamps)).extend(values)
        timestamps += stamps
        for values in columns.values():
            if len(values) < len(timestamps):
                values.extend([None] * (len(timestamps) - len(values)))
    return timestamps, columns


def _decode_column(kind: int, presence: bytes, data: bytes, rows: int) -> list:
    nruns, pos = _read_varint(presence, 0)
    runs = []
    for _ in range(nruns):
        run, pos = _read_varint(presence, pos)
        runs.append(run)
    count = sum(runs[0::2])
    if sum(runs) != rows:
        raise ValueError(f"column presence covers {sum(runs)} rows of {rows}")
    values = (decode_ints if kind == KIND_INT else decode_floats if kind == KIND_FLOAT else decode_strs)(data, count)
    if len(runs) == 1:
        return values
    out: list = []
    taken = 0
    for index, run in enumerate(runs):
        if index % 2:
            out += [None] * run
        else:
            out += values[taken : taken + run]
            taken += run
    return out


def chunk_rows(data: bytes) -> list[Row]:
    """Every row of a chunk, for a merge."""
    return column_rows(*decode_chunk(data))


def column_rows(timestamps: Sequence[int], columns: Mapping[ColumnKey, list]) -> list[Row]:
    """Decoded columns as rows (a row without a column's value leaves it out)."""
    rows: list[Row] = [(ts, {}) for ts in timestamps]
    for key, values in columns.items():
        for (_, held), value in zip(rows, values, strict=True):
            if value is not None:
                held[key] = value
    return rows
