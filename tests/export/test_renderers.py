"""RENDERER: Ollama's built-in renderers, chosen for a model only when their recorded prompts (rendered by Ollama's
own Go code, tools/record_ollama_renderers.py) equal the model's Jinja rendering on every probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from downsize.export import gocheck, renderers
from downsize.export.ollama import render_modelfile
from downsize.export.template import convert_chat_template

ROOT = Path(__file__).resolve().parents[2]


def test_the_record_is_for_todays_probes():
    """Changing a probe without re-recording would compare renderers on conversations they never saw."""
    rec = renderers.recorded()
    assert rec.probes == renderers.probes_digest(), "probes changed: run tools/record_ollama_renderers.py again"
    assert len(rec.commit) == 40 and {"gemma4", "qwen3-coder", "cohere", "glimmer", "lfm2"} <= set(rec.renderers)
    for name, r in rec.renderers.items():
        assert set(r["prompts"]) == {p.name for p in gocheck.PROBES}, name
        assert all(r["prompts"][k] is None for k in r["errors"]), name


# A template outside the translator's reach (`| title` on request text: Go has no case mapping), so that only a
# renderer can take it.
UPPER = ("{% for m in messages %}<{{ m['role'] | upper }}>{{ m['content'] | title }}\n{% endfor %}"
         "{% if add_generation_prompt %}<ASSISTANT>{% endif %}")


def _record_from(template: str) -> renderers.Record:
    """A record holding one renderer whose prompts are exactly ``template``'s Jinja renderings, and one that is off
    by a character on one probe."""
    want = renderers.expected_prompts(template, "", "</s>")
    off = dict(want)
    off["thinking"] = (off["thinking"] or "") + " "
    return renderers.Record("f" * 40, "go1.27", renderers.probes_digest(),
                            {"exact": {"bos": "", "prompts": want, "errors": {}},
                             "almost": {"bos": "", "prompts": off, "errors": {}}}, {"names": [], "outputs": []})


def test_a_renderer_that_reproduces_every_probe_is_written_as_RENDERER(monkeypatch):
    monkeypatch.setattr(renderers, "recorded", lambda: _record_from(UPPER))
    conv = convert_chat_template(UPPER, "", "</s>")
    assert conv.style == "renderer" and conv.renderer == "exact" and conv.go_template is None
    modelfile = render_modelfile("./m.gguf", conv, ["</s>"], None)
    assert "RENDERER exact\n" in modelfile and "TEMPLATE" not in modelfile


def test_one_differing_probe_keeps_the_gguf_template_and_names_the_closest(monkeypatch):
    rec = _record_from(UPPER)
    del rec.renderers["exact"]
    monkeypatch.setattr(renderers, "recorded", lambda: rec)
    conv = convert_chat_template(UPPER, "", "</s>")
    assert conv.style == "gguf" and conv.renderer is None
    assert any("closest Ollama built-in renderer: almost" in n and "differs on: thinking" in n for n in conv.notes)
    assert "RENDERER" not in render_modelfile("./m.gguf", conv, ["</s>"], None)


def test_a_record_for_other_probes_is_not_used(monkeypatch):
    rec = _record_from(UPPER)
    monkeypatch.setattr(renderers, "recorded", lambda: renderers.Record(rec.commit, rec.go, "0" * 16, rec.renderers,
                                                                            rec.parsers))
    assert convert_chat_template(UPPER, "", "</s>").renderer is None


@pytest.mark.skipif(not os.environ.get("DOWNSIZE_OLLAMA_GIT"), reason="set DOWNSIZE_OLLAMA_GIT to Ollama's git directory")
def test_the_record_is_what_ollamas_code_renders(tmp_path):
    """Re-record from Ollama's source (builds its renderers with Go, ~10 s) and compare with the committed record."""
    if not gocheck.go_available():
        pytest.skip(gocheck.GO_MISSING)
    out = tmp_path / "rec.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "record_ollama_renderers.py"), "--ollama",
                    os.environ["DOWNSIZE_OLLAMA_GIT"], "--out", str(out)], check=True)
    new, old = json.loads(out.read_text()), json.loads(renderers.RECORD.read_text())
    if new["ollama_commit"] != old["ollama_commit"]:
        pytest.skip(f"another Ollama commit ({new['ollama_commit'][:12]}): re-record to follow it")
    assert new["renderers"] == old["renderers"]


# ---- PARSER: Ollama's output parsers, checked on the tool calls real templates make the model write ----------------

def _template(name):
    from sdist import llama_cpp_dir

    return (llama_cpp_dir() / "models" / "templates" / f"{name}.jinja").read_text()


def test_the_parser_record_holds_only_parsers_that_return_the_probe_call():
    rec = renderers.recorded()
    names = set(rec.parsers["names"])
    assert {"qwen3-coder", "glimmer", "deepseek3", "ministral", "harmony"} <= names
    outs = rec.parsers["outputs"]
    assert len(outs) >= 20 and all(set(o["parsed_by"]) <= names and o["templates"] for o in outs)
    by_template = {t: o for o in outs for t in o["templates"]}
    assert "qwen3-coder" in by_template["Qwen3-Coder"]["parsed_by"]
    assert by_template["muse-glimmer"]["parsed_by"] == ["glimmer"]
    assert by_template["deepseek-ai-DeepSeek-V3.1"]["parsed_by"] == ["deepseek3"]


@pytest.mark.parametrize("output,tag,ok", [
    ('{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}', "{", True),  # Llama 3.1
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>',
     "<tool_call>", True),
    ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]', "[TOOL_CALLS]", True),
    ('<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>', "<tool_call>", False),
    ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}', "[TOOL_CALLS]", False),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}', "<tool_call>", False),  # other arguments
])
def test_generic_parsing_is_json_after_the_tag(output, tag, ok):
    assert renderers.generic_parses(output, tag) is ok


@pytest.mark.parametrize("name,parser", [("Qwen3-Coder", "qwen3-coder"), ("muse-glimmer", "glimmer"),
                                         ("Qwen3.5-4B", "qwen3.5"), ("Qwen-Qwen2.5-7B-Instruct", None),
                                         ("meta-llama-Llama-3.1-8B-Instruct", None)])
def test_export_writes_a_parser_only_where_one_was_checked_on_the_models_calls(name, parser):
    if not gocheck.go_available():
        pytest.skip(gocheck.GO_MISSING)
    conv = convert_chat_template(_template(name), "<s>", "</s>")
    assert conv.style == "translated" and conv.parser == parser, conv.notes
    assert ("PARSER" in render_modelfile("./m.gguf", conv, [], None)) is (parser is not None)


def test_a_call_no_parser_reads_is_said_in_the_notes():
    if not gocheck.go_available():
        pytest.skip(gocheck.GO_MISSING)
    conv = convert_chat_template(_template("openbmb-MiniCPM5-1B"), "<s>", "</s>")
    assert conv.parser is None and any("calls come back as text" in n for n in conv.notes), conv.notes


def test_an_architecture_ollama_gives_a_renderer_itself_is_said_with_what_it_changes():
    """`ollama create` sets RENDERER gemma4 for a gemma4 GGUF whatever the Modelfile's TEMPLATE (server/create.go):
    the export says so, with how many probes that renderer reproduces of the model's own template."""
    from downsize.export.ollama import _arch_renderer_note

    note = _arch_renderer_note("gemma4", _template("google-gemma-4-31B-it"), "<bos>", "<turn|>")
    assert note.startswith("a current Ollama sets RENDERER gemma4 itself") and "differ on:" in note and "thinking" in note
    assert _arch_renderer_note("llama", _template("meta-llama-Llama-3.1-8B-Instruct"), "", "") is None
