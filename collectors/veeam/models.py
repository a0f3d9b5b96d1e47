"""Typed models of the Veeam REST answers the collector reads, parsed leniently in casing only.

Enum casing changed between revisions (1.2-rev1: ``status: running``, ``workload: vm``; 1.3:
``Running``, ``Vm``) and job types were renamed (``Backup`` -> ``VSphereBackup``...): every enum
is compared lower-cased. A field the revision does not have is ``None``; a required field that is
missing or of the wrong type is a :class:`BadAnswer` naming the item. No vigie import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from collectors.veeam.client import BadAnswer

RESULTS = frozenset({"success", "warning", "failed", "none"})
# A run that produced its restore point: a Warning is a backup with a remark, not a missing one.
SUCCESSFUL = frozenset({"success", "warning"})
STOPPED = "stopped"  # ESessionState of a finished session
GIB = 1024**3  # Veeam's capacityGB/freeGB/usedSpaceGB are binary gigabytes


def epoch(value: Any, where: str) -> float | None:
    """An ISO 8601 date-time as epoch seconds; a time without offset is read as UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadAnswer(f"{where}: {value!r} is not a date-time")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadAnswer(f"{where}: {value!r} is not a date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _required_str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise BadAnswer(f"{where}: {key} is {value!r}, expected a string")
    return value


def _optional_str(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


def _lower(item: dict[str, Any], key: str) -> str | None:
    value = _optional_str(item, key)
    return value.lower() if value else None


def _number(item: dict[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"{where}: {key} is {value!r}, expected a number")
    return float(value)


def _result(value: str | None) -> str | None:
    """ESessionResult lower-cased; a value no revision documents is unknown, not a result."""
    return value if value in RESULTS else None


def job_kind(job_type: str) -> str:
    """backup | replica | backup_copy | other, from EJobType (VSphereReplica, BackupCopy,
    LegacyBackupCopy, FileBackupCopy, Backup, VSphereBackup, WindowsAgentBackup, ...)."""
    name = job_type.lower()
    if "copy" in name:
        return "backup_copy"
    if "replica" in name:
        return "replica"
    if "backup" in name:
        return "backup"
    return "other"


@dataclass(frozen=True)
class JobState:
    """One item of ``GET /api/v1/jobs/states``."""

    id: str
    name: str
    type: str
    status: str | None  # running | inactive | disabled | (1.3) enabled, stopping, stopped, starting
    last_result: str | None  # success | warning | failed | none (never run, or running)
    last_run: float | None  # start of the last run, epoch s
    next_run: float | None
    workload: str | None
    repository: str | None
    objects: int | None
    progress_percent: int | None  # 1.3 only

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> JobState:
        objects = _number(item, "objectsCount", where)
        progress = _number(item, "progressPercent", where)
        return cls(
            id=_required_str(item, "id", where),
            name=_required_str(item, "name", where),
            type=_required_str(item, "type", where),
            status=_lower(item, "status"),
            last_result=_result(_lower(item, "lastResult")),
            last_run=epoch(item.get("lastRun"), f"{where}.lastRun"),
            next_run=epoch(item.get("nextRun"), f"{where}.nextRun"),
            workload=_lower(item, "workload"),
            repository=_optional_str(item, "repositoryName"),
            objects=None if objects is None else int(objects),
            progress_percent=None if progress is None else int(progress),
        )


@dataclass(frozen=True)
class Session:
    """One item of ``GET /api/v1/sessions``."""

    id: str
    job_id: str
    state: str  # stopped | working | starting | stopping | postprocessing | waiting... | idle
    created: float
    ended: float | None  # absent while it runs
    result: str | None
    message: str | None
    progress_percent: int | None

    @property
    def running(self) -> bool:
        return self.state != STOPPED

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> Session:
        outcome = item.get("result")
        if outcome is not None and not isinstance(outcome, dict):
            raise BadAnswer(f"{where}: result is {outcome!r}, expected an object")
        created = epoch(_required_str(item, "creationTime", where), f"{where}.creationTime")
        progress = _number(item, "progressPercent", where)
        return cls(
            id=_required_str(item, "id", where),
            job_id=_required_str(item, "jobId", where),
            state=_required_str(item, "state", where).lower(),
            created=created if created is not None else 0.0,
            ended=epoch(item.get("endTime"), f"{where}.endTime"),
            result=_result(_lower(outcome, "result")) if outcome else None,
            message=_optional_str(outcome, "message") if outcome else None,
            progress_percent=None if progress is None else int(progress),
        )


@dataclass(frozen=True)
class Repository:
    """One item of ``GET /api/v1/backupInfrastructure/repositories/states``."""

    id: str
    name: str
    type: str | None
    host: str | None
    path: str | None
    capacity_gb: float | None
    free_gb: float | None
    used_gb: float | None  # backup data on it: need not equal capacity - free
    online: bool | None
    out_of_date: bool | None  # 1.3 only

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> Repository:
        online, out_of_date = item.get("isOnline"), item.get("isOutOfDate")
        return cls(
            id=_required_str(item, "id", where),
            name=_required_str(item, "name", where),
            type=_optional_str(item, "type"),
            host=_optional_str(item, "hostName"),
            path=_optional_str(item, "path"),
            capacity_gb=_number(item, "capacityGB", where),
            free_gb=_number(item, "freeGB", where),
            used_gb=_number(item, "usedSpaceGB", where),
            online=online if isinstance(online, bool) else None,
            out_of_date=out_of_date if isinstance(out_of_date, bool) else None,
        )


def parse_all(cls: Any, items: list[dict[str, Any]], path: str) -> list[Any]:
    return [cls.parse(item, f"GET {path}: data[{n}]") for n, item in enumerate(items)]


@dataclass(frozen=True)
class BackupObject:
    """One item of ``GET /api/v1/backupObjects``: a VM (or VM container) that backups hold. Before
    1.3 the item has no ``backupId`` / ``lastRunFailed`` / ``size`` (``None`` here)."""

    id: str
    name: str
    platform: str | None  # EPlatformType lower-cased: vmware, hyperv, ...
    type: str | None  # VM, ...
    restore_points: int | None
    last_run_failed: bool | None
    backup_id: str | None
    size_bytes: int | None

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> BackupObject:
        restore_points, size = _number(item, "restorePointsCount", where), _number(item, "size", where)
        failed = item.get("lastRunFailed")
        return cls(
            id=_required_str(item, "id", where),
            name=_required_str(item, "name", where),
            platform=_lower(item, "platformName"),
            type=_optional_str(item, "type"),
            restore_points=None if restore_points is None else int(restore_points),
            last_run_failed=failed if isinstance(failed, bool) else None,
            backup_id=_optional_str(item, "backupId"),
            size_bytes=None if size is None else int(size),
        )


@dataclass(frozen=True)
class Backup:
    """One item of ``GET /api/v1/backups``: the backup a job writes (``jobId``)."""

    id: str
    job_id: str | None
    name: str | None

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> Backup:
        return cls(id=_required_str(item, "id", where), job_id=_optional_str(item, "jobId"),
                   name=_optional_str(item, "name"))


@dataclass(frozen=True)
class RestorePoint:
    """One item of ``GET /api/v1/restorePoints``: a restore point of an object (``name``)."""

    name: str
    platform: str | None
    created: float

    @classmethod
    def parse(cls, item: dict[str, Any], where: str) -> RestorePoint:
        created = epoch(_required_str(item, "creationTime", where), f"{where}.creationTime")
        return cls(name=_required_str(item, "name", where), platform=_lower(item, "platformName"),
                   created=created if created is not None else 0.0)
