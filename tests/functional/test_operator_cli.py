"""An operator's mistakes: each one a clear line and an exit code.

Every test runs the real console scripts (the ones installed beside
the Python running the tests) as subprocesses and checks the exit code
and the message, never a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from alarmer import cli
from alarmer import conf as aconf

BIN = os.path.dirname(sys.executable)


def run(
    *argv: str, cwd: str | os.PathLike[str] | None = None, timeout: int = 90
) -> subprocess.CompletedProcess[str]:
    """Run a console script of alarmer; return what it did."""
    script, *rest = argv
    return subprocess.run(
        [os.path.join(BIN, script), *rest],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines of a command; fails on any traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def write(path, text: str) -> str:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_every_bad_value_is_one_line_and_nothing_is_touched(tmp_path):
    data = tmp_path / "data"
    conf = write(
        tmp_path / "bad.conf",
        """\
        [DEFAULT]
        log_level = LOUD
        [api]
        port = 99999
        auth_mode = bogus
        [evaluator]
        evaluation_interval = 0
        [storage]
        driver = s3
        """,
    )
    result = run(
        "alarmer", "serve", "--config-file", conf, "--data-dir", str(data)
    )
    assert result.returncode == 2
    lines = error_lines(result)
    assert lines == [
        f"alarmer: error: {conf}: [DEFAULT] log_level = 'LOUD': must be one "
        "of DEBUG, INFO, WARNING, ERROR",
        f"alarmer: error: {conf}: [api] port = '99999': must be a port "
        "number from 0 to 65535",
        f"alarmer: error: {conf}: [api] auth_mode = 'bogus': must be one of "
        + ", ".join(
            choice
            for choice, _ in aconf.make_conf()
            .api._group._opts["auth_mode"]["opt"]
            .type.choices.items()
        ),
        f"alarmer: error: {conf}: [evaluator] evaluation_interval = '0': "
        "must be an integer of at least 1",
        f"alarmer: error: {conf}: [storage] driver = 's3': must be one of "
        "file, redis",
    ]
    # Checked before anything is created or migrated.
    assert not data.exists()


def test_later_file_is_named_for_the_value_it_sets(tmp_path):
    first = write(tmp_path / "a.conf", "[api]\nport = 8000\n")
    second = write(tmp_path / "b.conf", "[api]\nport = -1\n")
    result = run(
        "alarmer",
        "check-config",
        "--config-file",
        first,
        "--config-file",
        second,
    )
    assert result.returncode == 2
    assert error_lines(result) == [
        f"alarmer: error: {second}: [api] port = '-1': must be a port "
        "number from 0 to 65535"
    ]


def test_unknown_sections_and_options_are_warned_with_closest_name(
    tmp_path,
):
    conf = write(
        tmp_path / "typo.conf",
        """\
        [DEFAULT]
        log_levl = DEBUG
        [evaluater]
        evaluation_interval = 5
        [notifier]
        rest_notifier_ssl_verify = false
        """,
    )
    result = run(
        "alarmer",
        "check-config",
        "--config-file",
        conf,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 0, result.stderr
    warnings = [
        line for line in result.stderr.splitlines() if "warning" in line
    ]
    assert warnings == [
        f"warning: {conf}: [DEFAULT] log_levl: unknown option, ignored "
        "(did you mean 'log_level'?)",
        f"warning: {conf}: [evaluater]: unknown section, ignored (did you "
        "mean 'evaluator'?)",
    ]
    assert "rest_notifier_ssl_verify = false" in result.stdout


def test_deprecated_default_location_of_an_option_is_known(tmp_path):
    conf = write(
        tmp_path / "aodh.conf", "[DEFAULT]\nrest_notifier_ssl_verify = no\n"
    )
    result = run("alarmer", "check-config", "--config-file", conf)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "rest_notifier_ssl_verify = false" in result.stdout


def test_check_config_prints_effective_values_with_secrets_masked(
    tmp_path,
):
    conf = write(
        tmp_path / "secret.conf",
        """\
        [database]
        connection = postgresql+psycopg://alarmer:hunter2@db.example:5432/a
        [notifier]
        webhook_secret = whsec_c2VjcmV0
        alarm_secrets = p1:topsecret
        [coordination]
        backend_url = redis://:redispw@127.0.0.1:6379
        """,
    )
    data = tmp_path / "data"
    result = run(
        "alarmer",
        "--config-file",
        conf,
        "check-config",
        "--data-dir",
        str(data),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for secret in ("hunter2", "c2VjcmV0", "topsecret", "redispw"):
        assert secret not in out
    assert (
        "connection = postgresql+psycopg://alarmer:***@db.example:5432/a"
        in out
    )
    assert "webhook_secret = ***" in out
    assert "alarm_secrets = p1:***" in out
    assert "backend_url = redis://:***@127.0.0.1:6379" in out
    assert f"data_dir = {data}" in out
    assert "[evaluator]\nevaluation_interval = 60\n" in out


def test_config_file_before_and_after_the_command_are_both_read(tmp_path):
    first = write(tmp_path / "a.conf", "[api]\nport = 8111\n")
    second = write(
        tmp_path / "b.conf", "[evaluator]\nevaluation_interval = 7\n"
    )
    result = run(
        "alarmer",
        "--config-file",
        first,
        "check-config",
        "--config-file",
        second,
    )
    assert result.returncode == 0, result.stderr
    assert "port = 8111" in result.stdout
    assert "evaluation_interval = 7" in result.stdout
    assert f"configuration files: {first}, {second}" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such configuration file"),
        ("port 8000\n", "not an INI file: line 1"),
        ("[api\nport = 1\n", "not an INI file: line 1"),
    ],
)
def test_missing_or_malformed_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "x.conf"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = run("alarmer-dbsync", "--config-file", str(path))
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(f"alarmer-dbsync: error: {path}: {message}")


def test_port_out_of_range_on_the_command_line(tmp_path):
    result = run(
        "alarmer",
        "serve",
        "--port",
        "99999",
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 2
    assert "argument --port: 99999 is not a port number (0 to 65535)" in (
        result.stderr
    )
    assert not (tmp_path / "d").exists()


def test_data_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("", encoding="utf-8")
    result = run("alarmer", "serve", "--data-dir", str(target))
    assert result.returncode == 2
    assert error_lines(result) == [
        f"alarmer: error: command line: [DEFAULT] data_dir = '{target}': "
        f"{target} is not a directory"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_data_dir_that_is_not_writable(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    result = run("alarmer", "dbsync", "--data-dir", str(parent / "d"))
    assert result.returncode == 2
    assert f"({parent} is not writable by this user)" in result.stderr


def test_port_in_use_names_host_and_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run(
            "alarmer",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
        )
    assert result.returncode == 1
    assert error_lines(result) == [
        f"alarmer: error: cannot listen on 127.0.0.1:{port}: address "
        "already in use (another process listens there; stop it or set "
        "[api] port / --port)"
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_unreachable_is_one_line_with_password_masked(tmp_path):
    port = _closed_port()
    conf = write(
        tmp_path / "pg.conf",
        f"[database]\nconnection = postgresql+psycopg://u:pw1@127.0.0.1:"
        f"{port}/x\n",
    )
    result = run(
        "alarmer-dbsync",
        "--config-file",
        conf,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(
        "alarmer-dbsync: error: cannot use the database "
        f"postgresql+psycopg://u:***@127.0.0.1:{port}/x: "
    )
    assert "Connection refused" in lines[0]
    assert "pw1" not in result.stderr


def test_redis_unreachable_is_one_line(tmp_path):
    port = _closed_port()
    conf = write(
        tmp_path / "redis.conf",
        f"[coordination]\nbackend_url = redis://127.0.0.1:{port}\n",
    )
    result = run(
        "alarmer-evaluator",
        "--config-file",
        conf,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(
        "alarmer-evaluator: error: cannot reach the Redis server of "
        f"[coordination] backend_url redis://127.0.0.1:{port}: "
    )


def test_debug_shows_the_traceback(tmp_path):
    port = _closed_port()
    conf = write(
        tmp_path / "pg.conf",
        f"[database]\nconnection = postgresql+psycopg://u@127.0.0.1:{port}/x\n",
    )
    result = run(
        "alarmer",
        "dbsync",
        "--debug",
        "--config-file",
        conf,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_help_has_its_description(command):
    result = run("alarmer", command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: alarmer {command} ")
    description = cli.COMMANDS[command].description.split()
    assert " ".join(description[:5]) in " ".join(result.stdout.split())
    assert "--config-file FILE" in result.stdout
    assert "--data-dir DIR" in result.stdout


@pytest.mark.parametrize(("command", "script"), sorted(cli.SCRIPTS.items()))
def test_single_role_scripts_name_themselves(command, script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} ")
    description = cli.COMMANDS[command].description.split()
    assert " ".join(description[:5]) in " ".join(result.stdout.split())


def test_config_generator_help_and_default_to_stdout(tmp_path):
    result = run("alarmer-config-generator", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: alarmer-config-generator ")
    result = run("alarmer-config-generator", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[DEFAULT]" in result.stdout
    assert "#auth_mode = noauth" in result.stdout
    assert os.listdir(tmp_path) == []
    result = run("alarmer-config-generator", "out.conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "#auth_mode = noauth" in (tmp_path / "out.conf").read_text(
        encoding="utf-8"
    )


def test_apikey_roles_are_checked(tmp_path):
    data = str(tmp_path / "d")
    result = run(
        "alarmer",
        "apikey",
        "create",
        "--project-id",
        "p",
        "--user-id",
        "u",
        "--roles",
        "member,bogus",
        "--data-dir",
        data,
    )
    assert result.returncode == 2
    assert (
        "argument --roles: unknown role(s) bogus; use one or more of "
        "reader, member, admin, separated by commas"
    ) in result.stderr
    assert not os.path.exists(data)
    result = run(
        "alarmer",
        "apikey",
        "create",
        "--project-id",
        "p",
        "--user-id",
        "u",
        "--roles",
        "Reader, admin",
        "--data-dir",
        data,
    )
    assert result.returncode == 0, result.stderr
    result = run("alarmer", "apikey", "list", "--data-dir", data)
    assert "project=p user=u roles=admin,reader" in result.stdout


def test_dbsync_logs_no_alembic_internals(tmp_path):
    result = run("alarmer-dbsync", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert "alembic.runtime" not in result.stderr
    assert "database is up to date" in result.stderr
    result = run(
        "alarmer-dbsync", "--debug", "--data-dir", str(tmp_path / "d")
    )
    assert "alembic.runtime.migration" in result.stderr


def test_banner_lines_mask_passwords(tmp_path):
    conf = aconf.make_conf(
        overrides={
            "DEFAULT": {"data_dir": str(tmp_path)},
            "database": {
                "connection": "postgresql+psycopg://a:pw9@db.example/x"
            },
            "coordination": {"backend_url": "redis://:pw8@r.example:6379"},
        }
    )
    lines = cli.banner_lines(conf, ["/etc/alarmer/alarmer.conf"], ["api"])
    text = "\n".join(lines)
    assert "pw9" not in text
    assert "pw8" not in text
    assert lines == [
        f"alarmer {cli.__version__}",
        "config files: /etc/alarmer/alarmer.conf",
        f"data directory: {tmp_path}",
        "database: postgresql+psycopg://a:***@db.example/x",
        f"series storage: file {tmp_path / 'series'}",
        "coordination: redis://:***@r.example:6379",
        "metric channel: redis://:***@r.example:6379",
        "auth mode: noauth",
        "API address: http://127.0.0.1:8042/",
        "processes: api",
    ]


def test_sections_of_authentication_libraries_are_not_checked(tmp_path):
    conf = write(
        tmp_path / "ks.conf",
        "[keystone_authtoken]\nwww_authenticate_uri = http://ks:5000\n",
    )
    result = run("alarmer", "check-config", "--config-file", conf)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_expire_and_dbsync_show_their_progress_on_a_terminal(tmp_path):
    import pty

    conf = write(
        tmp_path / "a.conf", f"[DEFAULT]\ndata_dir = {tmp_path / 'data'}\n"
    )
    argv = [os.path.join(BIN, "alarmer"), "--config-file", conf, "expire"]
    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 1024)
        output.extend(data)
        return data

    status = pty.spawn(argv, read)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "expiring" in text and "batch" in text, text
    assert "history: 0" in text, text
    # dbsync shows its migration steps the same way.
    output.clear()
    fresh = write(
        tmp_path / "b.conf", f"[DEFAULT]\ndata_dir = {tmp_path / 'fresh'}\n"
    )
    status = pty.spawn(
        [os.path.join(BIN, "alarmer-dbsync"), "--config-file", fresh], read
    )
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "migrating" in text and "step" in text, text
    # Without a terminal (cron), no progress bar.
    plain = run("alarmer", "--config-file", conf, "expire")
    assert plain.returncode == 0, plain.stderr
    assert "expiring" not in plain.stderr
