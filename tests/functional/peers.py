"""Real OpenStack peers for the tests: Keystone, in its own virtualenv.

Each peer is installed from the package registry, at a pinned version,
into a virtualenv cached under ``~/.cache/alarmer-peers/<name>-<version>``
(``ALARMER_PEERS_DIR`` moves it); ``.ci/run`` builds the same ones
before the tests (``python -m tests.functional.peers``).  A peer that
cannot be installed skips its tests with the reason, except in CI
(``ALARMER_REQUIRE_BACKENDS=1``) where it fails them.

:class:`Keystone` runs Keystone 30 on SQLite with fernet tokens, served
by waitress on a free loopback port, bootstrapped with an ``admin``
user; its helpers create projects, users, roles and role assignments
through the Keystone API.  :func:`keystone_alarmer` runs alarmer in
keystone mode beside it, registered in its catalog.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

LOG = logging.getLogger(__name__)

PEERS_DIR = pathlib.Path(
    os.environ.get("ALARMER_PEERS_DIR", "~/.cache/alarmer-peers")
).expanduser()
REQUIRE = os.environ.get("ALARMER_REQUIRE_BACKENDS") == "1"

#: Peer name -> (version, requirements installed in its virtualenv).
PEERS: dict[str, tuple[str, list[str]]] = {
    "keystone": ("30.0.0", ["keystone==30.0.0", "waitress>=3"]),
    "ceilometer": ("27.0.0", ["ceilometer==27.0.0"]),
    "heat": ("27.0.1", ["openstack-heat==27.0.1", "psycopg2-binary"]),
    "openstackclient": (
        "10.5.0",
        [
            "python-openstackclient==10.5.0",
            "aodhclient==3.12.0",
            "gnocchiclient==7.2.0",
        ],
    ),
}
ADMIN_PASSWORD = "admin-secret"
#: Catalog service type -> the name OpenStack gives that service.
SERVICE_NAMES = {
    "alarming": "aodh",
    "metric": "gnocchi",
    "orchestration": "heat",
}


def _unavailable(message: str) -> None:
    if REQUIRE:
        pytest.fail(message + " (ALARMER_REQUIRE_BACKENDS=1)")
    pytest.skip(message)


def peer_venv(name: str) -> pathlib.Path:
    """The virtualenv of peer *name*, built once and cached.

    A virtualenv is complete once its ``.complete`` marker exists; a
    partial one (an interrupted install) is built again.
    """
    version, requirements = PEERS[name]
    venv = PEERS_DIR / f"{name}-{version}"
    marker = venv / ".complete"
    if marker.exists():
        return venv
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    # Test processes running side by side build a peer once: the others
    # wait on the lock, then find the marker.
    with open(PEERS_DIR / f".{name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", *requirements],
            check=True,
        )
        marker.write_text(" ".join(requirements) + "\n")
    return venv


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 180.0) -> None:
    """Wait until *url* answers anything over HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_SERVE = textwrap.dedent(
    """
    import sys
    port = int(sys.argv[1])
    sys.argv = [sys.argv[0]]
    import waitress
    from keystone.wsgi.api import application
    waitress.serve(application, host="127.0.0.1", port=port, threads=4)
    """
)


class Keystone:
    """A Keystone server in a temporary directory.

    :param venv: Keystone's virtualenv.
    :param root: a directory for its configuration, keys and database.
    """

    def __init__(
        self,
        venv: pathlib.Path,
        root: pathlib.Path,
        *,
        token_expiration: int | None = None,
    ) -> None:
        self.venv = venv
        self.root = root
        #: ``[token] expiration`` in seconds (Keystone's default: 1 h).
        self.token_expiration = token_expiration
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = root / "keystone.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._admin_token: tuple[str, float] | None = None

    def _manage(self, *args: str) -> None:
        subprocess.run(
            [str(self.venv / "bin" / "keystone-manage"),
             "--config-file", str(self.conf), *args],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        """Configure, bootstrap and serve; wait until it answers."""
        for keys in ("fernet-keys", "credential-keys"):
            (self.root / keys).mkdir()
        expiration = (
            f"expiration = {self.token_expiration}"
            if self.token_expiration
            else ""
        )
        self.conf.write_text(
            textwrap.dedent(
                f"""
                [DEFAULT]
                log_file = {self.root / "keystone.log"}
                [database]
                connection = sqlite:///{self.root / "keystone.db"}
                [token]
                provider = fernet
                {expiration}
                [fernet_tokens]
                key_repository = {self.root / "fernet-keys"}
                [fernet_receipts]
                key_repository = {self.root / "fernet-keys"}
                [credential]
                key_repository = {self.root / "credential-keys"}
                """
            )
        )
        user = ["--keystone-user", "root", "--keystone-group", "root"]
        self._manage("db_sync")
        self._manage("fernet_setup", *user)
        self._manage("credential_setup", *user)
        self._manage(
            "bootstrap",
            "--bootstrap-password", ADMIN_PASSWORD,
            "--bootstrap-admin-url", f"{self.url}/v3",
            "--bootstrap-public-url", f"{self.url}/v3",
            "--bootstrap-internal-url", f"{self.url}/v3",
            "--bootstrap-region-id", "RegionOne",
        )  # fmt: skip
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.conf)}
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-c", _SERVE,
             str(self.port)],
            env=env,
            stdout=(self.root / "server.out").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(f"{self.url}/v3")

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # ------------------------------------------------------ API helpers

    def token(
        self,
        user: str,
        password: str,
        project: str | None = None,
        *,
        trust_id: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A token of *user* (scoped to *project* or to a trust)."""
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": user,
                        "domain": {"id": "default"},
                        "password": password,
                    }
                },
            }
        }
        if trust_id is not None:
            auth["scope"] = {"OS-TRUST:trust": {"id": trust_id}}
        elif project is not None:
            auth["scope"] = {
                "project": {"name": project, "domain": {"id": "default"}}
            }
        response = requests.post(
            f"{self.url}/v3/auth/tokens", json={"auth": auth}, timeout=30
        )
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"], response.json()["token"]

    def admin_token(self) -> str:
        """A token of the bootstrap ``admin`` user on project ``admin``."""
        held = self._admin_token
        if held is None or time.monotonic() > held[1]:
            token, _ = self.token("admin", ADMIN_PASSWORD, "admin")
            # Used until 10 s before it expires (see token_expiration).
            life = (self.token_expiration or 3600) - 10
            held = self._admin_token = (token, time.monotonic() + life)
        return held[0]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the Keystone API as ``admin``; the decoded answer."""
        response = requests.request(
            method,
            f"{self.url}/v3{path}",
            headers={"X-Auth-Token": self.admin_token()},
            timeout=30,
            **kwargs,
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def _find(self, kind: str, name: str) -> str | None:
        found = self.api("GET", f"/{kind}", params={"name": name})[kind]
        return found[0]["id"] if found else None

    def project(self, name: str) -> str:
        """The id of project *name*, created if needed."""
        found = self._find("projects", name)
        if found:
            return found
        body = {"project": {"name": name, "domain_id": "default"}}
        created: str = self.api("POST", "/projects", json=body)["project"][
            "id"
        ]
        return created

    def role(self, name: str) -> str:
        """The id of role *name*, created if needed."""
        found = self._find("roles", name)
        if found:
            return found
        created: str = self.api(
            "POST", "/roles", json={"role": {"name": name}}
        )["role"]["id"]
        return created

    def user(
        self, name: str, password: str, project: str, roles: list[str]
    ) -> str:
        """Create user *name* with *roles* on *project*; its id."""
        project_id = self.project(project)
        body = {
            "user": {
                "name": name,
                "password": password,
                "domain_id": "default",
                "default_project_id": project_id,
            }
        }
        user_id: str = self.api("POST", "/users", json=body)["user"]["id"]
        for role in roles:
            self.api(
                "PUT",
                f"/projects/{project_id}/users/{user_id}/roles/"
                f"{self.role(role)}",
            )
        return user_id

    def validate(self, token: str) -> dict[str, Any]:
        """What Keystone says of *token* (``GET /v3/auth/tokens``)."""
        response = requests.get(
            f"{self.url}/v3/auth/tokens",
            headers={
                "X-Auth-Token": self.admin_token(),
                "X-Subject-Token": token,
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()["token"]
        return found

    def revoke(self, token: str) -> None:
        """Revoke *token* (``DELETE /v3/auth/tokens``) as ``admin``."""
        response = requests.delete(
            f"{self.url}/v3/auth/tokens",
            headers={
                "X-Auth-Token": self.admin_token(),
                "X-Subject-Token": token,
            },
            timeout=30,
        )
        assert response.status_code == 204, response.text

    def register(self, kind: str, url: str) -> str:
        """Add service type *kind* at *url* to the catalog; its id.

        The service is named as OpenStack names it (``aodh`` for
        ``alarming``...); the endpoint is public, in ``RegionOne``.
        Deleting the service deletes its endpoint.
        """
        name = SERVICE_NAMES.get(kind, kind)
        service = {"service": {"type": kind, "name": name}}
        service_id: str = self.api("POST", "/services", json=service)[
            "service"
        ]["id"]
        endpoint = {
            "service_id": service_id,
            "interface": "public",
            "url": url,
            "region_id": "RegionOne",
        }
        self.api("POST", "/endpoints", json={"endpoint": endpoint})
        return service_id


@contextlib.contextmanager
def running_keystone(root: pathlib.Path) -> Iterator[Keystone]:
    """A started :class:`Keystone` in *root*, stopped at exit."""
    try:
        venv = peer_venv("keystone")
    except (OSError, subprocess.CalledProcessError) as exc:
        _unavailable(f"Keystone cannot be installed: {exc}")
    server = Keystone(venv, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """A real Keystone for the whole session."""
    with running_keystone(tmp_path_factory.mktemp("keystone")) as server:
        yield server


class KeystoneAlarmer:
    """alarmer in keystone mode beside a :class:`Keystone`.

    :ivar ks: the Keystone.
    :ivar url: alarmer's base URL.
    :ivar rt: alarmer's runtime (its database, for reading back).
    :ivar user: alarmer's service user (the ``service`` role only).
    """

    def __init__(self, ks: Keystone, url: str, rt: Any, user: str) -> None:
        self.ks = ks
        self.url = url
        self.rt = rt
        self.user = user


@contextlib.contextmanager
def keystone_alarmer(
    ks: Keystone,
    root: pathlib.Path,
    user: str,
    *,
    catalog: tuple[str, ...] = (),
    evaluation_interval: int | None = None,
    authtoken: dict[str, str] | None = None,
) -> Iterator[KeystoneAlarmer]:
    """alarmer's API, notifier (and evaluator) in keystone mode.

    Its service user *user* (password ``<user>-secret``) is created with
    only the ``service`` role on project ``service``, and is both
    keystonemiddleware's and ``[service_credentials]``'s user.

    :param root: a directory for alarmer's configuration and data.
    :param catalog: service types (``alarming``, ``metric``) registered in
        Keystone's catalog at alarmer's URL, removed again at exit.
    :param evaluation_interval: run the evaluator too, wired as
        ``alarmer serve`` wires it, evaluating every alarm each that many
        seconds.
    :param authtoken: more ``[keystone_authtoken]`` options.
    """
    from alarmer import conf as aconf
    from alarmer import runtime
    from alarmer.evaluator.service import EvaluatorService
    from api.server import ApiServer
    from notifiers.service import NotifierService

    ks.user(user, f"{user}-secret", "service", ["service"])
    credentials = textwrap.dedent(
        f"""
        auth_url = {ks.url}/v3
        auth_type = password
        username = {user}
        password = {user}-secret
        project_name = service
        user_domain_id = default
        project_domain_id = default
        """
    )
    more = "".join(f"{k} = {v}\n" for k, v in (authtoken or {}).items())
    conf_file = root / "alarmer.conf"
    conf_file.write_text(
        textwrap.dedent(
            f"""
            [DEFAULT]
            data_dir = {root / "data"}
            [api]
            auth_mode = keystone
            port = 0
            [notifier]
            allowed_networks = 127.0.0.0/8
            notify_on_manual_state_change = true
            [keystone_authtoken]
            www_authenticate_uri = {ks.url}/v3
            """
        )
        + credentials
        + more
        + "[service_credentials]"
        + credentials
        + (
            f"[evaluator]\nevaluation_interval = {evaluation_interval}\n"
            if evaluation_interval
            else ""
        )
    )
    rt = runtime.build(
        aconf.make_conf(config_files=[str(conf_file)]), migrate=True
    )
    notifier = NotifierService(rt)
    services: list[Any] = [ApiServer(rt), notifier]
    if evaluation_interval:
        services.append(
            EvaluatorService(
                rt,
                api_in_process=True,
                on_outbox=notifier.wakeup.outbox_changed,
            )
        )
    registered: list[str] = []
    started: list[Any] = []
    try:
        for service in services:
            service.start()
            started.append(service)
        url = f"http://127.0.0.1:{services[0].port}"
        for kind in catalog:
            registered.append(ks.register(kind, url))
        yield KeystoneAlarmer(ks, url, rt, user)
    finally:
        for service_id in registered:
            ks.api("DELETE", f"/services/{service_id}")
        for service in reversed(started):
            service.stop()
        rt.close()


def main() -> int:
    """Build every peer's virtualenv (what ``.ci/run`` calls)."""
    for name in PEERS:
        sys.stdout.write(f"{name}: {peer_venv(name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
