"""The permission table itself: every intent has a sender, every send has the runtime behind it,
and the invariants no allow may undo."""

from __future__ import annotations

import pytest

from bus import names
from bus.permissions import (
    ADMIN_SENDS,
    EXPERIENCE_SENDS,
    INSPECTOR_SENDS,
    PERMISSIONS,
    RUNTIME_ONLY_PUBLISH,
    SERVED_BY_RUNTIME,
    Role,
    authorization,
)
from intents import REPLY_OF


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    wanted, given = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(given) > i
        if i >= len(given) or (token != "*" and token != given[i]):
            return False
    return len(wanted) == len(given)


def may_publish(role: Role, subject: str) -> bool:
    rules = PERMISSIONS[role]
    allowed = any(matches(p, subject) for p in rules.publish)
    return allowed and not any(matches(p, subject) for p in rules.publish_deny)


def test_every_intent_has_a_sender_and_the_runtime_behind_it() -> None:
    sends = {*EXPERIENCE_SENDS, *ADMIN_SENDS, *INSPECTOR_SENDS}
    subjects = {intent.subject for intent in REPLY_OF}
    assert subjects <= sends, f"nobody may send {subjects - sends}: decide who in bus/permissions"
    for subject in sends:
        assert any(matches(p, subject) for p in SERVED_BY_RUNTIME), subject


@pytest.mark.parametrize("role", [Role.EXPERIENCE, Role.ADMIN, Role.INSPECTOR])
@pytest.mark.parametrize(
    "subject",
    [
        "$KV.sessions.abc",
        "$KV.users.admin",
        "audit.intents.session.create",
        "agent.replies.gate.socket",
        "$JS.API.DIRECT.GET.KV_users.$KV.users.admin",
        "$JS.API.STREAM.INFO.KV_users",
        "$JS.API.STREAM.MSG.GET.KV_users",
        "$JS.API.STREAM.DELETE.INTENTS",
        "$JS.API.STREAM.PURGE.KV_sessions",
        "$JS.API.CONSUMER.CREATE.KV_users",
    ],
)
def test_only_the_runtime_writes_state_or_reads_users(role: Role, subject: str) -> None:
    assert not may_publish(role, subject)
    assert any(matches(p, subject) for p in RUNTIME_ONLY_PUBLISH)


def test_the_inspector_sends_ping_only_and_reads_no_credentials() -> None:
    intents = {i.subject for i in REPLY_OF}
    assert {s for s in intents if may_publish(Role.INSPECTOR, s)} == {names.SYSTEM_PING}
    assert "credentials.>" in PERMISSIONS[Role.INSPECTOR].subscribe_deny
    assert not any(s.startswith("credentials.") for s in PERMISSIONS[Role.INSPECTOR].subscribe)


def test_the_experience_sends_no_admin_intent() -> None:
    for subject in (names.USER_CREATE, names.USER_LIST, names.USER_REMOVE):
        assert not may_publish(Role.EXPERIENCE, subject)


def test_each_role_receives_replies_on_its_own_inbox_only() -> None:
    prefixes = [PERMISSIONS[role].inbox_prefix for role in Role]
    assert len(set(prefixes)) == len(prefixes)
    for role in Role:
        own = f"{PERMISSIONS[role].inbox_prefix}.>"
        assert own in PERMISSIONS[role].subscribe
        others = [f"{PERMISSIONS[r].inbox_prefix}.x.y" for r in Role if r is not role]
        for inbox in others:
            assert not any(matches(p, inbox) for p in PERMISSIONS[role].subscribe), (role, inbox)


def test_the_runtime_serves_in_its_queue_group_and_replies_to_every_caller() -> None:
    runtime = PERMISSIONS[Role.RUNTIME]
    assert runtime.subscribe[:2] == ("intents.> runtime", "credentials.> runtime")
    for caller in Role:
        inbox = f"{PERMISSIONS[caller].inbox_prefix}.abc.def"
        assert may_publish(Role.RUNTIME, inbox), caller
    # Nobody else may answer anyone.
    for role in (Role.EXPERIENCE, Role.ADMIN, Role.INSPECTOR):
        for caller in Role:
            assert not may_publish(role, f"{PERMISSIONS[caller].inbox_prefix}.abc.def")


def test_the_server_configuration_names_every_role_and_no_anonymous_user() -> None:
    config = authorization({role: f"pw-{role.value}" for role in Role})
    assert [u["user"] for u in config["users"]] == [r.value for r in Role]
    assert "no_auth_user" not in config


def may_subscribe(role: Role, subject: str) -> bool:
    rules = PERMISSIONS[role]
    allowed = any(matches(p.split(" ")[0], subject) for p in rules.subscribe)
    return allowed and not any(matches(p, subject) for p in rules.subscribe_deny)


@pytest.mark.parametrize("verb", ["PING", "INFO", "STATS"])
def test_every_worker_answers_the_service_protocol_and_the_inspector_asks(verb: str) -> None:
    service = names.RUNTIME_SERVICE
    forms = [f"$SRV.{verb}", f"$SRV.{verb}.{service}", f"$SRV.{verb}.{service}.abc123"]
    for subject in forms:
        assert may_subscribe(Role.RUNTIME, subject), subject
        assert may_publish(Role.INSPECTOR, subject), subject
        for role in (Role.EXPERIENCE, Role.ADMIN):
            assert not may_publish(role, subject), (role, subject)
            assert not may_subscribe(role, subject), (role, subject)
    # Every worker answers for itself: no queue group on the control subjects.
    assert not any(p.startswith("$SRV") and " " in p for p in PERMISSIONS[Role.RUNTIME].subscribe)
    # Nothing of another service, and the answers go to the inspector's (default) inbox.
    assert not may_subscribe(Role.RUNTIME, f"$SRV.{verb}.other-service")
    assert may_publish(Role.RUNTIME, f"{PERMISSIONS[Role.INSPECTOR].inbox_prefix}.abc.def")
