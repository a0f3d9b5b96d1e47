"""A throwaway PostgreSQL cluster from Debian's binaries, on a loopback port, for the PostgreSQL
probe's tests and the lab.

``initdb`` refuses to run as root, so as root the cluster belongs to ``nobody`` (its directory is
made under the system's temporary directory, which ``nobody`` can reach, and handed over). Clients
reach it over TCP on 127.0.0.1 with SCRAM passwords; its Unix socket sits in its own directory.
A replica is a ``pg_basebackup -R`` of a running cluster, streaming under an
``application_name``, as a replica the probe names would.

    with PostgresCluster.create(port, superuser_password="...") as pg:
        pg.sql("CREATE DATABASE app")
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psycopg

SUPERUSER = "postgres"
DEBIAN_BIN = "/usr/lib/postgresql/*/bin"


class ClusterError(RuntimeError):
    pass


def binaries() -> Path | None:
    """The directory of initdb, pg_ctl and pg_basebackup: Debian's newest, else the PATH's."""
    def version(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else 0

    for candidate in sorted((Path(p) for p in glob.glob(DEBIAN_BIN)), key=version, reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresCluster:
    def __init__(self, directory: Path, port: int, superuser_password: str, bin_dir: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = port
        self.superuser_password = superuser_password
        self.bin_dir = bin_dir
        self.owner = "nobody" if os.geteuid() == 0 else None

    @classmethod
    def create(cls, port: int, superuser_password: str, bin_dir: Path | None = None) -> PostgresCluster:
        """A new, empty cluster (initdb), not started."""
        bin_dir = bin_dir or binaries()
        if bin_dir is None:
            raise ClusterError("no PostgreSQL binaries (Debian: apt-get install postgresql)")
        cluster = cls(Path(tempfile.mkdtemp(prefix="vigie-pg-")), port, superuser_password, bin_dir)
        cluster._own(cluster.directory)
        password_file = cluster.directory / "pw"
        password_file.write_text(superuser_password + "\n")
        cluster._own(password_file)
        cluster._run(["initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth-local=trust",
                      "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"])
        password_file.unlink()
        return cluster

    def replica(self, port: int, application_name: str, user: str, password: str) -> PostgresCluster:
        """A streaming replica of this (running) cluster, not started; ``user`` has REPLICATION."""
        replica = PostgresCluster(Path(tempfile.mkdtemp(prefix="vigie-pg-replica-")), port,
                                  self.superuser_password, self.bin_dir)
        replica._own(replica.directory)
        conninfo = (f"host=127.0.0.1 port={self.port} user={user} password={password} "
                    f"application_name={application_name}")
        replica._run(["pg_basebackup", "-d", conninfo, "-D", str(replica.data), "-R", "-X", "stream", "--no-sync",
                      "--checkpoint=fast"])
        return replica

    def start(self) -> PostgresCluster:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"), "-o", options, "-w", "start"])
        return self

    def server_command(self) -> list[str]:
        """The server in the foreground, for a lab child process (``start`` daemonizes it instead).
        As root it runs as the cluster's owner through setpriv, which sets the parent-death signal
        again after the change of user (the change clears the one lab.processes set)."""
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                   "-p", str(self.port), "-k", str(self.directory), "-c", "fsync=off"]
        if self.owner is None:
            return command
        entry = pwd.getpwnam(self.owner)
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                "--pdeathsig=TERM", *command]

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"], check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def sql(self, *statements: str, dbname: str = "postgres") -> list[tuple]:
        """Run ``statements`` as the superuser (autocommit: CREATE DATABASE needs it); the last one's rows."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.superuser_password,
                             dbname=dbname, autocommit=True, connect_timeout=10) as connection:
            rows: list[tuple] = []
            for statement in statements:
                cursor = connection.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, command: Sequence[str], check: bool = True) -> None:
        done = subprocess.run([str(self.bin_dir / command[0]), *command[1:]], capture_output=True, text=True,
                              user=self.owner, cwd=self.directory, timeout=120)
        if check and done.returncode != 0:
            raise ClusterError(
                f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{self.log()[-2000:]}"
            )
