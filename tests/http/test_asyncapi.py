"""The Experience Plane serves the bus's AsyncAPI document and its page, outside the OpenAPI."""

from __future__ import annotations

import httpx

from intents.asyncapi import document
from tests.stack import Stack
from tests.unit.test_asyncapi import errors, intent_subjects_in_names


async def test_asyncapi_json_is_the_valid_document(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert errors(served) == []
    assert {c["address"] for c in served["channels"].values()} >= intent_subjects_in_names()
    assert served == document()


async def test_asyncapi_page_is_self_contained_html(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        page = await http.get("/asyncapi")
        openapi = (await http.get("/openapi.json")).json()
        wrong = await http.post("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for subject in intent_subjects_in_names():
        assert f"<code>{subject}</code>" in page.text
    # Nothing fetched from elsewhere: no script, no stylesheet or image from another host.
    assert "<script" not in page.text
    assert "http://" not in page.text.replace("http://json-schema.org", "")
    assert "https://" not in page.text
    assert not {"/asyncapi", "/asyncapi.json"} & set(openapi["paths"])
    assert (wrong.status_code, wrong.headers.get("allow")) == (405, "GET")
