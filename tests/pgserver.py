"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, on a free loopback port.

`initdb` refuses to run as root (CI runs as root), so as root the cluster belongs to the `postgres`
user (`runuser -u postgres`). `PostgresServer.start()` raises `Unavailable` with the reason when no
server can be started here; tests skip with that reason (and `.ci/run` installs PostgreSQL).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class Unavailable(Exception):
    pass


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    path = found[0] if found else shutil.which(name)
    if not path:
        raise Unavailable(f"no PostgreSQL {name} (apt-get install postgresql)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="usagefix-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user for initdb") from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "usagefix", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql://usagefix@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        self.databases = getattr(self, "databases", 0) + 1
        name = f"t{self.databases}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, args: list[str]) -> None:
        p = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise Unavailable(f"{Path(args[0]).name} failed: {(p.stderr or p.stdout).strip()[-500:]}")

    def start(self) -> None:
        opts = (
            f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        )
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "start"])

    def stop(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop()
        except Unavailable:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
