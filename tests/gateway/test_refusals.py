"""Issue 18's acceptance, what the gateway refuses, in each SDK's own error shape: a
parameter Grove cannot honour is a 400 naming the field (never dropped silently, and
never sent to a provider); a bad token is a 401, a viewer's a 403; a ``client``
token calls the data plane and nothing else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.callers import QUESTION
from tests.gateway.conftest import Fleet, fake_model, fakes, serving

pytestmark = pytest.mark.slow  # a server process per module

PNG = (  # a one-pixel image
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
HI: list[Any] = [{"role": "user", "content": QUESTION}]
BAD_TOKEN = "grove_0123456789abcdef_notatokenatallnotatokenatall"


@pytest.fixture(scope="module")
def fleet(module_tmp: Path, sqlite_template: Path) -> Iterator[Fleet]:
    kinds = [("openai", "GPT answers."), ("anthropic", "Claude answers.")]
    with fakes(*kinds) as (gpt, claude):
        manifests: dict[str, str | bytes] = {
            "models/gpt.yaml": fake_model("gpt", gpt, "{precision: 0.9}"),
            "models/claude.yaml": fake_model("claude", claude, "{precision: 0.8}"),
        }
        with serving(module_tmp, sqlite_template, manifests) as gateway:
            yield Fleet(gateway, {"gpt": gpt, "claude": claude})


def _names(field: str, message: str, param: str | None = None) -> bool:
    """Whether an error names ``field``: as OpenAI's ``param``, or in its message as a
    word of its own (``n`` in "n must be 1", not in "an")."""
    if param is not None and (param == field or param.startswith((f"{field}.", f"{field}["))):
        return True
    return re.search(rf"(?<![\w.\[]){re.escape(field)}(?![\w])", message) is not None


# ---------------------------------------------------------------- 400: what Grove cannot honour

OPENAI_REFUSED = [
    pytest.param({"n": 2}, "n", id="n"),
    pytest.param({"extra_body": {"frobnicate": True}}, "frobnicate", id="unknown-field"),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
        "messages[0].content[1]",
        id="image-part",
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("extra", "field"), OPENAI_REFUSED)
@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_openai_sdk_an_unsupported_parameter_is_a_400_naming_the_field(
    fleet: Fleet, model: str, extra: dict[str, Any], field: str, stream: bool
) -> None:
    before = fleet.calls()
    body: dict[str, Any] = {"model": model, "messages": HI, "max_tokens": 50, **extra}
    if stream:
        body["stream"] = True
    with pytest.raises(openai.BadRequestError) as refused:
        fleet.gateway.openai().chat.completions.create(**body)
    error = refused.value.response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert _names(field, error["message"], error.get("param")), error
    assert fleet.calls() == before, "the request went to a provider"


ANTHROPIC_REFUSED = [
    pytest.param({"extra_body": {"top_k": 5}}, "top_k", id="top_k"),
    pytest.param({"extra_body": {"frobnicate": True}}, "frobnicate", id="unknown-field"),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "text", "text": "What is in this picture?"},
                    ],
                }
            ]
        },
        "messages[0].content[0]",
        id="image-block",
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("extra", "field"), ANTHROPIC_REFUSED)
@pytest.mark.parametrize("model", ["gpt"])
def test_anthropic_sdk_an_unsupported_parameter_is_a_400_naming_the_field(
    fleet: Fleet, model: str, extra: dict[str, Any], field: str, stream: bool
) -> None:
    before = fleet.calls()
    body: dict[str, Any] = {"model": model, "messages": HI, "max_tokens": 50, **extra}
    if stream:
        body["stream"] = True
    with pytest.raises(anthropic.BadRequestError) as refused:
        fleet.gateway.anthropic().messages.create(**body)
    answer = refused.value.response.json()
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert _names(field, answer["error"]["message"]), answer
    assert fleet.calls() == before, "the request went to a provider"


# ---------------------------------------------------------------- 401, 403


def test_openai_sdk_a_bad_token_is_a_401_and_a_viewer_a_403(fleet: Fleet) -> None:
    gateway = fleet.gateway
    before = fleet.calls()
    with pytest.raises(openai.AuthenticationError) as unknown:
        gateway.openai(BAD_TOKEN).chat.completions.create(model="gpt", messages=HI)
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(BAD_TOKEN).chat.completions.create(model="gpt", messages=HI, stream=True)
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(BAD_TOKEN).models.list()
    with pytest.raises(openai.PermissionDeniedError) as viewer:
        gateway.openai("viewer").chat.completions.create(model="gpt", messages=HI)
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai("viewer").models.list()
    for refused in (unknown.value, viewer.value):
        error = refused.response.json()["error"]
        assert error["message"]
        assert BAD_TOKEN not in refused.response.text
    assert fleet.calls() == before


def test_anthropic_sdk_a_bad_token_is_a_401_and_a_viewer_a_403(fleet: Fleet) -> None:
    gateway = fleet.gateway
    before = fleet.calls()
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        gateway.anthropic(BAD_TOKEN).messages.create(model="gpt", max_tokens=50, messages=HI)
    with pytest.raises(anthropic.PermissionDeniedError) as viewer:
        gateway.anthropic("viewer").messages.create(model="gpt", max_tokens=50, messages=HI)
    with pytest.raises(anthropic.PermissionDeniedError):
        gateway.anthropic("viewer").messages.create(
            model="gpt", max_tokens=50, messages=HI, stream=True
        )
    assert unknown.value.response.json()["error"]["type"] == "authentication_error"
    assert viewer.value.response.json()["error"]["type"] == "permission_error"
    for refused in (unknown.value, viewer.value):
        assert refused.response.json()["type"] == "error"
        assert BAD_TOKEN not in refused.response.text
    by_header = httpx.post(  # Anthropic's own header carries a bad token just as well
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": BAD_TOKEN, "anthropic-version": "2023-06-01"},
        json={"model": "gpt", "max_tokens": 50, "messages": HI},
        timeout=15,
    )
    assert by_header.status_code == 401
    assert by_header.json()["type"] == "error"
    assert fleet.calls() == before


def test_no_token_is_a_401(fleet: Fleet) -> None:
    answer = httpx.post(
        f"{fleet.gateway.url}/v1/chat/completions",
        json={"model": "gpt", "messages": HI},
        timeout=15,
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"]


@pytest.mark.parametrize("role", ["client", "operator", "admin"])
def test_client_and_every_role_above_it_call_the_gateway(fleet: Fleet, role: str) -> None:
    answer = fleet.gateway.openai(role).chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content == "GPT answers."


def test_a_client_token_reads_nothing_of_the_api(fleet: Fleet) -> None:
    with fleet.gateway.api("client") as client:
        for path in ("/api/models", "/api/routing/logs"):
            refused = client.get(path)
            assert refused.status_code == 403, (path, refused.text)
        routed = client.post(
            "/api/routing/execute", json={"capabilities": ["precision"], "prompt": "hi"}
        )
    assert routed.status_code == 200, routed.text  # the data plane: execute is allowed
