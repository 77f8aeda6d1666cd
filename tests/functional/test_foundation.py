"""The skeleton every API stands on: health, versions, errors, schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from alarmer import conf as aconf
from alarmer import db, tables


def test_healthcheck_answers_ok(client):
    response = client.get("/healthcheck")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_versions_document_lists_v2(client):
    body = client.get("/").get_json()
    ids = [v["id"] for v in body["versions"]["values"]]
    assert "v2" in ids
    v2 = body["versions"]["values"][ids.index("v2")]
    assert v2["links"][0]["href"].endswith("/v2")


def test_unknown_path_is_a_404_in_the_envelope(client):
    response = client.get("/v2/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    fault = response.get_json()["error_message"]
    assert fault["faultcode"] == "Client"
    assert "/v2/nothing-here" in fault["faultstring"]
    assert fault["debuginfo"] is None


def test_wrong_method_is_a_405_with_allow(client):
    response = client.delete("/healthcheck")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.get_json()["error_message"]["faultcode"] == "Client"


def test_migrations_match_the_models(rt):
    metadata = tables.metadata()
    with rt.db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": tables.compared,
                },
            ),
            metadata,
        )
    assert diff == []


def test_migrations_run_on_mariadb(mysql_server_url):
    database = db.Database(mysql_server_url)
    try:
        database.upgrade()
        metadata = tables.metadata()
        with database.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"include_object": tables.compared}
                ),
                metadata,
            )
        assert diff == []
    finally:
        database.dispose()


def test_sample_config_is_up_to_date(tmp_path):
    generated = tmp_path / "alarmer.conf"
    aconf.generate_sample(str(generated))
    here = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    with open(
        os.path.join(here, "etc", "alarmer.conf"), encoding="utf-8"
    ) as f:
        committed = f.read()
    assert generated.read_text(encoding="utf-8") == committed, (
        "etc/alarmer.conf is stale: run alarmer-config-generator"
    )


def test_serve_starts_and_stops_cleanly_on_sigterm(tmp_path):
    data = tmp_path / "data"
    with SocketPort() as port:
        pass
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alarmer.cli",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(
                    f"http://127.0.0.1:{port}/healthcheck", timeout=1
                )
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.1)
        assert (data / "alarmer.sqlite").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log = proc.stdout.read().decode()
        assert "alarmer stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class SocketPort:
    """Find a free loopback port (closed again on exit)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
