"""The Linux host collector (``linux``): a Debian host over SSH, key login, commands every Debian
has. Load, memory, filesystems, failed systemd units, pending security updates, and where the
options say so Docker containers and PostgreSQL's ``pg_isready``.

Each check is one command with its own deadline; every command runs under ``LC_ALL=C`` so the
output parsed is the untranslated one. Measurements ``linux_*`` (docs/METRICS.md, "SSH hosts").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field, StringConstraints

from agent.api import CollectorContext, PluginSpec, Rule
from collectors.ssh.client import Result
from collectors.ssh.host import (
    Check,
    Port,
    Row,
    Seconds,
    SshCredentials,
    SshHostCollector,
    SshOptions,
    Unparsable,
    host_key_rule,
)

__all__ = ["PLUGIN", "LinuxCollector", "LinuxOptions", "default_rules"]

LOAD, MEMORY, FILESYSTEM = "linux_load", "linux_memory", "linux_filesystem"
SYSTEMD, UPDATES = "linux_systemd", "linux_updates"
CONTAINER, POSTGRESQL = "linux_docker_container", "linux_postgresql"

# Pseudo and image filesystems: never "full" in a sense anyone acts on.
DEFAULT_EXCLUDED_TYPES = ("tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "efivarfs", "ramfs")
FsType = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.]+$", max_length=32)]
Host = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]+$", max_length=253)]


class LinuxOptions(SshOptions):
    systemd: bool = True
    updates: bool = True
    docker: bool = False  # the host runs Docker: the login must be in the `docker` group
    postgresql: bool = False  # pg_isready against postgresql_host:postgresql_port
    postgresql_host: Host = "localhost"  # a directory (/var/run/postgresql) means the Unix socket
    postgresql_port: Port = 5432
    postgresql_timeout_s: Seconds = 3.0
    excluded_fs_types: list[FsType] = Field(default_factory=lambda: list(DEFAULT_EXCLUDED_TYPES))


def _c(command: str) -> str:
    return f"LC_ALL=C {command}"


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Unparsable(f"{what}: {text[:60]!r} is not a number") from None


def parse_load(result: Result) -> list[Row]:
    """``cat /proc/loadavg; nproc``: ``0.52 0.58 0.59 1/467 12345`` then the CPU count."""
    lines = result.stdout.split("\n")
    parts = lines[0].split()
    if len(parts) < 3 or len(lines) < 2 or not lines[1].strip().isdigit():
        raise Unparsable(f"expected /proc/loadavg then nproc, got {result.stdout[:80]!r}")
    load1, load5, load15 = (_number(p, "load") for p in parts[:3])
    cpus = int(lines[1].strip())
    return [(LOAD, {
        "load1": load1, "load5": load5, "load15": load15, "cpus": cpus,
        "load15_per_cpu": round(load15 / cpus, 3) if cpus else None,
    }, {})]


def parse_meminfo(result: Result) -> list[Row]:
    """``/proc/meminfo`` (kB)."""
    values: dict[str, int] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\w+):\s+(\d+)(?: kB)?$", line.strip())
        if match:
            values[match[1]] = int(match[2]) * 1024
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        raise Unparsable("no MemTotal / MemAvailable in /proc/meminfo")
    swap_total, swap_free = values.get("SwapTotal"), values.get("SwapFree")
    return [(MEMORY, {
        "total_bytes": total, "available_bytes": available,
        "used_percent": round(100 * (total - available) / total, 2),
        "swap_total_bytes": swap_total,
        "swap_used_percent": round(100 * (swap_total - swap_free) / swap_total, 2)
        if swap_total and swap_free is not None else None,
    }, {})]


def parse_df(result: Result) -> list[Row]:
    """``df -P -k -T``: Filesystem Type 1024-blocks Used Available Capacity Mounted-on."""
    lines = result.stdout.splitlines()
    if not lines or not lines[0].startswith("Filesystem"):
        raise Unparsable(f"no df header, got {result.stdout[:80]!r}")
    rows: list[Row] = []
    for line in lines[1:]:
        parts = line.split(None, 6)
        if len(parts) != 7:
            raise Unparsable(f"df line {line[:80]!r}")
        device, fstype, size_k, used_k, avail_k, _, mount = parts
        size, used, avail = (int(_number(v, "df")) * 1024 for v in (size_k, used_k, avail_k))
        # df's own Capacity counts the root-reserved blocks as used; free % is what users can write
        usable = used + avail
        rows.append((FILESYSTEM, {
            "size_bytes": size, "used_bytes": used, "free_bytes": avail, "fs_type": fstype, "source": device,
            "free_percent": round(100 * avail / usable, 2) if usable else None,
        }, {"mount": mount}))
    return rows


def parse_failed_units(result: Result) -> list[Row]:
    """``systemctl list-units --state=failed --no-legend --plain``: ``unit load active sub description``."""
    units = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    for unit in units:
        if "." not in unit:
            raise Unparsable(f"{unit!r} is not a unit name")
    return [(SYSTEMD, {"failed_units": len(units), "failed": ", ".join(units) or None}, {})]


def parse_docker_ps(result: Result) -> list[Row]:
    """``docker ps --all --no-trunc --format '{{json .}}'``: one JSON object per container."""
    rows: list[Row] = []
    for line in result.stdout.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            name, state, status = item["Names"], item["State"], item["Status"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unparsable(f"container line {line[:80]!r}: {exc}") from None
        exit_code = re.match(r"^Exited \((-?\d+)\)", status)
        rows.append((CONTAINER, {
            "state": state, "running": state == "running", "restarting": state == "restarting",
            "status": status, "image": item.get("Image"),
            "exit_code": int(exit_code[1]) if exit_code else None,
        }, {"container": name.split(",")[0]}))
    return rows


PG_ISREADY = {0: "accepting", 1: "rejecting", 2: "no_response", 3: "no_attempt"}


def parse_pg_isready(result: Result) -> list[Row]:
    """pg_isready says it by exit status: 0 accepting, 1 rejecting (starting up), 2 no response,
    3 not attempted (bad parameters)."""
    if result.exit_status not in PG_ISREADY:
        raise Unparsable(f"exit status {result.exit_status}")
    state = PG_ISREADY[result.exit_status]
    return [(POSTGRESQL, {"accepting": state == "accepting", "state": state,
                          "message": result.stdout.strip()[:200] or None}, {})]


def parse_apt_upgrade(result: Result) -> list[Row]:
    """``apt-get -s upgrade``: one ``Inst PKG [OLD] (NEW ORIGIN:RELEASE [ARCH])`` line per upgrade;
    a security one comes from a ``*-security`` suite (Debian-Security:12/stable-security)."""
    installs = [line for line in result.stdout.splitlines() if line.startswith("Inst ")]
    if not installs and "upgraded" not in result.stdout:
        raise Unparsable("neither Inst lines nor apt's summary line")
    security = [line for line in installs if re.search(r"[-/]security\b", line, re.IGNORECASE)]
    return [(UPDATES, {"pending": len(installs), "security": len(security)}, {})]


class LinuxCollector(SshHostCollector):
    name = "linux"
    options: LinuxOptions

    def __init__(self, options: LinuxOptions, context: CollectorContext) -> None:
        super().__init__(options, context)
        excluded = " ".join(f"-x {t}" for t in options.excluded_fs_types)
        checks = [
            Check("loadavg", _c("cat /proc/loadavg && nproc"), parse_load),
            Check("meminfo", _c("cat /proc/meminfo"), parse_meminfo),
            Check("df", _c(f"df -P -k -T {excluded}"), parse_df),
        ]
        if options.systemd:
            checks.append(Check(
                "systemctl", _c("systemctl list-units --state=failed --no-legend --plain --no-pager"),
                parse_failed_units,
            ))
        if options.updates:
            checks.append(Check("apt-get -s upgrade", _c("apt-get -s -q upgrade"), parse_apt_upgrade))
        if options.docker:
            checks.append(Check("docker ps", _c("docker ps --all --no-trunc --format '{{json .}}'"), parse_docker_ps))
        if options.postgresql:
            timeout = max(1, round(options.postgresql_timeout_s))
            checks.append(Check(
                "pg_isready",
                _c(f"pg_isready -h {options.postgresql_host} -p {options.postgresql_port} -t {timeout}"),
                parse_pg_isready, accept_status=tuple(PG_ISREADY),
            ))
        self._checks = tuple(checks)

    def checks(self) -> Sequence[Check]:
        return self._checks


def default_rules() -> list[Rule]:
    return [
        host_key_rule("linux"),
        Rule(name="linux_filesystem_full", measurement=FILESYSTEM, when="free_percent < 10", for_s=300,
             severity="major", summary="{device}: {mount} has {free_percent} % free"),
        Rule(name="linux_filesystem_low", measurement=FILESYSTEM, when="free_percent < 20 and free_percent >= 10",
             for_s=600, severity="warning", summary="{device}: {mount} has {free_percent} % free"),
        Rule(name="linux_memory_high", measurement=MEMORY, when="used_percent > 95", for_s=600,
             severity="minor", summary="{device}: memory {used_percent} % used"),
        Rule(name="linux_load_high", measurement=LOAD, when="load15_per_cpu > 2", for_s=900,
             severity="minor", summary="{device}: load {load15} over 15 min on {cpus} CPUs"),
        Rule(name="linux_systemd_failed", measurement=SYSTEMD, when="failed_units > 0", for_s=120,
             severity="major", summary="{device}: failed systemd units: {failed}"),
        Rule(name="linux_security_updates", measurement=UPDATES, when="security > 0", for_s=7 * 86400,
             severity="warning", summary="{device}: {security} security updates pending for a week"),
        Rule(name="linux_docker_container_down", measurement=CONTAINER, when="running == False", for_s=120,
             severity="major", summary="{device}: container {container} is {state} ({status})"),
        Rule(name="linux_postgresql_down", measurement=POSTGRESQL, when="accepting == False", for_s=120,
             severity="critical", summary="{device}: PostgreSQL not accepting connections ({state})"),
    ]


PLUGIN = PluginSpec(
    name="linux",
    kind="collector",
    factory=LinuxCollector,
    options=LinuxOptions,
    credentials=SshCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(CONTAINER, "state"), (POSTGRESQL, "state")}),
    description="Linux hosts over SSH: load, memory, filesystems, systemd, Docker, PostgreSQL, security updates",
)

