"""A lab of simulated SNMP devices: one snmpsim process, one community per device, on loopback.

    with SnmpLab({"c9300": "iosxe_c9300", "nas": "qnap"}) as lab:   # or: async with
        lab.port                   # UDP port on 127.0.0.1; community = device name
        lab.set_oper_status("c9300", 3, "down")
        lab.set_cpu("c9300", 97)
        lab.take_away("nas")       # the device stops answering at all
        lab.bring_back("nas")

CLI: ``python -m lab.snmpsim serve --devices c9300=iosxe_c9300,nas=qnap [--port 16100]``
(``--devices all`` serves every recording under its own name).

The recordings in lab/snmprec/ stay byte-exact; the lab writes a runtime copy of each one where
every record goes through the ``vigie`` variation module (lab/snmpsim_variation/vigie.py), which
makes any value settable per device and lets a device be taken away. snmpsim drops privileges to
nobody when started as root, so the runtime tree is world-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902

from lab.processes import Child
from lab.walks import CPU_COLUMNS, IF_OPER_STATUS, LAB_DIR, WalkError, all_recordings, cpu_at, read_records, recording

VARIATION_DIR = LAB_DIR / "snmpsim_variation"
VARIATION = "vigie"

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
# snmprec type tag -> the SMI type a SET of that record takes
_SMI = {
    "2": rfc1902.Integer32,
    "4": rfc1902.OctetString,
    "65": rfc1902.Counter32,
    "66": rfc1902.Gauge32,
    "67": rfc1902.TimeTicks,
    "70": rfc1902.Counter64,
}


class LabError(WalkError):
    pass


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 user snmpsim accepts (in addition to its built-in simulator/auctoritas/privatus)."""

    user: str
    auth_key: str
    priv_key: str
    auth_protocol: str = "SHA"  # snmpsim names: MD5, SHA, SHA224, SHA256, SHA384, SHA512
    priv_protocol: str = "AES"  # snmpsim names: DES, 3DES, AES, AES192, AES256


class SnmpLab:
    """One snmpsim-command-responder serving ``devices`` (device name -> recording name or path)."""

    def __init__(
        self,
        devices: Mapping[str, str | Path],
        port: int | None = None,
        runtime_dir: Path | None = None,
        v3_users: Iterable[V3User] = (),
        start_timeout_s: float = 60.0,
        log_level: str = "error",
    ) -> None:
        self.devices = {name: _as_path(src) for name, src in devices.items()}
        self.host = "127.0.0.1"
        self.port = port or free_udp_port()
        self.v3_users = list(v3_users)
        self.start_timeout_s = start_timeout_s
        self.log_level = log_level
        self._own_tmp = runtime_dir is None
        self.runtime_dir = Path(runtime_dir or tempfile.mkdtemp(prefix="vigie-snmplab-"))
        self.data_dir = self.runtime_dir / "data"
        self._process: Child | None = None
        self._values: dict[str, dict[str, tuple[str, str]]] = {}

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> SnmpLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SnmpLab:
        # Writing the runtime copies and waiting for snmpsim block for about a second: keep the
        # loop free, but fork from the loop's thread, which outlives the lab (lab.processes).
        try:
            await asyncio.to_thread(self._prepare)
            self._spawn()
            await asyncio.to_thread(self._wait_ready)
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        """Start snmpsim and wait until it answers. snmpsim gets SIGTERM if the thread calling
        this ends (lab.processes): call it from a thread that outlives the lab."""
        try:
            self._prepare()
            self._spawn()
            self._wait_ready()
        except BaseException:
            self.stop()  # a `with` does not exit what its __enter__ could not finish
            raise

    def _spawn(self) -> None:
        self._process = Child("snmpsim", self._command(), log=self.runtime_dir / "snmpsim.log", lifeline=True)
        self._process.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace_s=10)
            self._process = None
        if self._own_tmp:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def wait(self) -> int:
        """Block until snmpsim exits; its return code."""
        if self._process is None or self._process.process is None:
            raise LabError("snmpsim is not running")
        return self._process.process.wait()

    def log_text(self) -> str:
        path = self.runtime_dir / "snmpsim.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # fault injection ------------------------------------------------------------------------
    def set_oper_status(self, device: str, if_index: int, status: str) -> None:
        code = {"up": 1, "down": 2, "testing": 3}.get(status)
        if code is None:
            raise ValueError(f"status: {status!r} is not up, down or testing")
        self.set_values(device, {f"{IF_OPER_STATUS}.{if_index}": rfc1902.Integer32(code)})

    def set_cpu(self, device: str, percent: int) -> None:
        """Set every CPU load the device's recording has (lab.walks.CPU_COLUMNS) to ``percent``."""
        self._check(device)
        records = cpu_at(self._values[device], percent)
        if not records:
            raise LabError(f"{device}: the recording has no CPU column {sorted(CPU_COLUMNS)}")
        self.set_values(device, {oid: _SMI[tag.rstrip("x")](value) for oid, (tag, value) in records.items()})

    def take_away(self, device: str) -> None:
        """The device stops answering anything (requests are dropped, as for a dead host)."""
        self._check(device)
        flag = self._data_file(device).with_suffix(".snmprec.down")
        flag.touch()
        flag.chmod(0o644)

    def bring_back(self, device: str) -> None:
        self._check(device)
        self._data_file(device).with_suffix(".snmprec.down").unlink(missing_ok=True)

    # internals ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("cache", "variation"):
            (self.runtime_dir / sub).mkdir(exist_ok=True)
        shutil.copy(VARIATION_DIR / f"{VARIATION}.py", self.runtime_dir / "variation" / f"{VARIATION}.py")
        for name, source in self.devices.items():
            self._values[name] = _write_runtime_file(source, self._data_file(name))
        # snmpsim drops to nobody when run as root: everything must be readable, cache writable.
        for path in [self.runtime_dir, *self.runtime_dir.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)

    def _data_file(self, device: str) -> Path:
        return self.data_dir / f"{device}.snmprec"

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-c",
            # The lifeline before snmpsim drops to nobody, which clears PR_SET_PDEATHSIG (lab.processes).
            "import sys; from lab.processes import watch_lifeline; watch_lifeline(); "
            "from snmpsim.commands.responder import main; sys.exit(main())",
            f"--data-dir={self.data_dir}",
            f"--cache-dir={self.runtime_dir / 'cache'}",
            f"--variation-modules-dir={self.runtime_dir / 'variation'}",
            f"--agent-udpv4-endpoint={self.host}:{self.port}",
            # Per-request logging at the default level costs snmpsim a third of its CPU.
            f"--log-level={self.log_level}",
        ]
        for user in self.v3_users:
            command += [
                f"--v3-user={user.user}",
                f"--v3-auth-key={user.auth_key}",
                f"--v3-auth-proto={user.auth_protocol}",
                f"--v3-priv-key={user.priv_key}",
                f"--v3-priv-proto={user.priv_protocol}",
            ]
        if os.geteuid() == 0:
            command += ["--process-user=nobody", "--process-group=nogroup"]
        return command

    def _wait_ready(self) -> None:
        """Poll with a real GET until the first device answers (no fixed sleep)."""
        first = next(iter(self.devices))
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and not self._process.running():
                raise LabError(f"snmpsim exited:\n{self.log_text()}")
            try:
                _request(self.host, self.port, first, "get", {"1.3.6.1.2.1.1.3.0": None}, timeout_s=0.5)
                return
            except TimeoutError:
                continue
        raise LabError(f"snmpsim did not answer on {self.host}:{self.port} within {self.start_timeout_s}s")

    def _check(self, device: str) -> None:
        if device not in self.devices:
            raise LabError(f"unknown device {device!r}; lab has {sorted(self.devices)}")

    def set_values(self, device: str, changes: Mapping[str, object]) -> None:
        """SNMP SET any of the device's OIDs (pysnmp rfc1902 values, e.g. Counter64(10**9))."""
        self._check(device)
        _request(self.host, self.port, device, "set", changes, timeout_s=5.0)


def _as_path(source: str | Path) -> Path:
    path = Path(source)
    return path if path.suffix == ".snmprec" and path.exists() else recording(str(source))


def _write_runtime_file(source: Path, target: Path) -> dict[str, tuple[str, str]]:
    """Copy a recording with every record routed through the variation module.

    Lines that are not records are left out (lab.walks.read_records).
    Returns OID -> (type tag, value) of what is served.
    """
    values: dict[str, tuple[str, str]] = {}
    out: list[str] = []
    for oid, tag, value in read_records(source):
        values[oid] = (tag, value)
        out.append(f"{oid}|{tag}:{VARIATION}|{value}\n")
    # A community with a slash (`<client>/<device>`) is a data file in a sub-directory.
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(out), encoding="utf-8", errors="surrogateescape")
    return values


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(
    host: str, port: int, community: str, op: str, var_binds: Mapping[str, object], timeout_s: float
) -> list[tuple[str, object]]:
    """One SNMPv2c GET or SET over a plain socket: the lab needs no event loop."""
    pdu = _V2C.SetRequestPDU() if op == "set" else _V2C.GetRequestPDU()
    _V2C.apiPDU.set_defaults(pdu)
    _V2C.apiPDU.set_varbinds(
        pdu, [(oid, value if value is not None else _V2C.Null("")) for oid, value in var_binds.items()]
    )
    message = _V2C.Message()
    _V2C.apiMessage.set_defaults(message)
    _V2C.apiMessage.set_community(message, community)
    _V2C.apiMessage.set_pdu(message, pdu)
    request_id = int(_V2C.apiPDU.get_request_id(pdu))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(encoder.encode(message), (host, port))
        deadline = time.monotonic() + timeout_s
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError as exc:
                raise TimeoutError(f"{host}:{port} community {community}: no answer") from exc
            reply, _ = decoder.decode(data, asn1Spec=_V2C.Message())
            reply_pdu = _V2C.apiMessage.get_pdu(reply)
            if int(_V2C.apiPDU.get_request_id(reply_pdu)) != request_id:
                continue
            status = int(_V2C.apiPDU.get_error_status(reply_pdu))
            if status:
                raise LabError(f"{community}: {op} failed with error-status {status}")
            return [(str(oid), value) for oid, value in _V2C.apiPDU.get_varbinds(reply_pdu)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.snmpsim")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve recordings until interrupted")
    serve.add_argument(
        "--devices",
        required=True,
        help="name=recording[,name=recording...] (recording from lab/snmprec or a path), or 'all'",
    )
    serve.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    if args.devices == "all":
        devices: dict[str, str] = {name: name for name in all_recordings()}
    else:
        devices = dict(item.split("=", 1) if "=" in item else (item, item) for item in args.devices.split(","))
    # SIGTERM and Ctrl-C, whenever they come, unwind the `with`: snmpsim and the runtime copy go.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    with SnmpLab(devices, port=args.port) as lab:
        print(f"snmpsim on udp {lab.host}:{lab.port} (runtime {lab.runtime_dir})", flush=True)
        for name, source in lab.devices.items():
            print(f"  snmp://{quote(name, safe='')}@{lab.host}:{lab.port}  <- {source.name}", flush=True)
        lab.wait()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
