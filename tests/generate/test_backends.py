"""The endpoint client against a real HTTP server on 127.0.0.1: retries, backoff, clear stops; tool-call parsing."""

from __future__ import annotations

import json
import time

import pytest

from downsize.errors import DownsizeError
from downsize.generate.backends import (FatalBackendError, GenParams, UnavailableError, extract_tool_calls,
                                        normalise_message, open_backend, parse_openai_ref)

from .conftest import TeacherServer

FAST = GenParams(max_retries=4, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5)
Q = [{"role": "user", "content": "What is 6 times 7?"}]


def _backend(srv, params=FAST, model="teach"):
    return open_backend(f"openai:{srv.url}#{model}", params)


def test_answer_and_request_body(teacher_server):
    r = _backend(teacher_server, GenParams(max_tokens=17, top_logprobs=3)).chat(Q)
    assert r.message == {"role": "assistant", "content": "42"}
    assert r.logprobs[0]["top"] == [["x", -0.1]] * 3 and r.usage["completion_tokens"] == 5
    body = teacher_server.bodies[-1]
    assert body["model"] == "teach" and body["max_tokens"] == 17 and body["logprobs"] is True and body["top_logprobs"] == 3


@pytest.mark.parametrize("fault, stat", [("fail_500", "http_500"), ("fail_429", "http_429"),
                                         ("malformed", "malformed_json"), ("drop", "connection")])
def test_transient_faults_are_retried_until_the_server_recovers(teacher_server, fault, stat):
    setattr(teacher_server, fault, 3)
    b = _backend(teacher_server)
    assert b.chat(Q).message["content"] == "42"
    assert teacher_server.requests == 4 and b.stats[stat] == 3 and b.stats["retries"] == 3


def test_retries_are_bounded_and_say_how_to_resume(teacher_server):
    teacher_server.fail_500 = 100
    b = _backend(teacher_server)
    with pytest.raises(UnavailableError, match="failed 5 times; last: HTTP 500") as e:
        b.chat(Q)
    assert "rerun the same command" in e.value.hint and teacher_server.requests == 5


def test_backoff_grows(teacher_server):
    teacher_server.fail_500 = 4
    b = _backend(teacher_server, GenParams(max_retries=4, backoff_base_s=0.05, backoff_max_s=1.0))
    t0 = time.perf_counter()
    b.chat(Q)
    # 0.05*(1+2+4+8) = 0.75 s before jitter; jitter keeps at least half of it
    assert time.perf_counter() - t0 >= 0.37


def test_4xx_stops_at_once_with_the_server_message(teacher_server):
    teacher_server.status = 404
    with pytest.raises(FatalBackendError, match="HTTP 404.*model 'nope' not found") as e:
        _backend(teacher_server).chat(Q)
    assert teacher_server.requests == 1 and "model name" in e.value.hint


def test_connection_refused_is_unavailable():
    srv = TeacherServer()  # never started: nothing listens on its port
    with pytest.raises(UnavailableError, match="connection problem"):
        _backend(srv, GenParams(max_retries=2, backoff_base_s=0.01)).chat(Q)


def test_native_tool_calls_are_normalised(teacher_server):
    teacher_server.native_tool_calls = True
    r = _backend(teacher_server).chat([{"role": "user", "content": "In which file is the class Shape defined?"}])
    call = r.message["tool_calls"][0]
    assert call["function"]["name"] == "grep" and json.loads(call["function"]["arguments"]) == {"pattern": r"^class Shape\b"}


def test_text_tool_calls():
    text, calls = extract_tool_calls('Let me look. <tool_call>{"name": "read_file", "arguments": {"path": "a.py"}}</tool_call>'
                                     '<tool_call>{"name": "grep", "arguments": "{\\"pattern\\": \\"x\\"}"}</tool_call>'
                                     '<tool_call>{broken</tool_call>')
    assert text == "Let me look."
    assert [c["function"]["name"] for c in calls] == ["read_file", "grep", None]
    assert json.loads(calls[0]["function"]["arguments"]) == {"path": "a.py"} and calls[1]["function"]["arguments"] == '{"pattern": "x"}'
    assert calls[2]["function"]["arguments"] == "{broken"
    assert normalise_message({"content": "plain"}) == {"role": "assistant", "content": "plain"}


def test_refs():
    assert parse_openai_ref("openai:http://h:1/v1/#m:7b") == ("http://h:1/v1", "m:7b")
    assert parse_openai_ref("openai:https://h/v1") == ("https://h/v1", None)
    with pytest.raises(DownsizeError, match="openai:URL#MODEL"):
        parse_openai_ref("openai:localhost:8080")


def test_slow_server_times_out_and_is_retried(teacher_server):
    teacher_server.delay_s = 0.4
    b = _backend(teacher_server, GenParams(max_retries=1, backoff_base_s=0.01, timeout_s=0.1))
    t0 = time.perf_counter()
    with pytest.raises(UnavailableError, match="timed out"):
        b.chat(Q)
    assert teacher_server.requests == 2 and time.perf_counter() - t0 < 0.4  # the client did not wait the server out
