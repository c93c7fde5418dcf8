"""The AsyncAPI document: valid AsyncAPI 3.0, and every intent on the bus is in it."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import intents
from bus import names
from experience.routes.asyncapi import render
from intents import REPLY_OF, Intent
from intents.asyncapi import document, intent_types

# The official AsyncAPI 3.0.0 JSON schema (npm @asyncapi/specs 6.11.1, Apache-2.0; see
# tests/schemas/README.md).
SCHEMA = Path(__file__).parents[1] / "schemas" / "asyncapi-3.0.0.json"


@cache
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def as_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as a client reads it (what the route serves)."""
    loaded: dict[str, Any] = json.loads(json.dumps(doc))
    return loaded


def errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message[:200]}" for e in validator().iter_errors(doc)]


def intent_subjects_in_names() -> set[str]:
    """Every concrete intent subject spelled in bus/names.py (wildcards are not intents)."""
    return {
        value
        for key, value in vars(names).items()
        if key.isupper()
        and isinstance(value, str)
        and value.startswith(("intents.", "credentials."))
        and not {"*", ">"} & set(value)
    }


def addresses(doc: dict[str, Any]) -> set[str]:
    return {c["address"] for c in doc["channels"].values() if c["address"] is not None}


def test_the_document_validates_against_the_asyncapi_3_schema() -> None:
    doc = as_json(document())
    assert doc["asyncapi"] == "3.0.0"
    assert errors(doc) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("operations", "VerifySession", "action"), "publish"),
        (("components", "messages", "VerifySession", "payload"), {"type": 5}),
        (("channels", "VerifySession", "address"), 42),
    ],
)
def test_the_schema_check_is_not_vacuous(path: tuple[str, ...], value: object) -> None:
    doc = copy.deepcopy(as_json(document()))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert errors(doc)


def test_every_intent_subject_of_bus_names_is_a_channel() -> None:
    subjects = intent_subjects_in_names()
    assert names.SESSION_VERIFY in subjects
    assert names.USER_AUTHENTICATE in subjects
    assert subjects <= addresses(document())


def test_every_intent_class_has_its_channel_operation_and_audit_record() -> None:
    doc = document()
    exported = {
        obj for obj in map(intents.__dict__.get, intents.__all__)
        if isinstance(obj, type) and issubclass(obj, Intent) and obj is not Intent
    }  # fmt: skip
    assert set(REPLY_OF) <= exported
    assert exported <= set(intent_types())
    audit = doc["channels"]["audit"]
    for intent in exported:
        name = intent.__name__
        assert doc["channels"][name]["address"] == intent.subject
        assert doc["operations"][name]["action"] == "receive"
        assert intent.subject in audit["parameters"]["subject"]["enum"]
        assert f"{name}Audit" in audit["messages"]
        headers = doc["components"]["messages"][f"{name}Audit"]["headers"]["properties"]
        assert set(headers) == {
            names.CORRELATION_HEADER, names.INTENT_ID_HEADER, names.OUTCOME_HEADER
        }  # fmt: skip
        message = doc["components"]["messages"][name]
        assert set(message["headers"]["properties"]) == {
            names.CORRELATION_HEADER, names.INTENT_ID_HEADER
        }  # fmt: skip
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        assert doc["components"]["schemas"][name]["title"] == name


def test_each_request_is_answered_by_its_reply_or_the_error_reply() -> None:
    doc = document()
    for intent, reply in REPLY_OF.items():
        answer = doc["operations"][intent.__name__]["reply"]
        channel = doc["channels"][answer["channel"]["$ref"].rsplit("/", 1)[-1]]
        assert set(channel["messages"]) == {reply.__name__, "ErrorReply"}
        assert reply.__name__ in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["ErrorReply"]
    assert error["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(doc["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message"}


def test_agent_work_is_answered_on_the_reply_subject_it_names() -> None:
    doc = document()
    reply = doc["operations"]["RunAgent"]["reply"]
    assert reply["address"]["location"] == "$message.payload#/reply_subject"
    replies = doc["channels"]["agentReplies"]
    assert replies["address"] == f"{names.AGENT_REPLIES_PREFIX}.{{gate}}.{{socket}}"
    assert set(replies["messages"]) == {"AgentEvent", "AgentResult"}
    assert doc["operations"]["sendAgentReplies"]["action"] == "send"


def test_a_password_is_marked_secret() -> None:
    password = document()["components"]["schemas"]["AuthenticateUser"]["properties"]["password"]
    assert password["writeOnly"] is True


def test_the_page_lists_every_subject_and_escapes_what_it_shows() -> None:
    page = render(document())
    for subject in intent_subjects_in_names():
        assert f"<code>{subject}</code>" in page
    for section in ("servers", "operations", "channels", "messages", "schemas"):
        assert f"id='{section}'" in page
    assert "<script" not in page
    hostile = copy.deepcopy(as_json(document()))
    hostile["info"]["description"] = "<script>alert(1)</script>"
    page = render(hostile)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
