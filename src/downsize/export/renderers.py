"""Ollama's built-in renderers and output parsers (``RENDERER`` / ``PARSER`` in a Modelfile), chosen by running them.

Ollama (0.12 and later) ships Go renderers for some model families (``model/renderers`` in its source: qwen3-coder,
gemma4, cohere, glimmer, lfm2, …). A Modelfile's ``RENDERER x`` makes Ollama build the prompt with x instead of
a TEMPLATE. Which family a model belongs to is not guessed from its name: ``ollama_renderers.json`` holds what
each renderer of a recorded Ollama commit writes for the probe conversations of :mod:`downsize.export.gocheck`
(made by ``tools/record_ollama_renderers.py`` from Ollama's own code), and a renderer is chosen for a chat
template only when its prompts equal the template's Jinja rendering byte for byte on every probe. The same record
holds, for the tool call each real chat template makes the model write (the probe's call, rendered by the sdist's
templates), which of Ollama's output parsers return exactly that call: ``PARSER y`` is written only for a y that
does, where Ollama's generic JSON-after-a-tag parsing cannot read the call.

    >>> from downsize.export.renderers import recorded
    >>> rec = recorded()
    >>> "gemma4" in rec.renderers and len(rec.commit) == 40
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from downsize.export import gocheck

RECORD = Path(__file__).parent / "ollama_renderers.json"


@lru_cache(maxsize=1)
def probes_digest() -> str:
    """A hash of the probe conversations (as Ollama receives them): the record is valid for these probes only."""
    cases = [{"name": p.name, "messages": gocheck.ollama_messages(p.messages), "tools": p.tools} for p in gocheck.PROBES]
    return hashlib.sha256(json.dumps(cases, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    commit: str  # the Ollama commit the prompts were rendered by
    go: str
    probes: str  # probes_digest() at recording time
    renderers: dict  # name -> {"bos": str, "prompts": {probe name: text or None (the renderer failed)}}
    parsers: dict  # {"names": [...], "outputs": [{"text", "templates", "parsed_by": [parser names]}]}


@lru_cache(maxsize=1)
def recorded() -> Record:
    d = json.loads(RECORD.read_text())
    return Record(d["ollama_commit"], d["go"], d["probes"], d["renderers"], d.get("parsers", {"names": [], "outputs": []}))


def _current() -> Record | None:
    """The record, when it was made for today's probes (else nothing in it is evidence)."""
    rec = recorded()
    return rec if rec.probes == probes_digest() else None


@dataclass(frozen=True)
class RendererMatch:
    name: str
    commit: str


def _prompts(r: dict) -> dict[str, str | None]:
    return {k: gocheck.strip_bos(v, r["bos"]) if v is not None else None for k, v in r["prompts"].items()}


def differing(expected: dict[str, str | None], name: str) -> tuple[list[str], int] | None:
    """(the probes renderer ``name`` renders otherwise than the Jinja template, the probes the template renders),
    None when the record has no such renderer."""
    r = recorded().renderers.get(name)
    if r is None:
        return None
    got, rendered = _prompts(r), {k: v for k, v in expected.items() if v is not None}
    return [k for k, v in rendered.items() if got.get(k) != v], len(rendered)


@lru_cache(maxsize=8)
def expected_prompts(template: str, bos: str, eos: str) -> dict[str, str | None]:
    """The Jinja text of every probe (None where the template refuses the conversation), as ``match`` takes it
    (cached: an export asks for it from the fallback, the parser choice and the architecture note; not to be
    modified)."""
    return {p.name: gocheck.expected(template, p, bos, eos) for p in gocheck.PROBES}


def closest(expected: dict[str, str | None]) -> tuple[str, list[str], int] | None:
    """(renderer, the probes it renders differently, probes compared) of the recorded renderer that reproduces the
    most probes (ties: the longest common text), None when none reproduces a plain chat: what a note tells a
    user whose model Ollama may give a renderer of its own (by architecture, e.g. gemma4)."""
    import difflib

    rec = _current()
    if rec is None or any(expected.get(p.name) is None for p in gocheck.PLAIN_PROBES):
        return None
    rendered = {k: v for k, v in expected.items() if v is not None}
    best = None
    for name in sorted(rec.renderers):
        differ, _ = differing(expected, name)
        if len(differ) == len(rendered) or any(k in differ for k in (p.name for p in gocheck.PLAIN_PROBES)):
            continue
        got = _prompts(rec.renderers[name])
        sim = sum(difflib.SequenceMatcher(None, v, got.get(k) or "", autojunk=False).ratio() for k, v in rendered.items())
        if best is None or (-len(differ), sim) > best[0]:
            best = ((-len(differ), sim), name, differ)
    return None if best is None else (best[1], best[2], len(rendered))


def similarity(expected: dict[str, str | None], name: str) -> float:
    """Mean text similarity (difflib ratio) of renderer ``name``'s prompts to the Jinja renderings (0 for a name
    with no renderer): which family's parser to prefer when several read a model's tool calls."""
    import difflib

    r = recorded().renderers.get(name)
    rendered = {k: v for k, v in expected.items() if v is not None}
    if r is None or not rendered:
        return 0.0
    got = _prompts(r)
    both = [k for k in rendered if got.get(k) is not None]  # the probes the renderer rendered (deterministically)
    return sum(difflib.SequenceMatcher(None, rendered[k], got[k], autojunk=False).ratio() for k in both) / len(both) \
        if both else 0.0


def match(expected: dict[str, str | None]) -> RendererMatch | None:
    """The recorded renderer whose prompts equal ``expected`` (probe name -> the Jinja text without BOS, None where
    the Jinja template refuses the conversation) on every probe the Jinja template renders, None when none does
    (or the record is for other probes). The renderer's leading BOS is Ollama's to add, as it is for a TEMPLATE."""
    rec = _current()
    if rec is None or any(expected.get(p.name) is None for p in gocheck.PLAIN_PROBES):
        return None
    for name in sorted(rec.renderers):
        if not differing(expected, name)[0]:
            return RendererMatch(name, rec.commit)
    return None


def parsers_for(output: str) -> list[str] | None:
    """The recorded parsers that return exactly the probe's tool call from ``output`` (the text the model writes,
    ``toolcalls.tool_call_output``); None when that text was not recorded (a format the record has not seen)."""
    rec = _current()
    if rec is None:
        return None
    for o in rec.parsers["outputs"]:
        if o["text"] == output:
            return list(o["parsed_by"])
    return None


def generic_parses(output: str, tag: str | None) -> bool:
    """Whether Ollama's template-derived tool parsing (JSON after the tag the TEMPLATE shows it, ``tools/tools.go``)
    reads the probe's call from ``output``: after the tag, a JSON object (or a list of them) naming the function
    with its arguments (``arguments`` or ``parameters``)."""
    call = gocheck.TOOL_PROBES[1].messages[1]["tool_calls"][0]["function"]
    start = output.find(tag) + len(tag) if tag and tag != "{" and tag in output else 0
    rest = output[start:]
    at = min((i for i in (rest.find("{"), rest.find("[")) if i >= 0), default=-1)
    if at < 0 or rest[:at].strip():
        return False
    try:
        val, _ = json.JSONDecoder().raw_decode(rest[at:])
    except ValueError:
        return False
    items = val if isinstance(val, list) else [val]
    return any(isinstance(x, dict) and x.get("name") == call["name"]
               and (x.get("arguments") or x.get("parameters")) == call["arguments"] for x in items)
