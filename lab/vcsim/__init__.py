"""govmomi's vCenter simulator for the lab and the tests: main.go beside this file, built once per
source (a binary cached under its hash) and run as a lab child process.

    binary = build()                       # ~30 s the first time, then the cached binary
    sim = Vcsim(binary, Inventory(...), runtime_dir, port=0, username=..., password=...)
    sim.start()                            # waits for "ready URL"; sim.url, sim.port, sim.ca_file
    sim.set_state(SimState(disconnected_hosts=["esx-pra-2"]))
    sim.set_power("vm-siege-03", on=False) # PowerOffVM_Task through pyvmomi, as an operator would
    sim.stop()

Built with Debian's golang-go and golang-github-vmware-govmomi-dev (GOPATH=/usr/share/gocode,
GO111MODULE=off): no network, no module download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.processes import Child

SOURCE = Path(__file__).resolve().parent / "main.go"
GOPATH = "/usr/share/gocode"
GOVMOMI = Path(GOPATH) / "src/github.com/vmware/govmomi/simulator"
DEBIAN_PACKAGES = "golang-go golang-github-vmware-govmomi-dev"
BUILD_TIMEOUT_S = 900
READY_TIMEOUT_S = 60
CALL_TIMEOUT_S = 10


class VcsimError(RuntimeError):
    """The simulator cannot be built, started or driven (the message says why)."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("VIGIE_LAB_CACHE", Path(base) / "vigie-lab"))


def _go() -> str:
    go = shutil.which("go") or ("/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None)
    if go is None or not GOVMOMI.is_dir():
        raise VcsimError(f"building vcsim needs Go and govmomi: apt-get install {DEBIAN_PACKAGES}")
    return go


def build(cache_dir: Path | None = None) -> Path:
    """The simulator's binary for the current main.go and Go toolchain, built if not cached."""
    go = _go()
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    cache = cache_dir or default_cache_dir()
    binary = cache / f"vigie-vcsim-{digest}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOPATH": GOPATH,
        "GO111MODULE": "off",
        "GOCACHE": str(cache / "go-build"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    # Built beside its final name, then renamed: two builds at once (test workers) never see half a file.
    with tempfile.TemporaryDirectory(dir=cache) as work:
        partial = Path(work) / "vcsim"
        try:
            done = subprocess.run(
                [go, "build", "-o", str(partial), str(SOURCE)],
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise VcsimError(f"go build of {SOURCE} took over {BUILD_TIMEOUT_S} s") from None
        if done.returncode != 0:
            raise VcsimError(f"go build of {SOURCE} failed:\n{done.stderr[-3000:]}")
        os.replace(partial, binary)
    return binary


@dataclass(frozen=True)
class Inventory:
    """What the simulator holds: clusters (name -> its hosts), VMs per cluster, datastores."""

    datacenter: str
    clusters: dict[str, list[str]]
    vms: dict[str, list[str]]  # cluster -> its VMs (every cluster the same count: vcsim deals them so)
    datastores: list[str]

    def __post_init__(self) -> None:
        counts = {len(hosts) for hosts in self.clusters.values()}
        vm_counts = {len(self.vms.get(c, [])) for c in self.clusters}
        if len(counts) != 1 or len(vm_counts) != 1 or set(self.vms) - set(self.clusters) or not self.datastores:
            raise VcsimError("vcsim needs the same number of hosts, and of VMs, in every cluster, and a datastore")

    @property
    def hosts(self) -> list[str]:
        return [h for hosts in self.clusters.values() for h in hosts]

    @property
    def all_vms(self) -> list[str]:
        return [v for c in self.clusters for v in self.vms[c]]


@dataclass
class SimState:
    """The knobs of main.go (POST /vigie/state): the whole desired state, baseline for the rest."""

    disconnected_hosts: list[str] = field(default_factory=list)
    datastore_used_pct: dict[str, float] = field(default_factory=dict)
    snapshots: list[dict[str, object]] = field(default_factory=list)  # {vm, age_s, count}
    alarms: list[dict[str, str]] = field(default_factory=list)  # {entity, alarm, status}
    deleted_alarms: list[str] = field(default_factory=list)  # definitions gone while still triggered


class Vcsim:
    def __init__(
        self,
        binary: Path,
        inventory: Inventory,
        runtime_dir: Path,
        *,
        port: int,
        username: str,
        password: str,
        host: str = "127.0.0.1",
        ca_file: Path | None = None,
        server_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.binary, self.inventory, self.runtime_dir = binary, inventory, runtime_dir
        self.host, self.port = host, port
        self.username, self.password = username, password
        # where the simulator writes its self-signed certificate: the clients' CA bundle
        self.ca_file = ca_file or runtime_dir / f"vcsim-{port or 'any'}-ca.pem"
        self.server_cert = server_cert  # (certificate, key) to serve instead, signed by ca_file
        self.url: str | None = None
        self.child: Child | None = None

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process (from a thread that outlives it: the event loop's or the main one;
        its death signal follows that thread, lab.processes)."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        inv = self.inventory
        if self.server_cert is None:
            self.ca_file.parent.mkdir(parents=True, exist_ok=True)
            tls = ["-cert-out", str(self.ca_file)]
        else:
            tls = ["-cert", str(self.server_cert[0]), "-key", str(self.server_cert[1])]
        command = [
            str(self.binary),
            "-listen", f"{self.host}:{self.port}",
            *tls,
            "-username", self.username,
            "-password", self.password,
            "-datacenter", inv.datacenter,
            "-cluster-names", ",".join(inv.clusters),
            "-host-names", ",".join(inv.hosts),
            "-vm-names", ",".join(inv.all_vms),
            "-datastore-names", ",".join(inv.datastores),
        ]  # fmt: skip
        self.child = Child(f"vcsim:{self.port}", command, log=self.runtime_dir / "vcsim.log", stdout_pipe=True)
        self.child.start()

    def wait_ready(self) -> None:
        """Block until it prints its ready line (run it off the event loop)."""
        assert self.child is not None
        line = self.child.read_line(READY_TIMEOUT_S)
        if not line.startswith("ready "):
            self.stop()
            raise VcsimError(f"vcsim: unexpected {line!r}")
        self.url = line.split()[1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def set_state(self, state: SimState) -> None:
        request = urllib.request.Request(
            f"https://{self.host}:{self.port}/vigie/state",
            data=json.dumps(dataclasses.asdict(state)).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S, context=self.ssl_context()):
                pass
        except urllib.error.HTTPError as exc:
            raise VcsimError(f"vcsim state: {exc.code}: {exc.read().decode(errors='replace').strip()}") from None
        except OSError as exc:
            raise VcsimError(f"vcsim state: {exc}") from None

    def collector_calls(self) -> dict[str, int]:
        """The PropertyCollector's calls so far, by method, over every session (the server's count)."""
        url = f"https://{self.host}:{self.port}/vigie/calls"
        try:
            with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_S, context=self.ssl_context()) as response:
                return {str(k): int(v) for k, v in json.load(response).items()}
        except OSError as exc:
            raise VcsimError(f"vcsim calls: {exc}") from None

    def connect(self):  # -> vim.ServiceInstance
        """A pyvmomi session of the lab's own (an operator's client), certificate verified."""
        from pyVim.connect import SmartConnect

        return SmartConnect(
            host=self.host, port=self.port, user=self.username, pwd=self.password,
            sslContext=self.ssl_context(), httpConnectionTimeout=CALL_TIMEOUT_S,
        )  # fmt: skip

    def set_powered_off(self, off: set[str]) -> None:
        """Power the VMs named in ``off`` off and every other on, through the vSphere API itself
        (PowerOffVM_Task / PowerOnVM_Task), as an operator would in vCenter."""
        from pyVim.connect import Disconnect
        from pyVim.task import WaitForTask
        from pyVmomi import vim

        unknown = off - set(self.inventory.all_vms)
        if unknown:
            raise VcsimError(f"no VM {', '.join(sorted(unknown))} in vcsim")
        instance = self.connect()
        try:
            content = instance.RetrieveContent()
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            for vm in view.view:
                on = vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn
                if vm.name in off and on:
                    WaitForTask(vm.PowerOffVM_Task())
                elif vm.name not in off and not on:
                    WaitForTask(vm.PowerOnVM_Task())
            view.Destroy()
        finally:
            Disconnect(instance)
