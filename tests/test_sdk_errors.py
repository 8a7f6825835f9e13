"""The shared reading of openai / google-genai failures that the chat backends and the image editors use."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from imageedit_r1.backends import BackendError, RefusalError
from imageedit_r1.backends.sdk_errors import (
    AUTH,
    PERMANENT,
    QUOTA,
    REFUSED,
    TRANSIENT,
    enum_name,
    gemini_prompt_block,
    gemini_safety_stop,
    parse_retry_after,
)
from imageedit_r1.retry import RetryableError

KEY = "sk-test-secret-0123456789"


def test_retry_after_reads_seconds_and_milliseconds_and_ignores_the_rest():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after(None) is None and parse_retry_after("not headers") is None


def test_enum_name_takes_value_then_name_then_text():
    assert enum_name(SimpleNamespace(value="SAFETY", name="X")) == "SAFETY"
    assert enum_name(SimpleNamespace(value=None, name="STOP")) == "STOP"
    assert enum_name("IMAGE_SAFETY") == "IMAGE_SAFETY" and enum_name(None) is None


def test_gemini_blocks_and_safety_stops():
    blocked = SimpleNamespace(prompt_feedback=SimpleNamespace(block_reason="SAFETY", block_reason_message="no"))
    assert gemini_prompt_block(blocked) == ("SAFETY", "no")
    unspecified = SimpleNamespace(prompt_feedback=SimpleNamespace(block_reason="BLOCKED_REASON_UNSPECIFIED"))
    assert gemini_prompt_block(unspecified) is None and gemini_prompt_block(SimpleNamespace()) is None
    rating = SimpleNamespace(category="HARM_CATEGORY_DANGEROUS_CONTENT", blocked=True)
    stopped = SimpleNamespace(finish_reason="IMAGE_SAFETY", safety_ratings=[rating, SimpleNamespace(category="X")])
    assert gemini_safety_stop(stopped) == ("IMAGE_SAFETY", ["HARM_CATEGORY_DANGEROUS_CONTENT"])
    assert gemini_safety_stop(SimpleNamespace(finish_reason="STOP")) is None


# ----------------------------------------------------------------------------- openai


def _openai_status_error(status: int, code: str | None = None, message: str = "boom", headers=None):
    openai = pytest.importorskip("openai")
    import httpx2  # the HTTP library the openai SDK is built on here

    request = httpx2.Request("POST", "https://api.example/v1/x")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    body = {"message": message, "code": code}
    return openai.APIStatusError(message, response=response, body=body)


def _classify_openai(exc, **options):
    from imageedit_r1.backends.sdk_errors import classify_openai_error

    return classify_openai_error(exc, secrets=[KEY], **options)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, None, TRANSIENT), (503, None, TRANSIENT), (408, None, TRANSIENT), (409, None, TRANSIENT),
        (429, "insufficient_quota", QUOTA), (401, "invalid_api_key", AUTH), (400, "invalid_request_error", PERMANENT),
        (400, "moderation_blocked", REFUSED),
    ],
)
def test_openai_status_errors(status, code, kind):
    failure = _classify_openai(_openai_status_error(status, code, headers={"retry-after": "2"}))
    assert failure.kind == kind and failure.status == status and str(status) in failure.message
    assert failure.retry_after == (2.0 if kind == TRANSIENT else None)


def test_openai_safety_wording_is_a_refusal_and_keys_are_redacted():
    exc = _openai_status_error(400, None, f"Rejected by the safety system (key {KEY})")
    failure = _classify_openai(exc)
    assert failure.kind == REFUSED and KEY not in failure.message and "[REDACTED]" in failure.detail


def test_openai_transport_errors_are_transient():
    openai = pytest.importorskip("openai")
    import httpx2

    request = httpx2.Request("POST", "https://api.example/v1/x")
    assert _classify_openai(openai.APITimeoutError(request), timeout=5).message == "timed out after 5s"
    failure = _classify_openai(openai.APIConnectionError(message=f"refused {KEY}", request=request))
    assert failure.kind == TRANSIENT and KEY not in failure.message
    assert _classify_openai(ValueError("Expecting value")).message.startswith("malformed response")
    assert _classify_openai(ConnectionResetError("reset")).kind == TRANSIENT
    assert _classify_openai(KeyError("ours")) is None  # not the SDK's: the caller re-raises it


# ----------------------------------------------------------------------------- google-genai


def _classify_genai(exc, **options):
    pytest.importorskip("google.genai")
    from imageedit_r1.backends.sdk_errors import classify_genai_error

    return classify_genai_error(exc, secrets=[KEY], **options)


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [(429, "RESOURCE_EXHAUSTED", TRANSIENT), (500, "INTERNAL", TRANSIENT), (400, "INVALID_ARGUMENT", PERMANENT),
     (401, "UNAUTHENTICATED", AUTH), (403, "PERMISSION_DENIED", AUTH)],
)
def test_genai_api_errors(status, name, kind):
    errors = pytest.importorskip("google.genai.errors")
    exc = errors.APIError(status, {"error": {"code": status, "message": f"bad {KEY}", "status": name}})
    failure = _classify_genai(exc)
    assert failure.kind == kind and str(status) in failure.message and KEY not in failure.message


def test_genai_transport_and_malformed_bodies_are_transient():
    httpx = pytest.importorskip("httpx")
    assert _classify_genai(httpx.ReadTimeout("slow"), timeout=3).message == "timed out after 3s"
    assert _classify_genai(httpx.ConnectError("down")).message.startswith("connection failed")
    bad_json = json.JSONDecodeError("Expecting value", "<html>", 0)
    assert _classify_genai(bad_json).message.startswith("malformed response")
    assert _classify_genai(KeyError("ours")) is None


def test_each_caller_gets_its_own_error_types():
    from imageedit_r1.agents.editors.api_common import editor_exception
    from imageedit_r1.agents.editors.base import EditorError, EditRefusedError
    from imageedit_r1.backends.sdk_errors import SdkFailure

    transient = SdkFailure(TRANSIENT, "HTTP 503: busy", 503, retry_after=4.0)
    retry = transient.to_exception(permanent=BackendError, refused=RefusalError, prefix="openai m: ")
    assert isinstance(retry, RetryableError) and retry.retry_after == 4.0 and str(retry) == "openai m: HTTP 503: busy"
    refused = SdkFailure(REFUSED, "refused (moderation_blocked): no", 400, "moderation_blocked", "no")
    assert isinstance(refused.to_exception(permanent=BackendError, refused=RefusalError), RefusalError)
    edit_refusal = editor_exception(refused, "gpt-image-2")
    assert isinstance(edit_refusal, EditRefusedError) and "refused the edit (moderation_blocked): no" in str(edit_refusal)
    quota = editor_exception(SdkFailure(QUOTA, "quota exhausted (HTTP 429 insufficient_quota): x", 429), "m")
    assert type(quota) is EditorError


def test_a_refusal_is_found_however_it_was_wrapped_and_only_then():
    from imageedit_r1.agents.editors import EditRefusedError
    from imageedit_r1.eval.records import classify_failure
    from imageedit_r1.pipeline import EditFailed
    from imageedit_r1.refusals import find_refusal, refusal_record
    from imageedit_r1.retry import RetriesExhausted

    refusal = EditRefusedError("m withheld the image (finish reason IMAGE_SAFETY)", reason="IMAGE_SAFETY")
    try:
        try:
            raise refusal
        except EditRefusedError as exc:
            raise EditFailed("editing failed", {}) from exc
    except EditFailed as wrapped:
        assert find_refusal(wrapped) is refusal
        assert classify_failure(wrapped) == ("refusal", False)
        assert refusal_record(wrapped)["reason"] == "IMAGE_SAFETY"
    assert classify_failure(RetriesExhausted(2, refusal)) == ("refusal", False)
    try:
        try:
            raise refusal
        except EditRefusedError:
            raise ValueError("a bug while handling it")  # noqa: B904 - the point: no explicit cause
    except ValueError as unrelated:
        assert find_refusal(unrelated) is None and classify_failure(unrelated) == ("error", True)
