"""The code base stays ruff-clean (lint and format)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _ruff() -> str:
    path = shutil.which("ruff") or os.path.join(
        os.path.dirname(sys.executable), "ruff"
    )
    if not os.path.exists(path):
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return path


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
