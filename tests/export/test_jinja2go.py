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
}


@pytest.fixture(scope="module")
def results():
    if not gocheck.go_available():
        pytest.skip("Go is not installed (apt-get install golang-go)")
    names = sorted(CASES)
    gos = [translate(CASES[n], "", EOS).go for n in names]
    return dict(zip(names, gocheck.check_templates([(CASES[n], g, "", EOS) for n, g in zip(names, gos)])))


@pytest.mark.parametrize("case", sorted(CASES))
def test_construct_renders_like_jinja(case, results):
    r = results[case]
    assert r.plain_ok and r.thinking_ok and r.tools_ok and not r.failures, r.failures


def test_substring_test_on_request_text_is_still_refused():
    # Go 1.19's text/template has no substring search and Ollama registers no function for one
    with pytest.raises(Untranslatable, match="substring test"):
        translate("{% for m in messages %}{% if '/think' in m.content %}T{% endif %}{% endfor %}", "", EOS)


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
        pytest.skip("Go is not installed (apt-get install golang-go)")
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
