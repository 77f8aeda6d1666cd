"""Who may do what: roles, projects, admin, quotas, API keys."""

from __future__ import annotations

import datetime as dt

import pytest

from alarmer import timeutils
from alarmer.identity import apikeys
from api.app import create_app
from tests.functional.v2_helpers import (
    ADMIN,
    MEMBER,
    NOROLE,
    OTHER,
    READER,
    alarm_body,
    assert_envelope,
    count_alarms,
)


@pytest.fixture
def alarm(client):
    response = client.post("/v2/alarms", json=alarm_body(), headers=MEMBER)
    assert response.status_code == 201
    return response.get_json()


def test_reader_reads_but_cannot_write(client, alarm):
    alarm_id = alarm["alarm_id"]
    assert (
        client.get(f"/v2/alarms/{alarm_id}", headers=READER).status_code == 200
    )
    assert len(client.get("/v2/alarms", headers=READER).get_json()) == 1
    assert (
        client.get(
            f"/v2/alarms/{alarm_id}/history", headers=READER
        ).status_code
        == 200
    )
    assert_envelope(
        client.post("/v2/alarms", json=alarm_body(), headers=READER),
        403,
        "RBAC Authorization Failed",
    )
    assert_envelope(
        client.put(
            f"/v2/alarms/{alarm_id}", json=alarm_body("x"), headers=READER
        ),
        403,
    )
    assert_envelope(
        client.put(f"/v2/alarms/{alarm_id}/state", json="ok", headers=READER),
        403,
    )
    assert_envelope(
        client.delete(f"/v2/alarms/{alarm_id}", headers=READER), 403
    )
    got = client.get(f"/v2/alarms/{alarm_id}", headers=MEMBER).get_json()
    assert got == alarm
    assert count_alarms(client) == 1


def test_no_role_cannot_even_read(client, alarm):
    assert_envelope(client.get("/v2/alarms", headers=NOROLE), 403)
    assert_envelope(
        client.get(f"/v2/alarms/{alarm['alarm_id']}", headers=NOROLE), 403
    )


def test_other_project_sees_and_touches_nothing(client, alarm):
    alarm_id = alarm["alarm_id"]
    assert client.get("/v2/alarms", headers=OTHER).get_json() == []
    assert_envelope(client.get(f"/v2/alarms/{alarm_id}", headers=OTHER), 404)
    assert_envelope(
        client.get(f"/v2/alarms/{alarm_id}/state", headers=OTHER), 404
    )
    assert_envelope(
        client.get(f"/v2/alarms/{alarm_id}/history", headers=OTHER), 404
    )
    assert_envelope(
        client.put(
            f"/v2/alarms/{alarm_id}", json=alarm_body("stolen"), headers=OTHER
        ),
        404,
    )
    assert_envelope(
        client.put(f"/v2/alarms/{alarm_id}/state", json="ok", headers=OTHER),
        404,
    )
    assert_envelope(
        client.delete(f"/v2/alarms/{alarm_id}", headers=OTHER), 404
    )
    assert_envelope(
        client.get("/v2/alarms?q.field=project_id&q.value=p1", headers=OTHER),
        401,
        "Not Authorized to access project p1",
    )
    assert_envelope(
        client.get(
            "/v2/alarms?q.field=all_projects&q.value=true", headers=OTHER
        ),
        403,
    )
    found = client.post(
        "/v2/query/alarms",
        json={"filter": '{"=": {"project_id": "p1"}}'},
        headers=OTHER,
    ).get_json()
    assert found == []
    history = client.post(
        "/v2/query/alarms/history", json={}, headers=OTHER
    ).get_json()
    assert history == []
    # Nothing changed.
    assert (
        client.get(f"/v2/alarms/{alarm_id}", headers=MEMBER).get_json()
        == alarm
    )


def test_admin_scoping(client, alarm):
    alarm_id = alarm["alarm_id"]
    # Own project by default, every project on request.
    assert client.get("/v2/alarms", headers=ADMIN).get_json() == []
    listed = client.get(
        "/v2/alarms?q.field=all_projects&q.value=true", headers=ADMIN
    ).get_json()
    assert [a["alarm_id"] for a in listed] == [alarm_id]
    listed = client.get(
        "/v2/alarms?q.field=project_id&q.value=p1", headers=ADMIN
    ).get_json()
    assert [a["alarm_id"] for a in listed] == [alarm_id]
    assert (
        client.get(f"/v2/alarms/{alarm_id}", headers=ADMIN).status_code == 200
    )
    response = client.put(
        f"/v2/alarms/{alarm_id}/state", json="alarm", headers=ADMIN
    )
    assert response.get_json() == "alarm"
    history = client.get(
        f"/v2/alarms/{alarm_id}/history", headers=MEMBER
    ).get_json()
    assert history[0]["user_id"] == "admin"
    assert history[0]["on_behalf_of"] == "p1"
    assert (
        client.delete(f"/v2/alarms/{alarm_id}", headers=ADMIN).status_code
        == 204
    )


def test_member_cannot_claim_another_user(client, alarm):
    response = client.put(
        f"/v2/alarms/{alarm['alarm_id']}",
        json=alarm_body(user_id="someone"),
        headers=MEMBER,
    )
    assert_envelope(response, 401, "Not Authorized to access user someone")


def test_quotas_count_the_project_alarms(client):
    assert client.get("/v2/quotas", headers=MEMBER).get_json() == {
        "project_id": "p1",
        "quotas": [{"resource": "alarms", "limit": -1}],
    }
    body = {"project_id": "p1", "quotas": [{"resource": "alarms", "limit": 2}]}
    assert_envelope(client.post("/v2/quotas", json=body, headers=MEMBER), 403)
    response = client.post("/v2/quotas", json=body, headers=ADMIN)
    assert response.status_code == 201
    assert response.get_json()["quotas"] == [
        {"resource": "alarms", "limit": 2}
    ]
    other_user = {**MEMBER, "X-User-Id": "u7"}
    assert (
        client.post(
            "/v2/alarms", json=alarm_body("1"), headers=MEMBER
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/v2/alarms", json=alarm_body("2"), headers=other_user
        ).status_code
        == 201
    )
    assert_envelope(
        client.post("/v2/alarms", json=alarm_body("3"), headers=other_user),
        403,
        "Alarm quota exceeded for user u7 on project p1",
    )
    assert count_alarms(client) == 2
    # Another project is not affected.
    assert (
        client.post("/v2/alarms", json=alarm_body(), headers=OTHER).status_code
        == 201
    )
    assert_envelope(
        client.get("/v2/quotas?project_id=p2", headers=MEMBER),
        401,
        "Not Authorized to access project p2",
    )
    assert client.delete("/v2/quotas/p1", headers=ADMIN).status_code == 204
    assert (
        client.post(
            "/v2/alarms", json=alarm_body("3"), headers=MEMBER
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (
            {"project_id": "p1", "quotas": [{"resource": "cpus", "limit": 1}]},
            ["resource"],
        ),
        (
            {
                "project_id": "p1",
                "quotas": [{"resource": "alarms", "limit": -2}],
            },
            ["limit"],
        ),
        (
            {
                "project_id": "p1",
                "quotas": [{"resource": "alarms", "limit": 1.5}],
            },
            ["limit"],
        ),
        ({"quotas": []}, ["project_id"]),
    ],
)
def test_bad_quota_is_rejected_and_nothing_stored(client, body, needles):
    assert_envelope(
        client.post("/v2/quotas", json=body, headers=ADMIN), 400, *needles
    )
    quotas = client.get("/v2/quotas?project_id=p1", headers=ADMIN).get_json()
    assert quotas["quotas"] == [{"resource": "alarms", "limit": -1}]


def test_configured_project_quota(make_conf, db_url):
    from alarmer import runtime

    conf = make_conf(
        database={"connection": db_url}, api={"project_alarm_quota": 1}
    )
    rt = runtime.build(conf, migrate=True)
    try:
        client = create_app(rt).test_client()
        assert (
            client.post(
                "/v2/alarms", json=alarm_body(), headers=MEMBER
            ).status_code
            == 201
        )
        assert_envelope(
            client.post("/v2/alarms", json=alarm_body(), headers=MEMBER), 403
        )
        assert client.get("/v2/quotas", headers=MEMBER).get_json()[
            "quotas"
        ] == [{"resource": "alarms", "limit": 1}]
    finally:
        rt.close()


def test_noauth_refuses_remote_peers(client):
    response = client.get(
        "/v2/alarms", headers=MEMBER, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert_envelope(response, 401, "noauth")


@pytest.fixture
def apikey_app(make_conf, db_url):
    from alarmer import runtime

    conf = make_conf(
        database={"connection": db_url}, api={"auth_mode": "apikey"}
    )
    rt = runtime.build(conf, migrate=True)
    try:
        yield rt, create_app(rt).test_client()
    finally:
        rt.close()


def test_apikey_mode(apikey_app):
    rt, client = apikey_app
    key, info = apikeys.create(
        rt.db, project_id="pk", user_id="uk", roles=["member"]
    )
    stored = apikeys.list_keys(rt.db)
    assert [k.key_id for k in stored] == [info.key_id]
    # The secret is stored hashed only.
    assert key not in repr(stored)
    # Headers alone are not trusted.
    assert_envelope(client.get("/v2/alarms", headers=ADMIN), 401, "API key")
    bearer = {"Authorization": f"Bearer {key}"}
    response = client.post("/v2/alarms", json=alarm_body(), headers=bearer)
    assert response.status_code == 201
    doc = response.get_json()
    assert (doc["project_id"], doc["user_id"]) == ("pk", "uk")
    # X-Auth-Token works too (OpenStack clients send it).
    listed = client.get("/v2/alarms", headers={"X-Auth-Token": key}).get_json()
    assert [a["alarm_id"] for a in listed] == [doc["alarm_id"]]
    assert_envelope(
        client.get(
            "/v2/alarms", headers={"Authorization": "Bearer alk_nope_x"}
        ),
        401,
    )
    assert apikeys.revoke(rt.db, info.key_id)
    assert_envelope(client.get("/v2/alarms", headers=bearer), 401, "revoked")


def test_expired_apikey_is_refused(apikey_app):
    rt, client = apikey_app
    past = timeutils.utcnow() - dt.timedelta(seconds=1)
    key, _ = apikeys.create(
        rt.db, project_id="pk", user_id="uk", roles=["reader"], expires_at=past
    )
    assert_envelope(
        client.get("/v2/alarms", headers={"X-Auth-Token": key}), 401
    )
    reader_key, _ = apikeys.create(
        rt.db, project_id="pk", user_id="uk", roles=["reader"]
    )
    headers = {"X-Auth-Token": reader_key}
    assert client.get("/v2/alarms", headers=headers).status_code == 200
    assert_envelope(
        client.post("/v2/alarms", json=alarm_body(), headers=headers), 403
    )
