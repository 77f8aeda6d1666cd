"""The code base stays ruff-clean (lint and format) and mypy-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _tool(name: str) -> str:
    # The one installed with this interpreter first: mypy must see the
    # packages (and stubs) installed beside it.
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        path = shutil.which(name) or path
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def _ruff() -> str:
    return _tool("ruff")


def test_ruff_check_is_clean():
    result = subprocess.run(
        [_ruff(), "check", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [_ruff(), "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    # Files, flags and per-module strictness: [tool.mypy] in
    # pyproject.toml.
    result = subprocess.run(
        [_tool("mypy"), "--no-color-output"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
