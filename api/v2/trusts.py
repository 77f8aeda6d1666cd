"""The Keystone trusts of ``trust+http(s)://`` actions, at save time.

In ``[api] auth_mode = keystone``, a ``trust+`` action saved without a
trust id gets one: alarmer creates a trust from the caller to its
service user, delegating the caller's roles on the alarm's project
(one trust per save, shared by the alarm's trust actions), and stores
``trust+http://<trust id>:delete@host/path``.  An action that names a
trust is kept as given once Keystone confirms that the trust is the
caller's delegation to alarmer's service user.  Answers never show
trust ids (:func:`scrub_alarm`): a client that reads an alarm and saves
it back sends the action without its trust id, and the stored action
with the same address keeps its trust.  Trusts alarmer created that an
update or a deletion leaves unused are deleted (:func:`release`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import flask

from alarmer.alarms import validation as rules
from alarmer.identity import trusts
from api import context, errors
from api.identity import Identity

LOG = logging.getLogger(__name__)

ACTION_FIELDS = ("ok_actions", "alarm_actions", "insufficient_data_actions")


def scrub_alarm(row: dict[str, Any]) -> dict[str, Any]:
    """*row* with the trust ids of its actions removed."""
    if not any(
        trusts.is_trust_url(url)
        for key in ACTION_FIELDS
        for url in row.get(key) or ()
    ):
        return row
    scrubbed = dict(row)
    for key in ACTION_FIELDS:
        if row.get(key) is not None:
            scrubbed[key] = [trusts.scrub(url) for url in row[key]]
    return scrubbed


def action_urls(row: dict[str, Any]) -> list[str]:
    """Every action URL of an alarm row or definition."""
    return [url for key in ACTION_FIELDS for url in row.get(key) or ()]


def _keystone() -> trusts.Keystone:
    try:
        return trusts.Keystone(context.runtime().conf)
    except trusts.TrustError as exc:
        LOG.error("trust+ actions are unavailable: %s", exc.message)
        raise errors.APIError(
            "trust+ actions are unavailable: alarmer's "
            "[service_credentials] are not usable",
            503,
        ) from exc


def _refused(field: str, what: str, exc: trusts.TrustError) -> Exception:
    if exc.status is not None and 400 <= exc.status < 500:
        return rules.RuleError(
            f"{field}: Keystone refused to {what} (HTTP {exc.status})", field
        )
    LOG.warning("Keystone could not %s: %s", what, exc.message)
    return errors.APIError(
        f"{field}: Keystone could not {what}; try again later", 503
    )


def _user_token(field: str) -> str:
    token = flask.request.headers.get("X-Auth-Token", "").strip()
    if not token:
        raise rules.RuleError(
            f"{field}: a trust+ action needs the caller's Keystone token",
            field,
        )
    return token


def _create(keystone: trusts.Keystone, identity: Identity, field: str) -> str:
    if identity.user_id is None or identity.project_id is None:
        raise rules.RuleError(
            f"{field}: a trust+ action needs a project-scoped token", field
        )
    try:
        return keystone.create_trust(
            _user_token(field),
            identity.user_id,
            identity.project_id,
            sorted(identity.roles),
        )
    except trusts.TrustError as exc:
        raise _refused(field, "create the trust", exc) from exc


def _check_given(
    keystone: trusts.Keystone, identity: Identity, field: str, url: str
) -> None:
    trust = trusts.trust_id(url)
    assert trust is not None
    try:
        found = keystone.get_trust(_user_token(field), trust)
        trustee = keystone.service_user_id()
    except trusts.TrustError as exc:
        raise _refused(field, "show the trust", exc) from exc
    if (
        found.get("trustor_user_id") != identity.user_id
        or found.get("trustee_user_id") != trustee
    ):
        raise rules.RuleError(
            f"{field}: the trust of a trust+ action must delegate the "
            "caller's roles to alarmer's service user",
            field,
        )


def resolve(
    identity: Identity,
    values: dict[str, Any],
    stored: Iterable[str] = (),
) -> list[str]:
    """Give the trust actions of *values* their trusts, in place.

    :param stored: the action URLs of the alarm being replaced: an
        action sent back without its trust id keeps its stored trust.
    :returns: the ids of the trusts created (to delete if the save
        fails).
    :raises api.errors.APIError: Keystone refused (400) or was not
        reached (503).
    """
    stored = list(stored)
    previous = {
        trusts.scrub(url): url for url in stored if trusts.trust_id(url)
    }
    keystone: trusts.Keystone | None = None
    created: str | None = None
    for key in ACTION_FIELDS:
        urls = list(values.get(key) or ())
        changed = False
        for index, url in enumerate(urls):
            if not trusts.is_trust_url(url):
                continue
            field = f"{key}[{index}]"
            if trusts.trust_id(url) is not None:
                if url not in stored:
                    keystone = keystone or _keystone()
                    _check_given(keystone, identity, field, url)
                continue
            if url in previous:
                urls[index] = previous[url]
            else:
                if created is None:
                    keystone = keystone or _keystone()
                    created = _create(keystone, identity, field)
                urls[index] = trusts.with_trust(url, created)
            changed = True
        if changed:
            values[key] = rules.dedupe(urls)
    return [created] if created is not None else []


def release(trust_ids: Iterable[str]) -> None:
    """Delete the trusts alarmer created that are no longer used.

    The alarm is already saved or deleted: a trust Keystone does not
    delete now is logged, not answered as an error.
    """
    pending = sorted(set(trust_ids))
    if not pending:
        return
    try:
        keystone = trusts.Keystone(context.runtime().conf)
    except trusts.TrustError as exc:
        LOG.error("cannot delete %d trust(s): %s", len(pending), exc.message)
        return
    for trust in pending:
        try:
            keystone.delete_trust(trust)
        except trusts.TrustError as exc:
            LOG.error("a trust of a deleted action stays: %s", exc.message)


def unused(before: Iterable[str], after: Iterable[str]) -> set[str]:
    """Trusts alarmer created in *before* that *after* no longer uses."""
    return trusts.owned_trusts(before) - {
        t for t in (trusts.trust_id(url) for url in after) if t is not None
    }
