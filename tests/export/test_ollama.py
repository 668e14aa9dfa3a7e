"""Ollama export: the Jinja chat template translated to a Go TEMPLATE, checked by rendering it with Go's own
text/template (downsize/export/gorender, built once into the cache) against the Jinja rendering of the original
template. The hand-written styles (chatml, llama3, …) remain for --template-style and are tested here too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from downsize.errors import DownsizeError
from downsize.export import gocheck
from downsize.export.template import (PROBES, PROBES_WITH_SYSTEM, convert_chat_template, forced_style, recognise_style,
                                      render_jinja)
from downsize.zoo.tokenizer import CHATML_TEMPLATE

# Chat templates as the model families ship them (tokenizer_config.json), shortened to their message logic.
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA2 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}"
    "{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
GEMMA3 = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}"
)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
ALPACA = "{% for m in messages %}### {{ m['role'] }}:\\n{{ m['content'] }}\\n\\n{% endfor %}### Response:\\n"

CASES = {  # name -> (template, bos, eos, style, default system, system supported)
    "zoo-chatml": (CHATML_TEMPLATE, "", "<|endoftext|>", "chatml", None, True),
    "qwen2.5": (QWEN25, "", "<|im_end|>", "chatml", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", True),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3", None, True),
    "mistral": (MISTRAL, "<s>", "</s>", "mistral", None, False),
    "gemma2": (GEMMA2, "<bos>", "<eos>", "gemma", None, False),
    "gemma3": (GEMMA3, "<bos>", "<eos>", "gemma", None, True),
    "phi3": (PHI3, "", "<|endoftext|>", "phi3", None, True),
}

EXTRA = [  # more conversations: unicode, code, blank lines, a longer exchange
    ([{"role": "user", "content": "def f(x):\n    return x * 2\n\n# explain ü 日本 😀"},
      {"role": "assistant", "content": "It doubles x.\n\nExample: f(2) == 4"},
      {"role": "user", "content": "And f('ab')?"}, {"role": "assistant", "content": "'abab'"},
      {"role": "user", "content": "ok"}], True),
]


@pytest.fixture(scope="module")
def gorender():
    if not gocheck.go_available():
        pytest.skip("Go is not installed (apt-get install golang-go)")

    def render(template: str, messages: list[dict]) -> str:
        (text, err), = gocheck.render_go_batch([template], [(0, gocheck.Probe("t", messages))])
        assert err is None, err
        return text

    return render


def _ollama_messages(msgs, conv):
    """What Ollama passes to the template: the Modelfile SYSTEM prepended when the request has none."""
    if conv.default_system and not any(m["role"] == "system" for m in msgs):
        return [{"role": "system", "content": conv.default_system}, *msgs]
    return msgs


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_written_styles_render_like_jinja(case, gorender):
    """The pre-#15 recogniser and its styles (what --template-style NAME writes) still reproduce these formats."""
    template, bos, eos, style, default_system, system_ok = CASES[case]
    conv = recognise_style(template, bos, eos)
    assert conv.style == style and conv.default_system == default_system and conv.system_ok == system_ok
    convs = list(PROBES) + EXTRA + ([PROBES_WITH_SYSTEM] if system_ok else [])
    for msgs, gen in convs:
        jinja = render_jinja(template, msgs, gen, bos, eos)
        jinja = jinja[len(bos):] if bos and jinja.startswith(bos) else jinja
        go = gorender(conv.go_template, _ollama_messages(msgs, conv))
        assert go == jinja, (case, msgs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_translated_template_renders_like_jinja(case, gorender):
    """The default path (#15): the Jinja AST translated to Go, default system prompts inside the TEMPLATE itself."""
    template, bos, eos, *_ = CASES[case]
    conv = convert_chat_template(template, bos, eos)
    assert conv.style == "translated", conv.fallback
    assert conv.default_system is None  # Qwen2.5's default system prompt lives in the TEMPLATE's else-branch
    probes = list(gocheck.PLAIN_PROBES) + [gocheck.Probe(f"extra{k}", m) for k, (m, _) in enumerate(EXTRA)]
    r = gocheck.check_templates([(template, conv.go_template, bos, eos)], probes)[0]
    assert r.plain_ok and not r.failures, r.failures
    if case == "qwen2.5":
        assert conv.stops == ("<|im_end|>",)


def test_untranslatable_template_falls_back_to_the_gguf_template():
    # Go templates cannot title-case text (no function for it in Ollama's map; ASCII `upper` is built byte by byte
    # now): no TEMPLATE, Ollama renders the GGUF's chat template. (A substring test, then `upper`, used to be the
    # example; Go >= 1.24 expresses both.)
    src = "{% for m in messages %}{{ m.content | title }}{% endfor %}"
    conv = convert_chat_template(src, "", "</s>")
    assert conv.style == "gguf" and conv.go_template is None
    assert "`title` filter" in conv.fallback and "--template-file" in conv.fallback
    assert "older Ollama" in conv.fallback or "predates" in conv.fallback


def test_alpaca_style_template_is_translated(gorender):
    # refused by the pre-#15 recogniser; the translator needs no known format
    conv = convert_chat_template(ALPACA, "", "</s>")
    assert conv.style == "translated"
    msgs = PROBES[0][0]
    assert gorender(conv.go_template, msgs) == render_jinja(ALPACA, msgs, True, "", "</s>")


def test_missing_template_is_refused_with_a_hint():
    with pytest.raises(DownsizeError, match="matches none of the formats") as e:
        recognise_style(ALPACA, "", "</s>")
    assert "--template-style" in e.value.hint
    with pytest.raises(DownsizeError, match="no chat template"):
        convert_chat_template(None)
    with pytest.raises(DownsizeError, match="unknown chat template style"):
        forced_style("alpaca", "</s>")


def test_export_ollama_writes_gguf_and_modelfile(tiny_model_dir, tmp_path, gorender, monkeypatch):
    from downsize.export.ollama import convert_gguf, export_ollama

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no ollama binary: the command is returned, not run
    r = export_ollama(tiny_model_dir, "tiny-coder", tmp_path / "ol", quant="Q8_0")
    mf = Path(r["modelfile"]).read_text()
    assert mf.startswith("FROM ./tiny-coder.q8_0.gguf\n")
    assert "PARAMETER stop <|im_end|>" in mf and "PARAMETER stop <|endoftext|>" in mf
    assert "PARAMETER num_ctx 256" in mf
    assert r["created"] is False and r["command"] == f"ollama create tiny-coder -f {tmp_path / 'ol' / 'Modelfile'}"
    template = mf.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert r["template_style"] == "translated" and r["fallback"] is None
    msgs, gen = PROBES[0]
    assert gorender(template, msgs) == render_jinja(CHATML_TEMPLATE, msgs, gen, "", "<|endoftext|>")
    # `downsize convert --gguf FILE --name NAME` path: the same Modelfile from the GGUF alone.
    r2 = convert_gguf(r["gguf"], "tiny-coder", tmp_path / "ol2")
    assert Path(r2["modelfile"]).read_text().replace(f"FROM {r['gguf']}", "FROM ./tiny-coder.q8_0.gguf") == mf


def test_cli_convert(tiny_model_dir, tmp_path, monkeypatch, gorender):  # gorender: skips without Go
    from typer.testing import CliRunner

    from downsize.cli import app
    from downsize.export.gguf import export_gguf

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    g = tmp_path / "m.gguf"
    export_gguf(tiny_model_dir, g, "F16")
    r = CliRunner().invoke(app, ["convert", "--gguf", str(g), "--name", "tiny", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["template_style"] == "translated" and Path(info["modelfile"]).exists()


def _ollama_stand_in(bin_dir: Path, log: Path, rc: int) -> None:
    """An executable named `ollama` that records how it was called and what the Modelfile's FROM points at.
    Ollama itself cannot run here; this checks the calling contract (`ollama create NAME -f MODELFILE`)."""
    bin_dir.mkdir()
    exe = bin_dir / "ollama"
    exe.write_text(f"""#!/bin/sh
echo "$@" > {log}
mf="$4"; from=$(sed -n 's/^FROM //p' "$mf"); cd "$(dirname "$mf")" && test -s "$from" && echo "from-ok" >> {log}
if [ {rc} -ne 0 ]; then echo "Error: could not connect to ollama app, is it running?" >&2; fi
exit {rc}
""")
    exe.chmod(0o755)


def test_ollama_create_runs_when_ollama_is_on_path(tiny_model_dir, tmp_path, monkeypatch):
    from downsize.errors import DownsizeError
    from downsize.export.ollama import convert_gguf, export_ollama

    log = tmp_path / "calls.txt"
    _ollama_stand_in(tmp_path / "bin", log, rc=0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    r = export_ollama(tiny_model_dir, "tiny-coder", tmp_path / "ol", quant="Q8_0")
    assert r["created"] is True
    assert log.read_text().splitlines() == [f"create tiny-coder -f {tmp_path / 'ol' / 'Modelfile'}", "from-ok"]
    # a failing `ollama create` (server not running) is a clear error that says what to do
    _ollama_stand_in(tmp_path / "bin2", tmp_path / "calls2.txt", rc=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin2'}:/usr/bin:/bin")
    with pytest.raises(DownsizeError, match="could not connect") as e:
        convert_gguf(r["gguf"], "tiny-coder", tmp_path / "ol3")
    assert "ollama serve" in e.value.hint


def test_without_go_the_export_falls_back_and_says_so(monkeypatch):
    monkeypatch.setattr(gocheck, "go_binary", lambda: None)
    conv = convert_chat_template(CASES["qwen2.5"][0], "", "<|im_end|>")
    assert conv.style == "gguf" and conv.go_template is None
    assert conv.fallback.startswith(gocheck.GO_MISSING) and "--template-file" in conv.fallback
    with pytest.raises(DownsizeError, match="Go is not installed"):
        gocheck.gorender_exe()
