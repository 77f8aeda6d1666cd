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
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.functional.v2_helpers import ADMIN, MEMBER, READER, alarm_body

LOG = logging.getLogger(__name__)

#: Examples per operation, role and generation mode (and again with the
#: path parameters naming the stored objects).
MAX_EXAMPLES = 5
ROLES = {"reader": READER, "member": MEMBER, "admin": ADMIN}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_app(sqlite_rt) -> Iterator[tuple[Any, dict[str, str]]]:
    """The application with a little data for the requests to find.

    Yields the application and the ids of what is stored.  The requests
    come from no network peer: noauth trusts them as the local host's.
    """
    sqlite_rt.conf.set_override("noauth_allow_remote", True, group="api")
    app = create_app(sqlite_rt)
    client = app.test_client()

    def post(path: str, body: Any, headers=MEMBER) -> Any:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    metric = post("/v1/metric", {"archive_policy_name": "low"})
    post(
        "/v1/resource/generic",
        {"id": "r1", "metrics": {"cpu": {"archive_policy_name": "low"}}},
    )
    policy = {
        "name": "spare",
        "definition": [{"granularity": 60, "points": 5}],
    }
    post("/v1/archive_policy", policy, ADMIN)
    rule = {
        "name": "spare",
        "archive_policy_name": "spare",
        "metric_pattern": "spare.*",
    }
    post("/v1/archive_policy_rule", rule, ADMIN)
    post("/v1/resource_type", {"name": "spare"}, ADMIN)
    alarm = post("/v2/alarms", alarm_body())
    yield (
        app,
        {
            "metric_id": metric["id"],
            "alarm_id": alarm["alarm_id"],
            "resource_id": "r1",
            "project_id": "p1",
            "delivery_id": "1",
        },
    )


def _known(path: str, ids: dict[str, str]) -> dict[str, str]:
    """Path parameters of *path* naming stored objects."""
    known = dict(ids)
    if path.startswith("/v1/resource/"):
        known |= {"type_name": "generic", "name": "cpu"}
    else:
        known |= {"type_name": "generic", "name": "spare"}
    return {
        key: value for key, value in known.items() if "{" + key + "}" in path
    }


def _run(
    operation: Any,
    headers: dict[str, str],
    mode: GenerationMode,
    path_parameters: dict[str, str] | None = None,
):
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
    @given(
        case=operation.as_strategy(
            generation_mode=mode, path_parameters=path_parameters
        )
    )
    def send(case: Any) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:
            failures.append(f"{operation.label} [{mode.value}]: {exc}")

    try:
        send()
    except Unsatisfiable:
        # Nothing to make invalid (no parameter, no body): no example.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures, statuses


@pytest.mark.slow
def test_no_operation_answers_5xx_or_off_document(fuzz_app):
    app, ids = fuzz_app
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    for operation in operations:
        known = _known(operation.path, ids)
        for headers in ROLES.values():
            runs = [(mode, None) for mode in MODES]
            if known:
                runs.append((GenerationMode.POSITIVE, known))
            for mode, path_parameters in runs:
                found, seen = _run(operation, headers, mode, path_parameters)
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
    assert len(operations) == 71
    assert server_errors == 0
    assert not failures, "\n\n".join(failures[:10])
