"""Fixtures shared by the functional tests: the headless browser.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``), installed
when missing and when running as root (as CI does); Playwright comes
from PyPI and is pointed at that executable.  Without a browser the
tests using it skip, except under ``ALARMER_REQUIRE_BACKENDS=1`` or
``CI``, where they fail.  One browser serves the whole run (Playwright's
synchronous API allows one instance per thread).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _required() -> bool:
    return bool(os.environ.get("ALARMER_REQUIRE_BACKENDS")) or bool(
        os.environ.get("CI")
    )


def _install_chromium() -> None:
    if os.path.exists(CHROMIUM) or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "update", "-q"], check=False, env=env, timeout=600
    )
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"],
        check=False,
        env=env,
        timeout=1200,
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _required():
            raise
        pytest.skip("playwright is not installed")
    _install_chromium()
    if not os.path.exists(CHROMIUM):
        if _required():
            pytest.fail(f"{CHROMIUM} is missing and could not be installed")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> str:
    """Where screenshots are kept."""
    path = os.environ.get("ALARMER_TEST_ARTIFACTS") or os.path.join(
        ROOT, "test-artifacts"
    )
    os.makedirs(path, exist_ok=True)
    return path
