"""Run ``alarmer serve`` with several processes and look at them."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ALARMER = str(Path(sys.executable).with_name("alarmer"))
H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}
KINDS = ("api", "evaluator", "notifier")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(step)


def alive(pid: int) -> bool:
    """True while *pid* runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


class Serve:
    """One ``alarmer serve`` subprocess with its own data directory."""

    def __init__(self, tmp_path: Path, *, api_workers: int = 2, **extra):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "serve.log"
        self.conf_path = tmp_path / "alarmer.conf"
        sections = {
            "DEFAULT": {"data_dir": tmp_path / "data", "log_level": "INFO"},
            "api": {"workers": api_workers, "port": self.port},
            "coordination": {"check_interval": 0.2},
            "evaluator": {"refresh_interval": 0.2},
            "notifier": {"allowed_networks": "127.0.0.0/8"},
        }
        for section, values in extra.items():
            sections.setdefault(section, {}).update(values)
        self.conf_path.write_text(
            "".join(
                f"[{name}]\n"
                + "".join(f"{k} = {v}\n" for k, v in values.items())
                for name, values in sections.items()
            )
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Serve:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ALARMER, "serve", "--config-file", str(self.conf_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def children(self) -> dict[str, int]:
        """The newest pid of every child, by name, from the log."""
        found: dict[str, int] = {}
        for name, pid in re.findall(
            rf" {self.pid} INFO alarmer.process: started (\S+) \(pid (\d+)\)",
            self.log(),
        ):
            found[name] = int(pid)
        return found

    def ready_pids(self) -> set[int]:
        return {
            int(pid)
            for pid in re.findall(
                r" (\d+) INFO alarmer.process: alarmer is running", self.log()
            )
        }

    def wait_ready(self, timeout: float = 90) -> dict[str, int]:
        """Wait until every child runs its services; return the pids."""

        def ready():
            assert self.proc is not None
            assert self.proc.poll() is None, self.log()
            children = self.children()
            names = {n.split("-")[0] for n in children}
            if names != set(KINDS):
                return None
            if set(children.values()) <= self.ready_pids():
                return children
            return None

        return wait_for(ready, timeout, step=0.1, what="serve ready")

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill_all(self) -> None:
        """Last resort at teardown: the supervisor and every child."""
        pids = list(self.children().values())
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=H, timeout=10, **kw)

    def post(self, path: str, body, **kw) -> requests.Response:
        return requests.post(
            f"{self.url}{path}", json=body, headers=H, timeout=10, **kw
        )


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the server-side TCP socket of a loopback connection."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (
                int(local.rsplit(":", 1)[1], 16) == local_port
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
            ):
                return inode
    return None


def _owner_of(inode: str, pids) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def answering_pid(serve: Serve, pids) -> int | None:
    """Make one request on a new connection; return the pid that served it.

    The connection stays open while the server side of it is looked up
    in ``/proc``.
    """
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
    try:
        conn.request("GET", "/v2/alarms", headers=H)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        inode = _socket_inode(serve.port, client_port)
        if inode is None:
            return None
        return _owner_of(inode, pids)
    finally:
        conn.close()
