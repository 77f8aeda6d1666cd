"""Property-based requests built from the OpenAPI document.

Every operation of ``/openapi.json`` gets generated requests (valid and
invalid bodies, query and path parameters), sent in process to the WSGI
application on a migrated SQLite runtime, as a reader, a member and an
administrator (noauth headers).  Each answer must be no 5xx, carry a
status the document lists for the operation, and match the documented
schema.  The run is bounded (a fixed number of examples per operation,
role and mode, derandomized so that CI sees the same requests every
time) and the figures are recorded in ``docs/reliability.md``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.functional.v2_helpers import ADMIN, MEMBER, READER, alarm_body

LOG = logging.getLogger(__name__)

#: Examples per operation, role and generation mode.
MAX_EXAMPLES = 6
ROLES = {"reader": READER, "member": MEMBER, "admin": ADMIN}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_app(sqlite_rt) -> Iterator[Any]:
    """The application with a little data for the reads to find.

    The requests come from no network peer: noauth trusts them as the
    local host's.
    """
    sqlite_rt.conf.set_override("noauth_allow_remote", True, group="api")
    app = create_app(sqlite_rt)
    client = app.test_client()
    created = client.post(
        "/v1/metric", json={"archive_policy_name": "low"}, headers=MEMBER
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    client.post(
        "/v1/resource/generic",
        json={"id": "r1", "metrics": {"cpu": {"archive_policy_name": "low"}}},
        headers=MEMBER,
    )
    assert (
        client.post("/v2/alarms", json=alarm_body(), headers=MEMBER)
    ).status_code == 201
    yield app


def _run(operation: Any, headers: dict[str, str], mode: GenerationMode):
    """Send the examples of one operation; the failures and the count."""
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:
            failures.append(f"{operation.label} [{mode.value}]: {exc}")

    try:
        send()
    except Unsatisfiable:
        # Nothing to make invalid (no parameter, no body): no example.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures, statuses


@pytest.mark.slow
def test_no_operation_answers_5xx_or_off_document(fuzz_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    for operation in operations:
        for headers in ROLES.values():
            for mode in MODES:
                found, seen = _run(operation, headers, mode)
                failures.extend(found)
                statuses.update(seen)
    elapsed = time.monotonic() - started
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    LOG.warning(
        "fuzz: %d operations, %d requests in %.0f s, statuses %s, "
        "5xx %d, failures %d",
        len(operations),
        sum(statuses.values()),
        elapsed,
        dict(sorted(statuses.items())),
        server_errors,
        len(failures),
    )
    assert len(operations) == 60
    assert server_errors == 0
    assert not failures, "\n\n".join(failures[:10])
