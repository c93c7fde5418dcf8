"""The AsyncAPI 3.0 document of the bus, generated from the intents themselves.

It describes the runtime: every intent it receives (subject, payload schema, headers), the
reply of each request-reply intent (its ``...Reply`` or the ``ErrorReply``), the audit record
it publishes for each intent it executes, and the events and result of agent work. Schemas are
pydantic's JSON schemas of the models, so the document cannot drift from the code: an intent
class added to ``intents`` appears here without anyone editing this module.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bus import names
from intents import REPLY_OF
from intents.agent import AgentEvent, AgentResult, RunAgent
from intents.base import ErrorReply, Intent

ASYNCAPI_VERSION: Final = "3.0.0"
CONTENT_TYPE: Final = "application/json"
SERVER: Final = "bus"
AUDIT_CHANNEL: Final = "audit"
AGENT_REPLIES_CHANNEL: Final = "agentReplies"
AUDIT_SUFFIX: Final = "Audit"
REPLY_SUFFIX: Final = ".reply"

_ID_HEADERS = {
    names.CORRELATION_HEADER: {
        "type": "string",
        "description": "The caller's correlation id: one per HTTP request or socket frame.",
    },
    names.INTENT_ID_HEADER: {"type": "string", "description": "The intent's own id."},
}
_OUTCOME_HEADER = {
    names.OUTCOME_HEADER: {
        "type": "string",
        "description": "How the intent ended: 'ok', 'cancelled', or the error reply's code.",
    }
}


def intent_types() -> list[type[Intent]]:
    """Every concrete intent class (one with a subject), in subject order."""
    found: dict[str, type[Intent]] = {}
    pending: list[type[Intent]] = [Intent]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "subject" in vars(cls):
            found[cls.__name__] = cls
    return sorted(found.values(), key=lambda cls: cls.subject)


def _headers(properties: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def _ref(*path: str) -> dict[str, str]:
    # JSON pointer: "/" and "~" inside a key are escaped (channel ids hold dots, never slashes).
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _message(model: type[BaseModel], headers: dict[str, Any], summary: str) -> dict[str, Any]:
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": summary,
        "description": (model.__doc__ or "").strip(),
        "contentType": CONTENT_TYPE,
        "headers": headers,
        "payload": _ref("components", "schemas", model.__name__),
    }


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model's JSON schema, nested models included, under ``components/schemas``."""
    _, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    return dict(sorted(top.get("$defs", {}).items()))


def _info() -> dict[str, Any]:
    try:
        release = version("symphainy")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "0.0.0"
    return {
        "title": "symphainy intents",
        "version": release,
        "description": (
            "Typed intents on NATS: the Experience Plane (and the admin CLI) send them, the "
            "runtime workers (queue group 'runtime') execute them. Intents carrying a password "
            "travel on 'credentials.*', outside 'intents.>'. Every executed intent is recorded, "
            "secrets redacted, on 'audit.<subject>' (the INTENTS stream)."
        ),
    }


@cache
def document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document, as JSON-ready data (built once)."""
    intents = intent_types()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    audit_messages: dict[str, Any] = {}
    for intent in intents:
        name = intent.__name__
        messages[name] = _message(intent, _headers(_ID_HEADERS), f"Intent on {intent.subject}")
        audit_name = f"{name}{AUDIT_SUFFIX}"
        audit_messages[audit_name] = _ref("components", "messages", audit_name)
        messages[audit_name] = _message(
            intent,
            _headers(_ID_HEADERS | _OUTCOME_HEADER),
            f"Audit record of {name}: its fields, every secret replaced by '[redacted]'",
        )
        channels[name] = {
            "address": intent.subject,
            "title": name,
            "messages": {name: _ref("components", "messages", name)},
        }
        operation: dict[str, Any] = {
            "action": "receive",
            "title": name,
            "summary": (intent.__doc__ or name).strip().splitlines()[0],
            "channel": _ref("channels", name),
            "messages": [_ref("channels", name, "messages", name)],
        }
        reply = REPLY_OF.get(intent)
        if reply is not None:
            operation["reply"] = _request_reply(name, reply, channels, messages)
        elif intent is RunAgent:
            operation["reply"] = {
                "address": {
                    "description": "The socket's reply subject, given in the intent.",
                    "location": "$message.payload#/reply_subject",
                },
                "channel": _ref("channels", AGENT_REPLIES_CHANNEL),
            }
        operations[name] = operation
    channels[AUDIT_CHANNEL] = {
        "address": f"{names.AUDIT_PREFIX}{{subject}}",
        "title": "Audit log",
        "description": "Each intent a runtime executed, with its outcome; kept by JetStream "
        f"stream {names.INTENTS_STREAM}.",
        "parameters": {
            "subject": {
                "enum": [intent.subject for intent in intents],
                "description": "The subject the intent was sent on.",
            }
        },
        "messages": audit_messages,
    }
    operations["recordAudit"] = {
        "action": "send",
        "title": "Record an executed intent",
        "channel": _ref("channels", AUDIT_CHANNEL),
        "messages": [_ref("channels", AUDIT_CHANNEL, "messages", m) for m in audit_messages],
    }
    _agent_replies(channels, operations, messages)
    models: list[type[BaseModel]] = [*intents, *REPLY_OF.values(), ErrorReply]
    models += [AgentEvent, AgentResult]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(),
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            SERVER: {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "symphainy up's embedded NATS by default; every client "
                "authenticates as its role (runtime, experience, admin, inspector).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas(models)},
    }


def _request_reply(
    name: str, reply: type[BaseModel], channels: dict[str, Any], messages: dict[str, Any]
) -> dict[str, Any]:
    """The reply of a request-reply intent: its reply model or the typed error, on the inbox."""
    reply_channel = f"{name}{REPLY_SUFFIX}"
    error = ErrorReply.__name__
    messages[reply.__name__] = _message(reply, _headers({}), f"Success reply to {name}")
    messages.setdefault(error, _message(ErrorReply, _headers({}), "A typed error reply"))
    channels[reply_channel] = {
        "address": None,
        "title": f"Reply to {name}",
        "description": "The requester's reply inbox (NATS request-reply).",
        "messages": {
            reply.__name__: _ref("components", "messages", reply.__name__),
            error: _ref("components", "messages", error),
        },
    }
    return {
        "channel": _ref("channels", reply_channel),
        "messages": [
            _ref("channels", reply_channel, "messages", reply.__name__),
            _ref("channels", reply_channel, "messages", error),
        ],
    }


def _agent_replies(
    channels: dict[str, Any], operations: dict[str, Any], messages: dict[str, Any]
) -> None:
    """Events and the result of agent work, sent to the gate that holds the socket."""
    replies: tuple[type[BaseModel], ...] = (AgentEvent, AgentResult)
    for model, summary in zip(replies, ("Progress of an agent run", "Its end"), strict=True):
        messages[model.__name__] = _message(model, _headers(_ID_HEADERS), summary)
    channels[AGENT_REPLIES_CHANNEL] = {
        "address": f"{names.AGENT_REPLIES_PREFIX}.{{gate}}.{{socket}}",
        "title": "Agent replies",
        "parameters": {
            "gate": {"description": "The Experience Plane process holding the socket."},
            "socket": {"description": "The socket the work came from."},
        },
        "messages": {m.__name__: _ref("components", "messages", m.__name__) for m in replies},
    }
    operations["sendAgentReplies"] = {
        "action": "send",
        "title": "Send agent events and results",
        "channel": _ref("channels", AGENT_REPLIES_CHANNEL),
        "messages": [
            _ref("channels", AGENT_REPLIES_CHANNEL, "messages", m.__name__) for m in replies
        ],
    }
