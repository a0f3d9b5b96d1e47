"""The lab's SNMP responder: a whole estate of simulated devices on one UDP port, one community each.

snmpsim (lab/snmpsim.py) is the fidelity peer of the tests that need SET, SNMPv3 or its variation
modules, but one snmpsim process serves about 7k varbinds/s: the 173-device vsgp estate overloads
it (47 switches unreachable in the first minutes while each answered alone). This responder plays
the same LibreNMS walks from varbinds encoded once at start-up and shared by every device playing
the same walk (GET = dict lookup, GETNEXT = bisect, GETBULK = bisect once then step), like the
benchmarks' bench/fastresp.py but for many communities and with faults. tests/lab checks that it
answers every walk exactly as snmpsim does.

SNMPv1 and v2c GET, GETNEXT and GETBULK; a SET is refused (notWritable / readOnly); an unknown
community is dropped, as an agent does on an authentication failure. At most ``MAX_VAR_BINDS``
varbinds per answer, as snmpsim.

Faults are *effects* read from a JSON file that the lab rewrites atomically (rename): its inode and
mtime are checked on every request, so an effect written before a request is seen by it.

    [{"community": "vsgp/dist-siege", "silent": true},
     {"community": "vsgp/dist-siege", "oid": "1.3.6.1.2.1.2.2.1.8.70", "tag": "2", "value": "2",
      "schedule": {"period_s": 10, "since": 1700000000.0, "half": 0}}]

- ``silent``: the device drops every request, as a dead host looks on the wire;
- ``oid``/``tag``/``value``: that OID of that device answers another value (snmprec notation);
- ``schedule`` (either kind): the effect holds only during the first (``half`` 0) or the second
  (``half`` 1) half of every ``period_s`` since ``since`` (epoch seconds); a flapping port is two
  value effects, one per half.

    python -m lab.snmp_responder --devices devices.json --effects effects.json (--fd N | --listen HOST:PORT)...

``devices.json`` maps each community to a recording: ``{"community": "/path/to/walk.snmprec"}``.
The process prints one ``ready ...`` line when it serves, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.walks import read_records

MAX_VAR_BINDS = 64
# An answer must fit one UDP datagram; GETBULK stops short of it, anything else is tooBig.
MAX_MESSAGE = 65000
RECEIVE_BUFFER = 4 << 20  # a whole estate polled at once must not overflow the socket

VERSION_1, VERSION_2C = 0, 1
GET, GET_NEXT, SET, GET_BULK, RESPONSE = 0xA0, 0xA1, 0xA3, 0xA5, 0xA2
NO_SUCH_INSTANCE, END_OF_MIB_VIEW = b"\x81\x00", b"\x82\x00"
TOO_BIG, NO_SUCH_NAME, READ_ONLY, NOT_WRITABLE = 1, 2, 4, 17


# -- BER ---------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _length(len(payload)) + payload


def _signed(tag: int, value: int) -> bytes:
    return _tlv(tag, value.to_bytes((value + (value < 0)).bit_length() // 8 + 1, "big", signed=True))


def _unsigned(tag: int, value: int, bits: int) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit {bits} unsigned bits")
    return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid_body(arcs: tuple[int, ...]) -> bytes:
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an OID: {arcs}")
    out = bytearray()
    for arc in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _oid_arcs(body: bytes) -> tuple[int, ...]:
    arcs: list[int] = []
    value = 0
    for i, octet in enumerate(body):
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            if not arcs:
                arcs.extend((value // 40, value % 40) if value < 80 else (2, value - 80))
            else:
                arcs.append(value)
            value = 0
        elif i == len(body) - 1:
            raise ValueError("truncated OID")
    if not arcs:
        raise ValueError("empty OID")
    return tuple(arcs)


def encode_value(tag: str, text: str) -> bytes:
    """The BER TLV of a snmprec value (``tag`` as in the file: ``2``, ``4x``, ``70``, ...)."""
    hexed = tag.endswith("x")
    base = tag.rstrip("x")
    raw = bytes.fromhex(text) if hexed else text.encode("utf-8", "surrogateescape")
    if base == "2":
        value = int(text)
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"{value} is not an Integer32")
        return _signed(0x02, value)
    if base == "4":
        return _tlv(0x04, raw)
    if base == "5":
        return b"\x05\x00"
    if base == "6":
        return _tlv(0x06, _oid_body(tuple(int(arc) for arc in text.strip(".").split("."))))
    if base == "64":
        address = raw if hexed else bytes(int(octet) for octet in text.split("."))
        if len(address) != 4:
            raise ValueError(f"{text!r} is not an IpAddress")
        return _tlv(0x40, address)
    if base in ("65", "66", "67"):
        return _unsigned({"65": 0x41, "66": 0x42, "67": 0x43}[base], int(text), 32)
    if base == "68":
        return _tlv(0x44, raw)
    if base == "70":
        return _unsigned(0x46, int(text), 64)
    raise ValueError(f"unsupported snmprec type {tag}")


def _read(buf: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the TLV at ``i``, within ``end``."""
    if i + 2 > end:
        raise ValueError("truncated")
    tag, n = buf[i], buf[i + 1]
    i += 2
    if n & 0x80:
        size = n & 0x7F
        if not 0 < size <= 4 or i + size > end:
            raise ValueError("bad length")
        n = int.from_bytes(buf[i : i + size], "big")
        i += size
    if i + n > end:
        raise ValueError("truncated")
    return tag, i, i + n


def _integer(buf: bytes, i: int, end: int) -> tuple[int, int]:
    tag, start, stop = _read(buf, i, end)
    if tag != 0x02 or start == stop:
        raise ValueError("INTEGER expected")
    return int.from_bytes(buf[start:stop], "big", signed=True), stop


# -- walks and effects -------------------------------------------------------------------------


class Walk:
    """One recording, encoded once: sorted OIDs and the varbind TLV of each."""

    def __init__(self, records: Iterable[tuple[str, str, str]]) -> None:
        rows: dict[tuple[int, ...], tuple[bytes, bool]] = {}
        self.skipped: list[str] = []
        for oid, tag, value in records:
            arcs = tuple(int(arc) for arc in oid.split("."))
            try:
                rows[arcs] = (_tlv(0x30, _tlv(0x06, _oid_body(arcs)) + encode_value(tag, value)), tag == "70")
            except ValueError as exc:
                self.skipped.append(f"{oid}: {exc}")
        self.keys = sorted(rows)
        self.varbinds = [rows[key][0] for key in self.keys]
        # SNMPv1 has no Counter64: a v1 manager never sees them (RFC 3584 section 4.2.2.1).
        self.counter64 = {i for i, key in enumerate(self.keys) if rows[key][1]}
        self.index = {key: i for i, key in enumerate(self.keys)}

    @classmethod
    def from_file(cls, path: Path) -> Walk:
        return cls(read_records(path))


@dataclass(frozen=True)
class Schedule:
    period_s: float
    since: float
    half: int

    def holds(self, now: float) -> bool:
        first_half = (now - self.since) % self.period_s < self.period_s / 2
        return first_half == (self.half == 0)


@dataclass
class DeviceEffects:
    silences: list[Schedule | None]
    values: dict[int, list[tuple[bytes, Schedule | None]]]  # walk index -> varbinds

    def silent(self, now: float) -> bool:
        return any(s is None or s.holds(now) for s in self.silences)

    def overrides(self, now: float) -> dict[int, bytes]:
        current: dict[int, bytes] = {}
        for index, choices in self.values.items():
            for varbind, schedule in choices:
                if schedule is None or schedule.holds(now):
                    current[index] = varbind
        return current


def parse_effects(effects: list[Mapping[str, object]], walks: Mapping[bytes, Walk]) -> dict[bytes, DeviceEffects]:
    """Effects by community; an effect naming an unknown community or OID is a ValueError."""
    out: dict[bytes, DeviceEffects] = {}
    for effect in effects:
        community = str(effect["community"]).encode()
        walk = walks.get(community)
        if walk is None:
            raise ValueError(f"effect on unknown community {community!r}")
        raw = effect.get("schedule")
        schedule = (
            Schedule(float(raw["period_s"]), float(raw["since"]), int(raw["half"]))  # type: ignore[index]
            if raw
            else None
        )
        device = out.setdefault(community, DeviceEffects([], {}))
        if effect.get("silent"):
            device.silences.append(schedule)
            continue
        arcs = tuple(int(arc) for arc in str(effect["oid"]).split("."))
        index = walk.index.get(arcs)
        if index is None:
            raise ValueError(f"{community.decode()}: no OID {effect['oid']} in its walk")
        varbind = _tlv(0x30, _tlv(0x06, _oid_body(arcs)) + encode_value(str(effect["tag"]), str(effect["value"])))
        device.values.setdefault(index, []).append((varbind, schedule))
    return out


# -- the responder -----------------------------------------------------------------------------


class Responder:
    """Answers SNMP messages for ``devices`` (community -> walk) under the effects of ``effects_path``."""

    def __init__(
        self, devices: Mapping[bytes, Walk], effects_path: Path | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.devices = dict(devices)
        self.effects_path = effects_path
        self.clock = clock
        self.effects: dict[bytes, DeviceEffects] = {}
        self._effects_stamp: tuple[int, int] | None = None

    def refresh_effects(self) -> None:
        if self.effects_path is None:
            return
        try:
            st = os.stat(self.effects_path)
        except FileNotFoundError:
            self.effects, self._effects_stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._effects_stamp:
            self._effects_stamp = stamp  # a bad file is reported once, not at every request
            self.effects = parse_effects(json.loads(self.effects_path.read_text(encoding="utf-8")), self.devices)

    def answer(self, message: bytes) -> bytes | None:
        """The response to ``message``, or None to stay silent (unknown community, silenced
        device, malformed or unsupported request)."""
        try:
            self.refresh_effects()
        except (OSError, ValueError) as exc:
            # The lab writes only checked effects: a bad file is a lab bug, not a reason to go silent.
            print(f"effects {self.effects_path}: {exc}; the previous effects stay", file=sys.stderr, flush=True)
        try:
            return self._answer(message)
        except (ValueError, IndexError):
            return None

    def _answer(self, buf: bytes) -> bytes | None:
        tag, i, end = _read(buf, 0, len(buf))
        if tag != 0x30:
            return None
        version_start = i
        version, i = _integer(buf, i, end)
        if version not in (VERSION_1, VERSION_2C):
            return None
        tag, start, i = _read(buf, i, end)
        if tag != 0x04:
            return None
        walk = self.devices.get(buf[start:i])
        if walk is None:
            return None
        header = buf[version_start:i]  # version and community, echoed as received
        community = buf[start:i]
        pdu_type, i, end = _read(buf, i, end)
        request_id_start = i
        _, i = _integer(buf, i, end)
        request_id = buf[request_id_start:i]
        first, i = _integer(buf, i, end)
        second, i = _integer(buf, i, end)
        tag, i, end = _read(buf, i, end)
        if tag != 0x30:
            return None
        requested: list[tuple[bytes, tuple[int, ...]]] = []  # (OID TLV, arcs)
        while i < end:
            tag, start, stop = _read(buf, i, end)
            if tag != 0x30:
                return None
            tag, oid_start, oid_stop = _read(buf, start, stop)
            if tag != 0x06:
                return None
            requested.append((buf[start:oid_stop], _oid_arcs(buf[oid_start:oid_stop])))
            i = stop

        effects = self.effects.get(community)
        overrides: Mapping[int, bytes] = {}
        if effects is not None:
            now = self.clock()
            if effects.silent(now):
                return None
            overrides = effects.overrides(now)

        def varbind(index: int) -> bytes:
            return overrides.get(index) or walk.varbinds[index]

        error = (0, 0)
        out: list[bytes] = []
        keys = walk.keys
        if pdu_type == GET:
            for n, (oid_tlv, arcs) in enumerate(requested):
                index = walk.index.get(arcs)
                if version == VERSION_1 and (index is None or index in walk.counter64):
                    error = (NO_SUCH_NAME, n + 1)
                    break
                out.append(varbind(index) if index is not None else _tlv(0x30, oid_tlv + NO_SUCH_INSTANCE))
        elif pdu_type == GET_NEXT:
            for n, (oid_tlv, arcs) in enumerate(requested):
                index = bisect.bisect_right(keys, arcs)
                if version == VERSION_1:
                    while index in walk.counter64:
                        index += 1
                    if index >= len(keys):
                        error = (NO_SUCH_NAME, n + 1)
                        break
                out.append(varbind(index) if index < len(keys) else _tlv(0x30, oid_tlv + END_OF_MIB_VIEW))
        elif pdu_type == GET_BULK and version == VERSION_2C:
            out = self._bulk(walk, varbind, requested, max(0, first), max(0, second))
        elif pdu_type == SET:
            error = (NOT_WRITABLE if version == VERSION_2C else READ_ONLY, 1)
        else:
            return None
        if error != (0, 0):
            # An error answer carries the request's varbinds back unchanged (RFC 3416 section 4.2.1).
            out = [_tlv(0x30, oid_tlv + b"\x05\x00") for oid_tlv, _ in requested]
        response = self._response(header, request_id, error, out)
        if len(response) > MAX_MESSAGE:
            response = self._response(
                header, request_id, (TOO_BIG, 0), [_tlv(0x30, oid_tlv + b"\x05\x00") for oid_tlv, _ in requested]
            )
        return response

    @staticmethod
    def _response(header: bytes, request_id: bytes, error: tuple[int, int], varbinds: list[bytes]) -> bytes:
        status = _signed(0x02, error[0]) + _signed(0x02, error[1])
        return _tlv(0x30, header + _tlv(RESPONSE, request_id + status + _tlv(0x30, b"".join(varbinds))))

    @staticmethod
    def _bulk(
        walk: Walk,
        varbind: Callable[[int], bytes],
        requested: list[tuple[bytes, tuple[int, ...]]],
        non_repeaters: int,
        max_repetitions: int,
    ) -> list[bytes]:
        keys, total = walk.keys, len(walk.keys)
        out: list[bytes] = []
        size = 0

        def add(item: bytes) -> bool:
            nonlocal size
            if len(out) >= MAX_VAR_BINDS or size + len(item) > MAX_MESSAGE - 100:
                return False
            out.append(item)
            size += len(item)
            return True

        non_repeaters = min(non_repeaters, len(requested))
        for oid_tlv, arcs in requested[:non_repeaters]:
            index = bisect.bisect_right(keys, arcs)
            if not add(varbind(index) if index < total else _tlv(0x30, oid_tlv + END_OF_MIB_VIEW)):
                return out
        repeating = requested[non_repeaters:]
        cursors = [bisect.bisect_right(keys, arcs) for _, arcs in repeating]
        for _ in range(max_repetitions if repeating else 0):
            for n, (oid_tlv, _arcs) in enumerate(repeating):
                index = cursors[n]
                if not add(varbind(index) if index < total else _tlv(0x30, oid_tlv + END_OF_MIB_VIEW)):
                    return out
                cursors[n] = index + 1
            if all(index >= total for index in cursors):
                break
        return out


def load_devices(devices: Mapping[str, str | Path]) -> dict[bytes, Walk]:
    """community -> walk, reading each recording once however many devices play it."""
    walks: dict[Path, Walk] = {}
    out: dict[bytes, Walk] = {}
    for community, path in devices.items():
        source = Path(path).resolve()
        if source not in walks:
            walks[source] = Walk.from_file(source)
        out[community.encode()] = walks[source]
    return out


def serve(responder: Responder, sockets: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    data, address = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                reply = responder.answer(data)
                if reply is not None:
                    sock.sendto(reply, address)


def _listening_socket(spec: str) -> socket.socket:
    host, _, port = spec.rpartition(":")
    if not host.startswith("127."):
        raise SystemExit(f"--listen {spec}: the lab listens on loopback only")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind((host, int(port)))
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.snmp_responder", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=Path, required=True, help="JSON: community -> .snmprec path")
    parser.add_argument("--effects", type=Path, default=None, help="JSON effects file (faults)")
    parser.add_argument("--fd", type=int, action="append", default=[], help="a bound UDP socket to serve")
    parser.add_argument("--listen", action="append", default=[], help="HOST:PORT to bind and serve")
    args = parser.parse_args(argv)
    if not args.fd and not args.listen:
        parser.error("give --fd or --listen")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    devices = load_devices(json.loads(args.devices.read_text(encoding="utf-8")))
    sockets = [socket.socket(fileno=fd) for fd in args.fd] + [_listening_socket(spec) for spec in args.listen]
    responder = Responder(devices, args.effects)
    skipped = sum(len(walk.skipped) for walk in {id(w): w for w in devices.values()}.values())
    endpoints = " ".join("{}:{}".format(*sock.getsockname()[:2]) for sock in sockets)
    print(f"ready {len(devices)} devices on udp {endpoints} ({skipped} unreadable records left out)", flush=True)
    try:
        serve(responder, sockets)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
