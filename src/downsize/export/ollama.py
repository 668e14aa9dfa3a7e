"""Ollama: a GGUF (carrying the model's exact Jinja chat templates) plus a Modelfile with a checked Go TEMPLATE.

    >>> r = export_ollama("zoo:coder-teacher-qwen", "coder-teacher", out_dir="out/ollama", quant="Q8_0")
    >>> r["command"]            # run for you if ollama is on PATH
    'ollama create coder-teacher -f out/ollama/Modelfile'
    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model.gguf", "Q8_0")
    >>> convert_gguf("model.gguf", "mymodel")["command"]        # the same for a GGUF you already have
    'ollama create mymodel -f ...Modelfile'

Everything the Modelfile needs (chat template, BOS/EOS text, context length) is read back from the GGUF,
so both entry points share one path. The TEMPLATE is the Jinja template translated to Go and checked on probe
conversations (downsize.export.template); when it cannot be reproduced the Modelfile has no TEMPLATE and Ollama
renders the GGUF's own chat template (``r["fallback"]`` says why and what an older Ollama loses).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import gguf

from downsize.errors import DownsizeError
from downsize.export.template import ConvertedTemplate, convert_chat_template, forced_style, template_file
from downsize.export.toolcalls import without_parser_stops
from downsize.io import KIND_GGUF, KIND_MODELFILE, KIND_OLLAMA, check_output, mark_dir, write_text_atomic

MODELFILE = "Modelfile"
MAX_DEFAULT_CTX = 32768  # a default num_ctx above this costs more KV memory than most users expect


def _field(r: gguf.GGUFReader, key: str):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def gguf_chat_info(path: str | os.PathLike) -> dict:
    """Chat template, BOS/EOS text, end-of-turn token text and context length from a GGUF's metadata."""
    from downsize.models.checks import read_gguf

    r = read_gguf(path)
    arch = _field(r, "general.architecture")
    tokens = _field(r, "tokenizer.ggml.tokens") or []

    def text(key):
        i = _field(r, key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else ""

    return {"arch": arch, "chat_template": _field(r, "tokenizer.chat_template"),
            "bos": text("tokenizer.ggml.bos_token_id") if _field(r, "tokenizer.ggml.add_bos_token") else "",
            "eos": text("tokenizer.ggml.eos_token_id"), "eot": text("tokenizer.ggml.eot_token_id"),
            "context_length": _field(r, f"{arch}.context_length")}


# Architectures for which `ollama create` sets a built-in renderer (and parser) itself unless the Modelfile names
# one (server/create.go in Ollama fb30760); a renderer takes precedence over the TEMPLATE.
ARCH_RENDERERS = {"gemma4": "gemma4", "laguna": "laguna", "nemotron_h": "nemotron-3-nano",
                  "nemotron_h_moe": "nemotron-3-nano", "nemotron_h_omni": "nemotron-3-nano"}


def _arch_renderer_note(arch: str | None, template: str | None, bos: str, eos: str) -> str | None:
    """What a current Ollama does to this export by the GGUF's architecture alone, measured on the probes."""
    from downsize.export import renderers

    name = ARCH_RENDERERS.get(arch or "")
    if name is None or not template:
        return None
    found = renderers.differing(renderers.expected_prompts(template, bos, eos), name)
    if found is None or not found[1]:
        return None
    differ, n = found
    return (f"a current Ollama sets RENDERER {name} itself for the {arch} architecture, and a renderer replaces the "
            f"TEMPLATE: its prompts reproduce {n - len(differ)} of {n} probes of this model's template"
            + (f" (they differ on: {', '.join(differ)})" if differ else "") + "; an older Ollama uses the TEMPLATE")


def _q(s: str) -> str:
    if '"""' in s:
        raise DownsizeError('the text contains """, which a Modelfile cannot quote', hint="edit the Modelfile by hand")
    return f'"""{s}"""'


def render_modelfile(from_path: str, conv: ConvertedTemplate, stops: list[str], num_ctx: int | None,
                     system: str | None = None, adapter: str | None = None) -> str:
    lines = [f"FROM {from_path}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    if conv.go_template:  # without one, Ollama renders the GGUF's tokenizer.chat_template itself
        from downsize.export.jinja2go import RANGE_INT_NOTE

        if RANGE_INT_NOTE in conv.notes:  # Go >= 1.24 text/template only: say so where an older Ollama fails
            lines.append(f"# {RANGE_INT_NOTE}")
        lines.append(f"TEMPLATE {_q(conv.go_template)}")
    if conv.renderer:  # Ollama's built-in renderer, chosen because it reproduces the model's template on every probe
        lines.append(f"RENDERER {conv.renderer}")
    if conv.parser:  # Ollama's built-in parser for a tool-call format its template-derived parser cannot read
        lines.append(f"PARSER {conv.parser}")
    if system:
        lines.append(f"SYSTEM {_q(system)}")
    for s in stops:
        quoted = _q(s) if (" " in s or '"' in s) else s
        lines.append(f"PARAMETER stop {quoted}")
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def convert_gguf(gguf_file: str | os.PathLike, name: str, out_dir: str | os.PathLike | None = None, *,
                 template_style: str | None = None, system: str | None = None, num_ctx: int | None = None,
                 adapter: str | os.PathLike | None = None, create: bool = True,
                 template_file_path: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Write a Modelfile for ``gguf_file`` (in ``out_dir``, default beside it) and register it with Ollama if present."""
    gguf_file = Path(gguf_file).resolve()
    if not gguf_file.exists():
        raise DownsizeError(f"no GGUF file at {gguf_file}", hint="export one with `downsize export gguf`")
    if not name or any(c.isspace() for c in name):
        raise DownsizeError(f"invalid Ollama model name {name!r}", hint="use e.g. coder-small or coder-small:q4")
    check_output((Path(out_dir) if out_dir else gguf_file.parent) / MODELFILE, KIND_MODELFILE, overwrite)
    info = gguf_chat_info(gguf_file)
    if template_file_path:
        conv = template_file(str(template_file_path), info["eos"])
    elif template_style:
        conv = forced_style(template_style, info["eos"])
    else:
        conv = convert_chat_template(info["chat_template"], info["bos"], info["eos"])
    if not (template_file_path or template_style) and conv.renderer is None:
        note = _arch_renderer_note(info["arch"], info["chat_template"], info["bos"], info["eos"])
        if note:
            conv = dataclasses.replace(conv, notes=(*conv.notes, note))
    stops = list(dict.fromkeys([*conv.stops, *(t for t in (info["eot"], info["eos"]) if t)]))
    stops = list(without_parser_stops(conv.parser, stops))  # the GGUF's EOT may be one the parser needs to see
    ctx = num_ctx or (min(int(info["context_length"]), MAX_DEFAULT_CTX) if info["context_length"] else None)
    out_dir = Path(out_dir) if out_dir else gguf_file.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    modelfile = out_dir / MODELFILE
    rel = os.path.relpath(gguf_file, out_dir.resolve())
    from_path = f"./{rel}" if not rel.startswith("..") else str(gguf_file)
    text = render_modelfile(from_path, conv, stops, ctx, system or conv.default_system,
                            str(Path(adapter).resolve()) if adapter else None)
    write_text_atomic(modelfile, text, KIND_MODELFILE, overwrite)
    command = f"ollama create {shlex.quote(name)} -f {shlex.quote(str(modelfile))}"
    created = False
    if create and shutil.which("ollama"):
        p = subprocess.run(["ollama", "create", name, "-f", str(modelfile)], capture_output=True, text=True)
        if p.returncode != 0:
            raise DownsizeError(f"`{command}` failed: {(p.stderr or p.stdout).strip()[-500:]}",
                                hint="is the Ollama server running (`ollama serve`)?")
        created = True
    return {"name": name, "gguf": str(gguf_file), "modelfile": str(modelfile), "template_style": conv.style,
            "tools": conv.tools, "tool_tag": conv.tool_tag, "parser": conv.parser, "renderer": conv.renderer, "template_notes": list(conv.notes), "fallback": conv.fallback, "stops": stops, "num_ctx": ctx, "default_system": conv.default_system, "command": command, "created": created}


def export_ollama(model: str | os.PathLike, name: str, out_dir: str | os.PathLike, quant: str = "Q4_K_M", *,
                  imatrix: str | os.PathLike | None = None, template_style: str | None = None,
                  num_ctx: int | None = None, create: bool = True, rescale: bool = True,
                  template_file_path: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Export ``model`` to ``out_dir/NAME.QUANT.gguf`` and write the Modelfile beside it."""
    from downsize.export.gguf import export_gguf

    out_dir = Path(out_dir)
    check_output(out_dir, KIND_OLLAMA, overwrite)
    safe = name.replace(":", "-").replace("/", "-")
    g = out_dir / f"{safe}.{quant.lower()}.gguf"
    check_output(g, KIND_GGUF, overwrite)
    check_output(out_dir / MODELFILE, KIND_MODELFILE, overwrite)
    # A model without any chat template is refused before time goes into the weights; every other template
    # exports (translated to a checked TEMPLATE, or rendered by Ollama from the GGUF).
    from downsize.models.refs import load_tokenizer

    if not (template_style or template_file_path):
        tok = load_tokenizer(model)
        if not tok.chat_template:
            convert_chat_template(None)
    res = export_gguf(model, g, quant, imatrix=imatrix, rescale=rescale, overwrite=overwrite)
    mark_dir(out_dir, KIND_OLLAMA)
    out = convert_gguf(g, name, out_dir, template_style=template_style, num_ctx=num_ctx, create=create,
                       template_file_path=template_file_path, overwrite=overwrite)
    out.update(quant=quant, bytes=res.nbytes, params=res.n_params)
    return out
