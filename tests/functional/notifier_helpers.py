"""A real webhook receiver on loopback, and outbox helpers."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import Notification
from notifiers import tables as models


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The notifier gave up on a hanging request: nothing to report.
        pass


class Receiver:
    """An HTTP server recording every POST.

    ``behaviour[path]`` decides the answer: an int status (default 200),
    ``"hang"`` (sleeps ``hang_seconds`` before answering 200), or a
    callable returning ``(status, headers)``.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.received: list[Received] = []
        self.behaviour: dict[str, Any] = {}
        self.hang_seconds = 5.0
        self.delay = 0.0
        self.lock = threading.Lock()
        self.port = port
        self.server: http.server.ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                behaviour = receiver.behaviour.get(path, 200)
                headers: dict[str, str] = {}
                if behaviour == "hang":
                    time.sleep(receiver.hang_seconds)
                    status = 200
                elif callable(behaviour):
                    status, headers = behaviour(body)
                else:
                    status = int(behaviour)
                if receiver.delay:
                    time.sleep(receiver.delay)
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.received.append(
                            Received(path, dict(self.headers), body)
                        )
                payload = f"answer {status}".encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = _Server((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever)
        thread.daemon = True
        thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if path in (None, r.path)]


def add_notification(
    rt: Any,
    alarm_id: str,
    seq: int,
    actions: list[str],
    *,
    previous: str = "ok",
    current: str = "alarm",
    project_id: str = "p1",
) -> None:
    with rt.db.session() as session:
        session.add(
            Notification(
                alarm_id=alarm_id,
                seq=seq,
                alarm_name=f"name-{alarm_id[:8]}",
                severity="low",
                previous=previous,
                current=current,
                reason=f"Transition to {current} #{seq}",
                reason_data={"type": "threshold", "seq": seq},
                actions=actions,
                project_id=project_id,
                created_at=timeutils.utcnow(),
            )
        )
        session.commit()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def deliveries(rt, alarm_id=None):
    with rt.db.read_session() as session:
        query = sa.select(models.Delivery).order_by(
            models.Delivery.alarm_id, models.Delivery.seq
        )
        if alarm_id:
            query = query.where(models.Delivery.alarm_id == alarm_id)
        return list(session.execute(query).scalars())


def attempts(rt, delivery_id):
    with rt.db.read_session() as session:
        return list(
            session.execute(
                sa.select(models.DeliveryAttempt)
                .where(models.DeliveryAttempt.delivery_id == delivery_id)
                .order_by(models.DeliveryAttempt.id)
            ).scalars()
        )


def write_config(tmp_path: Any, db_url: str, **notifier: object) -> Any:
    """Write ``alarmer.conf`` for notifier processes of *db_url*.

    The ``[notifier]`` section allows loopback targets, then sets
    *notifier*.
    """
    config = tmp_path / "alarmer.conf"
    lines = [
        "[DEFAULT]",
        f"data_dir = {tmp_path / 'data'}",
        "[database]",
        f"connection = {db_url}",
        "[notifier]",
        "allowed_networks = 127.0.0.0/8",
        *(f"{name} = {value}" for name, value in notifier.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    return config
