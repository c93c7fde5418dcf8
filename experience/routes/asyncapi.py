"""``/asyncapi.json`` (the bus's AsyncAPI 3.0 document) and ``/asyncapi`` (the same, readable).

The page is built here from the document by a small template: self-contained (no script, no
CDN), every value HTML-escaped. Neither route is part of the OpenAPI document: they describe the
bus, not the HTTP API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from intents.asyncapi import document

router = APIRouter(include_in_schema=False)

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2rem}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:13px}
.send{color:#a0522d}.receive{color:#2e6b30}
"""


@router.get("/asyncapi.json")
async def asyncapi_json() -> JSONResponse:
    """The AsyncAPI 3.0 document of every intent, reply and audit record on the bus."""
    return JSONResponse(document())


@router.get("/asyncapi", response_class=HTMLResponse)
async def asyncapi_page() -> HTMLResponse:
    """The AsyncAPI document as one readable HTML page."""
    return HTMLResponse(render(document()))


def render(doc: dict[str, Any]) -> str:
    """The page for ``doc``: servers, operations, channels, messages, schemas."""
    info = doc["info"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(info['title'])} (AsyncAPI)</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(info['title'])} <small>{_e(info['version'])}</small></h1>",
        f"<p>{_e(info.get('description', ''))}</p>",
        f"<p>AsyncAPI {_e(doc['asyncapi'])}: <a href='/asyncapi.json'>/asyncapi.json</a>. "
        "The HTTP API: <a href='/docs'>/docs</a>.</p>",
        "<h2 id='servers'>Servers</h2>",
        _table(
            ("name", "host", "protocol", "description"),
            [
                (_e(n), _c(s["host"]), _e(s["protocol"]), _e(s.get("description", "")))
                for n, s in doc["servers"].items()
            ],
        ),
        _operations(doc),
        _channels(doc),
        _messages(doc),
        _schemas(doc),
        "</body></html>",
    ]
    return "".join(parts)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _c(value: object) -> str:
    return f"<code>{_e(value)}</code>"


def _name(ref: dict[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def _link(kind: str, name: str) -> str:
    return f"<a href='#{kind}-{_e(name)}'>{_e(name)}</a>"


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _address(doc: dict[str, Any], ref: dict[str, str]) -> str:
    channel = doc["channels"][_name(ref)]
    address = channel["address"]
    return _c(address) if address is not None else "<em>the requester's inbox</em>"


def _operations(doc: dict[str, Any]) -> str:
    rows = []
    for name, op in doc["operations"].items():
        messages = ", ".join(_link("message", _name(m)) for m in op.get("messages", []))
        reply = op.get("reply")
        answer = ""
        if reply is not None:
            answered = ", ".join(_link("message", _name(m)) for m in reply.get("messages", []))
            answer = f"{_address(doc, reply['channel'])} {answered}".strip()
        action = f"<span class='{_e(op['action'])}'>{_e(op['action'])}</span>"
        rows.append((_e(name), action, _address(doc, op["channel"]), messages, answer))
    head = ("operation", "the runtime", "channel", "messages", "reply")
    return "<h2 id='operations'>Operations</h2>" + _table(head, rows)


def _channels(doc: dict[str, Any]) -> str:
    rows = []
    for name, channel in doc["channels"].items():
        params = "".join(
            f"<div>{_c('{' + p + '}')}: {_e(spec.get('description', ''))}"
            + (f" one of {', '.join(_c(v) for v in spec['enum'])}" if "enum" in spec else "")
            + "</div>"
            for p, spec in channel.get("parameters", {}).items()
        )
        messages = ", ".join(_link("message", m) for m in channel.get("messages", {}))
        address = _c(channel["address"]) if channel["address"] else "<em>reply inbox</em>"
        rows.append((_e(name), address, params, messages, _e(channel.get("description", ""))))
    head = ("channel", "address", "parameters", "messages", "description")
    return "<h2 id='channels'>Channels</h2>" + _table(head, rows)


def _messages(doc: dict[str, Any]) -> str:
    parts = ["<h2 id='messages'>Messages</h2>"]
    for name, message in doc["components"]["messages"].items():
        headers = message.get("headers", {}).get("properties", {})
        header_rows = [(_c(h), _e(spec.get("description", ""))) for h, spec in headers.items()]
        parts += [
            f"<h3 id='message-{_e(name)}'>{_e(name)}</h3>",
            f"<p>{_e(message.get('summary', ''))}. {_e(message.get('description', ''))}</p>",
            f"<p>Payload: {_link('schema', _name(message['payload']))} "
            f"({_e(message.get('contentType', doc['defaultContentType']))})</p>",
            _table(("header", "meaning"), header_rows) if header_rows else "",
        ]
    return "".join(parts)


def _schemas(doc: dict[str, Any]) -> str:
    parts = ["<h2 id='schemas'>Schemas</h2>"]
    for name, schema in doc["components"]["schemas"].items():
        required = set(schema.get("required", []))
        rows = [
            (_c(prop), _type(spec), "yes" if prop in required else "", _constraints(spec))
            for prop, spec in schema.get("properties", {}).items()
        ]
        parts += [
            f"<h3 id='schema-{_e(name)}'>{_e(name)}</h3>",
            f"<p>{_e(schema.get('description', ''))}</p>",
            _table(("field", "type", "required", "constraints"), rows) if rows else "",
            _enum(schema),
            "<details><summary>JSON schema</summary>"
            f"<pre>{_e(json.dumps(schema, indent=2))}</pre></details>",
        ]
    return "".join(parts)


def _enum(schema: dict[str, Any]) -> str:
    if "enum" not in schema:
        return ""
    return f"<p>Values: {', '.join(_c(v) for v in schema['enum'])}</p>"


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return _link("schema", _name(spec))
    if "anyOf" in spec:
        return " | ".join(_type(option) for option in spec["anyOf"])
    if "const" in spec:
        return _c(json.dumps(spec["const"]))
    kind = spec.get("type", "any")
    if kind == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_type(spec['items'])}"
    return _e(kind)


_CONSTRAINTS = ("format", "pattern", "minLength", "maxLength", "minimum", "maximum", "minItems",
                "maxItems", "default")  # fmt: skip


def _constraints(spec: dict[str, Any]) -> str:
    found = [f"{key} {_c(json.dumps(spec[key]))}" for key in _CONSTRAINTS if key in spec]
    if spec.get("writeOnly"):
        found.append("secret: redacted in the audit log")
    return ", ".join(found)
