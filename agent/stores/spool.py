"""An on-disk spool in front of a remote store: an outage loses nothing and replays in order.

Points go to disk first, always: ``write`` appends the batch to the spool, fsyncs it and returns;
it never waits on the network. The spool keeps them as the remote store will send them (its
``encode_lines``: line protocol for ``InfluxStore``), so they are encoded once, not once into the
spool and again out of it. A background sender drains the spool, oldest point first, in chunks of
``batch_size`` lines, up to ``max_in_flight`` chunks in flight at once, each request under a
deadline (``request_timeout_s``), and moves a persisted cursor past what the remote store took, in
order: a chunk taken while an older one failed is remembered and not sent again once the older one
goes through, so an outage in the middle of a drain delivers each point once. Delivery is at least
once across a crash (or a request cut by its deadline): one between the server taking a chunk and
the cursor moving resends that chunk, which the server stores again (VictoriaMetrics keeps both
copies of a point until deduplication is configured).

``close`` goes on sending for at most ``close_timeout_s``; what is still unsent then stays on disk
and goes first at the next start. A hung server therefore costs a shutdown that bound, never a
point.

Layout of ``spool_dir``: ``<seq>.lp`` segment files of the remote store's lines (one point per
line) rotated every ``segment_bytes``; ``cursor`` holds the first unsent byte of the oldest segment;
``quarantine.jsonl`` the lines the server refused (``{"line": ...}``). A process only appends to
segments it created itself. ``<seq>.seg`` segments, JSON lines of samples (the ``Sample.to_json``
form), are what versions before 2026-12-02 wrote: they are still read, in their turn, and their
samples sent through the remote store's ``write`` (their refused lines are quarantined as
``{"sample": ...}``).

The spool is bounded: past ``max_bytes`` the oldest segments are dropped with a warning and
counted in ``dropped_points``. When the server refuses a chunk as data (``StoreError.data_rejected``:
a malformed line, a field type conflict, a point outside retention), the chunk is split in halves
and each half sent again, down to the single lines the server refuses: only those are quarantined
(appended to ``quarantine.jsonl`` with the server's message, counted in ``quarantined_lines``; the
file stops growing at ``quarantine_max_bytes``, the count does not), every other point is
delivered. A spool line that cannot be read back is quarantined the same way. Bisecting works on
any server; a chunk with k bad lines costs about 2·k·log2(chunk) extra requests. Any other failure
keeps the points and retries after an exponential backoff measured on ``clock`` and waited with
``sleep``.

All file work runs on one dedicated thread, so the event loop never waits on fsync and the spool's
index needs no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, Protocol, TypeVar

from agent.api import Sample
from agent.stores import Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
SEGMENT_SUFFIX = ".lp"
JSON_SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "cursor"
QUARANTINE_FILE = "quarantine.jsonl"
# Lone surrogates (text decoded with surrogateescape) survive the spool; the encoder of the remote
# store decides what to make of them.
TEXT_ERRORS = "surrogatepass"
# Closing the remote store's client drops connections, it does not wait on the server.
INNER_CLOSE_TIMEOUT_S = 2.0


class LineStore(Store, Protocol):
    """A remote store whose requests are text lines, one per point: what the spool keeps."""

    def encode_lines(self, samples: Sequence[Sample]) -> list[str]: ...

    async def write_lines(self, lines: Sequence[str]) -> None: ...


class SpoolDepth(NamedTuple):
    points: int
    bytes: int


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    points: int
    json: bool = False
    """A segment of JSON samples left by a version before 2026-12-02."""


class _Chunk(NamedTuple):
    seq: int
    start: int
    end: int
    points: int
    lines: list[str]
    """Empty for a chunk taken ahead."""
    ends: list[int]
    """Byte offset in the segment just past each line."""
    json: bool


def sample_from_json(line: str) -> Sample:
    data = json.loads(line)
    return Sample(data["measurement"], data["tags"], data["fields"], int(data["timestamp"]))


def _samples_from_json(lines: list[str], spool_dir: Path) -> list[Sample]:
    try:
        return [sample_from_json(line) for line in lines]
    except (ValueError, KeyError, TypeError) as exc:
        # Refused like bad data: halving isolates the line, and the sender is not stuck on it.
        raise StoreError(str(spool_dir), f"unreadable spool line ({exc})", data_rejected=True) from None


class SpooledStore:
    def __init__(
        self,
        inner: LineStore,
        spool_dir: Path,
        batch_size: int = 5000,
        max_in_flight: int = 4,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        retry_min_s: float = 5.0,
        retry_max_s: float = 300.0,
        request_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
        quarantine_max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.inner = inner
        self.spool_dir = Path(spool_dir)
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        # At least four segments fit under the bound, so dropping one frees a known share.
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.request_timeout_s = request_timeout_s
        self.close_timeout_s = close_timeout_s
        self.quarantine_max_bytes = quarantine_max_bytes
        self.quarantine_path = self.spool_dir / QUARANTINE_FILE
        self._clock = clock
        self._sleep = sleep
        self._wall_clock_ns = wall_clock_ns
        self.dropped_points = 0
        self.quarantined_lines = 0
        self.last_error: str | None = None
        self._failures = 0
        self._next_attempt = float("-inf")
        self._sending = asyncio.Lock()
        self._points_waiting = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._segments: list[_Segment] = []
        self._cursor_offset = 0
        self._cursor_points = 0
        self._open: IO[bytes] | None = None
        self._open_seq: int | None = None
        self._next_seq = 0
        self._quarantine_bytes = 0
        # Chunks the remote store took while an older one failed, by (segment, start offset): their
        # (end offset, points), committed in their turn without being sent again.
        self._taken_ahead: dict[tuple[int, int], tuple[int, int]] = {}
        self._recover()

    # -- async API -------------------------------------------------------------------------------

    async def write(self, samples: Sequence[Sample]) -> None:
        """Spool the batch durably and leave the sending to the background sender.

        Never waits on the remote store and never raises for its failures: the points stay spooled
        and ``last_error`` says why they are not sent yet.
        """
        lines = self.inner.encode_lines(samples)
        if lines:
            await self._run(self._append, lines)
        if self._sender is None:
            # Started by the first write, on the loop the agent runs: what a previous process left
            # behind goes out with it.
            self._sender = asyncio.get_running_loop().create_task(self._send_in_background(), name="spool-sender")
        self._points_waiting.set()

    async def flush(self) -> bool:
        """Send every pending point now, oldest first, whatever the backoff; True once the spool is
        empty, False at the first failure (the backoff starts then)."""
        async with self._sending:
            return await self._drain()

    def depth(self) -> SpoolDepth:
        """Points and bytes not yet taken by the remote store."""
        segments = list(self._segments)
        return SpoolDepth(
            points=sum(s.points for s in segments) - (self._cursor_points if segments else 0),
            bytes=sum(s.size for s in segments) - (self._cursor_offset if segments else 0),
        )

    def stats(self) -> dict[str, int]:
        """The spool's gauges and counters (and the remote store's), for the agent's health sample."""
        depth = self.depth()
        stats = {
            "spool_points": depth.points,
            "spool_bytes": depth.bytes,
            "spool_dropped_points": self.dropped_points,
            "quarantined_lines": self.quarantined_lines,
        }
        inner_stats = getattr(self.inner, "stats", None)
        return stats | inner_stats() if inner_stats is not None else stats

    async def close(self) -> None:
        """Send what is pending for at most ``close_timeout_s``, then close; what is left stays on
        disk for the next start."""
        try:
            try:
                async with asyncio.timeout(self.close_timeout_s):
                    await self.flush()
            except TimeoutError:
                pass
        finally:
            if self._sender is not None:
                # Cuts a request still waiting on the server: its points stay spooled.
                self._sender.cancel()
                await asyncio.wait([self._sender])
        try:
            depth = self.depth()
            if depth.points:
                log.warning(
                    "spool %s keeps %d unsent points (%d bytes) for the next start%s",
                    self.spool_dir,
                    depth.points,
                    depth.bytes,
                    f" ({self.last_error})" if self.last_error else "",
                )
            try:
                async with asyncio.timeout(INNER_CLOSE_TIMEOUT_S):
                    await self.inner.close()
            except TimeoutError:
                log.warning("closing %s took over %.0fs; left behind", self.inner, INNER_CLOSE_TIMEOUT_S)
        finally:
            await self._run(self._close_open)
            self._executor.shutdown(wait=True)

    async def _send_in_background(self) -> None:
        while True:
            self._points_waiting.clear()
            if self.depth().points == 0:
                await self._points_waiting.wait()
                continue
            delay = self._next_attempt - self._clock()
            if delay > 0:
                await self._sleep(delay)
                continue
            try:
                async with self._sending:
                    # A flush that held the lock meanwhile may have failed and started a backoff.
                    if self._clock() >= self._next_attempt:
                        await self._drain()
            except Exception as exc:  # noqa: BLE001 - a disk error must not end the sender
                log.exception("spool %s: sending failed", self.spool_dir)
                self._failed(exc)

    async def _drain(self) -> bool:
        while True:
            chunks = await self._run(self._read_chunks)
            if not chunks:
                self._taken_ahead.clear()
                return True
            outcomes = await asyncio.gather(*(self._send_chunk(chunk) for chunk in chunks), return_exceptions=True)
            # Settled in order, so that the cursor only ever moves past what the server took.
            for index, (chunk, outcome) in enumerate(zip(chunks, outcomes, strict=True)):
                try:
                    if isinstance(outcome, StoreError) and outcome.data_rejected:
                        await self._isolate(chunk.seq, chunk.lines, chunk.ends, chunk.json, outcome)
                    elif isinstance(outcome, BaseException):
                        raise outcome
                    else:
                        await self._run(self._commit, chunk.seq, chunk.end, chunk.points)
                except Exception as exc:  # noqa: BLE001 - any failure must leave the points spooled
                    if not isinstance(exc, StoreError):
                        log.exception("sending spooled points to %s failed", self.inner)
                    for later, later_outcome in zip(chunks[index + 1 :], outcomes[index + 1 :], strict=True):
                        if later_outcome is None:
                            self._taken_ahead[(later.seq, later.start)] = (later.end, later.points)
                    self._failed(exc)
                    return False
            self._failures = 0
            self._next_attempt = float("-inf")
            self.last_error = None

    async def _send_chunk(self, chunk: _Chunk) -> None:
        if chunk.lines:  # else taken ahead by an earlier drain
            await self._send(chunk.lines, chunk.json)

    async def _deliver(self, seq: int, lines: list[str], ends: list[int], json_lines: bool) -> None:
        """Send consecutive lines of segment ``seq`` and move the cursor past them; lines the server
        refuses as data are isolated by halving and quarantined. Raises on any other failure, with
        the cursor past what was delivered."""
        try:
            await self._send(lines, json_lines)
        except StoreError as exc:
            if not exc.data_rejected:
                raise
            await self._isolate(seq, lines, ends, json_lines, exc)
            return
        await self._run(self._commit, seq, ends[-1], len(lines))

    async def _isolate(self, seq: int, lines: list[str], ends: list[int], json_lines: bool, error: StoreError) -> None:
        """``lines`` were refused as data: deliver each half, down to the single lines at fault."""
        if len(lines) == 1:
            await self._run(self._quarantine, lines[0], json_lines, error)
            await self._run(self._commit, seq, ends[-1], 1)
            return
        middle = len(lines) // 2
        await self._deliver(seq, lines[:middle], ends[:middle], json_lines)
        await self._deliver(seq, lines[middle:], ends[middle:], json_lines)

    async def _send(self, lines: list[str], json_lines: bool) -> None:
        try:
            async with asyncio.timeout(self.request_timeout_s):
                if json_lines:
                    await self.inner.write(_samples_from_json(lines, self.spool_dir))
                else:
                    await self.inner.write_lines(lines)
        except TimeoutError:
            raise StoreError(str(self.inner), f"no answer within {self.request_timeout_s:g}s") from None

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        delay = min(self.retry_max_s, self.retry_min_s * 2 ** (self._failures - 1))
        self._next_attempt = self._clock() + delay
        self.last_error = str(exc)
        depth = self.depth()
        log.warning(
            "store unavailable (%s); %d points (%d bytes) spooled in %s, next try in %.0fs",
            exc,
            depth.points,
            depth.bytes,
            self.spool_dir,
            delay,
        )

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # -- on the spool's thread -------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the index from what a previous process left behind."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        if self.quarantine_path.exists():
            self._quarantine_bytes = self.quarantine_path.stat().st_size
        cursor_seq, cursor_offset = -1, 0
        cursor_path = self.spool_dir / CURSOR_FILE
        if cursor_path.exists():
            saved = json.loads(cursor_path.read_text())
            cursor_seq, cursor_offset = int(saved["segment"]), int(saved["offset"])
        paths = [*self.spool_dir.glob(f"*{SEGMENT_SUFFIX}"), *self.spool_dir.glob(f"*{JSON_SEGMENT_SUFFIX}")]
        for path in sorted(paths, key=lambda path: int(path.stem)):
            seq = int(path.stem)
            if seq < cursor_seq:
                # Fully sent before a crash got in the way of deleting it.
                path.unlink()
                continue
            data = path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                log.warning(
                    "spool segment %s ends with a torn write; dropping its last %d bytes", path, len(data) - complete
                )
                with path.open("r+b") as torn:
                    torn.truncate(complete)
                data = data[:complete]
            if not data:
                path.unlink()
                continue
            self._segments.append(
                _Segment(seq, path, len(data), data.count(b"\n"), json=path.suffix == JSON_SEGMENT_SUFFIX)
            )
            if seq == cursor_seq:
                self._cursor_offset = cursor_offset
                self._cursor_points = data[:cursor_offset].count(b"\n")
        if self._segments and self._segments[0].seq != cursor_seq:
            self._cursor_offset = self._cursor_points = 0
        # Numbers only grow, so a new segment never sorts before one the cursor has passed.
        self._next_seq = max([cursor_seq + 1] + [s.seq + 1 for s in self._segments])
        depth = self.depth()
        if depth.points:
            log.warning(
                "spool %s holds %d points from a previous run; they will be sent first", self.spool_dir, depth.points
            )

    def _append(self, lines: list[str]) -> None:
        if self._open is None or self._segments[-1].size >= self.segment_bytes:
            self._rotate()
        assert self._open is not None
        payload = ("\n".join(lines) + "\n").encode("utf-8", TEXT_ERRORS)
        self._open.write(payload)
        self._open.flush()
        os.fsync(self._open.fileno())
        segment = self._segments[-1]
        segment.size += len(payload)
        segment.points += len(lines)
        self._enforce_bound()

    def _rotate(self) -> None:
        self._close_open()
        seq = self._next_seq
        self._next_seq += 1
        path = self.spool_dir / f"{seq:016d}{SEGMENT_SUFFIX}"
        self._open = path.open("ab")
        self._open_seq = seq
        self._segments.append(_Segment(seq, path, 0, 0))
        _fsync_dir(self.spool_dir)

    def _close_open(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None
            self._open_seq = None

    def _enforce_bound(self) -> None:
        while len(self._segments) > 1 and self.depth().bytes > self.max_bytes:
            oldest = self._segments.pop(0)
            lost = oldest.points - self._cursor_points
            self.dropped_points += lost
            self._cursor_offset = self._cursor_points = 0
            oldest.path.unlink()
            self._save_cursor()
            log.warning(
                "spool %s is over its %d bytes bound: dropped %d unsent points (oldest segment %s), %d dropped so far",
                self.spool_dir,
                self.max_bytes,
                lost,
                oldest.path.name,
                self.dropped_points,
            )

    def _read_chunks(self) -> list[_Chunk]:
        """Up to ``max_in_flight`` chunks of ``batch_size`` unsent lines of the oldest segment, in
        order, with where each line ends; a chunk taken ahead comes back whole and without lines."""
        while self._segments:
            segment = self._segments[0]
            if self._cursor_offset < segment.size:
                chunks: list[_Chunk] = []
                with segment.path.open("rb") as f:
                    offset = self._cursor_offset
                    f.seek(offset)
                    while len(chunks) < self.max_in_flight and offset < segment.size:
                        taken = self._taken_ahead.get((segment.seq, offset))
                        if taken is not None:
                            end, points = taken
                            chunks.append(_Chunk(segment.seq, offset, end, points, [], [], segment.json))
                            offset = end
                            f.seek(offset)
                            continue
                        start = offset
                        lines: list[str] = []
                        ends: list[int] = []
                        while len(lines) < self.batch_size and offset < segment.size:
                            raw = f.readline()
                            offset += len(raw)
                            lines.append(raw.decode("utf-8", TEXT_ERRORS).rstrip("\n"))
                            ends.append(offset)
                            if (segment.seq, offset) in self._taken_ahead:
                                break
                        chunks.append(_Chunk(segment.seq, start, offset, len(lines), lines, ends, segment.json))
                return chunks
            if segment.seq == self._open_seq:
                return []
            self._retire_oldest()
        return []

    def _quarantine(self, line: str, json_line: bool, error: StoreError) -> None:
        self.quarantined_lines += 1
        record = json.dumps(
            {
                "quarantined_at_ns": self._wall_clock_ns(),
                "status": error.status,
                "error": error.server_message,
                "url": error.url,
                **({"sample": _json_or_text(line)} if json_line else {"line": line}),
            },
            ensure_ascii=False,
        )
        payload = (record + "\n").encode("utf-8", TEXT_ERRORS)
        kept = self._quarantine_bytes + len(payload) <= self.quarantine_max_bytes
        if kept:
            with self.quarantine_path.open("ab") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            self._quarantine_bytes += len(payload)
        log.error(
            "%s; 1 line %s, %d quarantined so far: %.500s",
            error,
            f"quarantined in {self.quarantine_path}" if kept else f"dropped ({self.quarantine_path} is full)",
            self.quarantined_lines,
            line,
        )

    def _commit(self, seq: int, end_offset: int, points: int) -> None:
        if not self._segments or self._segments[0].seq != seq:
            # The bound dropped this segment while it was being sent; its points are counted.
            return
        self._cursor_offset = end_offset
        self._cursor_points += points
        segment = self._segments[0]
        if end_offset >= segment.size:
            if segment.seq == self._open_seq:
                # The next append opens a fresh segment rather than growing a sent one.
                self._close_open()
            self._retire_oldest()
        else:
            self._save_cursor()

    def _retire_oldest(self) -> None:
        segment = self._segments.pop(0)
        self._cursor_offset = self._cursor_points = 0
        # The cursor moves first: a crash between the two lines then only leaves a stale file
        # that recovery deletes, never a cursor pointing into a missing segment's successor.
        self._save_cursor(next_seq=segment.seq + 1)
        segment.path.unlink(missing_ok=True)

    def _save_cursor(self, next_seq: int | None = None) -> None:
        seq = self._segments[0].seq if self._segments else next_seq
        if seq is None:
            return
        tmp = self.spool_dir / (CURSOR_FILE + ".tmp")
        with tmp.open("w") as f:
            json.dump({"segment": seq, "offset": self._cursor_offset}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool_dir / CURSOR_FILE)


def _json_or_text(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return line


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
