"""The README's examples run as written, top to bottom.

Every ``sh`` block of ``README.md`` is preceded by a marker comment:
``<!-- readme-test: run -->`` (run here), ``<!-- readme-test: file NAME
-->`` on a block whose text is saved as NAME first, or ``<!--
readme-test: skip (reason) -->``.  The blocks to run are joined into one
bash script (``set -e``: the first failing command fails the test) and
run in an empty directory holding a ``.venv`` link to the Python running
the tests, with ``HOME`` there (so the default data directory is fresh),
against the real console scripts.  The only changes made to the text:
the ports (8042, 8100) are replaced by free ones, and ``alarmer serve``
is given ``--port`` with the free one, so that the test never takes
the default port of a service running on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
README = os.path.join(ROOT, "README.md")

BLOCK = re.compile(
    r"^(?P<indent>[ ]*)<!-- readme-test: (?P<kind>run|skip|file)"
    r"(?P<arg>[^>]*?)-->\n"
    r"(?P=indent)```(?P<lang>\w+)\n(?P<body>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)


def blocks() -> list[tuple[str, str, str, str]]:
    """``(kind, argument, language, text)`` of every marked block."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    found = []
    for match in BLOCK.finditer(text):
        indent = match["indent"]
        body = "".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match["body"].splitlines(keepends=True)
        )
        found.append(
            (match["kind"], match["arg"].strip(), match["lang"], body)
        )
    return found


def test_every_shell_block_is_marked():
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    shell = len(re.findall(r"^[ ]*```sh$", text, re.MULTILINE))
    marked = [b for b in blocks() if b[2] == "sh"]
    assert len(marked) == shell, "a sh block of README.md has no marker"
    assert [b for b in marked if b[0] == "run"], "nothing to run"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_examples_run_as_written(tmp_path):
    ports = {"8042": str(_free_port()), "8100": str(_free_port())}

    def localize(text: str) -> str:
        for old, new in ports.items():
            text = re.sub(rf"\b{old}\b", new, text)
        return text.replace(
            "alarmer serve", f"alarmer serve --port {ports['8042']}"
        )

    # Not README text: stop what the examples left running if one fails.
    script = [
        "set -e -o pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    ]
    for kind, arg, _lang, body in blocks():
        if kind == "file":
            (tmp_path / arg).write_text(localize(body), encoding="utf-8")
        elif kind == "run":
            script.append(localize(body))
    os.symlink(
        os.path.dirname(os.path.dirname(sys.executable)), tmp_path / ".venv"
    )
    env = dict(os.environ, HOME=str(tmp_path))
    log = tmp_path / "examples.log"
    with open(log, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(
            "README examples still running after 10 min:\n"
            + log.read_text(encoding="utf-8")
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, out
    # The measures example's answer, the fresh default data directory,
    # the autoscaler's scaling.
    assert re.search(r"2024-03-01T12:00:00\+00:00 \|\s+60\.0 \|\s+43\.0", out)
    assert (tmp_path / ".local/share/alarmer/alarmer.sqlite").exists()
    assert "alarm 3 instances" in out, out
