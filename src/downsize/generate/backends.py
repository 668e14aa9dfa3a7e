"""Teacher backends: any OpenAI-compatible chat endpoint, or a local model with batched generation.

    >>> b = open_backend("openai:http://127.0.0.1:8080/v1#teacher", GenParams(max_tokens=16))
    >>> r = b.chat([{"role": "user", "content": "What is 2 plus 2?"}])
    >>> r.message["role"], isinstance(r.message["content"], str)   # and "tool_calls" when the model called one
    ('assistant', True)
    >>> b = open_backend("zoo:coder-teacher-qwen", GenParams(batch_size=8, max_tokens=8))   # transformers, local
    >>> b.chat([{"role": "user", "content": "def add(a, b):"}]).message["role"]
    'assistant'

The endpoint backend retries 429, 5xx, 408, connection loss, timeouts and malformed JSON with
exponential backoff (full jitter, ``Retry-After`` honoured), and stops at once on any other 4xx with
the server's own message (a wrong model name or a bad request will not fix itself). It is
thread-safe: the runner keeps N requests in flight from N threads.

The local backend gathers concurrent ``chat`` calls from those threads into one left-padded batch
per ``generate`` (up to ``batch_size``), so agent loops stay sequential code while the model sees
batches. Both return top-k logprobs per generated token when ``top_logprobs > 0`` (the local one
with token ids, so the same data feeds sparse logit KD with the teacher's tokenizer).

Why this module is long: the three backends (endpoint, local transformers, local llama.cpp) share the message
normalisation, the tool-call parsing and the backend registry; each is a screen of code on its own.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from downsize.errors import DownsizeError
from downsize.registry import Registry

log = logging.getLogger(__name__)

OPENAI_SCHEME = "openai:"
TRANSIENT_HTTP = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
TOOL_CALL_RX = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class GenParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    top_logprobs: int = 0  # store the k most likely tokens per position (0: off)
    # llama.cpp servers (llama-cpp-python, Ollama) apply a repeat penalty of 1.1 unless told otherwise and report
    # log-probabilities after it, which are then not the model's distribution; with top_logprobs on, downsize asks
    # for 1.0 unless a value is given here.
    repeat_penalty: float | None = None
    timeout_s: float = 120.0  # per request
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    batch_size: int = 8  # local backend: largest batch per generate()
    native_tools: bool = True  # endpoint: send the `tools` field (text <tool_call> parsing is always on)


@dataclass
class ChatResponse:
    message: dict  # OpenAI assistant message, tool calls normalised into "tool_calls"
    logprobs: list | None = None  # per generated token: {"token", "logprob", "top": [[token, logprob], ...]}
    usage: dict = field(default_factory=dict)
    seconds: float = 0.0
    finish_reason: str | None = None


class BackendError(DownsizeError):
    """The teacher could not answer."""


class FatalBackendError(BackendError):
    """A 4xx (other than 408/429) or a response no retry will fix: stop the run."""


class UnavailableError(BackendError):
    """Retries exhausted on a transient failure (server down, overloaded, garbling JSON)."""


# -- tool calls written in the text ------------------------------------------------------------
def extract_tool_calls(content: str | None, start: int = 0) -> tuple[str, list[dict]]:
    """Split ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks out of text.

    Returns the remaining text and OpenAI-format tool calls (``arguments`` as a JSON string). A block
    whose JSON does not parse is kept as a call with name ``None`` and its raw text, so validators can
    reject it with a reason instead of the trace silently losing it.
    """
    if not content or "<tool_call>" not in content:
        return content or "", []
    calls = []
    for i, m in enumerate(TOOL_CALL_RX.finditer(content)):
        raw = m.group(1)
        try:
            obj = json.loads(raw)
            name = obj.get("name") if isinstance(obj, dict) else None
            args = obj.get("arguments", obj.get("parameters", {})) if isinstance(obj, dict) else None
            args_s = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        except json.JSONDecodeError:
            name, args_s = None, raw
        calls.append({"id": f"call_{start + i}", "type": "function", "function": {"name": name, "arguments": args_s}})
    return TOOL_CALL_RX.sub("", content).strip(), calls


def normalise_message(msg: dict, call_offset: int = 0) -> dict:
    content = msg.get("content")
    calls = list(msg.get("tool_calls") or [])
    for i, c in enumerate(calls):
        fn = c.get("function") or {}
        args = fn.get("arguments")
        calls[i] = {"id": c.get("id") or f"call_{call_offset + i}", "type": "function",
                    "function": {"name": fn.get("name"),
                                 "arguments": args if isinstance(args, str) else json.dumps(args or {}, ensure_ascii=False)}}
    text, text_calls = extract_tool_calls(content if isinstance(content, str) else None, call_offset + len(calls))
    out = {"role": "assistant", "content": text}
    if calls or text_calls:
        out["tool_calls"] = calls + text_calls
    return out


# -- registry ----------------------------------------------------------------------------------
class Backend:
    name: str = "backend"

    def chat(self, messages: list[dict], tools: list[dict] | None = None) -> ChatResponse:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def stats(self) -> dict:
        return {}


BACKENDS: Registry[Callable[[str, GenParams], Backend]] = Registry("teacher backend")


def register_backend(scheme: str):
    return BACKENDS.register(scheme)


def open_backend(ref: str, params: GenParams = GenParams()) -> Backend:
    """``openai:URL#MODEL`` -> endpoint; a GGUF (file or ollama:) -> llama.cpp in this process; else transformers."""
    scheme = ref.split(":", 1)[0] + ":" if ":" in ref else ""
    if scheme in BACKENDS:
        return BACKENDS[scheme](ref, params)
    from downsize.models.refs import resolve_model

    return BACKENDS["gguf" if resolve_model(ref).is_gguf else "local"](ref, params)


# -- OpenAI-compatible endpoint ----------------------------------------------------------------
def parse_openai_ref(ref: str) -> tuple[str, str | None]:
    spec = ref[len(OPENAI_SCHEME):]
    url, _, model = spec.partition("#")
    if not re.match(r"^https?://[^/]+", url):
        raise DownsizeError(f"malformed endpoint reference {ref!r}",
                            hint="write openai:URL#MODEL, e.g. openai:http://127.0.0.1:11434/v1#qwen2.5-coder:32b")
    return url.rstrip("/"), (model or None)


class OpenAIBackend(Backend):
    def __init__(self, ref: str, params: GenParams):
        self.ref = ref
        self.url, self.model = parse_openai_ref(ref)
        self.endpoint = self.url + "/chat/completions"
        self.params = params
        self.name = ref
        self._stats: Counter = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(params.seed)

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    @property
    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)

    def _body(self, messages, tools) -> bytes:
        p = self.params
        body = {"messages": messages, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
                "seed": p.seed, "stream": False}
        if self.model:
            body["model"] = self.model
        if tools and p.native_tools:
            body["tools"] = tools
        if p.top_logprobs > 0:
            body["logprobs"] = True
            body["top_logprobs"] = p.top_logprobs
        if p.repeat_penalty is not None or p.top_logprobs > 0:
            body["repeat_penalty"] = p.repeat_penalty if p.repeat_penalty is not None else 1.0
        return json.dumps(body).encode()

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        p = self.params
        delay = min(p.backoff_max_s, p.backoff_base_s * 2 ** attempt)
        with self._lock:
            delay *= 0.5 + 0.5 * self._rng.random()  # jitter: threads do not retry in lockstep
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), p.backoff_max_s))
            except ValueError:
                pass
        time.sleep(delay)

    def _post(self, body: bytes, endpoint: str | None = None) -> dict:
        """POST ``body`` to ``endpoint`` (default: chat completions) with the retry policy above."""
        endpoint = endpoint or self.endpoint
        req = urllib.request.Request(endpoint, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        last = ""
        for attempt in range(self.params.max_retries + 1):
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.params.timeout_s) as resp:
                    raw = resp.read()
                try:
                    data = json.loads(raw)
                    if not isinstance(data, dict) or not data.get("choices"):
                        raise ValueError("no 'choices' in the response")
                    return data
                except (ValueError, json.JSONDecodeError) as e:
                    last = f"malformed JSON from the server ({e}; first bytes {raw[:80]!r})"
                    self._count("malformed_json")
            except urllib.error.HTTPError as e:
                detail = e.read()[:500].decode("utf-8", "replace")
                if e.code not in TRANSIENT_HTTP:
                    self._count(f"http_{e.code}")
                    raise FatalBackendError(
                        f"{endpoint} answered HTTP {e.code}: {detail.strip() or e.reason}",
                        hint="a 4xx will not fix itself: check the model name after '#', the URL (…/v1) and the request "
                             "options (e.g. --max-tokens within the context)") from None
                last = f"HTTP {e.code} {detail[:120].strip()}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                self._count(f"http_{e.code}")
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"connection problem: {type(reason).__name__}: {reason}"
                self._count("connection")
            if attempt < self.params.max_retries:
                self._count("retries")
                log.info("retrying %s after attempt %d: %s", endpoint, attempt + 1, last)
                self._sleep(attempt, retry_after)
        raise UnavailableError(f"{endpoint} failed {self.params.max_retries + 1} times; last: {last}",
                               hint="start the server (or wait for it) and rerun the same command: finished prompts are kept and skipped")

    def chat(self, messages: list[dict], tools: list[dict] | None = None) -> ChatResponse:
        t0 = time.perf_counter()
        data = self._post(self._body(messages, tools))
        choice = data["choices"][0]
        msg = choice.get("message") or {}
        lp = None
        raw_lp = (choice.get("logprobs") or {}).get("content") if self.params.top_logprobs > 0 else None
        if raw_lp:
            lp = [{"token": t.get("token"), "logprob": t.get("logprob"),
                   "top": [[x.get("token"), x.get("logprob")] for x in t.get("top_logprobs") or []]} for t in raw_lp]
        self._count("requests")
        return ChatResponse(normalise_message(msg), lp, data.get("usage") or {}, time.perf_counter() - t0,
                            choice.get("finish_reason"))


@register_backend(OPENAI_SCHEME)
def _openai(ref: str, params: GenParams) -> Backend:
    return OpenAIBackend(ref, params)


# -- local model through transformers ----------------------------------------------------------
class LocalBackend(Backend):
    """A causal LM in this process; concurrent chat() calls are merged into batches."""

    def __init__(self, ref: str, params: GenParams, model=None, tokenizer=None):
        import torch

        from downsize.models.refs import load_model

        self.ref = self.name = ref
        self.params = params
        if model is None:
            model, tokenizer = load_model(ref)
        self.model, self.tok = model.eval(), tokenizer
        if getattr(self.tok, "chat_template", None) is None:
            raise DownsizeError(f"{ref} has no chat template", hint="use a chat/instruct model, or set tokenizer.chat_template")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.stop_ids = sorted({i for i in (self.tok.eos_token_id, self.tok.convert_tokens_to_ids("<|im_end|>"))
                                if isinstance(i, int) and i >= 0 and i != self.tok.unk_token_id})
        self._torch = torch
        self._q: queue.Queue = queue.Queue()
        self._stats: Counter = Counter()
        self._worker = threading.Thread(target=self._loop, name="local-generate", daemon=True)
        self._worker.start()

    @property
    def stats(self) -> dict:
        return dict(self._stats)

    def chat(self, messages: list[dict], tools: list[dict] | None = None) -> ChatResponse:
        fut: Future = Future()
        self._q.put((messages, tools, fut, time.perf_counter()))
        return fut.result()

    def close(self) -> None:
        self._q.put(None)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + 0.02  # gather what the other threads are about to send
            while len(batch) < self.params.batch_size:
                try:
                    nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                batch.append(nxt)
            try:
                results = self._generate([(m, t) for m, t, _, _ in batch])
                for (_, _, fut, t0), r in zip(batch, results):
                    r.seconds = time.perf_counter() - t0
                    fut.set_result(r)
            except Exception as e:  # noqa: BLE001 - hand the failure to every waiting caller
                for _, _, fut, _ in batch:
                    fut.set_exception(e)

    def render(self, messages: list[dict], tools: list[dict] | None) -> str:
        try:
            return self.tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        except Exception as e:  # noqa: BLE001 - a template error is the user's model, say so
            raise DownsizeError(f"the chat template of {self.ref} failed: {e}", hint="check tokenizer.chat_template") from None

    def _generate(self, convs: list[tuple[list[dict], list[dict] | None]]) -> list[ChatResponse]:
        torch = self._torch
        p = self.params
        texts = [self.render(m, t) for m, t in convs]
        enc = self.tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        n_ctx = getattr(self.model.config, "max_position_embeddings", None)
        max_new = p.max_tokens if not n_ctx else max(1, min(p.max_tokens, n_ctx - enc["input_ids"].shape[1]))
        if n_ctx and enc["input_ids"].shape[1] >= n_ctx:  # keep the end of a long conversation
            enc = {k: v[:, -(n_ctx - max_new):] for k, v in enc.items()}
        torch.manual_seed(p.seed)
        kw = dict(max_new_tokens=max_new, pad_token_id=self.tok.pad_token_id, eos_token_id=self.stop_ids or None,
                  return_dict_in_generate=True, output_logits=p.top_logprobs > 0)
        kw.update(do_sample=True, temperature=p.temperature, top_p=p.top_p) if p.temperature > 0 else kw.update(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kw)
        self._stats["batches"] += 1
        self._stats["requests"] += len(convs)
        prompt_len = enc["input_ids"].shape[1]
        gen = out.sequences[:, prompt_len:]  # (B, T_new)
        results = []
        for b in range(gen.shape[0]):
            ids = gen[b].tolist()
            stop = next((i for i, t in enumerate(ids) if t in self.stop_ids or t == self.tok.pad_token_id), len(ids))
            finish = "stop" if stop < len(ids) else "length"
            ids = ids[:stop]
            text = self.tok.decode(ids, skip_special_tokens=True)
            lp = None
            if p.top_logprobs > 0:
                lp = []
                for pos, tid in enumerate(ids):
                    logp = torch.log_softmax(out.logits[pos][b].float(), dim=-1)  # (V,) raw, before sampling filters
                    top = torch.topk(logp, p.top_logprobs)
                    lp.append({"token": self.tok.convert_ids_to_tokens(tid), "id": tid, "logprob": float(logp[tid]),
                               "top": [[int(i), float(v)] for v, i in zip(top.values, top.indices)]})
            results.append(ChatResponse(normalise_message({"content": text}), lp,
                                        {"prompt_tokens": int(enc["attention_mask"][b].sum()), "completion_tokens": len(ids)},
                                        finish_reason=finish))
        return results


@register_backend("local")
def _local(ref: str, params: GenParams) -> Backend:
    return LocalBackend(ref, params)


# -- a GGUF through llama.cpp, in this process -------------------------------------------------
class LlamaCppBackend(Backend):
    """llama-cpp-python's chat completion with the GGUF's own chat template; calls are serialised."""

    def __init__(self, ref: str, params: GenParams, n_ctx: int = 2048):
        from downsize.models.llamacpp import open_gguf
        from downsize.models.refs import resolve_model

        self.ref = self.name = ref
        self.params = params
        self.llm = open_gguf(resolve_model(ref).path, n_ctx, seed=params.seed, logits_all=params.top_logprobs > 0)
        self._lock = threading.Lock()
        self._stats: Counter = Counter()

    @property
    def stats(self) -> dict:
        return dict(self._stats)

    def chat(self, messages: list[dict], tools: list[dict] | None = None) -> ChatResponse:
        p = self.params
        t0 = time.perf_counter()
        with self._lock:
            out = self.llm.create_chat_completion(
                messages=messages, tools=tools if p.native_tools else None, max_tokens=p.max_tokens,
                temperature=p.temperature, top_p=p.top_p, top_k=0 if p.temperature > 0 else 1, min_p=0.0,
                repeat_penalty=1.0, seed=p.seed, logprobs=p.top_logprobs > 0 or None,
                top_logprobs=p.top_logprobs or None)
        self._stats["requests"] += 1
        choice = out["choices"][0]
        lp = None
        raw = (choice.get("logprobs") or {}).get("content") if p.top_logprobs > 0 else None
        if raw:
            lp = [{"token": t.get("token"), "logprob": t.get("logprob"),
                   "top": [[x.get("token"), x.get("logprob")] for x in t.get("top_logprobs") or []]} for t in raw]
        return ChatResponse(normalise_message(choice.get("message") or {}), lp, out.get("usage") or {},
                            time.perf_counter() - t0, choice.get("finish_reason"))

    def close(self) -> None:
        self.llm.close() if hasattr(self.llm, "close") else None


@register_backend("gguf")
def _gguf(ref: str, params: GenParams) -> Backend:
    return LlamaCppBackend(ref, params)
