"""The Veeam Backup & Replication collector: jobs and their last result, the age of each job's last
successful run, running sessions, repositories' capacity and free space, from the REST API v1.

Options and metrics: README.md beside this file, docs/CONFIGURATION.md and docs/METRICS.md
("Veeam"). Per run: ``GET /api/v1/jobs/states`` (every job: backup, replica to the DR site,
backup copy), ``GET /api/v1/sessions`` created within ``sessions_lookback_h`` (last finished run,
last successful run, running sessions), for a job with no successful run in that window its last
``Success`` session, ``GET /api/v1/backupInfrastructure/repositories/states`` and ``GET
/api/v1/serverInfo``, and which VMs the backups hold: ``GET /api/v1/backupObjects`` (with ``GET
/api/v1/backups`` to name the jobs that wrote them, ``GET /api/v1/restorePoints`` created within
``sessions_lookback_h`` for their last one). The job states are the run: if they fail the
run fails (the status names the request, the HTTP status, Veeam's errorCode and, on a 403, the
role the account needs); any other part failing is ``sink.error`` and the run ends ``partial``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from agent.api.rules import Inhibition
from collectors.veeam.client import (
    ApiError,
    ApiUnreachable,
    Login,
    LoginRefused,
    Sleep,
    TlsRefused,
    Tokens,
    VeeamApi,
    VeeamError,
)
from collectors.veeam.models import (
    GIB,
    SUCCESSFUL,
    Backup,
    BackupObject,
    JobState,
    Repository,
    RestorePoint,
    Session,
    job_kind,
    parse_all,
)

__all__ = ["PLUGIN", "VeeamCollector", "VeeamCredentials", "VeeamOptions", "default_rules", "job_fields"]

log = logging.getLogger(__name__)

JOBS_PATH = "/api/v1/jobs/states"
SESSIONS_PATH = "/api/v1/sessions"
REPOSITORIES_PATH = "/api/v1/backupInfrastructure/repositories/states"
SERVER_INFO_PATH = "/api/v1/serverInfo"
BACKUP_OBJECTS_PATH = "/api/v1/backupObjects"
BACKUPS_PATH = "/api/v1/backups"
RESTORE_POINTS_PATH = "/api/v1/restorePoints"
DEFAULT_PORT = 9419
# Built-in roles that may read jobs, sessions and repositories (Veeam: only built-in roles log in
# to the REST API; Restore, Tape and Security operators cannot read them).
READING_ROLE = "Veeam Backup Viewer (or Backup Operator, Backup Administrator)"
LOW_SPACE_PCT = 85
FULL_PCT = 95


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _https_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{url!r}: expected https://HOST[:PORT] (the REST API is HTTPS only)")
    if parts.username or parts.password:
        raise ValueError("a login in the URL would be written in the config: use the device's credentials")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r}: give the server only (https://HOST:9419), the API paths are the collector's")
    return url.rstrip("/")


Hours = Annotated[float, Field(gt=0, le=24 * 366), BeforeValidator(_not_bool)]


class VeeamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, AfterValidator(_https_url)] | None = None  # default https://<device address>:9419
    # The oldest revision VBR 12.0 and later all accept; 1.3-rev1 for VBR 13 adds progress fields.
    api_version: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]+-rev[0-9]+$")] = "1.1-rev0"
    ca_bundle: Path | None = None  # None: the system's trust store
    verify_tls: bool = True  # false is logged at start: for a lab, never for a client's server
    timeout_s: Annotated[float, Field(gt=0, le=120), BeforeValidator(_not_bool)] = 10.0  # each HTTP call
    page_size: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_not_bool)] = 200
    sessions_lookback_h: Hours = 48.0
    max_success_age_h: Hours = 26.0  # no successful run for longer: veeam_backup_overdue
    max_success_age_h_by_job: dict[Annotated[str, StringConstraints(min_length=1)], Hours] = {}
    # Each 429 wait is part of the poll: three of them must fit in its timeout_s (10 s by default).
    max_retry_wait_s: Annotated[float, Field(ge=0, le=300), BeforeValidator(_not_bool)] = 3.0
    # A refused password is not tried again for this long: a domain's lockout policy counts failures.
    login_retry_s: Annotated[float, Field(ge=0, le=86400), BeforeValidator(_not_bool)] = 900.0


class VeeamCredentials(BaseModel):
    """The device's credentials secret for the veeam collector: an account with a built-in role
    that can read jobs (Veeam Backup Viewer is enough)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1)]  # DOMAIN\\user or user@domain
    password: Annotated[str, StringConstraints(min_length=1)]


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def job_fields(
    job: JobState, sessions: Sequence[Session] | None, last_success: float | None, now: float, max_age_s: float
) -> dict[str, Any]:
    """The ``veeam_job`` fields of one job. ``sessions``: its sessions of the lookback window (None
    when they could not be read); ``last_success``: the end of its last successful run, if known.

    While a job runs, ``jobs/states`` says ``lastResult: None``: the result shown is then the last
    finished session's, so a failed job being retried stays failed until a run succeeds."""
    finished = [s for s in sessions or () if not s.running and s.ended is not None]
    last = max(finished, key=lambda s: s.ended or 0.0) if finished else None
    running = [s for s in sessions or () if s.running]
    result = job.last_result
    if result in (None, "none") and last is not None and last.result is not None:
        result = last.result
    progress = max((s.progress_percent for s in running if s.progress_percent is not None), default=None)
    age = None if last_success is None else round(max(0.0, now - last_success), 3)
    return {
        "last_result": result,
        "status": job.status,
        "running": job.status == "running" or bool(running),
        "disabled": job.status == "disabled",
        "last_run_start": job.last_run,
        "last_run_end": None if last is None else last.ended,
        "last_message": None if last is None or last.result not in ("failed", "warning") else last.message,
        "last_success_end": last_success,
        "last_success_age_s": age,
        "last_success_age_h": None if age is None else round(age / 3600, 1),
        "max_success_age_s": max_age_s,
        "next_run": job.next_run,
        "objects": job.objects,
        "progress_percent": progress if progress is not None else (job.progress_percent if running else None),
        "repository": job.repository,
        "running_sessions": None if sessions is None else len(running),
    }


def repository_fields(repo: Repository) -> dict[str, Any]:
    capacity = None if repo.capacity_gb is None else int(repo.capacity_gb * GIB)
    free = None if repo.free_gb is None else int(repo.free_gb * GIB)
    used_pct = None
    if capacity and free is not None:
        used_pct = round(100.0 * (capacity - free) / capacity, 2)
    return {
        "capacity_bytes": capacity,
        "free_bytes": free,
        "backup_bytes": None if repo.used_gb is None else int(repo.used_gb * GIB),
        "used_pct": used_pct,
        "online": repo.online,
        "out_of_date": repo.out_of_date,
        "host": repo.host,
        "path": repo.path,
    }


def backup_object_fields(items: Sequence[BackupObject], job_of_backup: Mapping[str, str] | None) -> dict[str, Any]:
    """The fields of one object from its items in Veeam's list (one per backup holding it);
    ``job_of_backup`` is ``None`` when the backups could not be read (jobs unknown)."""
    points = [o.restore_points for o in items if o.restore_points is not None]
    failed = [o.last_run_failed for o in items if o.last_run_failed is not None]
    sizes = [o.size_bytes for o in items if o.size_bytes is not None]
    jobs = None
    if job_of_backup is not None and any(o.backup_id for o in items):
        jobs = ", ".join(sorted({job_of_backup[o.backup_id] for o in items if o.backup_id in job_of_backup})) or None
    return {
        "restore_points": sum(points) if points else None,
        "backups": len(items),
        "last_run_failed": any(failed) if failed else None,
        "size_bytes": sum(sizes) if sizes else None,
        "jobs": jobs,
    }


def _reason(exc: VeeamError) -> str:
    """What the collection status says: the request, the status, Veeam's words, what to do."""
    if isinstance(exc, LoginRefused):
        return f"{exc} (check the device's veeam credentials)"
    if isinstance(exc, TlsRefused):
        return f"{exc} (ca_bundle: the server's CA certificate)"
    if isinstance(exc, ApiError) and exc.status == 403:
        return f"{exc} (the account needs the {READING_ROLE} role)"
    return str(exc)


def _raise(exc: VeeamError) -> NoReturn:
    if isinstance(exc, ApiUnreachable):
        raise Unreachable(str(exc)) from None
    raise CollectError(_reason(exc)) from None


class VeeamCollector:
    """One per backup server; keeps its OAuth2 tokens between runs (a login every 15 minutes at
    most, a refresh otherwise)."""

    def __init__(self, options: VeeamOptions, context: CollectorContext, *, sleep: Sleep = asyncio.sleep) -> None:
        self.options = options
        self.clock = context.clock
        self.sleep = sleep
        self.tokens: tuple[Login, Tokens] | None = None  # the login they were granted to: a new secret logs in
        self._tls: ssl.SSLContext | None = None
        self._refused: tuple[Login, float, str] | None = None  # the login refused, until when, why
        if not options.verify_tls:
            log.warning("%s/%s: veeam: TLS verification disabled by verify_tls: false", context.client, context.device)

    def _tls_context(self) -> ssl.SSLContext:
        """Read when first needed, not when built (building does no I/O)."""
        if self._tls is None:
            bundle = self.options.ca_bundle
            try:
                context = ssl.create_default_context(cafile=str(bundle) if bundle else None)
            except (OSError, ssl.SSLError) as exc:
                raise CollectError(f"ca_bundle {bundle}: {getattr(exc, 'strerror', None) or exc}") from None
            if not self.options.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    def _login(self, credentials: Mapping[str, Any]) -> Login:
        try:
            login = VeeamCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())  # never the values
            raise CollectError(f"the device's veeam credentials: missing or invalid {fields}") from None
        return Login(login.username, login.password)

    def base_url(self, target: Target) -> str:
        if self.options.url:
            return self.options.url
        host = f"[{target.address}]" if ":" in target.address else target.address
        return f"https://{host}:{DEFAULT_PORT}"

    async def collect(self, target: Target, sink: Sink) -> None:
        login = self._login(target.credentials)
        if self._refused is not None:
            refused, until, reason = self._refused
            if refused == login and self.clock() < until:
                raise CollectError(f"{reason}; not tried again before {_iso(until)} (login_retry_s)")
            self._refused = None
        timeout = httpx.Timeout(self.options.timeout_s)
        async with httpx.AsyncClient(
            base_url=self.base_url(target), verify=self._tls_context(), timeout=timeout, trust_env=False
        ) as http:
            kept = self.tokens[1] if self.tokens is not None and self.tokens[0] == login else None
            api = VeeamApi(
                http, self.options.api_version, login, kept,
                page_size=self.options.page_size, max_retry_wait_s=self.options.max_retry_wait_s,
                clock=self.clock, sleep=self.sleep,
            )
            try:
                await self._collect(api, sink)
            finally:
                self.tokens = None if api.tokens is None else (login, api.tokens)

    async def _collect(self, api: VeeamApi, sink: Sink) -> None:
        now = self.clock()
        try:
            jobs: list[JobState] = parse_all(JobState, await api.get_all(JOBS_PATH), JOBS_PATH)
        except VeeamError as exc:
            if isinstance(exc, LoginRefused) and exc.grant == "password":
                self._refused = (api.login, now + self.options.login_retry_s, _reason(exc))
            _raise(exc)
        sessions = await self._sessions(api, sink, now)
        last_success = await self._last_successes(api, sink, jobs, sessions)
        by_job: dict[str, list[Session]] = {}
        for session in sessions or ():
            by_job.setdefault(session.job_id, []).append(session)
        counts = {"failed": 0, "warning": 0, "running": 0}
        for job in jobs:
            max_age_h = self.options.max_success_age_h_by_job.get(job.name, self.options.max_success_age_h)
            own = None if sessions is None else by_job.get(job.id, [])
            fields = job_fields(job, own, last_success.get(job.id), now, max_age_h * 3600)
            counts["running"] += bool(fields["running"])
            if fields["last_result"] in counts and not fields["disabled"]:
                counts[fields["last_result"]] += 1
            tags = {"job": job.name, "job_type": job.type, "job_kind": job_kind(job.type), "workload": job.workload}
            sink.emit("veeam_job", fields, tags)
        repositories = await self._repositories(api, sink)
        backup_objects = await self._backup_objects(api, sink, jobs, now)
        server = await self._server_info(api, sink)
        sink.emit("veeam_server", {
            "name": server.get("name"),
            "build_version": server.get("buildVersion"),
            "api_version": self.options.api_version,
            "jobs": len(jobs),
            "failed_jobs": counts["failed"],
            "warning_jobs": counts["warning"],
            "running_jobs": counts["running"],
            "running_sessions": None if sessions is None else sum(1 for s in sessions if s.running),
            "repositories": repositories,
            "backup_objects": backup_objects,
        })

    async def _sessions(self, api: VeeamApi, sink: Sink, now: float) -> list[Session] | None:
        since = now - self.options.sessions_lookback_h * 3600
        params = {"createdAfterFilter": _iso(since), "orderColumn": "CreationTime", "orderAsc": "false"}
        try:
            return parse_all(Session, await api.get_all(SESSIONS_PATH, params), SESSIONS_PATH)
        except VeeamError as exc:
            sink.error(f"sessions: {_reason(exc)}")
            return None

    async def _last_successes(
        self, api: VeeamApi, sink: Sink, jobs: Sequence[JobState], sessions: Sequence[Session] | None
    ) -> dict[str, float]:
        """Job id -> end of its last successful run: from the window's sessions, else (an enabled
        job without one there) its last ``Success`` session, asked for that job alone."""
        if sessions is None:
            return {}
        found: dict[str, float] = {}
        for session in sessions:
            if session.result in SUCCESSFUL and session.ended is not None:
                found[session.job_id] = max(found.get(session.job_id, 0.0), session.ended)
        for job in jobs:
            if job.id in found or job.status == "disabled":
                continue
            params = {"jobIdFilter": job.id, "resultFilter": "Success", "orderColumn": "EndTime",
                      "orderAsc": "false", "skip": 0, "limit": 1}
            try:
                page = await api.get(SESSIONS_PATH, params)
                data = page.get("data") if isinstance(page, dict) else None
                if not isinstance(data, list):
                    sink.error(f"sessions of job {job.name!r}: no data in the answer")
                    continue
                latest = parse_all(Session, data, SESSIONS_PATH)
            except VeeamError as exc:
                sink.error(f"sessions of job {job.name!r}: {_reason(exc)}")
                continue
            if latest and latest[0].ended is not None:
                found[job.id] = latest[0].ended
        return found

    async def _repositories(self, api: VeeamApi, sink: Sink) -> int | None:
        try:
            repositories: list[Repository] = parse_all(
                Repository, await api.get_all(REPOSITORIES_PATH), REPOSITORIES_PATH
            )
        except VeeamError as exc:
            sink.error(f"repositories: {_reason(exc)}")
            return None
        for repo in repositories:
            sink.emit("veeam_repository", repository_fields(repo),
                      {"repository": repo.name, "repository_type": repo.type})
        return len(repositories)

    async def _backup_objects(self, api: VeeamApi, sink: Sink, jobs: Sequence[JobState], now: float) -> int | None:
        """One ``veeam_backup_object`` per object name and platform (a VM two jobs back up is two
        items of Veeam's list, one per backup: it is one VM to the hypervisor); how many, or ``None``
        when the list could not be read."""
        try:
            objects: list[BackupObject] = parse_all(
                BackupObject, await api.get_all(BACKUP_OBJECTS_PATH), BACKUP_OBJECTS_PATH
            )
        except VeeamError as exc:
            sink.error(f"backup objects: {_reason(exc)}")
            return None
        job_of_backup = await self._jobs_of_backups(api, sink, jobs) if any(o.backup_id for o in objects) else {}
        last_points = await self._last_restore_points(api, sink, now) if objects else {}
        grouped: dict[tuple[str, str | None], list[BackupObject]] = {}
        for one in objects:
            grouped.setdefault((one.name, one.platform), []).append(one)
        for (name, platform), same in grouped.items():
            fields = backup_object_fields(same, job_of_backup)
            fields["last_restore_point"] = None if last_points is None else last_points.get((name, platform))
            sink.emit("veeam_backup_object", fields,
                      {"object": name, "platform": platform, "object_type": same[0].type})
        return len(grouped)

    async def _last_restore_points(
        self, api: VeeamApi, sink: Sink, now: float
    ) -> dict[tuple[str, str | None], float] | None:
        """(object name, platform) -> creation of its newest restore point made within
        ``sessions_lookback_h`` (one paged request for every object, not one per object); ``None``
        when they could not be read."""
        since = now - self.options.sessions_lookback_h * 3600
        params = {"createdAfterFilter": _iso(since), "orderColumn": "CreationTime", "orderAsc": "false"}
        try:
            points: list[RestorePoint] = parse_all(
                RestorePoint, await api.get_all(RESTORE_POINTS_PATH, params), RESTORE_POINTS_PATH
            )
        except VeeamError as exc:
            sink.error(f"restore points: {_reason(exc)}")
            return None
        found: dict[tuple[str, str | None], float] = {}
        for point in points:
            key = (point.name, point.platform)
            found[key] = max(found.get(key, point.created), point.created)
        return found

    async def _jobs_of_backups(self, api: VeeamApi, sink: Sink, jobs: Sequence[JobState]) -> dict[str, str] | None:
        """Backup id -> the name of the job that writes it (the backup's own name for a job gone
        since); ``None`` when the backups could not be read."""
        try:
            backups: list[Backup] = parse_all(Backup, await api.get_all(BACKUPS_PATH), BACKUPS_PATH)
        except VeeamError as exc:
            sink.error(f"backups: {_reason(exc)}")
            return None
        names = {job.id: job.name for job in jobs}
        found = {}
        for backup in backups:
            name = names.get(backup.job_id or "", backup.name)
            if name:
                found[backup.id] = name
        return found

    async def _server_info(self, api: VeeamApi, sink: Sink) -> dict[str, Any]:
        try:
            info = await api.get(SERVER_INFO_PATH)
        except VeeamError as exc:
            sink.error(f"server info: {_reason(exc)}")
            return {}
        if not isinstance(info, dict):
            sink.error(f"server info: GET {SERVER_INFO_PATH}: not an object")
            return {}
        return {key: info[key] for key in ("name", "buildVersion") if isinstance(info.get(key), str)}


def default_rules() -> list[Rule]:
    job = "{device}: Veeam job {job} ({job_kind})"
    return [
        Rule(
            name="veeam_job_failed",
            measurement="veeam_job",
            when="last_result == 'failed' and disabled == False",
            severity="major",
            summary=f"{job} failed: {{last_message}}",
            # a failed job is also overdue after a while: one alert for it, the failure
            inhibits=(Inhibition(rule="veeam_backup_overdue", equal=("device", "job")),),
        ),
        Rule(
            name="veeam_job_warning",
            measurement="veeam_job",
            when="last_result == 'warning' and disabled == False",
            severity="warning",
            summary=f"{job} ended with a warning: {{last_message}}",
        ),
        Rule(
            name="veeam_backup_overdue",
            measurement="veeam_job",
            # nothing failed, nothing ran: a schedule disabled by hand, a server that stopped its
            # service, a job stuck in a session for hours
            when="disabled == False and last_success_age_s > max_success_age_s",
            severity="major",
            summary=f"{job}: no successful run for {{last_success_age_h}} h",
        ),
        Rule(
            name="veeam_repository_low_space",
            measurement="veeam_repository",
            when=f"{LOW_SPACE_PCT} <= used_pct < {FULL_PCT}",
            for_s=300,
            severity="warning",
            summary="{device}: Veeam repository {repository} is {used_pct} % full",
        ),
        Rule(
            name="veeam_repository_full",
            measurement="veeam_repository",
            when=f"used_pct >= {FULL_PCT}",
            severity="critical",
            summary="{device}: Veeam repository {repository} is {used_pct} % full",
        ),
        Rule(
            name="veeam_repository_offline",
            measurement="veeam_repository",
            when="online == False",
            for_s=300,
            severity="major",
            summary="{device}: Veeam repository {repository} is offline",
        ),
    ]


PLUGIN = PluginSpec(
    name="veeam",
    kind="collector",
    factory=VeeamCollector,
    options=VeeamOptions,
    credentials=VeeamCredentials,
    default_rules=default_rules,
    state_fields=frozenset({("veeam_job", "last_result"), ("veeam_repository", "online")}),
    description="Veeam Backup & Replication REST API: jobs' last result and success age, sessions, repositories",
)
