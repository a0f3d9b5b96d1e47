"""A fake Veeam Backup & Replication REST API (v1) over HTTPS on loopback, for the veeam collector's
tests (with a trustme CA of their own) and the lab; and :class:`VeeamService`, which plays it in
`vigie lab up` with the lab's certificate (lab/graph_tls).

Written from /work/shared/contracts/veeam.md (Veeam's OpenAPI specs vbr_rest 1.2-rev1 and 1.3-rev1):

- every request needs ``x-api-version`` (a known revision: 1.1-rev0 ... 1.3-rev2), else 400;
- ``POST /api/oauth2/token`` (form): grants ``password`` and ``refresh_token`` (either casing, as
  the 1.3 spec's enum writes them capitalised); access tokens live ``token_lifetime_s`` (900),
  refresh tokens are single-use; ``POST /api/oauth2/logout``;
- ``GET /api/v1/jobs/states``, ``/api/v1/sessions`` (``createdAfterFilter``, ``jobIdFilter``,
  ``resultFilter``, ``orderColumn`` CreationTime|EndTime, ``orderAsc``),
  ``/api/v1/backupInfrastructure/repositories/states``, ``/api/v1/serverInfo``, ``/api/v1/backupObjects``
  (one item per VM and backup holding it; from 1.3 with ``backupId``, ``lastRunFailed``, ``size``:
  the Cenvora/veeam-br models of 1.3-rev2 and of an earlier revision without them) and
  ``/api/v1/backups`` (``jobId``, ``name``, ...: unverified beyond the model), ``/api/v1/restorePoints``
  (``createdAfterFilter``, ``orderColumn`` CreationTime, ``orderAsc``: one per VM and successful
  run of a job holding it, at the run's start); collections paged
  with ``skip``/``limit`` (``max_page`` caps a page below the asked limit, as a server may);
- answers in the revision's own casing: before 1.3 ``status: running``, ``workload: vm``,
  ``type: Backup``; from 1.3 ``Running``, ``Vm``, ``VSphereBackup`` plus ``progressPercent``,
  ``isOutOfDate``;
- errors ``{"errorCode", "message", "resourceId"}``: 401 ExpiredToken / InvalidToken, 403
  AccessDenied naming the user's role (only Backup Viewer, Operator and Administrator read jobs).

The server is alive: each job runs every ``period_h`` and its sessions are computed from the clock,
so a lab left running keeps producing fresh runs. Overlays make a job fail (:meth:`fail_job`),
stop succeeding for hours (:meth:`stall_job`), fill a repository (:meth:`fill_repository`), take
a VM out of every backup (:meth:`unprotect`).
Test faults: :meth:`rate_limit` (429 + Retry-After), :meth:`inject` (an HTTP status),
:meth:`malformed` (a cut JSON body), :meth:`slow` (answers delayed), :meth:`expire_tokens`,
:meth:`revoke_refresh_tokens`, :meth:`set_down` (the listener closed: connection refused).
Unverified details (the contract has no example): the message texts, the 1.2 names of the backup
copy job type and session type (``BackupCopy``, ``BackupCopyJob``), which statuses the token
endpoint uses for a refused login (401 here).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import trustme
import yaml
from aiohttp import web

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.graph_fake import LAB_TLS
from lab.graph_fake import server_tls as lab_server_tls
from lab.probe_services import _probe_devices
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.vcsim.service import _inventory as vcsim_inventory

REVISIONS = ("1.1-rev0", "1.1-rev1", "1.1-rev2", "1.2-rev0", "1.2-rev1", "1.3-rev0", "1.3-rev1", "1.3-rev2")
READERS = frozenset({"Veeam Backup Administrator", "Veeam Backup Operator", "Veeam Backup Viewer"})
NAMESPACE = uuid.UUID("6f1c2d4e-0b7a-4f43-9a57-1a5f0e7c9b21")
HISTORY_DAYS = 10
ERROR_CODES = {400: "UnexpectedContent", 401: "AccessDenied", 403: "AccessDenied", 404: "NotFound",
               405: "MethodNotAllowed", 429: "UnknownError", 500: "UnknownError", 501: "NotImplemented",
               503: "ServiceUnavailable"}
V13 = web.RequestKey("v13", bool)  # the request asked a 1.3 revision: its casing and fields
FAILED_MESSAGE = "Error: Failed to connect to host esx-siege-1.vsgp.local: the operation has timed out"


@dataclass(frozen=True)
class Job:
    name: str
    types: tuple[str, str]  # EJobType before 1.3, from 1.3
    session_type: str
    workload: str  # lower-case (1.2); capitalised from 1.3
    repository: str
    period_h: float = 24.0
    offset_h: float = 22.0  # runs start at this hour of the period (UTC)
    duration_min: float = 50.0
    disabled: bool = False
    always_running: bool = False  # a backup copy in immediate mode: a session always working
    objects: int = 1
    description: str = "Created by vigie lab"

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"job/{self.name}"))


@dataclass(frozen=True)
class Repo:
    name: str
    type: str
    host: str
    path: str
    capacity_gb: float
    free_gb: float
    online: bool = True

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"repo/{self.name}"))


@dataclass(frozen=True)
class Protected:
    """A VM the backups of ``jobs`` hold, with ``restore_points`` in each."""

    name: str
    jobs: tuple[str, ...]
    platform: tuple[str, str] = ("VMware", "VMware")  # EPlatformType before 1.3, from 1.3 (same casing)
    restore_points: int = 14
    size_bytes: int = 64 * 1024**3

    def id(self, job: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"object/{self.name}/{job}"))


def _backup_id(job: Job) -> str:
    return str(uuid.uuid5(NAMESPACE, f"backup/{job.name}"))


@dataclass(frozen=True)
class User:
    password: str
    role: str


# VSGP (CCTP §2.1.9): Veeam at the siège, a Data Domain (DD Boost) per server room, replication and
# backup copies to the disaster-recovery room in Clamart.
VSGP_JOBS = (
    Job("Sauvegarde VM Siège", ("Backup", "VSphereBackup"), "BackupJob", "vm", "DDBoost Siège", objects=42),
    Job("Sauvegarde AD et fichiers", ("Backup", "VSphereBackup"), "BackupJob", "vm", "DDBoost Siège",
        offset_h=20.0, duration_min=35.0, objects=4),
    Job("Réplication PRA Clamart", ("VSphereReplica", "VSphereReplica"), "ReplicaJob", "vm", "DDBoost PRA",
        period_h=4.0, offset_h=1.0, duration_min=20.0, objects=12),
    Job("Copie de sauvegarde vers PRA", ("BackupCopy", "BackupCopy"), "BackupCopyJob", "vm", "DDBoost PRA",
        offset_h=4.0, duration_min=90.0, always_running=True, objects=42),
    Job("Sauvegarde Exchange (archivée)", ("Backup", "VSphereBackup"), "BackupJob", "vm", "Default Backup Repository",
        disabled=True, objects=1),
)
# The lab's vCenter VMs (lab/estates/vsgp.yaml x-lab vcsim) the backup jobs hold.
VSGP_PROTECTED = (
    Protected("vcenter", ("Sauvegarde VM Siège",)),
    Protected("veeam", ("Sauvegarde VM Siège",)),
    Protected("dc1", ("Sauvegarde VM Siège", "Sauvegarde AD et fichiers")),
    Protected("dc2", ("Sauvegarde AD et fichiers",), restore_points=30),
)
VSGP_REPOSITORIES = (
    Repo("DDBoost Siège", "DDBoost", "ddboost.vsgp.local", "/data/col1/vbr-siege", 40960.0, 14336.0),
    Repo("DDBoost PRA", "DDBoost", "ddboost-pra.vsgp.local", "/data/col1/vbr-pra", 40960.0, 18432.0),
    Repo("Default Backup Repository", "WinLocal", "vbr-siege.vsgp.local", "C:\\Backup", 499.4, 310.2),
)


@dataclass(frozen=True)
class _Session:
    job: Job
    index: int  # 0: the latest run
    created: float
    ended: float | None
    result: str  # Success | Warning | Failed | None
    message: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"session/{self.job.name}/{self.created:.0f}"))


@dataclass
class _Programmed:
    """One test fault: for the next ``left`` requests whose path starts with ``path``."""

    kind: str  # status | malformed | slow | rate_limit
    left: int
    path: str
    status: int = 0
    seconds: float = 0.0


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    local = dt.timezone(dt.timedelta(hours=1))  # VBR answers in the server's zone, with its offset
    return dt.datetime.fromtimestamp(epoch_s, local).isoformat(timespec="milliseconds")


def _parse_time(value: str) -> float:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


class VeeamFake:
    def __init__(
        self,
        jobs: Sequence[Job] = VSGP_JOBS,
        repositories: Sequence[Repo] = VSGP_REPOSITORIES,
        protected: Sequence[Protected] = VSGP_PROTECTED,
        users: Mapping[str, User] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        token_lifetime_s: float = 900.0,
        max_page: int | None = None,
        build: str = "12.3.1.1139",
        server_name: str = "vbr-siege.vsgp.local",
    ) -> None:
        self.jobs = list(jobs)
        self.repositories = list(repositories)
        self.protected = list(protected)
        self.users = dict(users or {})
        self.tls = tls
        self.clock = clock
        self.token_lifetime_s = token_lifetime_s
        self.max_page = max_page
        self.build = build
        self.server_name = server_name
        self.failed: dict[str, str] = {}  # job name -> message of its failed last run
        self.stalled: dict[str, float] = {}  # job name -> hours without a run
        self.filled: dict[str, float] = {}  # repository name -> used %
        self.unprotected: set[str] = set()  # VM names no backup holds any more
        self.programmed: list[_Programmed] = []
        # (method, path, query), in order; bounded: a lab runs for days
        self.requests: deque[tuple[str, str, dict[str, str]]] = deque(maxlen=10_000)
        self.logins = 0
        self.refused_logins = 0
        self.refreshes = 0
        self._access: dict[str, tuple[str, float]] = {}  # token -> (user, expires at)
        self._refresh: dict[str, str] = {}  # token -> user
        self.url = ""
        self.host, self.port = "127.0.0.1", 0
        self.app = web.Application(middlewares=[self._middleware])
        self.app.router.add_post("/api/oauth2/token", self._token)
        self.app.router.add_post("/api/oauth2/logout", self._logout)
        self.app.router.add_get("/api/v1/jobs/states", self._job_states)
        self.app.router.add_get("/api/v1/sessions", self._sessions)
        self.app.router.add_get("/api/v1/backupInfrastructure/repositories/states", self._repositories)
        self.app.router.add_get("/api/v1/serverInfo", self._server_info)
        self.app.router.add_get("/api/v1/backupObjects", self._backup_objects)
        self.app.router.add_get("/api/v1/backups", self._backups)
        self.app.router.add_get("/api/v1/restorePoints", self._restore_points)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        self.host, self.port = host, port
        await self._listen()
        return self.url

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def set_down(self, down: bool) -> None:
        """Close the listener (connections refused) or open it again on the same port."""
        if down and self._site is not None:
            await self._site.stop()
            self._site = None
        elif not down and self._site is None and self._runner is not None:
            await self._listen()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # -- what tests and the lab change ----------------------------------------------------------

    def job(self, name: str | None) -> Job:
        """The job named ``name`` (case-insensitive), or the first enabled backup job."""
        for job in self.jobs:
            if (name is None and job.session_type == "BackupJob" and not job.disabled) or (
                name is not None and job.name.lower() == name.lower()
            ):
                return job
        raise KeyError(f"no job {name!r}; the server has {', '.join(repr(j.name) for j in self.jobs)}")

    def repository(self, name: str | None) -> Repo:
        for repo in self.repositories:
            if name is None or repo.name.lower() == name.lower():
                return repo
        raise KeyError(f"no repository {name!r}; the server has {', '.join(repr(r.name) for r in self.repositories)}")

    def fail_job(self, name: str | None = None, message: str = FAILED_MESSAGE) -> Job:
        job = self.job(name)
        self.failed[job.name] = message
        return job

    def stall_job(self, hours: float, name: str | None = None) -> Job:
        job = self.job(name)
        self.stalled[job.name] = hours
        return job

    def unprotect(self, vm: str) -> Protected:
        """The backups no longer hold ``vm`` (case-insensitive): it leaves the backup objects."""
        for one in self.protected:
            if one.name.lower() == vm.lower():
                self.unprotected.add(one.name)
                return one
        raise KeyError(f"no backup holds {vm!r}; they hold {', '.join(repr(p.name) for p in self.protected)}")

    def fill_repository(self, used_pct: float, name: str | None = None) -> Repo:
        repo = self.repository(name)
        self.filled[repo.name] = used_pct
        return repo

    def clear_overlays(self) -> None:
        self.failed.clear()
        self.stalled.clear()
        self.filled.clear()
        self.unprotected.clear()

    def rate_limit(self, requests: int, retry_after_s: int, path: str = "/api/v1/") -> None:
        self.programmed.append(_Programmed("rate_limit", requests, path, 429, float(retry_after_s)))

    def inject(self, status: int, requests: int = 1, path: str = "/api/v1/") -> None:
        self.programmed.append(_Programmed("status", requests, path, status))

    def malformed(self, requests: int = 1, path: str = "/api/v1/") -> None:
        self.programmed.append(_Programmed("malformed", requests, path))

    def slow(self, seconds: float, requests: int = 1, path: str = "/api/v1/") -> None:
        self.programmed.append(_Programmed("slow", requests, path, seconds=seconds))

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired (as after 15 minutes)."""
        self._access = {token: (user, 0.0) for token, (user, _) in self._access.items()}

    def revoke_refresh_tokens(self) -> None:
        self._refresh.clear()

    # -- the data, as of now --------------------------------------------------------------------

    def sessions_of(self, job: Job, now: float) -> list[_Session]:
        """The job's runs, newest first: one per period (the last HISTORY_DAYS), those of the last
        ``stalled`` hours missing, the latest failed when the job is failed, a working one ahead
        for an always-running job. A disabled job stopped running two weeks before the lab."""
        period, offset, duration = job.period_h * 3600, job.offset_h * 3600, job.duration_min * 60
        latest_end = now - self.stalled.get(job.name, 0.0) * 3600
        if job.disabled:
            latest_end = now - 14 * 86400
        start = math.floor((latest_end - duration - offset) / period) * period + offset
        runs: list[_Session] = []
        if job.always_running and job.name not in self.stalled and not job.disabled:
            # it picks up where the last finished copy interval ended
            runs.append(_Session(job, -1, start + duration, None, "None", ""))
        index = 0
        while start > now - HISTORY_DAYS * 86400:
            runs.append(_Session(job, index, start, start + duration, "Success", ""))
            start -= period
            index += 1
        finished = [s for s in runs if s.ended is not None]
        if job.name in self.failed and finished:
            latest = finished[0]
            runs[runs.index(latest)] = replace(latest, result="Failed", message=self.failed[job.name])
        return runs

    def _job_state(self, job: Job, now: float, v13: bool) -> dict[str, Any]:
        runs = self.sessions_of(job, now)
        running = next((s for s in runs if s.ended is None), None)
        last = running or (runs[0] if runs else None)
        status = "disabled" if job.disabled else "running" if running else "inactive"
        item: dict[str, Any] = {
            "type": job.types[1] if v13 else job.types[0],
            "status": status.capitalize() if v13 else status,
            "lastResult": "None" if running or last is None else last.result,
            "workload": job.workload.capitalize() if v13 else job.workload,
            "id": job.id,
            "name": job.name,
            "description": job.description,
            "lastRun": _iso(last.created if last else None),
            "nextRun": None if job.disabled else _iso(self._next_run(job, now)),
            "repositoryId": self.repository(job.repository).id,
            "repositoryName": job.repository,
            "objectsCount": job.objects,
            "sessionId": last.id if last else None,
        }
        if v13:
            item["highPriority"] = False
            item["progressPercent"] = 37 if running else 100
            item["nextRunPolicy"] = "disabled" if job.disabled else "daily"
        return item

    def _next_run(self, job: Job, now: float) -> float:
        period, offset = job.period_h * 3600, job.offset_h * 3600
        return math.floor((now - offset) / period) * period + offset + period

    def _session_item(self, session: _Session) -> dict[str, Any]:
        running = session.ended is None
        return {
            "sessionType": session.job.session_type,
            "state": "Working" if running else "Stopped",
            "id": session.id,
            "name": session.job.name,
            "jobId": session.job.id,
            "creationTime": _iso(session.created),
            "endTime": _iso(session.ended),
            "progressPercent": 37 if running else 100,
            "result": {"result": session.result, "message": session.message, "isCanceled": False},
            "resourceId": session.job.id,
            "usn": int(session.created),
        }

    def _repository_item(self, repo: Repo, v13: bool) -> dict[str, Any]:
        free = repo.free_gb
        if repo.name in self.filled:
            free = round(repo.capacity_gb * (1 - self.filled[repo.name] / 100), 1)
        item: dict[str, Any] = {
            "type": repo.type,
            "id": repo.id,
            "name": repo.name,
            "description": "Created by vigie lab",
            "hostId": str(uuid.uuid5(NAMESPACE, f"host/{repo.host}")),
            "hostName": repo.host,
            "path": repo.path,
            "capacityGB": repo.capacity_gb,
            "freeGB": free,
            "usedSpaceGB": round((repo.capacity_gb - free) * 0.92, 1),  # backup data: not capacity - free
            "isOnline": repo.online,
        }
        if v13:
            item["isOutOfDate"] = False
        return item

    # -- HTTP -----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        version = request.headers.get("x-api-version")
        if version is None:
            return _error(400, "The x-api-version header is required.", "UnexpectedContent")
        if version not in REVISIONS:
            return _error(400, f"Unsupported API version {version!r}.", "UnexpectedContent")
        for fault in self.programmed:
            if fault.left > 0 and request.path.startswith(fault.path):
                fault.left -= 1
                if fault.kind == "slow":
                    await asyncio.sleep(fault.seconds)
                    break
                if fault.kind == "rate_limit":
                    return _error(429, "Too many requests.", headers={"Retry-After": str(int(fault.seconds))})
                if fault.kind == "status":
                    return _error(fault.status, f"Injected error {fault.status}.")
                return web.Response(status=200, text='{"data":[{"id":"53b87378-79', content_type="application/json")
        if request.path.startswith("/api/v1/"):
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if token not in self._access:
                return _error(401, "Invalid access token.", "InvalidToken")
            user, expires = self._access[token]
            if self.clock() >= expires:
                return _error(401, "Access token has expired.", "ExpiredToken")
            role = self.users[user].role
            if role not in READERS:
                return _error(403, f"Access denied: user {user} has the {role} role, which cannot read this resource.")
            request[V13] = version >= "1.3"
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", "")).lower()
        if grant == "password":
            name, password = str(form.get("username", "")), str(form.get("password", ""))
            user = self.users.get(name)
            if user is None or not secrets.compare_digest(user.password, password):
                self.refused_logins += 1
                return _error(401, "Failed to log in: invalid user name or password.")
            if user.role not in READERS and user.role != "Veeam Restore Operator":
                return _error(401, f"Failed to log in: the {user.role} role may not use the REST API.")
            self.logins += 1
        elif grant == "refresh_token":
            name = self._refresh.pop(str(form.get("refresh_token", "")), "")
            if not name:
                return _error(401, "The refresh token is invalid or has expired.", "InvalidToken")
            self.refreshes += 1
        else:
            return _error(400, f"Unsupported grant_type {form.get('grant_type')!r}.", "UnexpectedContent")
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = self.clock()
        self._access[access] = (name, now + self.token_lifetime_s)
        self._refresh[refresh] = name
        return web.json_response({
            "access_token": access, "token_type": "bearer", "refresh_token": refresh,
            "expires_in": int(self.token_lifetime_s), ".issued": _iso(now),
            ".expires": _iso(now + self.token_lifetime_s), "username": name,
        })

    async def _logout(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        user, _ = self._access.pop(token, ("", 0.0))
        self._refresh = {t: u for t, u in self._refresh.items() if u != user}
        return web.json_response({})

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        try:
            skip = int(request.query.get("skip", "0"))
            limit = int(request.query.get("limit", "200"))
        except ValueError:
            return _error(400, "skip and limit must be integers.", "UnexpectedContent")
        if self.max_page is not None:
            limit = min(limit, self.max_page)
        page = items[skip : skip + limit]
        return web.json_response(
            {"data": page, "pagination": {"total": len(items), "count": len(page), "skip": skip, "limit": limit}}
        )

    async def _job_states(self, request: web.Request) -> web.Response:
        now = self.clock()
        return self._page(request, [self._job_state(job, now, request[V13]) for job in self.jobs])

    async def _sessions(self, request: web.Request) -> web.Response:
        now = self.clock()
        query = request.query
        sessions = [s for job in self.jobs for s in self.sessions_of(job, now)]
        if "createdAfterFilter" in query:
            since = _parse_time(query["createdAfterFilter"])
            sessions = [s for s in sessions if s.created > since]
        if "jobIdFilter" in query:
            sessions = [s for s in sessions if s.job.id == query["jobIdFilter"]]
        if "resultFilter" in query:
            sessions = [s for s in sessions if s.result.lower() == query["resultFilter"].lower()]
        column = query.get("orderColumn", "CreationTime")
        descending = query.get("orderAsc", "true").lower() == "false"
        if column == "EndTime":
            sessions.sort(key=lambda s: s.ended if s.ended is not None else math.inf, reverse=descending)
        else:
            sessions.sort(key=lambda s: s.created, reverse=descending)
        return self._page(request, [self._session_item(s) for s in sessions])

    async def _repositories(self, request: web.Request) -> web.Response:
        return self._page(request, [self._repository_item(r, request[V13]) for r in self.repositories])

    async def _backup_objects(self, request: web.Request) -> web.Response:
        v13 = request[V13]
        jobs = {job.name: job for job in self.jobs}
        items = []
        for vm in self.protected:
            if vm.name in self.unprotected:
                continue
            for name in vm.jobs:
                item: dict[str, Any] = {"id": vm.id(name), "name": vm.name, "type": "VM",
                                        "platformName": vm.platform[v13],
                                        "platformId": "00000000-0000-0000-0000-000000000000",
                                        "restorePointsCount": vm.restore_points}
                if v13:
                    item |= {"backupId": _backup_id(jobs[name]), "lastRunFailed": name in self.failed,
                             "size": vm.size_bytes}
                items.append(item)
        return self._page(request, items)

    async def _restore_points(self, request: web.Request) -> web.Response:
        now, query = self.clock(), request.query
        since = _parse_time(query["createdAfterFilter"]) if "createdAfterFilter" in query else -math.inf
        jobs = {job.name: job for job in self.jobs}
        points = [(vm, session) for vm in self.protected if vm.name not in self.unprotected
                  for name in vm.jobs for session in self.sessions_of(jobs[name], now)
                  if session.result in ("Success", "Warning") and session.created > since]
        points.sort(key=lambda p: p[1].created, reverse=query.get("orderAsc", "true").lower() == "false")
        return self._page(request, [
            {"id": str(uuid.uuid5(NAMESPACE, f"point/{vm.name}/{session.id}")), "name": vm.name,
             "platformName": vm.platform[request[V13]], "platformId": "00000000-0000-0000-0000-000000000000",
             "creationTime": _iso(session.created), "backupId": _backup_id(session.job),
             "allowedOperations": ["VmRestore"], "type": "Increment" if session.index else "Full",
             "sessionId": session.id}
            for vm, session in points
        ])

    async def _backups(self, request: web.Request) -> web.Response:
        now = self.clock()
        held = {name for vm in self.protected if vm.name not in self.unprotected for name in vm.jobs}
        repositories = {repo.name: repo for repo in self.repositories}
        return self._page(request, [
            {"id": _backup_id(job), "jobId": job.id, "name": job.name, "platformName": "VMware",
             "platformId": "00000000-0000-0000-0000-000000000000",
             "creationTime": _iso(now - HISTORY_DAYS * 86400),
             "repositoryId": repositories[job.repository].id if job.repository in repositories else None}
            for job in self.jobs if job.name in held
        ])

    async def _server_info(self, request: web.Request) -> web.Response:
        info: dict[str, Any] = {
            "vbrId": str(uuid.uuid5(NAMESPACE, self.server_name)),
            "name": self.server_name,
            "buildVersion": self.build,
            "patches": [],
            "databaseVendor": "PostgreSql",
            "sqlServerEdition": "",
            "sqlServerVersion": "15.4",
            "databaseSchemaVersion": "137",
            "databaseContentVersion": "92",
        }
        if request[V13]:
            info["platform"] = "Windows"
            info["veeamRegistration"] = {"isRegistered": True}
        return web.json_response(info)


def _error(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"errorCode": code or ERROR_CODES.get(status, "UnknownError"), "message": message, "resourceId": ""}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server context with a certificate of ``ca`` for ``names`` (addresses and DNS names)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


# -- the lab service ----------------------------------------------------------------------------


@dataclass
class Instance:
    key: str  # CLIENT/DEVICE
    host: str
    port: int
    users: dict[str, User]
    variables: list[str]  # the url's ${VAR}s
    fake: VeeamFake | None = None
    faults: list[str] = field(default_factory=list)
    protected: tuple[Protected, ...] = VSGP_PROTECTED

    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


def _lab_protected(context: Context, client: str) -> tuple[Protected, ...]:
    """Every VM of the client's simulated vCenters (their x-lab vcsim inventory) in the VM backup job:
    the lab's backup coverage is whole until the fault veeam-vm-unprotected takes one out; without
    a simulated vCenter, VSGP_PROTECTED."""
    vms = [vm for key, device, _ in _probe_devices(context, "vsphere") if key.split("/")[0] == client
           for vm in vcsim_inventory(key, (device.get("x-lab") or {}).get("vcsim")).all_vms]
    return tuple(Protected(vm, (VSGP_JOBS[0].name,)) for vm in vms) or VSGP_PROTECTED


def _devices_with_veeam(context: Context) -> list[tuple[str, dict[str, Any], Any]]:
    """(CLIENT/DEVICE, veeam options as written, the device's credentials as written)."""
    found = []
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    collectors = device.get("collectors") or {}
                    if "veeam" in collectors:
                        key = f"{client['name']}/{device['name']}"
                        found.append((key, collectors["veeam"] or {}, device.get("credentials")))
    return found


class VeeamService(LabService):
    """Each estate device with a ``veeam`` collector gets a fake where its ``url`` points, serving
    the lab's certificate (lab/graph_tls, the CA the estates' ``ca_bundle`` names) and accepting
    the account of its credentials secret with the Veeam Backup Viewer role."""

    name = "veeam"
    fault_kinds = (
        FaultKind("veeam-job-failed", "device", "[JOB]", "the Veeam job's last run failed (default: a backup job)"),
        FaultKind("veeam-job-stale", "device", "HOURS [JOB]", "the Veeam job has not run for HOURS (nothing failed)"),
        FaultKind("veeam-repository-full", "device", "[PCT] [REPOSITORY]", "a Veeam repository is PCT % used (97)"),
        FaultKind("veeam-down", "device", "", "the Veeam server refuses connections"),
        FaultKind("veeam-vm-unprotected", "device", "VM", "no backup holds the VM any more (backup coverage gap)"),
    )

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--veeam-port",
            type=int,
            metavar="N",
            help="TCP port of the fake Veeam server (0: any free port); default: the port of the "
            "estate's veeam url, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> VeeamService | None:
        override = getattr(context.options, "veeam_port", None)
        instances = []
        for key, options, credentials in _devices_with_veeam(context):
            raw_url = str(options.get("url") or "")
            url = urlsplit(expand(raw_url, context.environ))
            if url.scheme != "https" or not is_loopback(url.hostname or ""):
                raise EstateError(f"{key}: veeam url {raw_url!r}: the lab's fake answers https:// on loopback only")
            port = url.port or 9419
            if override is not None:
                if not variables_in(raw_url):
                    raise EstateError(f"{key}: veeam url {raw_url!r} is fixed, --veeam-port cannot move it")
                port = override
            secret = credentials.get("veeam") if isinstance(credentials, dict) else credentials
            login = context.estate.secret(str(secret)) if secret else None
            if not isinstance(login, dict) or "username" not in login or "password" not in login:
                raise EstateError(f"{key}: veeam credentials {secret!r} need username and password in the secrets")
            users = {str(login["username"]): User(str(login["password"]), "Veeam Backup Viewer")}
            instances.append(Instance(key, url.hostname or "", port, users, [v.name for v in variables_in(raw_url)],
                                      protected=_lab_protected(context, key.split("/")[0])))
        return cls(instances) if instances else None

    async def start(self) -> None:
        for instance in self.instances:
            instance.fake = VeeamFake(users=instance.users, protected=instance.protected,
                                      tls=lab_server_tls(LAB_TLS / "server.pem", LAB_TLS / "server-key.pem"))
            try:
                await instance.fake.start(instance.host, instance.port)
            except OSError as exc:
                set_it = ", ".join(instance.variables) or "the veeam url"
                raise EstateError(f"tcp {instance.host}:{instance.port}: {exc.strerror} (another lab? use "
                                  f"--veeam-port N or set {set_it})") from None
            instance.port = instance.fake.port

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.fake is not None:
                await instance.fake.stop()
                instance.fake = None

    def endpoints(self) -> list[str]:
        return [f"https {i.url()}/api/v1/  Veeam B&R REST API of {i.key} (CA {LAB_TLS / 'ca.pem'})"
                for i in self.instances]

    def devices(self) -> list[tuple[str, str]]:
        return [(i.key, i.url()) for i in self.instances]

    def examples(self) -> list[str]:
        return [f"vigie lab fault {i.key} veeam-job-failed" for i in self.instances[:1]]

    def environment(self) -> dict[str, str]:
        return {name: i.url() for i in self.instances for name in i.variables}

    def status(self) -> list[str]:
        lines = []
        for i in self.instances:
            if i.fake is None:
                continue
            lines.append(f"Veeam of {i.key}: {len(i.fake.jobs)} jobs, {i.fake.logins} logins, "
                         f"{len(i.fake.requests)} requests ({i.url()})")
            lines += [f"  {fault}" for fault in i.faults]
        return lines

    def _instance(self, target: str) -> Instance:
        for instance in self.instances:
            if instance.key == target:
                return instance
        raise FaultError(f"{target}: no veeam collector of the estate points at the lab's Veeam fake")

    def check_fault(self, fault: Fault) -> str:
        instance = self._instance(fault.target)
        jobs = instance.fake.jobs if instance.fake else VSGP_JOBS
        return _overlay(VeeamFake(jobs, protected=instance.protected), fault)

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for instance in self.instances:
            fake = instance.fake
            if fake is None:
                continue
            fake.clear_overlays()
            mine = [f for f in faults if f.target == instance.key]
            instance.faults = [_overlay(fake, f) for f in mine]
            await fake.set_down(any(f.kind == "veeam-down" for f in mine))


def _overlay(fake: VeeamFake, fault: Fault) -> str:
    """Apply ``fault`` to ``fake``'s overlays; what it does, in a few words."""
    args = list(fault.args)
    try:
        if fault.kind == "veeam-job-failed":
            if len(args) > 1:
                raise FaultError("veeam-job-failed: give at most one JOB name (quote it)")
            job = fake.fail_job(args[0] if args else None)
            return f"Veeam job {job.name!r}: its last run failed"
        if fault.kind == "veeam-job-stale":
            if not args or len(args) > 2 or not args[0].replace(".", "", 1).isdigit():
                raise FaultError("veeam-job-stale: give HOURS (e.g. 30) and optionally the JOB name (quoted)")
            job = fake.stall_job(float(args[0]), args[1] if len(args) > 1 else None)
            return f"Veeam job {job.name!r}: no run for {args[0]} h"
        if fault.kind == "veeam-repository-full":
            pct = args.pop(0) if args and args[0].replace(".", "", 1).isdigit() else "97"
            if len(args) > 1 or not 0 <= float(pct) <= 100:
                raise FaultError("veeam-repository-full: give PCT (0-100) and optionally the REPOSITORY (quoted)")
            repo = fake.fill_repository(float(pct), args[0] if args else None)
            return f"Veeam repository {repo.name!r}: {pct} % used"
        if fault.kind == "veeam-vm-unprotected":
            if len(args) != 1:
                raise FaultError("veeam-vm-unprotected: give the VM name")
            vm = fake.unprotect(args[0])
            return f"Veeam: no backup holds VM {vm.name!r}"
        if fault.kind == "veeam-down":
            if args:
                raise FaultError("veeam-down takes no argument")
            return "the Veeam server refuses connections"
    except KeyError as exc:
        raise FaultError(str(exc.args[0])) from None
    raise FaultError(f"veeam: no fault {fault.kind!r}")


def main() -> None:
    """``python -m lab.veeam_fake --port 9419 --user 'VSGP\\svc-vigie' --password P``: the fake alone,
    with the lab's certificate (its CA: lab/graph_tls/ca.pem)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9419)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    async def serve() -> None:
        fake = VeeamFake(users={args.user: User(args.password, "Veeam Backup Viewer")},
                         tls=lab_server_tls(LAB_TLS / "server.pem", LAB_TLS / "server-key.pem"))
        print(await fake.start(args.host, args.port), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
