"""Jinja chat template → Ollama Modelfile TEMPLATE: translated from the template's AST, checked by rendering.

    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")
    >>> conv = convert_chat_template(tok.chat_template, bos_token="", eos_token="<|endoftext|>")
    >>> conv.style, conv.tools, conv.stops
    ('translated', False, ('<|im_end|>',))
    >>> print(conv.go_template)                    # None when style == 'gguf' (see conv.fallback)
    {{ define "pyjson_any_c_2" }}...<|im_start|>{{ .Role }}
    {{ .Content }}...<|im_end|>
    {{ end }}{{ if $agp }}<|im_start|>assistant
    {{ end }}

The template is translated to Go text/template (downsize.export.jinja2go) and the result is rendered by Go's
text/template on Ollama's data model (downsize.export.gocheck) for every probe conversation — plain chats, a
request with tools, a tool call + tool result — and compared byte for byte with the Jinja rendering. Only a
TEMPLATE that reproduces every probe is written. Otherwise the export still succeeds with style 'gguf': the
Modelfile carries no TEMPLATE and current Ollama renders the GGUF's own tokenizer.chat_template; ``fallback``
says why and what an older Ollama loses. ``--template-style NAME`` forces one of the hand-written STYLES
below (chatml, llama3, mistral, gemma, phi3; no tool calling) and ``--template-file`` a TEMPLATE you wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from downsize.errors import DownsizeError

Message = dict  # {"role": ..., "content": ...}

# Probe conversations: (messages, add_generation_prompt). Multi-line content, no surrounding whitespace
# (some templates trim, which Go text/template cannot); roles as Ollama sends them.
_S, _U1, _A1, _U2 = "You are a terse assistant.", "What does\nlen([]) return?", "It returns 0.", "And len('ab')?"
PROBES_WITH_SYSTEM = ([{"role": "system", "content": _S}, {"role": "user", "content": _U1},
                       {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}], True)
PROBES = [
    ([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}], True),
    ([{"role": "user", "content": _U1}], True),
    ([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}], False),
]

# Go: `$last` is true on the final message (text/template has no arithmetic; the slice trick is Ollama's own).
_LAST = "{{- $last := eq (len (slice $.Messages $i)) 1 }}"


@dataclass(frozen=True)
class ChatStyle:
    name: str
    render: Callable[[list[Message], bool, str], str]  # (messages, add_generation_prompt, eos) -> text
    go_template: Callable[[str], str]  # eos -> Go template
    stops: Callable[[str], tuple[str, ...]]  # eos -> end-of-turn strings
    system_ok: bool = True  # the format has a place for a system prompt


STYLES: dict[str, ChatStyle] = {}


def register_style(style: ChatStyle) -> ChatStyle:
    if style.name in STYLES:
        raise ValueError(f"chat style {style.name!r} is registered twice")
    STYLES[style.name] = style
    return style


# ---- ChatML (Qwen, the zoo) ---------------------------------------------------------------------------------
def _chatml(msgs, gen, eos):
    s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
    return s + ("<|im_start|>assistant\n" if gen else "")


register_style(ChatStyle(
    "chatml", _chatml,
    lambda eos: ("{{- range $i, $m := .Messages }}" + _LAST + "<|im_start|>{{ $m.Role }}\n{{ $m.Content }}"
                 "{{ range $m.ToolCalls }}<tool_call>{\"name\": \"{{ .Function.Name }}\", \"arguments\": "
                 "{{ json .Function.Arguments }}}</tool_call>{{ end }}<|im_end|>\n"
                 "{{ if and $last (ne $m.Role \"assistant\") }}<|im_start|>assistant\n{{ end }}{{- end }}"),
    lambda eos: ("<|im_end|>",)))


# ---- Llama 3 -----------------------------------------------------------------------------------------------
def _llama3(msgs, gen, eos):
    s = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>" for m in msgs)
    return s + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if gen else "")


register_style(ChatStyle(
    "llama3", _llama3,
    lambda eos: ("{{- range $i, $m := .Messages }}" + _LAST + "<|start_header_id|>{{ $m.Role }}<|end_header_id|>\n\n"
                 "{{ $m.Content }}<|eot_id|>{{ if and $last (ne $m.Role \"assistant\") }}"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}{{- end }}"),
    lambda eos: ("<|eot_id|>",)))


# ---- Mistral [INST] (v0.1/v0.2 instruct: no system role) ----------------------------------------------------
def _mistral(msgs, gen, eos):
    out = []
    for m in msgs:
        if m["role"] == "user":
            out.append(f"[INST] {m['content']} [/INST]")
        elif m["role"] == "assistant":
            out.append(m["content"] + eos)
    return "".join(out)


register_style(ChatStyle(
    "mistral", _mistral,
    lambda eos: ("{{- range $i, $m := .Messages }}{{ if eq $m.Role \"user\" }}[INST] {{ $m.Content }} [/INST]"
                 "{{ else if eq $m.Role \"assistant\" }}{{ $m.Content }}" + eos + "{{ end }}{{- end }}"),
    lambda eos: (eos, "[INST]"), system_ok=False))


# ---- Gemma (2: no system; 3: the system prompt is prefixed to the first user turn) ---------------------------
def _gemma(msgs, gen, eos):
    system = next((m["content"] for m in msgs if m["role"] == "system"), None)
    out, first = [], True
    for m in msgs:
        if m["role"] == "system":
            continue
        role = "model" if m["role"] == "assistant" else m["role"]
        prefix = f"{system}\n\n" if first and system else ""
        first = False
        out.append(f"<start_of_turn>{role}\n{prefix}{m['content']}<end_of_turn>\n")
    return "".join(out) + ("<start_of_turn>model\n" if gen else "")


register_style(ChatStyle(
    "gemma", _gemma,
    lambda eos: ("{{- $system := \"\" }}{{- range .Messages }}{{ if eq .Role \"system\" }}{{ $system = .Content }}{{ end }}{{ end }}"
                 "{{- $first := true }}"
                 "{{- range $i, $m := .Messages }}" + _LAST +
                 "{{- if ne $m.Role \"system\" }}<start_of_turn>{{ if eq $m.Role \"assistant\" }}model{{ else }}{{ $m.Role }}{{ end }}\n"
                 "{{ if and $first $system }}{{ $system }}\n\n{{ end }}{{ $first = false }}{{ $m.Content }}<end_of_turn>\n{{ end }}"
                 "{{- if and $last (ne $m.Role \"assistant\") }}<start_of_turn>model\n{{ end }}{{- end }}"),
    lambda eos: ("<end_of_turn>",)))


# ---- Phi-3 ---------------------------------------------------------------------------------------------------
def _phi3(msgs, gen, eos):
    s = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in msgs)
    return s + ("<|assistant|>\n" if gen else eos)


register_style(ChatStyle(
    "phi3", _phi3,
    lambda eos: ("{{- range $i, $m := .Messages }}" + _LAST + "<|{{ $m.Role }}|>\n{{ $m.Content }}<|end|>\n"
                 "{{ if $last }}{{ if ne $m.Role \"assistant\" }}<|assistant|>\n{{ else }}" + eos + "{{ end }}{{ end }}{{- end }}"),
    lambda eos: ("<|end|>",)))


@dataclass(frozen=True)
class ConvertedTemplate:
    style: str  # 'translated', 'renderer' (RENDERER), 'gguf' (no TEMPLATE: Ollama renders the GGUF's chat template), 'file' or a STYLES name
    go_template: str | None
    stops: tuple[str, ...]
    default_system: str | None  # a system prompt the Jinja template inserts when none is given (Modelfile SYSTEM)
    system_ok: bool
    tools: bool = False  # the TEMPLATE renders .Tools, tool calls and tool results (checked on the probes)
    notes: tuple[str, ...] = ()  # approximations the translation made (e.g. `trim` not applied)
    fallback: str | None = None  # why no TEMPLATE is written, and what an older Ollama loses
    tool_tag: str | None = None  # the tool-call tag Ollama's tools package derives from the TEMPLATE ("{": bare JSON)
    parser: str | None = None  # Modelfile PARSER: one of Ollama's built-in output parsers, when the format needs it
    renderer: str | None = None  # Modelfile RENDERER: an Ollama built-in renderer that reproduces every probe exactly


def render_jinja(template: str, messages: list[Message], add_generation_prompt: bool, bos_token: str = "",
                 eos_token: str = "") -> str:
    """The Jinja chat template rendered as transformers does (same sandbox, filters and globals)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    out = render_jinja_template([messages], chat_template=template, add_generation_prompt=add_generation_prompt,
                                bos_token=bos_token, eos_token=eos_token)
    text = out[0][0] if isinstance(out, tuple) else out
    return text[0] if isinstance(text, list) else text


def _strip_bos(text: str, bos: str) -> str:
    # llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token), so the Go template must not write it again.
    return text[len(bos):] if bos and text.startswith(bos) else text


STYLE_GGUF, STYLE_TRANSLATED, STYLE_FILE, STYLE_RENDERER = "gguf", "translated", "file", "renderer"
OLD_OLLAMA_LOSS = ("an Ollama that predates GGUF chat-template rendering has no "
                   "TEMPLATE to use: it guesses one from its built-in list by similarity, so the prompt format may "
                   "differ and tool calling is not offered")
OVERRIDE_HINT = "override with --template-file FILE (a Go TEMPLATE you checked) or --template-style NAME ({})"


def _stops_from_probe(template: str, bos: str, eos: str) -> tuple[str, ...]:
    """The end-of-turn marker the Jinja template writes after an assistant reply (e.g. <|im_end|>, <|eot_id|>)."""
    import re

    from downsize.export.gocheck import PLAIN_PROBES, expected

    text = expected(template, PLAIN_PROBES[1], bos, eos) or ""
    answer = PLAIN_PROBES[1].messages[1]["content"]
    i = text.find(answer)
    m = re.match(r"\s*(<[^<>\s]{2,40}>|\[/?[A-Z_]{2,20}\])", text[i + len(answer):]) if i >= 0 else None
    return (m.group(1),) if m and m.group(1) != bos else ((eos,) if eos else ())


def convert_chat_template(template: str | None, bos_token: str = "", eos_token: str = "") -> ConvertedTemplate:
    """Translate ``template`` to a Go TEMPLATE and check it on the probes; fall back to the GGUF's own template."""
    from downsize.export import gocheck
    from downsize.export.jinja2go import Untranslatable, translate

    if not template:
        raise DownsizeError("the model has no chat template", hint="set tokenizer.chat_template, or pass --template-style NAME "
                                                                  f"({', '.join(STYLES)}) to force one")
    stops = _stops_from_probe(template, bos_token, eos_token)
    hint = OVERRIDE_HINT.format(", ".join(STYLES))

    def fallback(why: str) -> ConvertedTemplate:
        # Before the GGUF's own template: one of Ollama's built-in renderers, if its recorded prompts (rendered by
        # Ollama's code) equal the Jinja rendering on every probe (downsize.export.renderers).
        from downsize.export import renderers

        want = renderers.expected_prompts(template, bos_token, eos_token)
        found = renderers.match(want)
        if found is not None:
            return ConvertedTemplate(STYLE_RENDERER, None, stops, None, True, tools=True, renderer=found.name,
                                     notes=((f"RENDERER {found.name}: Ollama's built-in renderer (as of Ollama commit "
                                             f"{found.commit[:12]}) reproduces every probe; {why}"),))
        near = renderers.closest(want)
        notes = () if near is None else (
            (f"closest Ollama built-in renderer: {near[0]} (reproduces {near[2] - len(near[1])} of {near[2]} probes, "
             f"differs on: {', '.join(near[1])}); not used"),)
        return ConvertedTemplate(STYLE_GGUF, None, stops, None, True, notes=notes,
                                 fallback=f"{why}; {OLD_OLLAMA_LOSS}; {hint}")

    if gocheck.expected(template, gocheck.PLAIN_PROBES[0], bos_token, eos_token) is None:
        # e.g. a tool_use-only template that iterates `tools` unconditionally: nothing to check a TEMPLATE against
        return fallback("the Jinja template fails on a plain one-message user conversation, so no TEMPLATE can be "
                        "checked against it")

    try:
        # ranging over an integer (substring tests, replace) only where the checking Go can render it (>= 1.24)
        go = translate(template, bos_token, eos_token, range_int=gocheck.go_range_int())
    except Untranslatable as e:
        return fallback(f"the Jinja construct `{e.construct}` has no Go text/template counterpart")
    if not gocheck.go_available():
        return fallback(gocheck.GO_MISSING)
    res = gocheck.check_templates([(template, go.go, bos_token, eos_token)])[0]
    if not res.plain_ok:
        return fallback("the translated TEMPLATE does not reproduce the Jinja rendering (" + "; ".join(res.failures)[:300] + ")")
    if not res.thinking_ok:
        return fallback("the translated TEMPLATE does not reproduce an assistant turn with reasoning (" +
                        "; ".join(res.failures)[:300] + ")")
    writes_tools = gocheck.jinja_writes_tools(template, bos_token, eos_token)
    if writes_tools and not res.tools_ok:
        return fallback("the translated TEMPLATE renders plain chats exactly but not tools (" +
                        "; ".join(res.failures)[:300] + ")")
    notes, text, tag, parser = list(go.notes), go.go, None, None
    if writes_tools:
        from downsize.export.jinja2go import with_tool_tag
        from downsize.export.toolcalls import tool_call_format, verified_parser, without_parser_stops

        tag, parser = tool_call_format(template, bos_token, eos_token)
        parser, why_parser = verified_parser(template, bos_token, eos_token, tag, parser)
        if why_parser:
            notes.append(why_parser)
        if tag and tag != "{" and not parser and gocheck.tool_tags([text])[0] != tag:
            # the TEMPLATE must show Ollama's parser the tag the model writes before a call
            text = with_tool_tag(text, tag)
            if gocheck.tool_tags([text])[0] != tag:
                notes.append(f"Ollama's tool-call parser will not find the tag {tag!r}: tool calls may come back as text")
            elif not gocheck.check_templates([(template, text, bos_token, eos_token)])[0].tools_ok:
                text = go.go
                notes.append(f"the tool-call tag {tag!r} could not be shown to Ollama's parser")
        if tag == "{" and gocheck.tool_tags([text])[0] != "{":
            notes.append(f"Ollama's tool-call parser will look for {gocheck.tool_tags([text])[0]!r} before a call, "
                         "but the model writes a bare JSON object")
        if tag is None:
            notes.append("the template renders no assistant tool call: Ollama gets tool definitions in the prompt, "
                         "but the model's tool calls are not parsed")
        stops = without_parser_stops(parser, stops)
    return ConvertedTemplate(STYLE_TRANSLATED, text, stops, None, True, tools=writes_tools and res.tools_ok,
                             notes=tuple(notes), tool_tag=tag, parser=parser)


def recognise_style(template: str | None, bos_token: str = "", eos_token: str = "") -> ConvertedTemplate:
    """The pre-#15 converter: recognise ``template``'s format among STYLES; refuse when none reproduces it."""
    if not template:
        raise DownsizeError("the model has no chat template", hint="set tokenizer.chat_template, or pass --template-style NAME "
                                                                  f"({', '.join(STYLES)}) to force one")
    try:
        renders = [(_strip_bos(render_jinja(template, m, g, bos_token, eos_token), bos_token), m, g) for m, g in PROBES]
    except Exception as e:  # noqa: BLE001 — a template that fails on a plain conversation is unusable
        raise DownsizeError(f"the chat template fails on a plain user/assistant conversation: {e}",
                            hint="fix the template or pass --template-style to force a format") from None
    try:
        m, g = PROBES_WITH_SYSTEM
        with_system = _strip_bos(render_jinja(template, m, g, bos_token, eos_token), bos_token)
    except Exception:  # noqa: BLE001 — e.g. Gemma 2 / Mistral v0.1 raise "System role not supported"
        with_system = None
    for style in STYLES.values():
        matched, default_system = True, None
        for text, msgs, gen in renders:
            want = style.render(msgs, gen, eos_token)
            if text == want:
                continue
            # A template that inserts a default system prompt when none is given (Qwen2.5's "You are Qwen…").
            if style.system_ok and default_system is None:
                for cand in _default_system_candidates(style, text, msgs, gen, eos_token):
                    default_system = cand
                    break
            if default_system is None or text != style.render([{"role": "system", "content": default_system}, *msgs], gen, eos_token):
                matched = False
                break
        if not matched:
            continue
        if with_system is not None and style.system_ok and with_system != style.render(PROBES_WITH_SYSTEM[0], True, eos_token):
            continue
        return ConvertedTemplate(style.name, style.go_template(eos_token), style.stops(eos_token), default_system,
                                 style.system_ok and with_system is not None)
    raise DownsizeError("the chat template matches none of the formats downsize converts for Ollama "
                        f"({', '.join(STYLES)})",
                        hint="write the Modelfile TEMPLATE by hand (see docs/export.md), or pass --template-style NAME "
                             "to force a format you have checked")


def _default_system_candidates(style: ChatStyle, text: str, msgs, gen, eos):
    """System prompts D such that the style renders [system D] + msgs as ``text`` (found by the style's own prefix)."""
    marker = "\x00SYSTEM\x00"
    skeleton = style.render([{"role": "system", "content": marker}, *msgs], gen, eos)
    head, _, tail = skeleton.partition(marker)
    if head and text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail):
        yield text[len(head): len(text) - len(tail)]


def forced_style(name: str, eos_token: str) -> ConvertedTemplate:
    if name not in STYLES:
        raise DownsizeError(f"unknown chat template style {name!r}", hint=f"choose one of {', '.join(STYLES)}")
    s = STYLES[name]
    return ConvertedTemplate(s.name, s.go_template(eos_token), s.stops(eos_token), None, s.system_ok,
                             notes=(f"forced style {name}: not checked against the model's template",))


def template_file(path: str, eos_token: str) -> ConvertedTemplate:
    """A Go TEMPLATE the user wrote (--template-file), used as is."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DownsizeError(f"no template file at {p}", hint="pass a file holding a Go text/template TEMPLATE")
    text = p.read_text()
    return ConvertedTemplate(STYLE_FILE, text, (eos_token,) if eos_token else (), None, True, tools=".Tools" in text,
                             notes=(f"TEMPLATE from {p}: not checked",))
