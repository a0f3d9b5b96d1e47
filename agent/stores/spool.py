"""An on-disk spool in front of a remote store: an outage loses nothing and replays in order.

Every batch is appended to the spool and fsync'd before anything is sent. Sending reads from the
oldest unsent point, one chunk at a time, and moves a persisted cursor past a chunk only once the
remote store took it, so points reach the store in the order they were written, older ones first,
including what a previous process left behind. Delivery is at least once: a crash between a
successful send and the cursor update resends that one chunk, which InfluxDB and VictoriaMetrics
take as the same points again (same series, same timestamp).

Layout of ``spool_dir``: ``<seq>.seg`` segment files of JSON lines (one sample per line, the
``Sample.to_json`` form) rotated every ``segment_bytes``; ``cursor`` holds the first unsent byte
of the oldest segment. A process only appends to segments it created itself.

The spool is bounded: past ``max_bytes`` the oldest segments are dropped with a warning and
counted in ``dropped_points``. A batch the server refuses as data (``StoreError.data_rejected``)
could never be sent, so it is skipped, logged and counted in ``rejected_points``; any other failure
keeps the points and retries after an exponential backoff measured on ``clock``.

All file work runs on one dedicated thread, so the event loop never waits on fsync and the spool's
index needs no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

from agent.api import Sample
from agent.stores import Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "cursor"


class SpoolDepth(NamedTuple):
    points: int
    bytes: int


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    points: int


def sample_from_json(line: str) -> Sample:
    data = json.loads(line)
    return Sample(data["measurement"], data["tags"], data["fields"], int(data["timestamp"]))


class SpooledStore:
    def __init__(
        self,
        inner: Store,
        spool_dir: Path,
        batch_size: int = 5000,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        retry_min_s: float = 5.0,
        retry_max_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.spool_dir = Path(spool_dir)
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        # At least four segments fit under the bound, so dropping one frees a known share.
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._clock = clock
        self.dropped_points = 0
        self.rejected_points = 0
        self.last_error: str | None = None
        self._failures = 0
        self._next_attempt = float("-inf")
        self._flushing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._segments: list[_Segment] = []
        self._cursor_offset = 0
        self._cursor_points = 0
        self._open: IO[bytes] | None = None
        self._open_seq: int | None = None
        self._next_seq = 0
        self._recover()

    # -- async API -------------------------------------------------------------------------------

    async def write(self, samples: Sequence[Sample]) -> None:
        """Spool the batch durably, then send what is pending unless a retry is not yet due.

        Never raises for a remote failure: the points stay spooled and ``last_error`` says why.
        """
        lines = [s.to_json() for s in samples if s.known_fields()]
        if lines:
            await self._run(self._append, lines)
        if self._clock() >= self._next_attempt:
            await self.flush()

    async def flush(self) -> bool:
        """Send every pending point, oldest first; True once the spool is empty.

        Returns at the first failure (the backoff starts then). A flush already running in
        another task will also send what was appended meanwhile, so this one returns at once.
        """
        if self._flushing:
            return False
        self._flushing = True
        try:
            while True:
                chunk = await self._run(self._read_chunk)
                if chunk is None:
                    return True
                seq, end_offset, lines = chunk
                try:
                    await self.inner.write([sample_from_json(line) for line in lines])
                except StoreError as exc:
                    if not exc.data_rejected:
                        self._failed(exc)
                        return False
                    self.rejected_points += len(lines)
                    log.error("%s refused %d spooled points, dropping them: %s", self.inner, len(lines), exc)
                except Exception as exc:  # noqa: BLE001 - any failure must leave the points spooled
                    log.exception("sending spooled points to %s failed", self.inner)
                    self._failed(exc)
                    return False
                await self._run(self._commit, seq, end_offset, len(lines))
                self._failures = 0
                self._next_attempt = float("-inf")
                self.last_error = None
        finally:
            self._flushing = False

    def depth(self) -> SpoolDepth:
        """Points and bytes not yet taken by the remote store."""
        segments = list(self._segments)
        return SpoolDepth(
            points=sum(s.points for s in segments) - (self._cursor_points if segments else 0),
            bytes=sum(s.size for s in segments) - (self._cursor_offset if segments else 0),
        )

    async def close(self) -> None:
        """One last attempt to send what is pending, then close; what is left stays on disk."""
        try:
            await self.flush()
            await self.inner.close()
        finally:
            await self._run(self._close_open)
            self._executor.shutdown(wait=True)

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
        cursor_seq, cursor_offset = -1, 0
        cursor_path = self.spool_dir / CURSOR_FILE
        if cursor_path.exists():
            saved = json.loads(cursor_path.read_text())
            cursor_seq, cursor_offset = int(saved["segment"]), int(saved["offset"])
        for path in sorted(self.spool_dir.glob(f"*{SEGMENT_SUFFIX}")):
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
            self._segments.append(_Segment(seq, path, len(data), data.count(b"\n")))
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
        payload = ("\n".join(lines) + "\n").encode("utf-8")
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

    def _read_chunk(self) -> tuple[int, int, list[str]] | None:
        """Up to ``batch_size`` unsent lines of the oldest segment, with where they end."""
        while self._segments:
            segment = self._segments[0]
            if self._cursor_offset < segment.size:
                with segment.path.open("rb") as f:
                    f.seek(self._cursor_offset)
                    lines: list[str] = []
                    offset = self._cursor_offset
                    while len(lines) < self.batch_size and offset < segment.size:
                        raw = f.readline()
                        offset += len(raw)
                        lines.append(raw.decode("utf-8").rstrip("\n"))
                return segment.seq, offset, lines
            if segment.seq == self._open_seq:
                return None
            self._retire_oldest()
        return None

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
