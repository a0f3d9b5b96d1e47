#!/usr/bin/env python3
# Copied from /work/shared/bench/fastresp.py (shared bench helpers, see /work/shared/bench/README.md); keep in sync.
"""fastresp: a minimal, fast, read-only SNMPv2c replay responder for a .snmprec file (loopback only).

Why: snmpsim 1.2.2 serves ~7k varbinds/s per core on this box, which makes it the bottleneck for
any poller benchmark. This replays the same recording from pre-encoded varbind TLVs held in a
sorted array: GET = dict lookup, GETNEXT = bisect, GETBULK = bisect once then step idx+1.
Supports v1/v2c GET, GETNEXT, GETBULK (non-repeaters, max-repetitions, endOfMibView /
noSuchInstance), any community equal to --community. No SET, no v3, no variation modules.
Response varbinds are capped at --max-var-binds (default 64, same as snmpsim).

Usage: fastresp.py --snmprec FILE --port 1191 [--port 1192 ...] [--bind 127.0.0.1]
"""
import argparse
import bisect
import os
import selectors
import signal
import socket
import sys


def enc_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, payload):
    return bytes([tag]) + enc_len(len(payload)) + payload


def enc_signed(tag, v):
    n = 1
    while True:
        try:
            return tlv(tag, v.to_bytes(n, "big", signed=True))
        except OverflowError:
            n += 1


def enc_unsigned(tag, v):
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")  # room for a leading 0 bit
    return tlv(tag, b)


def oid_body(arcs):
    out = bytearray([40 * arcs[0] + arcs[1]])
    for a in arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def dec_oid(body):
    first = body[0]
    arcs = [first // 40, first % 40] if first < 80 else [2, first - 80]
    v = 0
    for c in body[1:]:
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            arcs.append(v)
            v = 0
    return tuple(arcs)


def enc_value(tag, val):
    hexed = tag.endswith("x")
    base = tag.rstrip("x").split(":")[0]
    raw = bytes.fromhex(val) if hexed else None
    if base == "2":
        return enc_signed(0x02, int(val))
    if base == "4":
        return tlv(0x04, raw if hexed else val.encode("utf-8", "surrogateescape"))
    if base == "5":
        return b"\x05\x00"
    if base == "6":
        return tlv(0x06, oid_body([int(x) for x in val.strip(".").split(".")]))
    if base == "64":
        return tlv(0x40, raw if hexed else bytes(int(x) for x in val.split(".")))
    if base in ("65", "66", "67", "70"):
        return enc_unsigned({"65": 0x41, "66": 0x42, "67": 0x43, "70": 0x46}[base], int(val))
    if base == "68":
        return tlv(0x44, raw if hexed else val.encode())
    raise ValueError(f"unsupported snmprec tag {tag}")


def load(path):
    rows = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            oid, tag, val = line.split("|", 2)
            arcs = tuple(int(x) for x in oid.strip(".").split("."))
            otlv = tlv(0x06, oid_body(list(arcs)))
            rows.append((arcs, tlv(0x30, otlv + enc_value(tag, val))))
    rows.sort(key=lambda r: r[0])
    keys = [r[0] for r in rows]
    vbs = [r[1] for r in rows]
    index = {k: i for i, k in enumerate(keys)}
    return keys, vbs, index


def rd_len(buf, i):
    n = buf[i]
    i += 1
    if n < 0x80:
        return n, i
    k = n & 0x7F
    return int.from_bytes(buf[i:i + k], "big"), i + k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snmprec", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--community", default="public")
    ap.add_argument("--max-var-binds", type=int, default=64)
    args = ap.parse_args()
    if not args.bind.startswith("127."):
        sys.exit("loopback only")

    keys, vbs, index = load(args.snmprec)
    nkeys = len(keys)
    community = args.community.encode()
    maxvb = args.max_var_binds
    END = b"\x82\x00"
    NOSUCH = b"\x81\x00"

    def next_idx(arcs):
        return bisect.bisect_right(keys, arcs)

    def handle(buf):
        # --- parse request
        if buf[0] != 0x30:
            return None
        _, i = rd_len(buf, 1)
        ver_start = i
        ln, j = rd_len(buf, i + 1)
        i = j + ln
        version_tlv = buf[ver_start:i]
        ln, j = rd_len(buf, i + 1)
        comm = buf[j:j + ln]
        if comm != community:
            return None
        comm_tlv = buf[i:j + ln]
        i = j + ln
        ptag = buf[i]
        _, i = rd_len(buf, i + 1)
        s = i
        ln, j = rd_len(buf, i + 1)
        i = j + ln
        reqid_tlv = buf[s:i]
        ln, j = rd_len(buf, i + 1)
        a = int.from_bytes(buf[j:j + ln], "big", signed=True)
        i = j + ln
        ln, j = rd_len(buf, i + 1)
        b = int.from_bytes(buf[j:j + ln], "big", signed=True)
        i = j + ln
        vln, i = rd_len(buf, i + 1)
        end = i + vln
        req = []  # (oid_tlv, arcs)
        while i < end:
            ln, j = rd_len(buf, i + 1)  # varbind SEQUENCE
            k = j
            oln, m = rd_len(buf, k + 1)
            req.append((buf[k:m + oln], dec_oid(buf[m:m + oln])))
            i = j + ln
        out = []
        if ptag == 0xA0:  # GET
            for otlv, arcs in req:
                x = index.get(arcs)
                out.append(vbs[x] if x is not None else tlv(0x30, otlv + NOSUCH))
        elif ptag == 0xA1:  # GETNEXT
            for otlv, arcs in req:
                x = next_idx(arcs)
                out.append(vbs[x] if x < nkeys else tlv(0x30, otlv + END))
        elif ptag == 0xA5:  # GETBULK
            n = max(0, min(a, len(req)))
            for otlv, arcs in req[:n]:
                x = next_idx(arcs)
                out.append(vbs[x] if x < nkeys else tlv(0x30, otlv + END))
            rep = req[n:]
            r = len(rep)
            if r:
                m = max(0, min(b, (maxvb - n) // r))
                cur = [next_idx(arcs) for _, arcs in rep]
                last = [otlv for otlv, _ in rep]
                for _ in range(m):
                    alldone = True
                    for c in range(r):
                        x = cur[c]
                        if x < nkeys:
                            out.append(vbs[x])
                            cur[c] = x + 1
                            alldone = False
                        else:
                            out.append(tlv(0x30, last[c] + END))
                    if alldone:
                        break
        else:
            return None
        body = b"".join(out)
        pdu = tlv(0xA2, reqid_tlv + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, body))
        return tlv(0x30, version_tlv + comm_tlv + pdu)

    sel = selectors.DefaultSelector()
    for p in args.port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((args.bind, p))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print(f"fastresp pid={os.getpid()} records={nkeys} ports={args.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            while True:
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                try:
                    rsp = handle(data)
                except Exception as exc:  # malformed request: drop it
                    print("drop:", exc, file=sys.stderr, flush=True)
                    continue
                if rsp is not None:
                    s.sendto(rsp, addr)


if __name__ == "__main__":
    main()
