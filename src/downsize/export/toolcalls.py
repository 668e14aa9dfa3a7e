"""How a model's tool calls come back from Ollama: the tag its generic parser looks for, or a built-in PARSER.

Ollama reads tool calls from the model's output in one of two ways: its generic parsing (``tools/tools.go``: the
tag the TEMPLATE shows before ``.ToolCalls``, then JSON naming the function and its arguments), or a built-in
output parser named by ``PARSER`` (``model/parsers``). Both are decided here from the call the model writes, which
is what the chat template renders for the probe's assistant tool call (:func:`tool_call_output`); a PARSER only
where the record of :mod:`downsize.export.renderers` shows it returning exactly that call.

    >>> tpl = ("{% for m in messages %}{% if m.tool_calls %}<tool_call>{{ m.tool_calls[0].function | tojson }}"
    ...        "</tool_call>{% else %}{{ m.content }}{% endif %}{% endfor %}")
    >>> tool_call_output(tpl, "", "")
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>'
    >>> tool_call_format(tpl, "", "")
    ('<tool_call>', None)
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

# Tool-call formats Ollama's generic, template-derived parser (JSON after a tag) cannot read, recognised by how
# the Jinja template renders the probe's tool call, and the built-in PARSER (model/parsers in Ollama) that reads it.
PARSER_FORMATS = {
    "qwen3-coder": ("<function=get_weather>", "<parameter=city>"),
    # gpt-oss's harmony messages (`<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>{...}
    # <|call|>`): Ollama picks this PARSER by itself only for the gptoss model family; named, any student gets it
    "harmony": ("to=functions.get_weather", "<|channel|>commentary", "<|call|>"),
}


# End-of-turn markers that are not where a reply ends under a PARSER: a harmony reply is several messages (analysis
# ... <|end|>, then the final one, ending <|return|> or <|call|>, the model's end-of-generation tokens), so stopping
# at <|end|> (also gpt-oss's EOT) would cut it after the reasoning.
NOT_STOPS = {"harmony": ("<|end|>",)}


def without_parser_stops(parser: str | None, stops) -> tuple[str, ...]:
    """``stops`` less the markers ``parser`` must see (NOT_STOPS): for the TEMPLATE's stops and the GGUF's EOT alike."""
    drop = NOT_STOPS.get(parser or "", ())
    return tuple(s for s in stops if s not in drop)


# End-of-generation tokens that close a tool call, which the model's runner stops at (so the output parser never
# sees them): gpt-oss's <|call|> (an EOS of its generation config, beside <|return|>).
CALL_END_TOKENS = ("<|call|>",)


@lru_cache(maxsize=8)
def _call_renderings(template: str, bos: str, eos: str) -> tuple[str | None, str | None]:
    """The Jinja text of [user, assistant tool call] and of the prompt for [user] (the probe's call; None where the
    template refuses), what both the call text and its tag are read from."""
    from downsize.export.gocheck import TOOL_PROBES, Probe, expected

    call_msgs = TOOL_PROBES[1].messages[:2]
    return (expected(template, Probe("call", call_msgs, TOOL_PROBES[1].tools), bos, eos),
            expected(template, Probe("ask", call_msgs[:1], TOOL_PROBES[1].tools), bos, eos))


def tool_call_output(template: str, bos: str, eos: str) -> str | None:
    """The text the model writes for the probe's assistant tool call (what Ollama's output parser is handed): the
    template's rendering of [user, assistant call] past the prompt of [user], without the end-of-turn marker the
    generation stops at. None when the template writes no tool call."""
    text, before = _call_renderings(template, bos, eos)
    if not text or not before:
        return None
    # The prompt may end with text the history form of the turn writes differently (`<think></think>` in the prompt,
    # `</think>` before the call in history): the output starts where the two part, less what the prompt's own
    # tail already holds of it.
    cp = len(os.path.commonprefix([text, before]))
    for o, c in (("<", ">"), ("[", "]")):  # never inside a marker (`<|im_end|>` vs `<TOOLCALL>` share the `<`)
        if text.rfind(o, 0, cp) > text.rfind(c, 0, cp):
            cp = text.rfind(o, 0, cp)
    rest, out = before[cp:], text[cp:]
    out = out[next((len(rest) - k for k in range(len(rest)) if out.startswith(rest[k:])), 0):]
    if "get_weather" not in out:
        return None
    from downsize.export.template import _stops_from_probe

    for stop in (*_stops_from_probe(template, bos, eos), eos, *CALL_END_TOKENS):
        if stop and out.rstrip().endswith(stop):
            out = out.rstrip()[: -len(stop)]
            break
    return out


def tool_call_format(template: str, bos: str, eos: str) -> tuple[str | None, str | None]:
    """(tag, parser) for the way ``template`` writes the probe's assistant tool call, decided by rendering it.

    tag: the marker right before the call (``<tool_call>``, ``[TOOL_CALLS]``), or "{" for a bare JSON object;
    parser: a PARSER_FORMATS name when the call is not JSON. (None, None) when the template writes no tool call."""
    text, before = _call_renderings(template, bos, eos)
    if not text or "get_weather" not in text[len(os.path.commonprefix([text, before or ""])):]:
        return None, None
    for name, marks in PARSER_FORMATS.items():
        if all(m in text for m in marks):
            return "<tool_call>" if "<tool_call>" in text else "{", name
    start = len(os.path.commonprefix([text, before or ""]))
    while start > 0 and text[start - 1] not in "\n>]":  # back to a token boundary (<tool_call> vs <think>)
        start -= 1
    turn = text[start:]
    m = re.search(r'\{\s*"name"\s*:\s*"get_weather"', turn) or re.search(r"get_weather", turn)
    head = turn[:m.start()] if m else ""
    tok = re.search(r"(<[^<>\s]{2,40}>|\[[A-Z_]{2,20}\])[\s\[]*$", head)
    header_tail = (before or "")[-60:]
    if tok and tok.group(1) not in header_tail:
        return tok.group(1), None
    return "{", None


def verified_parser(template: str, bos: str, eos: str, tag: str | None, by_marks: str | None) -> tuple[str | None, str | None]:
    """(PARSER, note) for the tool call the model writes: none when Ollama's template-derived parsing reads it; else
    a built-in parser that the record shows returning exactly that call (preferring the family whose renderer's
    prompts are closest to the template's, then the one the call's marks suggest); for a text the record has not
    seen, the marks' parser."""
    from downsize.export import renderers

    output = tool_call_output(template, bos, eos)
    if output is None or renderers.generic_parses(output, tag):
        return by_marks if output is None else None, None
    verified = renderers.parsers_for(output)
    if verified is None:
        return by_marks, None if by_marks else ("Ollama's tool-call parsing will not read this model's calls (not JSON "
                                                "after a tag, and no built-in parser was checked on this format)")
    if not verified:
        return None, ("none of Ollama's built-in parsers returns this model's tool calls (checked on the record's "
                      "Ollama commit), and its generic parsing needs JSON after a tag: calls come back as text")
    want = renderers.expected_prompts(template, bos, eos)
    # the parser of the family whose renderer writes the most similar prompts; then the marks' parser, then by name
    return max(verified, key=lambda n: (renderers.similarity(want, n), n == by_marks, [-ord(c) for c in n])), None
