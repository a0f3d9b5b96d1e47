"""The vSphere API client of the vsphere collector: one pyvmomi session to a vCenter, kept between
collections, and the one bulk read each collection makes.

pyvmomi is blocking: every method here runs in the collector's worker thread, never on the event
loop. Each SOAP request carries a socket timeout (``timeout_s``), so a hung vCenter frees the thread.

A collection is one ``RetrievePropertiesEx`` through a ContainerView of the hosts, VMs, datastores
and clusters (plus its ``ContinueRetrievePropertiesEx`` pages), never one call per object; the view
is created once per session. Alarm definitions' names are read once (one more call the first time an
alarm is seen) and cached. The session is reused; when vCenter has expired it (``NotAuthenticated``,
or vcsim's per-property NotAuthenticated in ``missingSet``) the client logs in again and retries once.

Imports nothing of vigie: errors are this module's own, the collector maps them.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

from pyVmomi import vim, vmodl
from pyVmomi.SoapAdapter import SoapStubAdapter
from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap

HOST_PATHS = (
    "name",
    "parent",
    "runtime.connectionState",
    "runtime.powerState",
    "runtime.inMaintenanceMode",
    "overallStatus",
    "summary.quickStats.overallCpuUsage",
    "summary.quickStats.overallMemoryUsage",
    "summary.quickStats.uptime",
    "summary.hardware.cpuMhz",
    "summary.hardware.numCpuCores",
    "summary.hardware.memorySize",
    "summary.rebootRequired",
    "triggeredAlarmState",
)
VM_PATHS = (
    "name",
    "config.template",
    "runtime.powerState",
    "runtime.connectionState",
    "runtime.host",
    "runtime.consolidationNeeded",
    "overallStatus",
    "guestHeartbeatStatus",
    "guest.toolsRunningStatus",
    "guest.toolsStatus",
    "summary.config.numCpu",
    "summary.config.memorySizeMB",
    "summary.quickStats.overallCpuUsage",
    "summary.quickStats.guestMemoryUsage",
    "summary.quickStats.hostMemoryUsage",
    "summary.quickStats.uptimeSeconds",
    "snapshot",
    "triggeredAlarmState",
)
DATASTORE_PATHS = (
    "summary.name",
    "summary.type",
    "summary.capacity",
    "summary.freeSpace",
    "summary.accessible",
    "summary.maintenanceMode",
    "overallStatus",
    "triggeredAlarmState",
)
CLUSTER_PATHS = (
    "name",
    "overallStatus",
    "summary.numHosts",
    "summary.numEffectiveHosts",
    "triggeredAlarmState",
)
PATHS: dict[type, tuple[str, ...]] = {
    vim.HostSystem: HOST_PATHS,
    vim.VirtualMachine: VM_PATHS,
    vim.Datastore: DATASTORE_PATHS,
    vim.ClusterComputeResource: CLUSTER_PATHS,
}
T = TypeVar("T")
VERSIONS_PATH = "/sdk/vimServiceVersions.xml"
MAX_VERSIONS_BYTES = 1 << 20
KINDS = {
    vim.HostSystem: "host",
    vim.VirtualMachine: "vm",
    vim.Datastore: "datastore",
    vim.ClusterComputeResource: "cluster",
}


class VsphereError(Exception):
    """vCenter answered, but refused or sent what cannot be used (the message names the call)."""


class VsphereUnreachable(VsphereError):
    """No answer: refused, timed out, no route."""


class VsphereTlsError(VsphereError):
    """The server's certificate does not verify against the trusted CAs."""


@dataclass(frozen=True)
class ObjectRow:
    """One managed object as read: its kind (host, vm, datastore, cluster), MoRef id and the
    properties vCenter set (an unset property is absent, not None)."""

    kind: str
    moid: str
    props: dict[str, Any]


@dataclass
class Inventory:
    rows: list[ObjectRow] = field(default_factory=list)
    alarm_names: dict[str, str] = field(default_factory=dict)  # Alarm MoRef id -> its name
    # what could not be read while the rest was, each naming the call or property (the run is partial)
    problems: list[str] = field(default_factory=list)


class CountingStub(SoapStubAdapter):
    """pyvmomi's SOAP stub, counting the requests it sends (the collector reports them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def InvokeMethod(self, mo: Any, info: Any, args: Any, outerStub: Any = None) -> Any:  # noqa: N802 (pyvmomi's name)
        self.calls += 1
        return super().InvokeMethod(mo, info, args, outerStub)


def _objects_missing_auth(objects: Sequence[Any]) -> bool:
    return any(
        isinstance(missing.fault, vim.fault.NotAuthenticated)
        for oc in objects
        for missing in (oc.missingSet or ())
    )


class VsphereSession:
    """A session to one vCenter, logged in on first use and kept."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        ssl_context: ssl.SSLContext,
        timeout_s: float,
        page_size: int,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.where = f"https://{host}:{port}/sdk"
        self.logins = 0
        self.http_requests = 0  # the version discovery GET, outside the SOAP stub
        self._stub: CountingStub | None = None
        self._content: Any = None
        self._view: Any = None
        self._alarm_names: dict[str, str] = {}
        self._missing: list[str] = []  # properties the last read could not get

    @property
    def calls(self) -> int:
        """Requests sent to vCenter over the session's life (SOAP calls and the version GET)."""
        return self.http_requests + (self._stub.calls if self._stub is not None else 0)

    def _connect(self) -> None:
        if self._stub is None:
            self._stub = CountingStub(
                host=self.host,
                port=self.port,
                version=self._api_version(),
                sslContext=self.ssl_context,
                httpConnectionTimeout=self.timeout_s,
            )
        instance = vim.ServiceInstance("ServiceInstance", self._stub)
        self._content = instance.RetrieveContent()
        self._content.sessionManager.Login(self.username, self.password, None)
        self.logins += 1
        self._view = self._content.viewManager.CreateContainerView(
            self._content.rootFolder, list(PATHS), True
        )

    def _api_version(self) -> str:
        """The newest API version both pyvmomi and vCenter speak, from vCenter's
        /sdk/vimServiceVersions.xml as SmartConnect reads it, but with our timeout (pyvmomi's own
        GET there has none: a silent vCenter would hold the worker thread forever)."""
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.ssl_context, timeout=self.timeout_s)
        try:
            connection.request("GET", VERSIONS_PATH)
            response = connection.getresponse()
            body = response.read(MAX_VERSIONS_BYTES)
        finally:
            connection.close()
            self.http_requests += 1
        if response.status != 200:
            raise VsphereError(f"{self.where}: GET {VERSIONS_PATH}: HTTP {response.status}")
        root = ElementTree.fromstring(body)
        offered = {
            version.text
            for namespace in root.findall("namespace")
            if namespace.findtext("name") == "urn:vim25"
            for version in [namespace.find("version"), *namespace.findall("priorVersions/version")]
            if version is not None
        }
        for version in GetServiceVersions("vim25"):  # pyvmomi's, newest first
            if versionIdMap[version] in offered:
                return version
        raise VsphereError(f"{self.where}: no vSphere API version in common (vCenter offers {sorted(offered)})")

    @property
    def session_key(self) -> str | None:
        """The key of the current session (SessionManager.currentSession), None before login."""
        if self._content is None:
            return None
        return self._content.sessionManager.currentSession.key

    def read(self) -> Inventory:
        """Every host, VM, datastore and cluster with the properties the collector reads, and the
        names of the alarms triggered on them. Logs in (again) when the session is gone."""
        fresh = self._view is None
        if fresh:
            self._login()
        try:
            rows = self._guard("RetrievePropertiesEx", self._retrieve)
        except _SessionLost:
            if fresh:
                raise VsphereError(f"{self.where}: RetrievePropertiesEx not authenticated right after login") from None
            self._login()
            try:
                rows = self._guard("RetrievePropertiesEx", self._retrieve)
            except _SessionLost:
                raise VsphereError(f"{self.where}: RetrievePropertiesEx not authenticated right after login") from None
        inventory = Inventory(rows)
        try:
            inventory.alarm_names = self._guard(
                "RetrievePropertiesEx (alarm definitions)", lambda: self._names_of_alarms(rows)
            )
        except (_SessionLost, VsphereError) as exc:
            # the alarms are still reported, named by their MoRef id
            inventory.alarm_names = dict(self._alarm_names)
            lost = f"{self.where}: alarm definitions: session lost"
            inventory.problems.append(str(exc) if isinstance(exc, VsphereError) else lost)
        inventory.problems.extend(self._missing)
        return inventory

    def _login(self) -> None:
        self._view = None
        try:
            self._guard("login", self._connect)
        except _SessionLost:
            raise VsphereError(f"{self.where}: login: NotAuthenticated") from None

    def close(self) -> None:
        """Log out (best effort: the session expires on its own anyway)."""
        if self._content is not None:
            try:
                self._content.sessionManager.Logout()
            except Exception:  # noqa: BLE001, S110 - logging out of a vCenter that is gone is not an error
                pass
        self._drop()

    def _drop(self) -> None:
        self._stub = self._content = self._view = None

    def _retrieve(self) -> list[ObjectRow]:
        pc = vmodl.query.PropertyCollector
        traversal = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=self._view, skip=True, selectSet=[traversal])],
            propSet=[pc.PropertySpec(type=kind, all=False, pathSet=list(paths)) for kind, paths in PATHS.items()],
        )
        rows, self._missing = [], []
        for oc in self._pages([spec]):
            if type(oc.obj) not in KINDS:
                continue
            rows.append(ObjectRow(KINDS[type(oc.obj)], oc.obj._moId, {p.name: p.val for p in oc.propSet}))
            self._missing.extend(
                f"{self.where}: {missing.path} of {oc.obj._moId} unreadable: {type(missing.fault).__name__}"
                for missing in oc.missingSet or ()
            )
        return rows

    def _pages(self, specs: list[Any]) -> Iterator[Any]:
        collector = self._content.propertyCollector
        options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=self.page_size)
        result = collector.RetrievePropertiesEx(specs, options)
        while result is not None:
            if _objects_missing_auth(result.objects):
                if result.token:
                    collector.CancelRetrievePropertiesEx(result.token)
                raise _SessionLost
            yield from result.objects
            result = collector.ContinueRetrievePropertiesEx(result.token) if result.token else None

    def _names_of_alarms(self, rows: list[ObjectRow]) -> dict[str, str]:
        wanted = {
            state.alarm._moId: state.alarm
            for row in rows
            for state in row.props.get("triggeredAlarmState") or ()
            if state.alarm is not None and state.alarm._moId not in self._alarm_names
        }
        if wanted:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=ref, skip=False) for ref in wanted.values()],
                propSet=[pc.PropertySpec(type=vim.alarm.Alarm, all=False, pathSet=["info.name"])],
            )
            for oc in self._pages([spec]):
                for prop in oc.propSet:
                    self._alarm_names[oc.obj._moId] = prop.val
        return dict(self._alarm_names)

    def _guard(self, call: str, run: Callable[[], T]) -> T:
        """``run()``, with what pyvmomi and the socket raise turned into this module's errors
        naming ``call``; NotAuthenticated is :class:`_SessionLost` (the caller logs in again). After a
        failure of the connection itself the stub is dropped: the next read starts afresh."""
        where = f"{self.where} {call}"
        try:
            return run()
        except vim.fault.NotAuthenticated:
            raise _SessionLost from None
        except vmodl.fault.ManagedObjectNotFound as exc:
            if self._view is not None and getattr(exc.obj, "_moId", None) == self._view._moId:
                # our ContainerView lives in the session: gone with it (vcsim says so this way)
                raise _SessionLost from None
            raise VsphereError(f"{where}: ManagedObjectNotFound: {getattr(exc.obj, '_moId', exc.obj)}") from None
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise VsphereTlsError(f"{self.where}: TLS certificate not trusted: {exc.verify_message}") from None
        except vim.fault.InvalidLogin:
            self._drop()
            raise VsphereError(f"{where}: login refused for {self.username!r}") from None
        except vim.fault.NoPermission as exc:
            raise VsphereError(f"{where}: permission {exc.privilegeId or '?'} missing for {self.username!r}") from None
        except vmodl.MethodFault as exc:
            raise VsphereError(f"{where}: {type(exc).__name__}: {exc.msg or exc}") from None
        except ssl.SSLError as exc:
            self._drop()
            raise VsphereError(f"{where}: TLS: {exc}") from None
        except OSError as exc:  # refused, reset, timed out, no route
            self._drop()
            raise VsphereUnreachable(f"{where}: {exc.strerror or exc or 'no answer'}") from None
        except (http.client.HTTPException, ExpatError, ElementTree.ParseError) as exc:
            self._drop()
            raise VsphereError(f"{where}: unusable answer: {type(exc).__name__}: {exc}") from None


class _SessionLost(Exception):
    """The session expired or was terminated: log in again."""
