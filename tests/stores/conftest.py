"""The peers of the store tests: VictoriaMetrics (Debian `victoria-metrics`) as the real line-protocol
server, and a TSDB that accepts connections and never answers."""

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.stores.helpers import HungServer

VM_BINARY = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
READY_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VictoriaMetrics:
    """One server process on a fixed loopback port and data dir, stoppable and restartable."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                VM_BINARY,
                f"-storageDataPath={self.data_dir}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Readiness poll of a child process, not a timing assumption of the code under test.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("victoria-metrics did not become ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def export(self, match: str) -> list[tuple[str, list[int], list[float]]]:
        """Every stored (metric name, timestamps in ms, values) matching the series selector."""
        return [(labels["__name__"], timestamps, values) for labels, timestamps, values in self.series(match)]

    def series(self, match: str) -> list[tuple[dict[str, str], list[int], list[float]]]:
        """Every stored (labels, timestamps in ms, values) matching the series selector."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as resp:
            rows = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        return [(r["metric"], r["timestamps"], r["values"]) for r in rows]


@pytest.fixture
def victoria(tmp_path):
    if not Path(VM_BINARY).exists():
        pytest.skip("victoria-metrics binary absent: apt-get install -y victoria-metrics (/usr/bin/victoria-metrics)")
    server = VictoriaMetrics(tmp_path / "vm-data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def hung_tsdb():
    server = HungServer()
    await server.start()
    yield server
    await server.stop()
