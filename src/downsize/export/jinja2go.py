"""Translate a Jinja chat template (its AST) into an Ollama Go text/template TEMPLATE.

    >>> from downsize.export.jinja2go import translate
    >>> t = translate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    ...               "{% if add_generation_prompt %}<|assistant|>{% endif %}", eos_token="</s>")
    >>> print(t.go)
    {{ $agp := true }}{{ range $.Messages }}{{ $agp = ne .Role "assistant" }}{{ end }}{{ range $i1, $m2 := $.Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}{{ if $agp }}<|assistant|>{{ end }}

The template is parsed with jinja2 (transformers' environment: trim_blocks, lstrip_blocks, `generation` blocks)
and *partially evaluated*: everything Ollama's request cannot change (`date_string is defined`, `custom_tools`,
the BOS/EOS text, macro calls, loops over a dict's fixed keys) is computed here, and only what depends on the
conversation becomes Go. Ollama's data model (template/template.go in github:ollama/ollama) decides the mapping:

- ``messages`` → ``$.Messages`` (Role, Content, Thinking, ToolCalls, ToolName, ToolCallID); ``tools`` → ``$.Tools``;
  ``add_generation_prompt`` → "the last message is not the assistant's" (how Ollama decides to prefill).
- ``tojson`` → generated ``define`` blocks that write Python ``json.dumps`` spacing (``", "``, ``": "``, ``indent=N``)
  for Ollama's tool / argument types; Ollama's own ``json`` function is compact and would differ. Strings: with
  ``range_int`` (Go >= 1.24) the ``pyjson_str`` define re-reads Go's JSON text and writes ``<``, ``>``, ``&``,
  U+2028 / U+2029 as Python does (Go escapes them); without it they stay Go's ``\\u003c`` ..., noted.
- ``loop.last`` → ``eq (len (slice SEQ $i)) 1``; ``messages[loop.index0 ± 1]`` → a tracked previous / a shifted slice;
  ``strftime_now`` → Ollama's ``currentDate`` re-formatted in Go; ``raise_exception`` → nothing (Ollama never raises).
- Thinking tags inside ``content`` (``'</think>' in content``, ``content.split('</think>')``): Ollama keeps the reasoning in
  ``.Thinking``, so content holds none and these fold to constants.
- Text only Go's output produces (a macro's output, ``{% set x %}`` blocks, text variables): its truth is derived from
  the Go it prints (:func:`text_truth`); where an expression needs its value (``.startswith``, ``!= ''``) it is
  built as a string variable with ``print`` (:meth:`Translator.materialize`; not for tojson, whose ``define`` output
  cannot be captured). Loops re-run for their text restore the variables they assign from snapshots.
- Go has no ``+``, no case mapping, no lists: counters are strings of ``x`` (``len`` reads, ``print`` adds),
  ``x | upper == 'STR'`` compares byte by byte, ``ns.L = ns.L + [e]`` in one filtered loop is a comprehension
  re-ranged where it is read, ``seq[i + 1:]`` is a slice of a slice, ``range(seq | length)`` ranges seq.
- Substring tests and ``replace()`` on request text range over the string's byte offsets (``range $j := len $s``),
  which text/template allows from Go 1.24 on: only with ``translate(..., range_int=True)``, noted
  (:data:`RANGE_INT_NOTE`) because an Ollama built with an older Go cannot parse the TEMPLATE. So are differences
  of ints that no slice length writes (``outer_index - assistant_idx.value``): two strings of ``x``, ``len P - len
  N``, compared by their lengths (:meth:`Translator.unary`; a negative variable adds its decimal digits to ``N``).
- A macro that calls itself on one request value (``to_xml(v)`` on tool-call arguments) is a Go ``define`` that calls
  itself (:meth:`Translator.define_macro`); printed only, since Go cannot capture a template's output.

Whatever has no Go counterpart (arithmetic on dynamic values, string methods on request text, filters such as
``selectattr``) raises :class:`Untranslatable` naming the construct; the caller then falls back to the GGUF's own
chat template. Approximations (``trim`` / ``strip`` of a macro's output, or of any text where the
checking Go is older than 1.24, is the identity; request text is stripped exactly by :meth:`Translator.strip`) are
listed in ``GoTemplate.notes``.

Why this module is long: it is one compiler. Every Jinja node type chat templates use is handled by one visitor
that shares the translation state (constant folding of what a request cannot change, text variables kept as Go
snippets, loop re-runs, counters); split by node type, each piece would need all of that state. Each construct is
pinned by a byte-exact test against Jinja (tests/export/test_jinja2go.py, test_templates_real.py).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes


class Untranslatable(Exception):
    """A Jinja construct that has no Go text/template counterpart on Ollama's data model."""

    def __init__(self, construct: str):
        super().__init__(construct)
        self.construct = construct


@dataclass(frozen=True)
class GoTemplate:
    go: str
    notes: tuple[str, ...] = ()


def with_tool_tag(go: str, tag: str) -> str:
    """Prefix a block that renders nothing but shows Ollama's tools package the tool-call tag: it reads the first
    text inside the first `if .ToolCalls` (tools/template.go), which a translated template may not start with."""
    marker = f"{{{{ if false }}}}{{{{ range .Messages }}}}{{{{ if .ToolCalls }}}}{_text(tag)}{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}"
    while "{{{" in marker:
        marker = marker.replace("{{{", '{{ "{" }}{{')
    return marker + go


class _Undef:  # Jinja's Undefined, as a compile-time constant
    def __repr__(self):
        return "Undefined"


UNDEF = _Undef()
_NOCONST = object()


@dataclass
class V:
    """A translated value: a compile-time constant, or a Go pipeline of a known kind."""

    const: Any = _NOCONST
    go: str | None = None
    kind: str = "any"
    defined: str | None = None  # Go bool pipeline telling whether a maybe-set name is defined
    extra: Any = None  # kind "selected": (sequence V, attribute, value); kind "elemidx": the sequence's Go pipeline
    truthy: str | None = None  # kind "out": a Go pipeline true exactly when the text is non-empty (None: unknown)
    dot: str | None = None  # kind "out": what `.` was where the snippet was written (None: unknown)
    markup: bool = False  # certainly markupsafe's Markup (`v | safe`): `+` HTML-escapes the other side

    @property
    def is_const(self) -> bool:
        return self.const is not _NOCONST


def C(x) -> V:
    return V(const=x, kind=_kind_of(x))


def _kind_of(x) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "int"
    if isinstance(x, str):
        return "str"
    if x is None:
        return "none"
    if isinstance(x, list):
        return "list"
    if isinstance(x, dict):
        return "dict"
    return "any"


# kind -> {jinja key: (Go field, kind, always present)}; the JSON names Ollama's template types carry.
FIELDS: dict[str, dict[str, tuple[str, str, bool]]] = {
    "message": {"role": ("Role", "str", True), "content": ("Content", "str", True),
                "reasoning_content": ("Thinking", "str", False), "thinking": ("Thinking", "str", False),
                "tool_calls": ("ToolCalls", "tcalls", False), "name": ("ToolName", "str", False),
                "tool_name": ("ToolName", "str", False), "tool_call_id": ("ToolCallID", "str", False)},
    "tcall": {"id": ("ID", "str", False), "function": ("Function", "tcfn", True),
              "name": ("Function.Name", "str", True), "arguments": ("Function.Arguments", "args", True)},
    "tcfn": {"name": ("Name", "str", True), "arguments": ("Arguments", "args", True)},
    "tool": {"type": ("Type", "str", True), "function": ("Function", "fn", True)},
    "fn": {"name": ("Name", "str", True), "description": ("Description", "str", True),
           "parameters": ("Parameters", "params", True)},
    "params": {"type": ("Type", "str", True), "$defs": ("Defs", "any", False), "items": ("Items", "any", False),
               "required": ("Required", "strlist", False), "properties": ("Properties", "props", True)},
    "property": {"anyOf": ("AnyOf", "proplist", False), "type": ("Type", "ptype", False),
                 "items": ("Items", "any", False), "description": ("Description", "str", False),
                 "enum": ("Enum", "list", False), "properties": ("Properties.ToMap", "props", False),
                 "required": ("Required", "strlist", False)},
}
ELEM = {"messages": "message", "tcalls": "tcall", "tools": "tool", "strlist": "str", "list": "any",
        "proplist": "property"}
MAPS = {"props": "property", "args": "any"}  # kind -> value kind
_SCHEMA_KINDS = {"params", "property", "props", "fn", "tool"}  # a tool's schema: its JSON values are schemas too
MAPPING_KINDS = {"message", "tcall", "tcfn", "tool", "fn", "params", "property", "props", "args", "dict"}
SEQ_KINDS = {"messages", "tcalls", "tools", "strlist", "list", "proplist"}
THINK_TAGS = ("<think>", "</think>", "<|begin_of_thought|>", "<|end_of_thought|>", "[THINK]", "[/THINK]")

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS_LONG = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December"]


def _go_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace(
        "\r", "\\r") + '"'


def _go_lit(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return repr(x)
    if isinstance(x, str):
        return _go_str(x)
    if x is None or x is UNDEF:
        return '""'
    raise Untranslatable(f"a {type(x).__name__} constant in a Go expression")


def _paren(go: str) -> str:
    """A Go pipeline as one argument of another call: parenthesized when it is a call itself."""
    return f"({go})" if " " in go and not (go.startswith("(") and go.endswith(")")) else go


def _py_str(x) -> str:
    """What Jinja prints for a constant."""
    if x is UNDEF:
        return ""
    if isinstance(x, bool):
        return "True" if x else "False"
    return str(x)


def _text(s: str) -> str:
    """Literal Go template text (only ``{{`` needs escaping)."""
    return s.replace("{{", '{{ "{{" }}')


_DOT_REF = re.compile(r"(?:^|[\s(])\.[A-Za-z]")
@dataclass(frozen=True)
class _CondItem:
    """An item a branch appended to a constant list (Kimi-K3's `attrs + [('name', message.name)]`): present where
    the Go test ``cond`` holds."""

    item: Any
    cond: str


def _holds_v(x) -> bool:
    """Whether a constant holds translated values (a dict literal of request values)."""
    if isinstance(x, (V, _CondItem)):
        return True
    if isinstance(x, dict):
        return any(_holds_v(y) for y in x.values())
    if isinstance(x, (list, tuple)):
        return any(_holds_v(y) for y in x)
    return False


def _dot_through(p: str, base: str) -> str:
    """The Go pipeline ``p`` with its `.Field`s read through ``base`` (the variable `.` was), outside string literals."""
    out, i = [], 0
    for m in _GO_STRING.finditer(p):
        out.append(_DOT_REF.sub(lambda d: d.group(0)[:-2] + base + d.group(0)[-2:], p[i:m.start()]))
        out.append(m.group(0))
        i = m.end()
    out.append(_DOT_REF.sub(lambda d: d.group(0)[:-2] + base + d.group(0)[-2:], p[i:]))
    return "".join(out)


def _top_dot_ref(go: str) -> bool:
    """Whether Go template text reads `.X` outside the ranges it opens (inside them, . is the range's element)."""
    toks = _go_actions(go)
    if toks is None:
        return bool(_DOT_REF.search(go))
    ranges = []  # a stack: is each open block a range?
    for k, t in toks:
        if k == "text":
            continue
        head = t.split(" ", 1)[0]
        if not any(ranges) and _DOT_REF.search(t) and head != "end":
            return True
        if head in ("range", "if", "with"):
            ranges.append(head == "range")
        elif head == "end" and ranges:
            ranges.pop()
    return False


_ASSIGN = re.compile(r"(\$\w+)\s*:?=(?!=)")
_GO_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')


def _trim_is_identity(snippet) -> bool:
    """Whether Go template text certainly starts and ends with literal text that is not whitespace (Python's
    str.isspace), so that strip() of what it prints changes nothing."""
    toks = _go_actions(snippet) if isinstance(snippet, str) else None
    return bool(toks) and toks[0][0] == "text" and toks[-1][0] == "text" and bool(toks[0][1]) and bool(toks[-1][1]) \
        and not toks[0][1][0].isspace() and not toks[-1][1][-1].isspace()


def _go_actions(snippet: str):
    """Split generated Go template text into ("text", s) and ("act", pipeline) tokens (string literals may hold }})."""
    out, i = [], 0
    while i < len(snippet):
        j = snippet.find("{{", i)
        if j < 0:
            out.append(("text", snippet[i:]))
            break
        if j > i:
            out.append(("text", snippet[i:j]))
        k = j + 2
        while True:
            m = _GO_STRING.search(snippet, k)
            end = snippet.find("}}", k)
            if end < 0:
                return None
            if m and m.start() < end:
                k = m.end()
                continue
            break
        out.append(("act", snippet[j + 2:end].strip().strip("-").strip()))
        i = end + 2
    return out


def _t_or(terms):
    terms = [t for t in terms if t != "false"]
    if "true" in terms:
        return "true"
    if not terms:
        return "false"
    return terms[0] if len(terms) == 1 else "or " + " ".join(f"({t})" for t in terms)


def _t_and(terms):
    terms = [t for t in terms if t != "true"]
    if "false" in terms:
        return "false"
    if not terms:
        return "true"
    return terms[0] if len(terms) == 1 else "and " + " ".join(f"({t})" for t in terms)


def text_truth(snippet: str, prints: dict) -> str | None:
    """A Go pipeline true exactly when ``snippet`` (Go template text this module generated) prints something.

    Go cannot capture output in a variable, so Jinja's truth of a macro's output or of a text variable is derived
    from the snippet's structure: literal text is non-empty, a printed string is as true as the string, an
    `if` chain is true on a branch whose body prints, a `range` whose body always prints is as true as its list.
    None where that cannot be known (a value of unknown type, a loop body that prints only sometimes) or where the
    pipeline would read a variable the snippet itself assigns (it is evaluated before the snippet runs)."""
    toks = _go_actions(snippet)
    if toks is None:
        return None
    assigned: set[str] = set()
    pos = 0

    def seq(stop):  # -> (truth, terminator pipeline)
        nonlocal pos
        parts = []
        while pos < len(toks):
            kind, s = toks[pos]
            pos += 1
            if kind == "text":
                parts.append("true" if s else "false")
                continue
            head = s.split(" ", 1)[0]
            if head in ("end", "else") and stop:
                return _t_or(parts), s
            if head == "if":
                branches, conds = [], []
                cond = s[3:]
                while True:
                    body, term = seq(True)
                    if body is None:
                        return None, None
                    branches.append(_t_and([*(f"not ({c})" for c in conds), cond, body]))
                    conds.append(cond)
                    if term == "end":
                        break
                    if term.startswith("else if "):
                        cond = term[8:]
                    elif term == "else":
                        cond = "true"
                    else:
                        return None, None
                parts.append(_t_or(branches))
            elif head == "range":
                m = re.fullmatch(r"range (?:(\$\w+)(?:, (\$\w+))? := )?(.+)", s)
                body, term = seq(True)
                if body is None or m is None:
                    return None, None
                if body not in ("true", "false"):
                    return None, None  # depends on the element: cannot be said before the loop
                t = _t_and([m.group(3), body])
                if term == "else":
                    ebody, term = seq(True)
                    if ebody is None:
                        return None, None
                    t = _t_or([t, _t_and([f"not ({m.group(3)})", ebody])])
                if term != "end":
                    return None, None
                parts.append(t)
            elif head in ("break", "continue", "with", "define", "block"):
                return None, None
            elif head == "template":
                if not re.match(r'template "pyjson_', s):
                    return None, None
                parts.append("true")  # JSON is never empty
            elif _ASSIGN.match(s):
                assigned.add(_ASSIGN.match(s).group(1))
            elif _GO_STRING.fullmatch(s):
                parts.append("true" if s not in ('""', "``") else "false")
            elif s.startswith("json "):
                parts.append("true")
            elif prints.get(s) is not None:
                parts.append(prints[s])
            else:
                return None, None
            if parts and parts[-1] is None:
                return None, None
        return (_t_or(parts), None) if not stop else (None, None)

    truth, _ = seq(False)
    if truth is None or any(x in assigned for x in re.findall(r"\$\w+", truth)):
        return None
    return truth


@dataclass(frozen=True)
class Aff:
    """An integer known as a linear form of Go ints: lengths of sequences, loop indices, int variables."""

    terms: tuple = ()  # ((Go atom, coefficient), ...)
    const: int = 0
    lens: tuple = ()  # ((Go atom, Go sequence), ...) for atoms that are `len SEQ`

    @staticmethod
    def atom(go, seq=None):
        return Aff(((go, 1),), 0, ((go, seq),) if seq else ())

    def add(self, o: Aff, sign=1) -> Aff:
        t = dict(self.terms)
        for k, c in o.terms:
            t[k] = t.get(k, 0) + sign * c
        return Aff(tuple((k, c) for k, c in t.items() if c), self.const + sign * o.const,
                   tuple(dict([*self.lens, *o.lens]).items()))

    def go(self) -> str:
        """Go has no arithmetic; the forms chat templates use are lengths of sub-slices."""
        t, lens = dict(self.terms), dict(self.lens)
        if not t:
            return str(self.const)
        if len(t) == 1:
            (a, c), = t.items()
            if c == 1 and self.const == 0:
                return a
            if c == 1 and self.const < 0 and a in lens:  # len(SEQ) - k
                return f"len (slice {lens[a]} {-self.const})"
        if len(t) == 2 and self.const <= 0:
            (a, ca), (b, cb) = t.items()
            if ca == -1:
                (a, ca), (b, cb) = (b, cb), (a, ca)
            if ca == 1 and cb == -1 and a in lens:  # len(SEQ) - i - k
                inner = f"(slice {lens[a]} {b})"
                return f"len (slice {inner} {-self.const})" if self.const else f"len {inner}"
        raise Untranslatable("arithmetic on request values that Go cannot express (no + or - in text/template)")


def _aff(v) -> Aff | None:
    if v.is_const and isinstance(v.const, int) and not isinstance(v.const, bool):
        return Aff((), v.const)
    if isinstance(v.extra, Aff):
        return v.extra
    if v.kind == "int" and v.go and re.fullmatch(r"\$\w+", v.go):
        return Aff.atom(v.go)
    return None


@dataclass(frozen=True)
class _StrLen:
    """`s | length` of request text: Go's len counts bytes, Python code points. Compared with 0 (`> 0`, `== 0`,
    `>= 1`) the two agree and Go's len is used; anywhere else the code points are counted (Translator.char_count)."""

    go: str


class _Scope:
    def __init__(self, parent: _Scope | None = None, dot: str | None = None, branch: bool = False):
        self.vars: dict[str, V] = {}
        self.branch = branch  # the body of one branch of an `if`
        self.parent = parent
        self.dot = dot if dot is not None else (parent.dot if parent else None)

    def get(self, name):
        s = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return None

    def set(self, name, v):
        s = self
        while s is not None:  # assignments in an `if` body change the enclosing scope's name (Jinja semantics)
            if name in s.vars:
                s.vars[name] = v
                return
            s = s.parent
        self.vars[name] = v


def scope_items(scope):
    while scope is not None:
        yield from scope.vars.items()
        scope = scope.parent


class _Loop:
    def __init__(self, seq: V, idx: str, elem: str, seq_go: str):
        self.seq, self.idx, self.elem, self.seq_go = seq, idx, elem, seq_go
        self.prev: str | None = None  # Go var holding the previous element, created on first use
        self.reversed = False
        self.first_flag: str | None = None
        self.prelude_slot: int | None = None


_SPLIT = "split:"  # the kind of `s.split(sep)` on request text, followed by sep (Translator.split_piece)


def _lone_namespace_lists(root):
    """(name, keyword, reads) for each list a `name = namespace(k=[])` starts empty, where the namespace is made once
    and only ever read through its attributes (not made again, not a parameter or a loop target, not handed on as a
    value): reads are the `name.k` nodes. What strsets and strqueues are chosen among."""
    attr_of = {id(g.node) for g in root.find_all(nodes.Getattr)}
    for a in root.find_all(nodes.Assign):
        if not (isinstance(a.target, nodes.Name) and isinstance(a.node, nodes.Call)
                and isinstance(a.node.node, nodes.Name) and a.node.node.name == "namespace"):
            continue
        name = a.target.name
        names = [n for n in root.find_all(nodes.Name) if n.name == name]
        if sum(1 for n in names if n.ctx != "load") != 1 or any(id(n) not in attr_of for n in names if n.ctx == "load"):
            continue
        for kw in a.node.kwargs:
            if isinstance(kw.value, nodes.List) and not kw.value.items:
                yield name, kw, [g for g in root.find_all(nodes.Getattr)
                                 if isinstance(g.node, nodes.Name) and g.node.name == name and g.attr == kw.key]


def _replace_child(parent, old, new) -> bool:
    """Put ``new`` where ``old`` is among ``parent``'s fields (a node or an item of a list of nodes)."""
    for f in parent.fields:
        x = getattr(parent, f, None)
        if x is old:
            setattr(parent, f, new)
            return True
        if isinstance(x, list):
            for k, y in enumerate(x):
                if y is old:
                    x[k] = new
                    return True
    return False


def _insert_after(parent, stmt, new) -> bool:
    for f in parent.fields:
        x = getattr(parent, f, None)
        if isinstance(x, list) and any(y is stmt for y in x):
            x.insert(next(k for k, y in enumerate(x) if y is stmt) + 1, new)
            return True
    return False


# the last byte of what each generated JSON define writes (objects and lists), for Translator.text_endswith
_JSON_LAST = {**dict.fromkeys(("tool", "fn", "params", "property", "tcfn", "tcall", "props", "args"), "}"),
              **dict.fromkeys(("tcalls", "tools", "list", "strlist", "proplist", "fnlist"), "]"), "str": '"'}

# Marks, in the value a text has inside a loop that appends to it, where earlier iterations' text goes (prints nothing)
EARLIER = "{{ if false }}(earlier iterations){{ end }}"

RANGE_INT_NOTE = ("the TEMPLATE ranges over an integer (substring tests, replace() on request text, differences of "
                  "ints): it needs an Ollama "
                  "built with Go >= 1.24 (current Ollama's go.mod asks for 1.26); an older Ollama cannot parse it "
                  "and should get no TEMPLATE (delete it: Ollama then renders the GGUF's own chat template)")


# methods that only compute a value (no side effects): a loop whose expressions call nothing else cannot change what
# the template writes by calling them
_PURE_METHODS = {"split", "strip", "lstrip", "rstrip", "startswith", "endswith", "replace", "lower", "upper", "get",
                 "items", "keys", "values", "title", "capitalize", "format", "join", "count", "find"}


def _pure_expr(n) -> bool:
    """Whether evaluating the Jinja expression ``n`` can have no effect but its value (it calls no macro, no
    ``raise_exception``, no list.append: only ``range()``, ``namespace()`` and the string methods above)."""
    for c in [n, *n.find_all(nodes.Call)]:
        if not isinstance(c, nodes.Call):
            continue
        if isinstance(c.node, nodes.Getattr) and c.node.attr in _PURE_METHODS:
            continue
        if isinstance(c.node, nodes.Name) and c.node.name in ("range", "namespace"):
            continue
        return False
    return not any(True for _ in n.find_all(nodes.NSRef)) and not isinstance(n, nodes.NSRef)


def _attr_unwraps(ast) -> None:
    """`{% set x = E %}{% if x.a %}{% set x = x.a %}{% endif %}` (gpt-oss: a tool call, or its `function`) as the one
    assignment `{% set x = E.a if E.a else E %}`, the same value in Jinja for a pure E; a tool call's function is
    always there in Ollama's data, so it folds to `E.function` (one kind where the two assignments made it `any`)."""
    for node in [ast, *ast.find_all(nodes.Node)]:
        for field in ("body", "else_"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            k = 0
            while k + 1 < len(stmts):
                a, f = stmts[k], stmts[k + 1]
                if isinstance(a, nodes.Assign) and isinstance(a.target, nodes.Name) and _pure_expr(a.node) \
                        and isinstance(f, nodes.If) and not f.elif_ and not f.else_ and len(f.body) == 1 \
                        and isinstance(f.test, nodes.Getattr) and isinstance(f.test.node, nodes.Name) \
                        and f.test.node.name == a.target.name and isinstance(f.body[0], nodes.Assign) \
                        and isinstance(f.body[0].target, nodes.Name) and f.body[0].target.name == a.target.name \
                        and isinstance(f.body[0].node, nodes.Getattr) and f.body[0].node.attr == f.test.attr \
                        and isinstance(f.body[0].node.node, nodes.Name) and f.body[0].node.node.name == a.target.name \
                        and a.target.name not in {n.name for n in a.node.find_all(nodes.Name)}:
                    attr = f.test.attr
                    a.node = nodes.CondExpr(nodes.Getattr(a.node, attr, "load"), nodes.Getattr(a.node, attr, "load"),
                                            a.node, lineno=a.lineno)
                    del stmts[k + 1]
                k += 1


def _writes_nothing(stmts, in_dead_loop: bool) -> bool:
    """Whether the statements write no text and change nothing the rest of the template sees. Inside a ``for``
    body (``in_dead_loop``) plain ``set x = ...`` is local to the iteration (Jinja scoping: the value is gone when
    the loop ends), so only there may names be assigned; namespace attributes never."""
    for st in stmts:
        if isinstance(st, nodes.Output):
            if not all(isinstance(x, nodes.TemplateData) and x.data == "" for x in st.nodes):
                return False
        elif isinstance(st, nodes.Assign):
            if not (in_dead_loop and isinstance(st.target, nodes.Name) and _pure_expr(st.node)):
                return False
        elif isinstance(st, nodes.AssignBlock):  # its body's text is captured, not written
            if not (in_dead_loop and isinstance(st.target, nodes.Name) and st.filter is None):
                return False
            for x in st.body:
                if any(isinstance(y, (nodes.NSRef, nodes.Macro, nodes.CallBlock, nodes.ExprStmt))
                       for y in [x, *x.find_all(nodes.Node)]) or not all(_pure_expr(e) for e in x.find_all(nodes.Expr)):
                    return False
        elif isinstance(st, nodes.If):
            tests = [st.test] + [e.test for e in st.elif_]
            if not all(_pure_expr(t) for t in tests) or not all(
                    _writes_nothing(b, in_dead_loop) for b in [st.body, st.else_] + [e.body for e in st.elif_]):
                return False
        elif isinstance(st, nodes.For):
            if st.else_ or st.recursive or not _pure_expr(st.iter) or (st.test is not None and not _pure_expr(st.test)) \
                    or not _writes_nothing(st.body, True):
                return False
        elif isinstance(st, (nodes.Break, nodes.Continue)):
            if not in_dead_loop:
                return False
        else:
            return False
    return True


def _dead_nodes(ast) -> set[int]:
    """ids of the ``for`` / ``if`` statements (and everything inside them) that write nothing and change nothing
    outside themselves: a loop whose body only sets its own local names (MiniCPM5 rebuilds `processed_content` in a
    loop, which Jinja forgets when the loop ends). They are skipped, their reads and stores ignored."""
    dead: set[int] = set()
    for n in ast.find_all((nodes.For, nodes.If)):
        if id(n) not in dead and _writes_nothing([n], False):
            dead |= {id(x) for x in (n, *n.find_all(nodes.Node))}
    return dead


def _join_only_lists(ast) -> None:
    """Rewrite, in place, namespace lists that are only ever appended to and read joined into the joined text.

    ``namespace(L=['a'])``, ``set ns.L = ns.L + [x]`` and ``ns.L | join(sep)`` (muse-glimmer's valid recipients,
    LFM2.5's `tool_calls_ns.tool_calls` and `args_ns.arg_strings`) are ``namespace(L='a')``,
    ``set ns.L = ns.L ~ sep ~ x`` and ``ns.L``: Go cannot build a list, but it can build the string. A list that
    starts empty in some namespace() gets a flag attribute (``L__joined``: false there, true where it starts with
    items), set by each append, that puts ``sep`` before every element but the first (an element may be empty text,
    so the text itself cannot tell). Only where every namespace() bound to the name that holds L holds a list of
    pure items, none takes positional arguments, the name is bound by nothing else (a loop, a macro parameter, a
    plain set), every store to L is such an append, every read of L is a join (``join`` or ``join(sep)``) with the
    same constant ``sep`` (or the append's own read), the flag's name is free, and the namespace itself is never
    used other than through its attributes."""
    parent: dict[int, nodes.Node] = {}
    for n in ast.find_all(nodes.Node):
        for c in n.iter_child_nodes():
            parent[id(c)] = n
    binds: dict[str, list] = {}  # name -> its namespace() assignments
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.Name) and isinstance(a.node, nodes.Call) and isinstance(a.node.node, nodes.Name) \
                and a.node.node.name == "namespace":
            binds.setdefault(a.target.name, []).append(a)
    inits: dict[str, list] = {}
    bad: set[str] = set()
    for name, bs in binds.items():
        for a in bs:
            for kw in a.node.kwargs:
                key = f"{name}.{kw.key}"
                if isinstance(kw.value, nodes.List) and (not kw.value.items or all(_pure_expr(i) for i in kw.value.items)):
                    inits.setdefault(key, []).append((a, kw))
                else:
                    bad.add(key)
    for key in inits:  # `namespace(d)`, `namespace(**d)`: L may come from d, other than a list
        if any(a.node.args or a.node.dyn_args or a.node.dyn_kwargs for a in binds[key.split(".")[0]]):
            bad.add(key)
    appends: dict[str, list] = {}
    stored: set[str] = set()
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.NSRef):
            key, r = f"{a.target.name}.{a.target.attr}", a.node
            stored.add(key)
            if isinstance(r, nodes.Add) and isinstance(r.left, nodes.Getattr) and isinstance(r.left.node, nodes.Name) \
                    and f"{r.left.node.name}.{r.left.attr}" == key and isinstance(r.right, nodes.List) \
                    and len(r.right.items) == 1:
                appends.setdefault(key, []).append(a)
            else:
                bad.add(key)
    for b in ast.find_all(nodes.AssignBlock):  # `{% set ns.L %}...{% endset %}`
        if isinstance(b.target, nodes.NSRef):
            bad.add(f"{b.target.name}.{b.target.attr}")
            stored.add(f"{b.target.name}.{b.target.attr}")
    for g in ast.find_all(nodes.Getitem):  # `ns['L']`: read other than joined
        if isinstance(g.node, nodes.Name) and isinstance(g.arg, nodes.Const) and isinstance(g.arg.value, str):
            bad.add(f"{g.node.name}.{g.arg.value}")
    joins: dict[str, list] = {}
    for g in ast.find_all(nodes.Getattr):
        if not isinstance(g.node, nodes.Name):
            continue
        key, up = f"{g.node.name}.{g.attr}", parent.get(id(g))
        if any(g is a.node.left for a in appends.get(key, [])):
            continue
        if isinstance(up, nodes.Filter) and up.node is g and up.name == "join" and len(up.args) <= 1 \
                and not up.kwargs and up.dyn_args is None and up.dyn_kwargs is None \
                and all(isinstance(x, nodes.Const) and isinstance(x.value, str) for x in up.args):
            joins.setdefault(key, []).append(up)
        else:
            bad.add(key)
    for n in ast.find_all(nodes.Name):  # the namespace handed on whole (to a macro, a filter): not rewritten
        if n.ctx == "load" and not isinstance(parent.get(id(n)), nodes.Getattr):
            bad |= {k for k in inits if k.split(".")[0] == n.name}
        up = parent.get(id(n))
        if n.ctx in ("store", "param") and not (isinstance(up, nodes.Assign) and up.target is n and isinstance(
                up.node, nodes.Call) and isinstance(up.node.node, nodes.Name) and up.node.node.name == "namespace"):
            bad |= {k for k in inits if k.split(".")[0] == n.name}  # the name also holds other than a namespace
    for key, kws in inits.items():
        seps = {f.args[0].value if f.args else "" for f in joins.get(key, [])}
        if key in bad or len(seps) != 1:
            continue
        sep, (ns, attr) = seps.pop(), key.split(".", 1)
        flag = f"{attr}__joined"
        empty = any(not kw.value.items for _, kw in kws)
        if empty and (f"{ns}.{flag}" in inits or f"{ns}.{flag}" in stored or any(
                kw.key == flag for a, _ in kws for kw in a.node.kwargs)):
            continue  # the flag's name free
        for a, kw in kws:
            items = [x for i in kw.value.items for x in (nodes.Const(sep), i)][1:]
            if empty:  # whether anything was appended yet: the separator goes before every element but the first
                a.node.kwargs.append(nodes.Keyword(flag, nodes.Const(bool(items))))
            kw.value = nodes.Concat(items, lineno=kw.lineno) if items else nodes.Const("")
        for a in appends.get(key, []):
            glue = nodes.Const(sep) if not empty else nodes.CondExpr(
                nodes.Getattr(nodes.Name(ns, "load"), flag, "load"), nodes.Const(sep), nodes.Const(""))
            a.node = nodes.Concat([a.node.left, glue, a.node.right.items[0]], lineno=a.lineno)
            parent[id(a.node.nodes[2])] = a.node  # the element moved: a joined list in it is rewritten there
            if empty and not _insert_after(parent[id(a)], a, nodes.Assign(nodes.NSRef(ns, flag), nodes.Const(True),
                                                                          lineno=a.lineno)):
                raise Untranslatable("a list appended to outside a statement list")
        for f in joins[key]:
            if not _replace_child(parent[id(f)], f, f.node):
                raise Untranslatable("a joined list read outside a node's fields")


def _macro_fingerprint(m: nodes.Macro) -> str:
    """A macro's whole AST (its name written as `_`), to recognize one known macro under any name."""
    import hashlib

    return hashlib.sha256(repr(m).replace(repr(m.name), "'_'").encode()).hexdigest()[:16]


# gpt-oss's / Apertus's render_typescript_type(param_spec, required_params, is_nullable=false), as parsed
_TS_MACRO = "90ee1cc09661ba15"


def _ts_builder(p: str, d: int, depth: int) -> str:
    """Go that appends to ``$<p>s<d>`` the text render_typescript_type() writes for the JSON value
    ``$<p>x<d>`` (a JSON object of the request: a schema below a property's `items`), level ``d`` of ``depth``.
    Python's semantics on JSON values: truth is Go's (nil, false, 0, "", empty list / object are falsy in both); a
    `type`, `enum` or `oneOf` list is told by its Go type; `required` is tested by equality; the recursive calls
    of the three branches that recurse (an array's non-scalar `items`, `oneOf` variants, `properties` values) run
    in one loop over the collection the branch chose (for `items`: the object itself, its `items` key only), so
    each level is written once. What the macro would do with a value of an unexpected JSON type (a string
    `enum`, `properties` that are a list), a variant's `default` (tojson) and level ``depth + 1`` fail with
    ``index "" 1`` instead (an error, never other text)."""
    def v(name, k=d):  # letters, then the level's digits: never one another's name
        return f"${p}{name}{k}"

    x, s, t, br, coll, req, n, cnt = (v(a) for a in ("x", "s", "t", "b", "c", "q", "n", "i"))
    k, e, c = v("k"), v("v"), v("s", d + 1)
    fail = '{{ index "" 1 }}'

    def add(go):
        return f"{{{{ {s} = print {s} {go} }}}}"

    def is_str(val):
        return f'(eq (printf "%T" {val}) "string")'

    def is_list(val):
        return f'(eq (printf "%T" {val}) "[]interface {{}}")'

    def strs(val, sep):  # `val | join(sep)` of a list of strings (anything else fails)
        return (f"{{{{ range {k}, {e} := {val} }}}}{{{{ if {k} }}}}{add(_go_str(sep))}{{{{ end }}}}"
                f"{{{{ if not {is_str(e)} }}}}{fail}{{{{ end }}}}{add(e)}{{{{ end }}}}")

    nullable = f'{{{{ if index {x} "nullable" }}}}{add(_go_str(" | null"))}{{{{ end }}}}'
    it, itt, en, o, props = v("m"), v("y"), v("e"), v("o"), v("p")
    go = [(f'{{{{ {t} := index {x} "type" }}}}{{{{ {br} := "" }}}}{{{{ {coll} := false }}}}{{{{ {req} := false }}}}'
          f'{{{{ if and {is_str(t)} (eq {t} "array") }}}}{{{{ {it} := index {x} "items" }}}}{{{{ if {it} }}}}'
          f'{{{{ {itt} := index {it} "type" }}}}'
          f'{{{{ if and {is_str(itt)} (eq {itt} "string") }}}}{add(_go_str("string[]"))}{nullable}'
          f'{{{{ else if and {is_str(itt)} (or (eq {itt} "number") (eq {itt} "integer")) }}}}'
          f'{add(_go_str("number[]"))}{nullable}'
          f'{{{{ else if and {is_str(itt)} (eq {itt} "boolean") }}}}{add(_go_str("boolean[]"))}{nullable}'
          f'{{{{ else }}}}{{{{ {br} = "items" }}}}{{{{ {coll} = {x} }}}}{{{{ end }}}}'
          f'{{{{ else }}}}{add(_go_str("any[]"))}{nullable}{{{{ end }}}}'
          f'{{{{ else if and {is_list(t)} (gt (len {t}) 0) }}}}{strs(t, " | ")}'
          f'{{{{ else if index {x} "oneOf" }}}}{{{{ {o} := index {x} "oneOf" }}}}{{{{ if not {is_list(o)} }}}}{fail}'
          f'{{{{ end }}}}{{{{ {br} = "oneOf" }}}}{{{{ {coll} = {o} }}}}'
          f'{{{{ else if and {is_str(t)} (eq {t} "string") }}}}{{{{ {en} := index {x} "enum" }}}}{{{{ if {en} }}}}'
          f'{{{{ if not {is_list(en)} }}}}{fail}{{{{ end }}}}{add(_go_str(chr(34)))}{strs(en, chr(34) + " | " + chr(34))}'
          f'{add(_go_str(chr(34)))}{{{{ else }}}}{add(_go_str("string"))}{nullable}{{{{ end }}}}'
          f'{{{{ else if and {is_str(t)} (or (eq {t} "number") (eq {t} "integer")) }}}}{add(_go_str("number"))}'
          f'{{{{ else if and {is_str(t)} (eq {t} "boolean") }}}}{add(_go_str("boolean"))}'
          f'{{{{ else if and {is_str(t)} (eq {t} "object") }}}}{{{{ {props} := index {x} "properties" }}}}'
          f'{{{{ if {props} }}}}{{{{ if ne (printf "%.3s" (printf "%T" {props})) "map" }}}}{fail}{{{{ end }}}}'
          f'{{{{ {req} = index {x} "required" }}}}{{{{ if and {req} (not {is_list(req)}) }}}}{fail}{{{{ end }}}}'
          f'{add(_go_str(chr(123) + chr(10)))}{{{{ {br} = "props" }}}}{{{{ {coll} = {props} }}}}'
          f'{{{{ else }}}}{add(_go_str("object"))}{{{{ end }}}}'
          f'{{{{ else }}}}{add(_go_str("any"))}{{{{ end }}}}')]
    run, found, r, nc, j, last = v("u"), v("f"), v("r"), v("z"), v("j"), v("l")
    child = f'{{{{ {v("x", d + 1)} := {e} }}}}{{{{ {c} := "" }}}}' + (_ts_builder(p, d + 1, depth) if d < depth else fail)
    go.append(
        f'{{{{ if {br} }}}}{{{{ {n} := len {coll} }}}}{{{{ {cnt} := "" }}}}{{{{ range {k}, {e} := {coll} }}}}'
        f'{{{{ {run} := true }}}}{{{{ if eq {br} "items" }}}}{{{{ {run} = eq {k} "items" }}}}{{{{ end }}}}'
        f'{{{{ if {run} }}}}{{{{ {cnt} = print {cnt} "x" }}}}{{{{ {last} := eq (len {cnt}) {n} }}}}'
        f'{{{{ if eq {br} "props" }}}}{add(k)}{{{{ {found} := false }}}}{{{{ if {req} }}}}{{{{ range {r} := {req} }}}}'
        f'{{{{ if and {is_str(r)} (eq {r} {k}) }}}}{{{{ {found} = true }}}}{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}'
        f'{{{{ if not {found} }}}}{add(_go_str("?"))}{{{{ end }}}}{add(_go_str(": " + chr(10) + " " * 16))}{{{{ end }}}}'
        f'{child}'
        f'{{{{ if eq {br} "items" }}}}{{{{ {nc} := "" }}}}{{{{ range {j} := len {c} }}}}'
        f'{{{{ if or (lt (index {c} {j}) 128) (ge (index {c} {j}) 192) }}}}{{{{ {nc} = print {nc} "x" }}}}{{{{ end }}}}'
        f'{{{{ end }}}}{{{{ if or (eq {c} "object | object") (gt (len {nc}) 50) }}}}{add(_go_str("any[]"))}'
        f'{{{{ else }}}}{add(c)}{add(_go_str("[]"))}{{{{ end }}}}'
        f'{{{{ else if eq {br} "oneOf" }}}}{add(c)}{{{{ {r} := index {e} "description" }}}}{{{{ if {r} }}}}'
        f'{{{{ if not {is_str(r)} }}}}{fail}{{{{ end }}}}{add(_go_str("// "))}{add(r)}{{{{ end }}}}'
        f'{{{{ range {j}, {found} := {e} }}}}{{{{ if eq {j} "default" }}}}{fail}{{{{ end }}}}{{{{ end }}}}'
        f'{{{{ if not {last} }}}}{add(_go_str(" | " + chr(10)))}{{{{ end }}}}'
        f'{{{{ else }}}}{add(c)}{{{{ if not {last} }}}}{add(_go_str(", "))}{{{{ end }}}}{{{{ end }}}}'
        f'{{{{ end }}}}{{{{ end }}}}'
        f'{{{{ if eq {br} "items" }}}}{nullable}{{{{ else if eq {br} "props" }}}}{add(_go_str(chr(125)))}{{{{ end }}}}'
        f'{{{{ end }}}}')
    return "".join(go)


class Translator:
    MAX_INLINE = 12  # macro call depth

    def __init__(self, bos_token: str = "", eos_token: str = "", extra: dict | None = None, range_int: bool = False):
        self.bos, self.eos = bos_token, eos_token
        self.range_int = range_int  # Go >= 1.24: `range $i := N` (substring tests, replace); see scan_text
        self.extra = extra or {}
        self.out: list[str] = []
        self.defs: dict[str, str] = {}
        self.notes: list[str] = []
        self.n = 0
        self.loops: list[_Loop] = []
        self.macros: dict[str, nodes.Macro] = {}
        self.macro_defs: dict[tuple, str] = {}  # (macro, argument, kind, constant arguments) -> its Go define
        self.rec_active: list[tuple[str, dict, str]] = []  # growing recursive macros being defined: (name, args, kind)
        self.depth = 0
        self.read_names: set[str] = set()
        self.predeclared: set[str] = set()
        self.textvars: set[str] = set()  # names / "ns.attr" that hold printed-only text (tojson, macro output)
        self.acc: str | None = None  # the text namespace attribute a loop is being re-translated to accumulate
        self.suppress = False
        self.snap_vars: set[str] = set()  # variables holding a value from before a re-run loop (_restoring)
        self.top_decls: list[str] = []  # declarations written at the top of the template
        self.cur_dot: str | None = "$"  # what `.` is where Go is being emitted
        self.print_truth: dict[str, str | None] = {}  # printed Go pipeline -> truth of what it prints
        self.index_vars: set[str] = set()  # Go variables a range sets to its index: never negative
        self.unary_of: dict[str, str] = {}  # `len $P` -> $P, a string of x holding an int (unary)
        self.late_attrs: set[str] = set()  # Go variables of namespace attributes first set after namespace()

    # ---- helpers -------------------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        self.n += 1
        return f"${re.sub(r'[^A-Za-z0-9]', '', base) or 'v'}{self.n}"

    def index_var(self, base: str) -> str:
        """A fresh Go variable that a range sets to its index (never negative)."""
        v = self.fresh(base)
        self.index_vars.add(v)
        return v

    def emit(self, s: str):
        self.out.append(s)

    def capture(self, fn) -> str:
        """Run ``fn`` (which emits) and return what it emitted instead: a Go snippet that prints a value."""
        start = len(self.out)
        fn()
        snippet = "".join(self.out[start:])
        del self.out[start:]
        return snippet

    def snippet(self, fn, truthy: str | None = None) -> V:
        # a value (a macro's output), not the loop's own printing: written even in a re-run for a text (suppress)
        saved, self.suppress = self.suppress, False
        try:
            return V(go=None, kind="out", extra=self.capture(fn), truthy=truthy, dot=self.cur_dot)
        finally:
            self.suppress = saved

    def _dot_safe(self, v: V, go: str, action: bool = False) -> bool:
        """Go that reads fields of `.` means the same only where `.` is what it was when the snippet was written.
        ``action``: ``go`` is a pipeline, else template text."""
        refs = _DOT_REF.search(go) if action else _top_dot_ref(go)
        return not refs or (v.dot is not None and v.dot == self.cur_dot)

    def _redot(self, v: V, go: str, action: bool = True) -> str | None:
        """``go`` read where `.` has changed: its `.Field`s through the variable `.` was (a range's element, or `$`,
        which stay in scope in the nested loop); None when that is unknown. ``action``: a pipeline, else a snippet."""
        if self._dot_safe(v, go, action):
            return go
        if v.dot is None or not re.fullmatch(r"\$\w*", v.dot):
            return None
        def pipe(p):
            return _dot_through(p, v.dot)

        if action:
            return pipe(go)
        toks = _go_actions(go)
        if toks is None:
            return None
        out, ranges = [], []  # a stack: is each open block a range?
        for k, t in toks:
            if k == "text":
                out.append(_text(t))
                continue
            head = t.split(" ", 1)[0]
            out.append(f"{{{{ {t if any(ranges) else pipe(t)} }}}}")
            if head in ("range", "if", "with"):
                ranges.append(head == "range")
            elif head == "end" and ranges:
                ranges.pop()
        return "".join(out)

    def note(self, s: str):
        if s not in self.notes:
            self.notes.append(s)

    # ---- entry ---------------------------------------------------------------------------------------------
    def run(self, ast: nodes.Template) -> GoTemplate:
        # each macro's whole AST as parsed, before the passes below rewrite parts of it (ts_capture)
        self.macro_prints = {m.name: _macro_fingerprint(m) for m in ast.find_all(nodes.Macro)}
        _join_only_lists(ast)  # lists only appended to and joined: built as the joined text
        _attr_unwraps(ast)
        self._collect_reads(ast)
        self.assign_counts: dict[str, int] = {}  # name -> how many `set name = ...` the template holds
        for a in ast.find_all(nodes.Assign):
            if isinstance(a.target, nodes.Name):
                self.assign_counts[a.target.name] = self.assign_counts.get(a.target.name, 0) + 1
        self.textvars = self._find_textvars(ast)
        self.counters_keys = self._find_counters(ast) - self.textvars
        self.counters: dict[str, str] = {}  # "ns.attr" -> the Go string variable counting it
        scope = _Scope(dot="$")
        agp = "$agp"
        # Ollama adds the generation prompt exactly when the last message is not the assistant's (else it prefills).
        self.emit("{{ $agp := true }}{{ range $.Messages }}{{ $agp = ne .Role \"assistant\" }}{{ end }}")
        scope.vars.update({
            "messages": V(go="$.Messages", kind="messages"),
            # transformers always passes `tools` (None without tools), so it is defined; Ollama's nil reads as none
            "tools": V(go="$.Tools", kind="tools"),
            "add_generation_prompt": V(go=agp, kind="bool"),
            "bos_token": C(""),  # llama.cpp/Ollama add BOS themselves (tokenizer.ggml.add_bos_token)
            "eos_token": C(self.eos),
            "raise_exception": C("__raise__"), "strftime_now": C("__strftime__"), "namespace": C("__ns__"),
        })
        for k, v in self.extra.items():
            scope.vars[k] = C(v)
        self.body(ast.body, scope)
        go = "".join(self.defs[k] for k in sorted(self.defs)) + self.out[0] + "".join(self.top_decls) + "".join(self.out[1:])
        # a literal "{" right before an action would be read as part of the "{{" delimiter
        while "{{{" in go:
            go = go.replace("{{{", '{{ "{" }}{{')
        return GoTemplate(go, tuple(self.notes))

    @staticmethod
    def _find_textvars(ast) -> set[str]:
        """Variables whose value is text only Go's output can produce: kept as Go snippets, never as Go variables
        (`{% set ns.s = ns.s + (tool | tojson) %}` in a loop becomes the loop itself, re-run where ns.s is printed)."""
        macros = {m.name for m in ast.find_all(nodes.Macro)}
        stores = []
        dead = _dead_nodes(ast)  # a loop that writes nothing: what it assigns is never read
        for a in ast.find_all((nodes.Assign, nodes.AssignBlock)):
            if id(a) in dead:
                continue
            t = a.target
            key = f"{t.name}.{t.attr}" if isinstance(t, nodes.NSRef) else getattr(t, "name", None)
            if key:
                stores.append((key, a.node if isinstance(a, nodes.Assign) else None))
        marked = {k for k, rhs in stores if rhs is None}

        def counted(n):  # n without what `| length` turns into an int (`(content | length) - k`: a number)
            if isinstance(n, nodes.Filter) and n.name in ("length", "count") and not n.args:
                return []
            return [n, *(y for c in n.iter_child_nodes() for y in counted(c))]

        def textish(n):
            for x in counted(n):
                if isinstance(x, nodes.Filter) and x.name == "tojson" and not isinstance(x.node, nodes.Const):
                    return True
                if isinstance(x, nodes.Call) and isinstance(x.node, nodes.Name) and x.node.name in macros:
                    return True
                if isinstance(x, nodes.Name) and x.ctx == "load" and x.name in marked:
                    return True
                if isinstance(x, nodes.Getattr) and isinstance(x.node, nodes.Name) and f"{x.node.name}.{x.attr}" in marked:
                    return True
            return False

        changed = True
        while changed:
            changed = False
            for k, rhs in stores:
                if k not in marked and rhs is not None and textish(rhs):
                    marked.add(k)
                    changed = True
        return marked

    def as_text(self, v: V) -> V:
        if v.kind == "out":
            return v
        if v.go and any(x in self.predeclared for x in re.findall(r"\$\w+", v.go)):
            # the snippet is re-run where the text is printed; a variable reassigned in between would differ
            raise Untranslatable("text built from a variable that branches reassign")
        try:
            t = self.truth(v)
        except Untranslatable:
            t = None
        return V(kind="out", extra=self.capture(lambda: self.print_value(v)), truthy=t, dot=self.cur_dot)

    def _text_keys_assigned(self, node) -> list[str]:
        keys = []
        for a in node.find_all((nodes.Assign, nodes.AssignBlock)):
            t = a.target
            key = f"{t.name}.{t.attr}" if isinstance(t, nodes.NSRef) else getattr(t, "name", None)
            if key in self.textvars and key not in keys:
                keys.append(key)
        return keys

    @staticmethod
    def _slot(key: str) -> str:
        return "\0" + key if "." in key else key

    def _collect_reads(self, ast):
        """Names and namespace attributes whose value reaches the output (stores to anything else are skipped).

        Reads inside raise-only `if`s do not count (those checks are dropped), and a store counts only when its
        target is live: Mistral's `ns.index = ns.index + 1` alternation counter is dead once its check is gone."""
        direct, stores = set(), []

        def reads(n):
            out = set()
            for x in [n, *n.find_all((nodes.Name, nodes.Getattr))]:
                if isinstance(x, nodes.Name) and x.ctx == "load":
                    out.add(x.name)
                elif isinstance(x, nodes.Getattr) and isinstance(x.node, nodes.Name):
                    out.add(f"{x.node.name}.{x.attr}")
            return out

        dead = _dead_nodes(ast)

        def walk(n):
            if isinstance(n, nodes.If) and self._raise_only(n):
                return
            if id(n) in dead:  # writes nothing, changes nothing outside itself (_dead_nodes)
                return
            if isinstance(n, nodes.Assign):
                t = n.target
                key = f"{t.name}.{t.attr}" if isinstance(t, nodes.NSRef) else getattr(t, "name", None)
                c = n.node  # `set _ = ns.ids.append(x)` stores into ns.ids
                if isinstance(c, nodes.Call) and isinstance(c.node, nodes.Getattr) and c.node.attr == "append" \
                        and isinstance(c.node.node, nodes.Getattr) and isinstance(c.node.node.node, nodes.Name):
                    key = f"{c.node.node.node.name}.{c.node.node.attr}"
                stores.append((key, reads(n.node)))
                return
            if isinstance(n, (nodes.Name, nodes.Getattr)):
                direct.update(reads(n))
            for c in n.iter_child_nodes():
                walk(c)

        walk(ast)
        live = set(direct)
        changed = True
        while changed:
            changed = False
            for key, rs in stores:
                if (key is None or key in live) and not rs <= live:
                    live |= rs
                    changed = True
        self.read_names = live

    # ---- statements ----------------------------------------------------------------------------------------
    def body(self, stmts, scope):
        for s in stmts:
            self.stmt(s, scope)

    def stmt(self, s, scope):
        m = getattr(self, f"s_{type(s).__name__}", None)
        if m is None:
            raise Untranslatable(f"{{% {type(s).__name__.lower()} %}}")
        saved, self.cur_dot = self.cur_dot, scope.dot
        try:
            m(s, scope)
        finally:
            self.cur_dot = saved

    def s_Output(self, s, scope):
        if self.suppress:  # re-translating a loop only for what it appends to a text variable
            return
        for n in s.nodes:
            if isinstance(n, nodes.TemplateData):
                self.emit(_text(n.data))
            else:
                self.output(n, scope)

    def output(self, e, scope):
        if isinstance(e, nodes.Add) and not self._is_markup(e) and self._may_be_markup(e):
            return self.markup_output(e, scope)
        if isinstance(e, (nodes.Add, nodes.Concat)) and self._is_stringy(e, scope) \
                and not (isinstance(e, nodes.Add) and self._is_markup(e)):  # Markup + str escapes: e_Add decides
            parts = [e.left, e.right] if isinstance(e, nodes.Add) else e.nodes
            for p in parts:
                self.output(p, scope)
            return
        if isinstance(e, nodes.CondExpr):
            t = self.expr(e.test, scope)
            if t.is_const:
                return self.output(e.expr1 if t.const else e.expr2, scope) if (t.const or e.expr2 is not None) else None
            self.emit(f"{{{{ if {self.truth(t)} }}}}")
            self.output(e.expr1, scope)
            if e.expr2 is not None:
                self.emit("{{ else }}")
                self.output(e.expr2, scope)
            self.emit("{{ end }}")
            return
        if isinstance(e, nodes.Call) and isinstance(e.node, nodes.Name):
            f = scope.get(e.node.name)
            if f is not None and f.is_const and f.const == "__raise__":
                self.note("raise_exception() checks are dropped: Ollama renders what the Jinja template refuses")
                return
            if e.node.name in self.macros and scope.get(e.node.name) is None:
                return self.inline_macro(self.macros[e.node.name], e, scope)
        if isinstance(e, nodes.Filter) and e.name == "tojson":
            return self.tojson(e, scope)
        if isinstance(e, nodes.Add) and self._is_markup(e) and not self._markup_const(e, scope):
            return self.markup_output(e, scope)
        v = self.expr(e, scope)
        self.print_value(v)

    def print_value(self, v: V):
        if v.kind == "out":  # text only Go's output can produce (tojson, a macro): re-emitted where printed
            self.emit(v.extra)
            return
        if v.kind == "none" and v.go in self.__dict__.get("maybe_none", {}) \
                and self.__dict__.get("ns_none_kinds", {}).get(v.go, set()) <= {"str"}:
            # a namespace attribute that started as none and is only ever set to text: None while still none
            self.emit(f"{{{{ if not {self.maybe_none[v.go]} }}}}None{{{{ else }}}}{{{{ {v.go} }}}}{{{{ end }}}}")
            self.__dict__.setdefault("ns_none_printed", set()).add(v.go)
            return
        if v.is_const:
            if isinstance(v.const, (list, dict)):
                raise Untranslatable("printing a list or dict constant")
            self.emit(_text(_py_str(v.const)))
        elif v.kind in ("str", "int"):
            go = v.go if v.go is not None else self.go_of(v)  # a length or difference without a Go expression yet
            self.emit(f"{{{{ {go} }}}}")
            self._printed(go, go if v.kind == "str" else "true")
        elif v.kind == "bool":
            self.emit(f"{{{{ if {v.go} }}}}True{{{{ else }}}}False{{{{ end }}}}")
        elif v.kind == "ptype":
            self.emit(f"{{{{ index {v.go} 0 }}}}")
            self._printed(f"index {v.go} 0", f"index {v.go} 0")
        elif v.kind == "any":  # Jinja prints str() of it: True, None, a list's repr (generated defines)
            self.note("a JSON number of the request is printed as Go's json writes it (as Python's str() does for "
                      "the numbers Go's json wrote); one whose size is below 1e-4 (Python: 1e-05, Go: 0.00001) stops "
                      "the template with an error")
            self.defs.update(_py_str_defs(self.range_int))
            self.emit(f'{{{{ template "pystr_any" {v.go} }}}}')
        elif v.kind == "folded":  # built as a Go string (Go >= 1.24; non-ASCII text stops the template)
            self.print_value(self.case_mapped(v))
        else:
            raise Untranslatable(f"printing a {v.kind} (Python's str() of a dict/list)")

    def _printed(self, go: str, truth: str):
        """Remember what printing ``go`` says about the output's truth (text_truth reads it back)."""
        if self.print_truth.get(go, truth) != truth:
            truth = None  # the same pipeline printed as two kinds: unknown
        self.print_truth[go] = truth

    def _is_stringy(self, e, scope) -> bool:
        if isinstance(e, nodes.Concat):
            return True
        try:
            saved = len(self.out), self.n
            v = self.expr(e.left, scope, probe=True)
            del self.out[saved[0]:]
            return v.kind in ("str", "ptype", "any", "out") or (v.is_const and isinstance(v.const, str))
        except Untranslatable:
            del self.out[saved[0]:]
            return True

    def s_If(self, s, scope):
        if _writes_nothing([s], False):  # e.g. only a loop whose body sets its own local names (_dead_nodes)
            return
        branches = [(s.test, s.body)] + [(e.test, e.body) for e in s.elif_]
        else_ = s.else_
        if self._raise_only(s):
            self.note("raise_exception() checks are dropped: Ollama renders what the Jinja template refuses")
            return
        dyn = []
        for test, body in branches:
            t = self.cond(test, scope)
            if t.is_const:
                if self._truthy_const(t.const):
                    if not dyn:
                        return self.body(body, scope)
                    else_ = body
                    break
                continue
            dyn.append((t, body))
        if not dyn:
            return self.body(else_ or [], scope)
        # names set in a branch must exist before the `if` (Go scopes variables to the block)
        all_bodies = [b for _, b in dyn] + [else_ or []]
        self.predeclare(all_bodies, scope)
        scopes, nested = [], 0
        br_slots, tests = [len(self.out)], []  # where the branch taken may be recorded (_branch_taken)
        self.emit("")
        for k, (t, body) in enumerate(dyn):
            mark = len(self.out)
            test = self.truth(t)
            pre = "".join(self.out[mark:])
            del self.out[mark:]
            if k and pre:  # the test builds text first (materialize): only where the earlier tests failed
                self.emit(f"{{{{ else }}}}{pre}{{{{ if {test} }}}}")
                nested += 1
            else:
                self.emit(f"{pre}{{{{ {'if' if k == 0 else 'else if'} {test} }}}}")
            tests.append(test)
            br_slots.append(len(self.out))
            self.emit("")
            scopes.append(_Scope(scope, branch=True))
            self.body(body, scopes[-1])
        if else_:
            self.emit("{{ else }}")
            scopes.append(_Scope(scope, branch=True))
            self.body(else_, scopes[-1])
        self.emit("{{ end }}" * (1 + nested))
        # text variables set in a branch: their value becomes the same if-chain, re-run where they are printed
        lists = sorted({k for sc in scopes for k, x in sc.vars.items() if k not in self.textvars and x.is_const
                        and isinstance(x.const, list) and self._extended_list([b for _, b in dyn] + [else_ or []], k,
                                                                                scope)})
        if lists:  # constant lists a branch appended to: the new items are present where that branch ran
            flags = self._branch_taken(tests, br_slots, always=True)
            for name in lists:
                prior = scope.get(name).const
                merged = list(prior)
                for n, sc in enumerate(scopes[:len(dyn)]):
                    got = sc.vars.get(name)
                    if got is not None and got.const is not prior:
                        if got.const[:len(prior)] != prior:
                            raise Untranslatable("a list a branch changes other than by appending")
                        merged += [_CondItem(x, flags[n]) for x in got.const[len(prior):]]
                if else_ and name in scopes[-1].vars:
                    raise Untranslatable("a list the else branch appends to")
                scope.set(name, C(merged))
        keys = {k for sc in scopes for k in sc.vars if k.lstrip("\0") in self.textvars}
        taken = self._branch_taken(tests, br_slots) if keys else None
        for key in sorted(keys):
            prior = scope.get(key)
            prior = self.as_text(prior) if prior is not None else V(kind="out", extra="", truthy="false")
            vals = [self.as_text(sc.vars[key]) if key in sc.vars else prior for sc in scopes]
            chain = "".join(f"{{{{ {'if' if k == 0 else 'else if'} {taken[k] if taken else self.truth(t)} }}}}"
                            f"{vals[k].extra}" for k, (t, _) in enumerate(dyn))
            last = vals[-1] if else_ else prior
            chain += f"{{{{ else }}}}{last.extra}{{{{ end }}}}"
            truthy = None
            if all(x.truthy for x in [*vals[:len(dyn)], last]):  # the same chain as a pipeline
                conds = taken or [self.truth(t) for t, _ in dyn]
                terms = [f"(and {' '.join([f'(not ({c}))' for c in conds[:k]] + [f'({conds[k]})', f'({vals[k].truthy})'])})"
                         for k in range(len(dyn))]
                terms.append(f"(and {' '.join([f'(not ({c}))' for c in conds] + [f'({last.truthy})'])})")
                truthy = "or " + " ".join(terms)
            merged = V(kind="out", extra=chain, truthy=truthy,  # the tests are this `.`'s, and so the texts may be
                       dot=self.cur_dot if all(self._dot_safe(x, x.extra or "") for x in [*vals, last]) else None)
            if scope.branch:  # an enclosing `if` merges it again: its branch must see that this one changed it
                scope.vars[key] = merged
            else:
                scope.set(key, merged)

    def _branch_taken(self, tests, slots, always=False):
        """Tests of an `if` that read a variable a later branch reassigns (`messages[0].content` before `set messages
        = messages[1:]`) would decide differently where a text the branches set is re-run: the branch taken is
        recorded in a variable (set in the slots left before the `if` and at the top of each branch) and the text's
        chain tests that instead. None where the tests read no such variable (they are re-evaluated as they are)."""
        if not always and not any(x in self.predeclared for t in tests for x in re.findall(r"\$\w+", t)):
            return None
        br = self.fresh("branch")
        self.top_decls.append(f"{{{{ {br} := 0 }}}}")
        self.out[slots[0]] += f"{{{{ {br} = 0 }}}}"
        for k, slot in enumerate(slots[1:]):
            self.out[slot] += f"{{{{ {br} = {k + 1} }}}}"
        return [f"eq {br} {k + 1}" for k in range(len(tests))]

    def _raise_only(self, s) -> bool:
        def only_raise(body):
            calls = 0
            for st in body:
                if isinstance(st, nodes.Output):
                    for n in st.nodes:
                        if isinstance(n, nodes.TemplateData) and not n.data.strip():
                            continue
                        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Name) and n.node.name == "raise_exception":
                            calls += 1
                            continue
                        return False
                elif isinstance(st, nodes.If):
                    if not self._raise_only(st):
                        return False
                    calls += 1
                else:
                    return False
            return calls > 0 or not body
        bodies = [s.body] + [e.body for e in s.elif_] + ([s.else_] if s.else_ else [])
        return all(only_raise(b) for b in bodies) and any(b for b in bodies)

    def predeclare(self, bodies, scope):
        names = []
        for b in bodies:
            for st in b:
                for a in ([st] if isinstance(st, (nodes.Assign, nodes.AssignBlock)) else
                          [x for x in st.find_all((nodes.Assign, nodes.AssignBlock))
                           if not self._inside_for(st, x)]):
                    t = a.target
                    if isinstance(t, nodes.Name) and t.name not in names:
                        names.append(t.name)
        for name in names:
            if name not in self.read_names or name in self.textvars or self._branch_local_namespace(bodies, name):
                continue
            if self._extended_list(bodies, name, scope) or self._branch_local_list(bodies, name):
                continue  # merged after the `if` (s_If): its new items present where their branch ran
            cur = scope.get(name)
            if cur is not None and not cur.is_const and cur.go and cur.go.startswith("$") and re.fullmatch(r"\$\w+", cur.go):
                self.predeclared.add(cur.go)  # already a Go variable: branches assign to it
                continue
            var = self.fresh(name)
            if cur is None or (cur.is_const and cur.const is UNDEF):
                dvar = self.fresh(name + "def")
                self.emit(f"{{{{ {var} := \"\" }}}}{{{{ {dvar} := false }}}}")
                scope.set(name, V(go=var, kind=self._assigned_kind(bodies, name, scope), defined=dvar))
            else:
                self.emit(f"{{{{ {var} := {self.go_of(cur)} }}}}")
                kind = self._assigned_kind(bodies, name, scope) if cur.is_const and cur.const is None else cur.kind
                dvar = cur.defined
                if dvar and not self._is_var(dvar):
                    # an optional field's presence (`set tool_name = message.get('name')`, Kimi-K3): a variable of
                    # its own, which the branches set when they assign the name
                    dvar = self.fresh(name + "def")
                    self.emit(f"{{{{ {dvar} := not (not {cur.defined}) }}}}")
                if cur.is_const and cur.const is None and not dvar:
                    # `set extra = none` before the branches (GigaChat's additional_props_type): Go holds "", so a
                    # flag true while the name is none (_none_flag: each branch's assignment sets it) answers
                    # `is none`, as for a name first assigned none in a branch
                    dvar, flag = self.fresh(name + "def"), self.fresh("isnone")
                    self.emit(f"{{{{ {dvar} := true }}}}{{{{ {flag} := true }}}}")
                    self.__dict__.setdefault("none_flags", {})[var] = flag
                scope.set(name, V(go=var, kind=kind, defined=dvar))
            self.predeclared.add(var)

    def _extended_list(self, bodies, name, scope) -> bool:
        """``name`` holds a constant list and these branches only append to it (``set name = name + [...]``)."""
        cur = scope.get(name)
        if cur is None or not cur.is_const or not isinstance(cur.const, list):
            return False
        sets = [a for b in bodies for st in b for a in ([st] if isinstance(st, nodes.Assign) else
                                                        list(st.find_all(nodes.Assign)))
                if isinstance(a.target, nodes.Name) and a.target.name == name]
        return bool(sets) and all(isinstance(a.node, nodes.Add) and isinstance(a.node.left, nodes.Name)
                                  and a.node.left.name == name and isinstance(a.node.right, nodes.List) for a in sets) \
            and not any(isinstance(a.target, nodes.Name) and a.target.name == name
                        for b in bodies for st in b for a in ([st] if isinstance(st, nodes.AssignBlock) else
                                                              list(st.find_all(nodes.AssignBlock))))

    def _branch_local_list(self, bodies, name) -> bool:
        """``name`` is only ever assigned list literals (or itself plus one) in these branches and never read outside
        them (Kimi-K3's per-role `attrs`): a constant of each branch, nothing to declare before the ``if``."""
        inside = {id(n) for b in bodies for st in b for n in (st, *st.find_all(nodes.Node))}
        sets = [a for b in bodies for st in b for a in ([st] if isinstance(st, nodes.Assign) else
                                                        list(st.find_all(nodes.Assign)))
                if isinstance(a.target, nodes.Name) and a.target.name == name]
        if not sets or not all(isinstance(a.node, nodes.List) or (
                isinstance(a.node, nodes.Add) and isinstance(a.node.left, nodes.Name) and a.node.left.name == name
                and isinstance(a.node.right, nodes.List)) for a in sets):
            return False
        root = getattr(self, "_ast", None)
        if root is None:
            return False
        first = next((id(b[0]) for b in bodies if b), None)
        for mac in root.find_all(nodes.Macro):  # a macro's names are its own
            if any(id(n) == first for n in mac.find_all(nodes.Node)):
                root = mac
                break
        others = {id(n) for mac in root.find_all(nodes.Macro) for n in mac.find_all(nodes.Node)}  # their own names
        for n in root.find_all((nodes.Name, nodes.AssignBlock)):
            hit = (isinstance(n, nodes.Name) and n.name == name) or (
                isinstance(n, nodes.AssignBlock) and isinstance(n.target, nodes.Name) and n.target.name == name)
            if hit and id(n) not in inside and id(n) not in others:
                return False
        return True

    def _branch_local_namespace(self, bodies, name) -> bool:
        """``name`` is only ever assigned ``namespace(...)`` in these branches and never read outside them: it is a
        compile-time namespace of the branch, nothing to declare before the ``if``."""
        inside = {id(n) for b in bodies for st in b for n in (st, *st.find_all(nodes.Node))}
        sets = [a for b in bodies for st in b for a in ([st] if isinstance(st, nodes.Assign) else [])
                + list(st.find_all(nodes.Assign)) if isinstance(a.target, nodes.Name) and a.target.name == name]
        if not sets or not all(isinstance(a.node, nodes.Call) and isinstance(a.node.node, nodes.Name)
                               and a.node.node.name == "namespace" for a in sets):
            return False
        root = getattr(self, "_ast", None)
        if root is None:
            return False
        first = next((id(b[0]) for b in bodies if b), None)
        for mac in root.find_all(nodes.Macro):  # a macro's names are its own: look no further than its body
            if any(id(n) == first for n in mac.find_all(nodes.Node)):
                root = mac
                break
        for n in root.find_all((nodes.Name, nodes.NSRef, nodes.AssignBlock)):
            hit = (isinstance(n, nodes.Name) and n.name == name) or (isinstance(n, nodes.NSRef) and n.name == name) \
                or (isinstance(n, nodes.AssignBlock) and isinstance(n.target, nodes.Name) and n.target.name == name)
            if hit and id(n) not in inside:
                return False
        return True

    @staticmethod
    def _inside_for(root, node) -> bool:
        for f in root.find_all(nodes.For):
            if any(x is node for x in f.find_all(type(node))):
                return True
        return isinstance(root, nodes.For)

    def s_Assign(self, s, scope):
        if self.queue_append(s, scope):
            return
        t = s.target
        if isinstance(t, nodes.NSRef):
            key = f"{t.name}.{t.attr}"
            ns = scope.get(t.name)
            if ns is None or ns.kind != "ns":
                raise Untranslatable("assignment to an attribute of a non-namespace")
            if key not in self.read_names:
                return
            if key in self.textvars:
                return self.assign_text_attr(key, s.node, scope)
            var = ns.const.get(t.attr)
            if var is not None and var.kind == "strset":
                return self.strset_add(var, s.node, scope)
            if var is not None and var.go in self.__dict__.get("_run_vars", {}):
                return self.prefix_run_add(var)
            if key in self.counters:
                return self.count(key, s.node, scope)
            if var is not None and (var.is_const or var.kind == "vlist"):
                raise Untranslatable("a list built in the template other than by one filtered loop")
            v = self.expr(s.node, scope)
            if var is not None and var.go in self.__dict__.get("maybe_none", {}):
                self._none_attr_kind(var.go, v)
            if var is not None and var.go in self.__dict__.get("maybe_none", {}) \
                    and self.maybe_none_assign(ns, t.attr, var, v):
                return
            if var is None:  # first assignment outside namespace(): declare at the namespace's level
                raise Untranslatable(f"namespace attribute {t.attr!r} set without a default")
            self.emit(f"{{{{ {var.go} = {self.go_of(v)} }}}}")
            if var.go in self.late_attrs and var.defined:
                self.emit(f"{{{{ {var.defined} = true }}}}")
                if not v.is_const and v.kind in SEQ_KINDS | set(self.STRUCTS) | {"str", "int", "bool"}:
                    ns.const[t.attr] = V(go=var.go, kind=v.kind, defined=var.defined)
            return
        if not isinstance(t, nodes.Name):
            raise Untranslatable("tuple assignment")
        if isinstance(s.node, nodes.Call) and isinstance(s.node.node, nodes.Name) and s.node.node.name == "namespace":
            return self.namespace(t.name, s.node, scope)
        if t.name not in self.read_names:
            return
        if t.name in self.textvars and isinstance(s.node, nodes.Call):
            built = self.ts_capture(s.node, scope)  # a known recursive macro's output, built as a Go string
            if built is not None:
                scope.vars[t.name] = built
                return
        if t.name in self.textvars:  # kept as is; made text only where branches merge (as_text)
            scope.vars[t.name] = self.eval_text(s.node, scope, in_place=True)
            return
        v = self.expr(s.node, scope)
        cur = scope.get(t.name)
        if v.kind == "out":
            # bound in this branch only: Go cannot store output in a variable. Reads after the `if` would see the
            # predeclared value; the probe check catches a template where that matters.
            scope.vars[t.name] = v
            return
        if v.kind.startswith(_SPLIT) and not v.is_const:  # `set parts = s.split(sep)`: the text, read by its kind
            if cur is not None and not cur.is_const and cur.go in self.predeclared:
                if cur.kind != v.kind:
                    raise Untranslatable("a split string assigned to a name that also holds other values")
                self.emit(f"{{{{ {cur.go} = {_paren(v.go)} }}}}")
                if cur.defined and cur.defined.startswith("$"):
                    self.emit(f"{{{{ {cur.defined} = true }}}}")
                return
            if re.fullmatch(r"\.[\w.]*|\$\.[\w.]*", v.go):
                scope.vars[t.name] = v  # a field path: inlined where used
                return
            var = self.fresh(t.name)
            self.emit(f"{{{{ {var} := {_paren(v.go)} }}}}")
            scope.vars[t.name] = V(go=var, kind=v.kind)
            return
        if cur is not None and not cur.is_const and cur.go in self.predeclared and v.kind == "vlist":
            # `set tools = tools | rejectattr(...)` in a branch, outside loops and macros: the variable keeps the
            # whole sequence, and a flag (set here) makes the comprehension's filter apply only where the branch ran
            nm, seq, cond, elem, dscope = v.extra
            if self.loops or self.depth or cur.kind not in SEQ_KINDS or seq.is_const or self.go_of(seq) != cur.go \
                    or not (isinstance(elem, nodes.Name) and elem.name == nm):
                raise Untranslatable("a filtered list assigned in a branch")
            flag = self.fresh("filtered")
            self.top_decls.append(f"{{{{ {flag} := false }}}}")
            self.emit(f"{{{{ {flag} = true }}}}")
            fscope = _Scope(dscope)
            fscope.vars[flag[1:]] = V(go=flag, kind="bool")
            cond = nodes.Or(nodes.Not(nodes.Name(flag[1:], "load")), cond)
            scope.set(t.name, V(go=None, kind="vlist", extra=(nm, V(go=cur.go, kind=cur.kind), cond, elem, fscope)))
            return
        once = self.assign_counts.get(t.name, 0) == 1
        if cur is not None and not cur.is_const and cur.go in self.predeclared and once and v.go is None \
                and v.kind == "int" and isinstance(v.extra, Aff) and self.range_int:
            try:
                v.extra.go()
            except Untranslatable:
                # `set call_order = outer_index - assistant_idx.value` (DeepSeek-V3.2): Go has no subtraction; the
                # value is kept as two strings of x (len P - len N), declared at the top, set here (the only
                # assignment of the name), read back by comparisons (compare) and nothing else
                p, n = self.fresh("pos"), self.fresh("neg")
                self.top_decls.append(f"{{{{ {p} := \"\" }}}}{{{{ {n} := \"\" }}}}")
                self.emit(self.unary(v.extra, p, n, declare=False))
                if cur.defined and cur.defined.startswith("$"):
                    self.emit(f"{{{{ {cur.defined} = true }}}}")
                f = Aff(((f"len {p}", 1), (f"len {n}", -1)))
                self.unary_of[f"len {p}"], self.unary_of[f"len {n}"] = p, n
                scope.set(t.name, V(go=None, kind="int", extra=f, defined=cur.defined))
                return
        if cur is not None and not cur.is_const and cur.go in self.predeclared:
            if v.is_const and v.const == [] and cur.kind in SEQ_KINDS:  # `set tools = []`: an empty slice, same type
                v = V(go=f"slice {cur.go} 0 0", kind=cur.kind)
            if v.is_const and isinstance(v.const, dict) and v.const and not _holds_v(v.const) \
                    and self._schema_rec() and (cur.kind == "any" or cur.kind == "none"):
                # GigaChat's `set additional_props_type = {'type': 'any'}` in a recursive macro's branch on a JSON
                # value (`additionalProperties: true` in a property's items): Go cannot make a mapping, so the
                # branch stops the template with an error, never other text
                self.note(f"{self.rec_active[-1][0]}(): where a JSON schema inside `items` sets {t.name} to "
                          f"{v.const!r} (additionalProperties: true) the template stops with a Go error")
                self.emit('{{ index "" 1 }}')
                return
            self.emit(f"{{{{ {cur.go} = {self.go_of(v)} }}}}")
            if cur.defined and cur.defined.startswith("$"):
                self.emit(f"{{{{ {cur.defined} = true }}}}")
            if cur.defined and cur.defined.startswith("$"):
                self._none_flag(cur.go, v)
            kind = cur.kind if cur.kind == v.kind or (v.is_const and v.const is None) else "any"
            if cur.kind == "any" and once and (v.kind in self.STRUCTS or v.kind == "int") and cur.defined \
                    and cur.defined.startswith("$"):
                # a name whose kind the predeclaration could not learn (its value reads a namespace made in the
                # same branch: `set assistant_msg = messages[assistant_idx.value]`) and that is assigned only here:
                # it holds this kind wherever it is set (read before, Go's field access on "" or a comparison of ""
                # with an int fails: an error, never other text)
                kind = v.kind
            if cur.kind == "any" and v.kind == "str" and cur.defined and cur.defined.startswith("$") \
                    and self._live_assign_count(t.name) == 1:
                # the same for text (MiniCPM5's `processed_content = content_parts[0]`, its other assignments in
                # loops that write nothing): the name holds text once set, "" before (Jinja's undefined prints,
                # tests and strips as "" does; only `is string` and `== ''` on it before this would differ)
                kind = "str"
            scope.set(t.name, V(go=cur.go, kind=kind, defined=cur.defined))
            return
        if v.is_const or v.kind == "folded" or (v.go and re.fullmatch(r"\$[\w.]*|\.[\w.]*|\$\w+(\.\w+)*", v.go)
                                                 and not self._is_var(v.go)):
            scope.vars[t.name] = self._pin_dot(v, scope)  # constants and field paths are inlined where used (`.F` through the variable `.` is)
            return
        if v.go is None and v.kind == "int" and isinstance(v.extra, Aff) and self.range_int:
            try:
                v.extra.go()
            except Untranslatable:  # a difference Go cannot write: two strings of x, declared here (unary)
                p, n = self.fresh("pos"), self.fresh("neg")
                self.emit(self.unary(v.extra, p, n, declare=True))
                self.unary_of[f"len {p}"], self.unary_of[f"len {n}"] = p, n
                scope.vars[t.name] = V(go=None, kind="int", extra=Aff(((f"len {p}", 1), (f"len {n}", -1))))
                return
        var = self.fresh(t.name)
        self.emit(f"{{{{ {var} := {self.go_of(v)} }}}}")
        scope.vars[t.name] = V(go=var, kind=v.kind, extra=v.extra)

    def _live_assign_count(self, name: str) -> int:
        """How many `set name = ...` the template holds outside statements that write nothing (_dead_nodes)."""
        root = getattr(self, "_ast", None)
        if root is None:
            return 0
        dead = self.__dict__.setdefault("_dead", _dead_nodes(root))
        return sum(1 for a in root.find_all(nodes.Assign) if id(a) not in dead and isinstance(a.target, nodes.Name)
                   and a.target.name == name)

    def _none_flag(self, var: str, v: V):
        """A predeclared Go variable assigned none (`set end_turn = message.get('end_turn')`) holds "", which Go
        cannot tell from other values: a flag, true exactly while the last assignment was none, answers `is none`
        with the name's `defined` flag (it was `not defined`, false once anything was assigned). Only for names
        without a value before their `if` (their `defined` flag is declared again with them, so a loop's next
        iteration starts from undefined). Made at the first none; every later assignment sets it."""
        flags = self.__dict__.setdefault("none_flags", {})
        none = v.is_const and (v.const is None)
        if var not in flags:
            if not none:
                return
            flags[var] = self.fresh("isnone")
            self.top_decls.append(f"{{{{ {flags[var]} := false }}}}")
        self.emit(f"{{{{ {flags[var]} = {'true' if none else 'false'} }}}}")

    MAX_COUNT = 64  # the largest constant a counter starts from or steps by

    def _find_counters(self, ast) -> set[str]:
        """Namespace attributes only ever set to a small constant or to themselves plus one (tool-call counters)."""
        sets: dict[str, bool] = {}
        for a in ast.find_all(nodes.Assign):
            t = a.target
            if not isinstance(t, nodes.NSRef):
                continue
            key, n = f"{t.name}.{t.attr}", a.node
            small = lambda c: isinstance(c, nodes.Const) and isinstance(c.value, int) and not isinstance(c.value, bool) \
                and 0 <= c.value <= self.MAX_COUNT
            ok = small(n) or (isinstance(n, nodes.Add) and isinstance(n.left, nodes.Getattr)
                              and isinstance(n.left.node, nodes.Name) and n.left.node.name == t.name
                              and n.left.attr == t.attr and small(n.right))
            sets[key] = sets.get(key, True) and ok
        return {k for k, ok in sets.items() if ok}

    def count(self, key, rhs, scope):
        var = self.counters[key]
        if isinstance(rhs, nodes.Const):
            self.emit(f"{{{{ {var} = {_go_str('x' * rhs.value)} }}}}")
        elif rhs.right.value:
            self.emit(f"{{{{ {var} = print {var} {_go_str('x' * rhs.right.value)} }}}}")

    def assign_text_attr(self, key, rhs, scope):
        if self.acc == key:  # accumulating: the loop keeps only what each iteration appends
            parts = rhs.nodes if isinstance(rhs, nodes.Concat) else None
            if parts is None:
                flat, stack = [], [rhs]
                while stack:
                    n = stack.pop()
                    if isinstance(n, nodes.Add):
                        stack += [n.right, n.left]
                    else:
                        flat.append(n)
                parts = flat
            head = parts[0]
            if not (isinstance(head, nodes.Getattr) and isinstance(head.node, nodes.Name)
                    and f"{head.node.name}.{head.attr}" == key):
                raise Untranslatable("text built in a loop other than by appending to itself")
            saved, self.suppress = self.suppress, False
            try:
                for p in parts[1:]:
                    self.output(p, scope)
            finally:
                self.suppress = saved
            # what the body reads of it after this append (Reka-Edge's `ns.out.endswith('\n')`): the value the
            # first pass gave it, built here again (it only prints where the text is)
            scope.vars[self._slot(key)] = self.eval_text(rhs, scope)
            return
        scope.vars[self._slot(key)] = self.eval_text(rhs, scope)

    def _reads_predeclared(self, v: V) -> bool:
        return v.kind != "out" and not v.is_const and bool(v.go) \
            and any(x in self.predeclared for x in re.findall(r"\$\w+", v.go))

    def snapshot(self, v: V) -> V:
        """``v`` as it is now, in a variable declared at the top: text re-run later reads this moment's value."""
        snap = self.fresh("snap")
        self.top_decls.append(f'{{{{ {snap} := "" }}}}')
        self.emit(f"{{{{ {snap} = {self.go_of(v)} }}}}")
        return V(go=snap, kind=v.kind)

    def eval_text(self, rhs, scope, in_place: bool = False) -> V:
        """The value of a text variable. Go variables the expression needs (a conditional's temporary) are declared
        inside its snippet, so the snippet stands alone wherever it is printed. ``in_place`` (a plain name: Jinja
        reads it only after this point, in the same loop iteration): a value built into a Go string variable by the
        Go before it (`macro() | replace(a, b)`) is built here, once, and the name reads the variable."""
        start = len(self.out)
        v = self.expr(rhs, scope)
        pre = "".join(self.out[start:])
        if in_place and pre and v.kind == "str" and v.go and self._is_var(v.go) and v.go not in self.predeclared:
            return v
        del self.out[start:]
        if not pre and not self.loops and v.kind != "out" and not v.is_const and v.go \
                and any(x in self.predeclared for x in re.findall(r"\$\w+", v.go)):
            # it reads a variable a branch reassigns later (`set messages = messages[1:]`): keep today's value
            snap = self.fresh("snap")
            self.top_decls.append(f'{{{{ {snap} := "" }}}}')
            self.emit(f"{{{{ {snap} = {self.go_of(v)} }}}}")
            return V(go=snap, kind=v.kind)
        if not pre:
            return self._pinned_text(v) if v.kind == "out" else v
        text = self.as_text(v)
        return V(kind="out", extra=pre + text.extra, truthy=None)

    def _pinned_text(self, v: V) -> V:
        """Text (a macro's output) that reads a variable a branch reassigns later (`set messages = messages[1:]`
        after `ns.sys = parse_content(messages[0].content)`): it is re-run where it is printed, so it reads a
        snapshot of each such variable taken now (the value Jinja's text was made from)."""
        reads = [x for x in dict.fromkeys(re.findall(r"\$\w+", v.extra or "")) if x in self.predeclared]
        if not reads or re.search(r"\{\{ (" + "|".join(re.escape(x) for x in reads) + r")\b\s*:?=", v.extra):
            return v
        text, truthy = v.extra, v.truthy
        for x in reads:
            snap = self.fresh("snap")
            self.snap_vars.add(snap)
            self.top_decls.append(f'{{{{ {snap} := "" }}}}')
            self.emit(f"{{{{ {snap} = {x} }}}}")
            pat = re.escape(x) + r"(?!\w)"
            text = re.sub(pat, snap, text)
            truthy = re.sub(pat, snap, truthy) if truthy else truthy
            for go, t in list(self.print_truth.items()):  # what printing each pipeline says, for text_truth
                if re.search(pat, go):
                    self._printed(re.sub(pat, snap, go), re.sub(pat, snap, t) if t else t)
        return V(kind="out", extra=text, truthy=truthy, dot=v.dot)

    def _assigned_kind(self, bodies, name, scope) -> str:
        kinds = set()
        counts: dict[str, int] = {}
        for b in bodies:
            for st in b:
                for a in [st, *st.find_all((nodes.Assign, nodes.For, nodes.Macro))]:
                    if isinstance(a, (nodes.Assign, nodes.For)):  # a loop's names are bound many times
                        for t in [a.target, *a.target.find_all(nodes.Name)]:
                            if isinstance(t, nodes.Name):
                                counts[t.name] = counts.get(t.name, 0) + (1 if isinstance(a, nodes.Assign) else 2)
                    elif isinstance(a, nodes.Macro):
                        for t in a.args:
                            counts[t.name] = counts.get(t.name, 0) + 2
        for b in bodies:
            seen = _Scope(scope)  # names a branch sets once, at its top, before the assignments read them
            for st in b:
                for a, sc in self._live_assigns(st, seen, counts):
                    if isinstance(a.target, nodes.Name) and a.target.name == name:
                        try:
                            saved = len(self.out)
                            k = self.expr(a.node, sc).kind
                            del self.out[saved:]
                        except Untranslatable:
                            k = "any"
                        kinds.add(k)
                if isinstance(st, nodes.Assign) and isinstance(st.target, nodes.Name) and counts.get(st.target.name) == 1:
                    saved = len(self.out)
                    try:
                        seen.vars[st.target.name] = self.expr(st.node, seen)
                    except Untranslatable:
                        pass
                    finally:
                        del self.out[saved:]
        kinds.discard("none")
        return kinds.pop() if len(kinds) == 1 else "any"

    def _live_assigns(self, node, seen, counts):
        """(assignment, scope to read it in) in ``node``, leaving out branches a constant test rules out
        (`x is not string` of request text); a test is judged only where every name it reads is assigned nowhere
        in the branches being predeclared, or once at the top of this one (then bound in ``seen``)."""
        if isinstance(node, nodes.Assign):
            yield node, seen
            return
        if isinstance(node, nodes.If):
            names = [n.name for n in [node.test, *node.test.find_all(nodes.Name)] if isinstance(n, nodes.Name)]
            if all(counts.get(n, 0) == 0 or (counts[n] == 1 and n in seen.vars) for n in names):
                saved = len(self.out), len(self.top_decls), len(self.notes), set(self.defs)
                try:
                    t = self.cond(node.test, seen)
                except Untranslatable:
                    t = None
                finally:  # only judged: what the test would write is dropped
                    del self.out[saved[0]:], self.top_decls[saved[1]:], self.notes[saved[2]:]
                    for k in set(self.defs) - saved[3]:
                        del self.defs[k]
                if t is not None and t.is_const:
                    for x in (node.body if t.const else [*node.elif_, *node.else_]):
                        yield from self._live_assigns(x, seen, counts)
                    return
        for x in node.iter_child_nodes():
            yield from self._live_assigns(x, seen, counts)

    def _is_var(self, go: str) -> bool:
        return bool(re.fullmatch(r"\$[A-Za-z]\w*", go)) and go not in ("$",)

    def namespace(self, name, call, scope):
        attrs = {}
        for kw in call.kwargs:
            key = f"{name}.{kw.key}"
            v = self.expr(kw.value, scope)
            if key in self.textvars:
                scope.vars[self._slot(key)] = self.as_text(v)
                attrs[kw.key] = V(go=None, kind="out", extra="", truthy="false")
                continue
            if v.is_const and v.const == [] and key in self.read_names and key in self._strqueues():
                var = self.fresh(f"{name}{kw.key}")
                self.emit(f'{{{{ {var} := "" }}}}')
                attrs[kw.key] = V(go=var, kind="strqueue")  # grown by queue_append, read by queue_pop and its truth
                continue
            if v.is_const and v.const == [] and key in self.read_names and key in self._strsets():
                var = self.fresh(f"{name}{kw.key}")
                self.emit(f'{{{{ {var} := "" }}}}')
                attrs[kw.key] = V(go=var, kind="strset")  # grown by strset_add, tested by strset_has
                continue
            run = self._prefix_runs().get(key)
            if v.is_const and v.const == [] and key in self.read_names and run is not None and run[0] is call:
                attrs[kw.key] = self.prefix_run(name, kw.key, run[1], scope)  # grown by prefix_run_add
                continue
            if v.is_const and v.const == []:
                attrs[kw.key] = v  # filled by a filtered loop, if at all (_collect_list)
                continue
            if key in self.counters_keys and v.is_const and isinstance(v.const, int) and not isinstance(v.const, bool) \
                    and 0 <= v.const <= self.MAX_COUNT:
                # Go has no +: a counter is a string of as many x as its value, read with len, grown with print
                var = self.fresh(f"{name}{kw.key}")
                self.emit(f"{{{{ {var} := {_go_str('x' * v.const)} }}}}")
                self.counters[key] = var
                attrs[kw.key] = V(go=f"len {var}", kind="int", extra=Aff.atom(f"len {var}"))
                continue
            var = self.fresh(f"{name}{kw.key}")
            if key in self.read_names:
                self.emit(f"{{{{ {var} := {self.go_of(v)} }}}}")
                if v.is_const and v.const is None:  # may later hold a sequence or none (maybe_none_assign)
                    flag = self.fresh(f"{name}{kw.key}set")
                    self.emit(f"{{{{ {flag} := false }}}}")
                    self.__dict__.setdefault("maybe_none", {})[var] = flag
            attrs[kw.key] = V(go=var, kind=v.kind)
        # attributes first assigned later (`set ns.x = ...` without a default) get declared now
        scope.vars[name] = V(const=attrs, kind="ns")
        if not hasattr(self, "_ns_loops"):
            self._ns_loops = {}
        self._ns_loops[id(attrs)] = len(self.loops)  # the loops it lives in (_collect_list)
        for a in self._ns_attrs_assigned(name):
            if f"{name}.{a}" in self.textvars:
                if a not in attrs:
                    scope.vars[self._slot(f"{name}.{a}")] = V(kind="out", extra="", truthy="false")
                    attrs[a] = V(go=None, kind="out", extra="", truthy="false")
                continue
            if a not in attrs:
                var = self.fresh(f"{name}{a}")
                if f"{name}.{a}" in self.read_names:
                    self.emit(f"{{{{ {var} := \"\" }}}}")
                attrs[a] = V(go=var, kind="any")
                if f"{name}.{a}" in self.read_names and self._late_attr_once(name, a):
                    # set once, later, maybe only in a branch: Jinja reads it as undefined until then (a flag), and
                    # it holds the kind of that one assignment wherever it is set (s_Assign)
                    dvar = self.fresh(f"{name}{a}def")
                    self.emit(f"{{{{ {dvar} := false }}}}")
                    attrs[a] = V(go=var, kind="any", defined=dvar)
                    self.late_attrs.add(var)

    def _none_attr_kind(self, var: str, v: V):
        """What a namespace attribute that starts as none is set to: printed (print_value, None while none) only
        while every value it is given is text; a later other value after such a print is refused."""
        if v.is_const and v.const is None:
            return
        kinds = self.__dict__.setdefault("ns_none_kinds", {}).setdefault(var, set())
        kinds.add("str" if v.kind == "str" and (v.is_const or v.go) else "other")
        if "other" in kinds and var in self.__dict__.get("ns_none_printed", set()):
            raise Untranslatable("a namespace attribute that starts as none, printed, later set to a non-string")

    def maybe_none_assign(self, ns: V, attr: str, var: V, v: V) -> bool:
        """`set ns.a = x` where `namespace(a=none)`: a flag, false while the attribute is none, answers `is none`
        (an optional field Ollama leaves empty reads as none, as `is none` reads it). Where x is a sequence
        (Kimi-K3's `state.tool_calls = message.get('tool_calls')`) the attribute takes its kind (one kind only: a
        second is refused), and ranging over it or its length while none stops the template with an error, as
        Jinja's TypeError does (none_guard). Other values are stored as they are (False: the plain assignment) and
        set the flag first."""
        flag = self.maybe_none[var.go]
        if v.is_const and v.const is None:
            self.emit(f'{{{{ {flag} = false }}}}')
            if var.kind == "none":
                return False
            self.emit(f'{{{{ {var.go} = slice {var.go} 0 0 }}}}')  # false, as none is
            return True
        present = f"not (not {v.defined})" if v.defined else "true"
        if v.go and v.go in self.maybe_none:  # another such attribute: its flag
            present = self.maybe_none[v.go]
        elif v.kind == "any" and not v.is_const and v.go:  # a JSON value: null is none
            null = f'ne (printf "%T" {_paren(v.go)}) "<nil>"'
            present = f"and ({present}) ({null})" if v.defined else null
        elif v.kind == "none" and not v.is_const:
            raise Untranslatable("a namespace attribute that may be none set to a value of unknown none-ness")
        if v.kind not in SEQ_KINDS or v.is_const or not v.go:
            if var.kind != "none":
                raise Untranslatable(f"a namespace attribute that holds a {var.kind} or none set to a {v.kind}")
            self.emit(f"{{{{ {flag} = {present} }}}}")
            return False
        if var.kind not in ("none", v.kind):
            raise Untranslatable(f"a namespace attribute that holds a {var.kind} or none set to a {v.kind}")
        self.emit(f"{{{{ {var.go} = {self.go_of(v)} }}}}{{{{ {flag} = {present} }}}}")
        ns.const[attr] = V(go=var.go, kind=v.kind)
        return True

    def none_guard(self, v: V):
        """Before a loop over a namespace attribute that may be none (maybe_none_assign): an error where it is none
        (Go's index out of range), as Jinja's TypeError, never other text. (Its length: the same error inside the
        expression, e_Filter.)"""
        flag = self.__dict__.get("maybe_none", {}).get(v.go)
        if flag is not None and v.kind in SEQ_KINDS:
            self.emit(f'{{{{ if not {flag} }}}}{{{{ index "" 1 }}}}{{{{ end }}}}')

    def _late_attr_once(self, name, attr) -> bool:
        """Whether the namespace attribute ``name.attr``, not given in namespace(), is assigned exactly once in the
        template (and never by a block assignment)."""
        root = getattr(self, "_ast", None)
        if root is None:
            return False
        sets = [a for a in root.find_all((nodes.Assign, nodes.AssignBlock))
                if isinstance(a.target, nodes.NSRef) and a.target.name == name and a.target.attr == attr]
        return len(sets) == 1 and isinstance(sets[0], nodes.Assign)

    def _once_per_ast(self, key: str, scan) -> set[str]:
        """``scan(root, out)`` over the template's AST, once per translation (cached under ``key``; set before the
        scan, so a scan that asks again sees what it has found so far); empty before the AST is known."""
        got = getattr(self, key, None)
        if got is not None:
            return got
        out: set[str] = set()
        setattr(self, key, out)
        root = getattr(self, "_ast", None)
        if root is not None:
            scan(root, out)
        return out

    def _strsets(self) -> set[str]:
        """"ns.attr" lists that start empty (`namespace(ids=[])`), are only grown by one element at a time
        (`set ns.ids = ns.ids + [x]`, anywhere) and only read by membership tests (`y in ns.ids`, `not in`); the
        namespace is made once and never used as a value. Go has no lists: such a list is a string (strset_add)."""
        return self._once_per_ast("_strset_keys", self._scan_strsets)

    def _scan_strsets(self, root, out: set[str]) -> None:
        allowed, stores, blocks = set(), {}, set()
        for a in root.find_all(nodes.Assign):
            t, r = a.target, a.node
            if not isinstance(t, nodes.NSRef):
                continue
            good = (isinstance(r, nodes.Add) and isinstance(r.left, nodes.Getattr) and isinstance(r.left.node, nodes.Name)
                    and r.left.node.name == t.name and r.left.attr == t.attr and isinstance(r.right, nodes.List)
                    and len(r.right.items) == 1)
            if good:
                allowed.add(id(r.left))
            stores[f"{t.name}.{t.attr}"] = stores.get(f"{t.name}.{t.attr}", True) and good
        for a in root.find_all(nodes.AssignBlock):
            if isinstance(a.target, nodes.NSRef):
                blocks.add(f"{a.target.name}.{a.target.attr}")
        for c in root.find_all(nodes.Compare):
            if len(c.ops) == 1 and c.ops[0].op in ("in", "notin"):
                allowed.add(id(c.ops[0].expr))
        for name, kw, reads in _lone_namespace_lists(root):
            key = f"{name}.{kw.key}"
            if key not in blocks and stores.get(key, True) and reads and all(id(g) in allowed for g in reads):
                out.add(key)

    def _strqueues(self) -> set[str]:
        """"ns.attr" lists that start empty and are used only as a queue of text: `set _ = ns.ids.append(x)` (the
        result never read), `ns.ids.pop(0)` and `{% if ns.ids %}` (Kimi-K2-Thinking's tool_response_queue). The
        namespace is made once and never used as a value. Go has no lists: the queue is a string (queue_append)."""
        return self._once_per_ast("_strqueue_keys", self._scan_strqueues)

    def _scan_strqueues(self, root, out: set[str]) -> None:
        parent = {}
        for n in root.find_all(nodes.Node):
            for c in n.iter_child_nodes():
                parent[id(c)] = n
        loads = {}
        for n in root.find_all(nodes.Name):
            if n.ctx == "load":
                loads[n.name] = loads.get(n.name, 0) + 1

        def use_ok(g):
            up = parent.get(id(g))
            if isinstance(up, nodes.If) and up.test is g:
                return True
            call = parent.get(id(up))
            if not (isinstance(up, nodes.Getattr) and up.node is g and isinstance(call, nodes.Call)
                    and call.node is up and not call.kwargs and call.dyn_args is None and call.dyn_kwargs is None):
                return False
            if up.attr == "pop":
                return len(call.args) == 1 and isinstance(call.args[0], nodes.Const) and call.args[0].value == 0
            st = parent.get(id(call))
            return (up.attr == "append" and len(call.args) == 1 and isinstance(st, nodes.Assign) and st.node is call
                    and isinstance(st.target, nodes.Name) and not loads.get(st.target.name))

        stored = {f"{t.name}.{t.attr}" for t in root.find_all(nodes.NSRef)}
        for name, kw, uses in _lone_namespace_lists(root):
            key = f"{name}.{kw.key}"
            if key not in stored and uses and all(use_ok(g) for g in uses):
                out.add(key)

    def queue_append(self, s, scope) -> bool:
        """`set _ = ns.ids.append(x)` on a strqueue: the string grows by x's decimal byte length, ":" and x.
        (transformers' sandbox refuses list.append, so Jinja renders no conversation that reaches this: what is
        written is the template's evident meaning, a mutable list's.)"""
        c = s.node
        if not (isinstance(s.target, nodes.Name) and isinstance(c, nodes.Call) and isinstance(c.node, nodes.Getattr)
                and c.node.attr == "append" and isinstance(c.node.node, nodes.Getattr)
                and isinstance(c.node.node.node, nodes.Name)
                and f"{c.node.node.node.name}.{c.node.node.attr}" in self._strqueues()):
            return False
        var = self.expr(c.node.node, scope)
        if var.kind != "strqueue":
            return False
        x = self.expr(c.args[0], scope)
        if not (x.kind == "str" and (x.is_const and isinstance(x.const, str) or not x.is_const and x.go)):
            raise Untranslatable(f"a queue of {x.kind} values built in the template")
        g = self.go_of(x)
        self.emit(f'{{{{ {var.go} = print {var.go} (printf "%d:" (len {g})) {g} }}}}')
        return True

    def queue_pop(self, q: V) -> V:
        """`ns.ids.pop(0)`: the first item cut off the strqueue: its length is the digits before the first ":",
        matched against each offset's decimal (Go has no atoi). An empty queue fails in Go as in Python."""
        self._need_range_int("a queue of text built in the template")
        p, d, r, n, j, item = (self.fresh(b) for b in ("colon", "digits", "rest", "len", "j", "item"))
        L = q.go
        self.emit(f"{{{{ {p} := 0 }}}}{{{{ range {j} := len {L} }}}}{{{{ if eq (index {L} {j}) 58 }}}}{{{{ {p} = {j} }}}}"
                  f"{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}{{{{ {d} := slice {L} 0 {p} }}}}{{{{ {r} := slice (slice {L} {p}) 1 }}}}"
                  f"{{{{ {n} := 0 }}}}{{{{ range {j} := len (print {r} \"x\") }}}}{{{{ if eq (printf \"%d\" {j}) {d} }}}}"
                  f"{{{{ {n} = {j} }}}}{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}{{{{ {item} := slice {r} 0 {n} }}}}"
                  f"{{{{ {L} = slice {r} {n} }}}}")
        return V(go=item, kind="str")

    def _prefix_runs(self) -> dict:
        """"ns.attr" lists grown only as the first elements of one sequence (Kimi-K3's `run.tool_messages`, the run of
        tool results from this message on): `namespace(L=[])` right before `for x in S` (no filter, no else, not
        recursive), whose body is some `{% if t %}{% break %}{% endif %}` (pure tests, no other branch) and then
        `set ns.L = ns.L + [x]`, the only store to L in the template. Each iteration that passes the breaks appends
        its own element, so L is always S's first n elements, n the appends so far: a Go slice of S (prefix_run).
        The namespace is made once and never used as a value. -> {"ns.attr": (the namespace() call, the for)}."""
        got = self.__dict__.get("_prefix_run_keys")
        if got is not None:
            return got
        root, out = getattr(self, "_ast", None), {}
        self._prefix_run_keys = out
        if root is None:
            return out
        attr_of = {id(g.node) for g in root.find_all(nodes.Getattr)}
        stores = {}
        for a in root.find_all((nodes.Assign, nodes.AssignBlock)):
            if isinstance(a.target, nodes.NSRef):
                stores.setdefault(f"{a.target.name}.{a.target.attr}", []).append(a)
        for body in (getattr(n, f) for n in root.find_all(nodes.Node) for f in n.fields):
            if not isinstance(body, list):
                continue
            for a, f in itertools.pairwise(body):
                if not (isinstance(a, nodes.Assign) and isinstance(a.target, nodes.Name) and isinstance(a.node, nodes.Call)
                        and isinstance(a.node.node, nodes.Name) and a.node.node.name == "namespace"
                        and not a.node.args and a.node.dyn_args is None and a.node.dyn_kwargs is None
                        and isinstance(f, nodes.For) and isinstance(f.target, nodes.Name) and f.test is None
                        and not f.else_ and not f.recursive and _pure_expr(f.iter)):
                    continue
                name = a.target.name
                names = [n for n in root.find_all(nodes.Name) if n.name == name]
                if sum(1 for n in names if n.ctx != "load") != 1 or any(id(n) not in attr_of for n in names
                                                                        if n.ctx == "load"):
                    continue  # made again, a parameter or a loop target, or used as a value (handed to a macro)
                k = 0
                while k < len(f.body) and isinstance(f.body[k], nodes.If) and not f.body[k].elif_ \
                        and not f.body[k].else_ and _pure_expr(f.body[k].test) and len(f.body[k].body) == 1 \
                        and isinstance(f.body[k].body[0], nodes.Break):
                    k += 1
                st = f.body[k] if k < len(f.body) else None
                if not (isinstance(st, nodes.Assign) and isinstance(st.target, nodes.NSRef) and st.target.name == name):
                    continue
                key, r = f"{name}.{st.target.attr}", st.node
                if any(kw.key == st.target.attr and isinstance(kw.value, nodes.List) and not kw.value.items
                       for kw in a.node.kwargs) and stores.get(key) == [st] and isinstance(r, nodes.Add) \
                        and isinstance(r.left, nodes.Getattr) and isinstance(r.left.node, nodes.Name) \
                        and r.left.node.name == name and r.left.attr == st.target.attr \
                        and isinstance(r.right, nodes.List) and len(r.right.items) == 1 \
                        and isinstance(r.right.items[0], nodes.Name) and r.right.items[0].name == f.target.name:
                    out[key] = (a.node, f)
        return out

    def prefix_run(self, name: str, attr: str, f: nodes.For, scope) -> V:
        """The list of a prefix run (_prefix_runs), made where its namespace() is, just before its loop: the loop's
        sequence bound once (Jinja evaluates it once), a string of x counting the appends, and the list as the
        Go slice of the sequence's first that many elements."""
        seq = self.expr(f.iter, scope)
        if seq.kind not in SEQ_KINDS or seq.is_const or not seq.go:
            raise Untranslatable(f"a list built in the template from the first elements of a {seq.kind}")
        sv, n, var = self.fresh("runseq"), self.fresh("runlen"), self.fresh(f"{name}{attr}")
        self.emit(f'{{{{ {sv} := {self.go_of(seq)} }}}}{{{{ {n} := "" }}}}{{{{ {var} := slice {sv} 0 0 }}}}')
        self.__dict__.setdefault("_run_vars", {})[var] = (sv, n)
        return V(go=var, kind=seq.kind)

    def prefix_run_add(self, var: V):
        """`set ns.L = ns.L + [x]` on a prefix run: one more element of the sequence."""
        sv, n = self._run_vars[var.go]
        self.emit(f'{{{{ {n} = print {n} "x" }}}}{{{{ {var.go} = slice {sv} 0 (len {n}) }}}}')

    @staticmethod
    def _strset_item(v: V) -> str:
        """One element as the strset holds it: Go-quoted (`%q`: injective, and never a raw newline) between
        newlines, so a quoted needle between newlines occurs in the string only as a whole element."""
        if v.is_const and isinstance(v.const, str):
            return f'(print "\\n" (printf "%q" {_go_lit(v.const)}) "\\n")'
        if v.kind != "str" or v.is_const or not v.go:
            raise Untranslatable(f"a list of {v.kind} values built in the template and tested with `in`")
        return f'(print "\\n" (printf "%q" {_paren(v.go)}) "\\n")'

    def strset_add(self, var: V, rhs, scope):
        """`set ns.ids = ns.ids + [x]` on a strset: the string grows by x's item."""
        x = self.expr(rhs.right.items[0], scope)
        self.emit(f"{{{{ {var.go} = print {var.go} {self._strset_item(x)} }}}}")

    def strset_has(self, needle: V, hay: V) -> V:
        """`y in ns.ids`: a flag set where some suffix of the strset starts with y's item. An absent field and an
        empty one are the same in Ollama (a message without tool_call_id tests as one whose id is "")."""
        self._need_range_int("a membership test on a list built in the template")
        item = self._strset_item(needle)
        var, nd = self.fresh("in"), self.fresh("item")
        self.top_decls.append(f"{{{{ {var} := false }}}}")
        h, j, rest = self.fresh("hay"), self.fresh("j"), self.fresh("rest")
        self.emit(f"{{{{ {var} = false }}}}{{{{ {nd} := {item} }}}}{{{{ {h} := {hay.go} }}}}"
                  f"{{{{ range {j} := len {h} }}}}{{{{ {rest} := slice {h} {j} }}}}"
                  f"{{{{ if and (ge (len {rest}) (len {nd})) (eq (slice {rest} 0 (len {nd})) {nd}) }}}}"
                  f"{{{{ {var} = true }}}}{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}")
        return V(go=var, kind="bool")

    def _ns_attrs_assigned(self, name):
        root = getattr(self, "_ast", None)
        if root is None:
            return []
        return [n.attr for n in root.find_all(nodes.NSRef) if n.name == name]

    def s_AssignBlock(self, s, scope):
        if not isinstance(s.target, nodes.Name) or s.filter is not None:
            raise Untranslatable("{% set x | filter %}…{% endset %} block assignment")
        if s.target.name not in self.read_names:
            return
        cur = scope.get(s.target.name)
        if cur is not None and cur.go in self.predeclared:
            raise Untranslatable("{% set x %}…{% endset %} in a conditional branch")
        scope.vars[s.target.name] = self.snippet(lambda: self.body(s.body, _Scope(scope)))

    def s_Macro(self, s, scope):
        self.macros[s.name] = s

    def s_CallBlock(self, s, scope):
        # transformers' `{% generation %}` block only marks assistant tokens; its body renders as is
        self.body(s.body, scope)

    def s_ExprStmt(self, s, scope):
        raise Untranslatable("{% do %} statement")

    def s_Break(self, s, scope):
        self.emit("{{ break }}")

    def s_Continue(self, s, scope):
        self.emit("{{ continue }}")

    def inline_macro(self, m: nodes.Macro, call: nodes.Call, scope):
        if self.depth - len(self.rec_active) >= self.MAX_INLINE:  # a growing macro's levels are bounded by REC_LEVELS
            raise Untranslatable(f"recursive macro {m.name}()")
        if any(isinstance(c.node, nodes.Name) and c.node.name == m.name for c in m.find_all(nodes.Call)):
            return self.define_macro(m, call, scope)
        inner = _Scope(self._global(scope))
        inner.dot = scope.dot
        def pinned(v):  # `.Field` of the caller's `.`: the macro's own loops rebind `.`
            if v.go and not v.is_const and v.kind != "out" and scope.dot and re.fullmatch(r"\$\w*", scope.dot) \
                    and _DOT_REF.search(v.go):
                return V(go=_dot_through(v.go, scope.dot), kind=v.kind, extra=v.extra,
                         defined=_dot_through(v.defined, scope.dot) if v.defined else None)
            return v
        args = [pinned(self.expr(a, scope)) for a in call.args]
        kwargs = {k.key: pinned(self.expr(k.value, scope)) for k in call.kwargs}
        defaults = dict(zip([a.name for a in m.args][len(m.args) - len(m.defaults):], m.defaults))
        for i, a in enumerate(m.args):
            if i < len(args):
                inner.vars[a.name] = args[i]
            elif a.name in kwargs:
                inner.vars[a.name] = kwargs[a.name]
            elif a.name in defaults:
                inner.vars[a.name] = self.expr(defaults[a.name], scope)
            else:
                inner.vars[a.name] = C(UNDEF)
        self.depth += 1
        try:
            self.body(m.body, inner)
        finally:
            self.depth -= 1

    def define_macro(self, m: nodes.Macro, call: nodes.Call, scope):
        """A macro that calls itself (to_xml / format_argument on a JSON value): a Go ``define`` that calls itself,
        one per set of constant arguments, with the one request-value argument as its data (``$marg``). Go cannot
        capture a template's output, so it can only be printed; and its body may read nothing else of the request
        (a define sees only its data), which is checked on the Go it becomes."""
        args = [self.expr(a, scope) for a in call.args]
        kwargs = {k.key: self.expr(k.value, scope) for k in call.kwargs}
        args = [self.case_mapped(a) if a.kind == "folded" else a for a in args]  # `x | upper` handed on: a Go string
        kwargs = {k: self.case_mapped(a) if a.kind == "folded" else a for k, a in kwargs.items()}
        defaults = dict(zip([a.name for a in m.args][len(m.args) - len(m.defaults):], m.defaults))
        bound = {}
        for i, a in enumerate(m.args):
            if i < len(args):
                bound[a.name] = args[i]
            elif a.name in kwargs:
                bound[a.name] = kwargs[a.name]
            elif a.name in defaults:
                bound[a.name] = self.expr(defaults[a.name], scope)
            else:
                bound[a.name] = C(UNDEF)
        for k in self._passed_through_only(m):
            bound[k] = C(UNDEF)  # never read, only handed on to its own calls: its value cannot change the output
        dyn = [k for k, v in bound.items() if not v.is_const]
        if len(dyn) != 1 or bound[dyn[0]].kind in ("out", "ns") or _holds_v(bound[dyn[0]].const):
            raise Untranslatable(f"recursive macro {m.name}()")
        d, dv = dyn[0], bound[dyn[0]]
        key = (m.name, d, dv.kind, tuple(sorted((k, repr(v.const)) for k, v in bound.items() if k != d)))
        grow = {k: st for k, st in self._growing_args(m).items() if k != d}
        level = self._rec_level(m, {k: bound[k].const for k in grow}, grow) if grow else None
        if level is not None and level > self.REC_LEVELS:
            return self._past_rec_levels(m, key, dv)
        name = self.macro_defs.get(key)
        entry = self._schema_rec() or (level is not None and not self.rec_active and dv.kind in _SCHEMA_KINDS)
        if name is not None and self.__dict__.setdefault("_schema_defs", {}).get(name, entry) != entry:
            # a define written where JSON values are schemas (any_has_key) is not reused for other values
            raise Untranslatable(f"recursive macro {m.name}() on tool schemas and on other JSON values")
        if name is None:
            self.__dict__.setdefault("_schema_defs", {})[f"macro_{m.name}_{len(self.macro_defs)}"] = entry
            fixed = {tuple(x for x in k[3] if x[0] not in grow) for k in self.macro_defs if k[0] == m.name}
            if len(fixed | {tuple(x for x in key[3] if x[0] not in grow)}) > 4:
                # constant arguments that change each call (one define per value kind is bounded: the kinds are)
                raise Untranslatable(f"recursive macro {m.name}() whose constant arguments change (e.g. depth + 1)")
            name = f"macro_{m.name}_{len(self.macro_defs)}"
            self.macro_defs[key] = name
            self.defs[name] = ""  # reserved: the body's own calls find it
            inner = _Scope(self._global(scope), dot="$marg")
            for k, v in bound.items():
                inner.vars[k] = V(go="$marg", kind=dv.kind, extra=dv.extra if dv.kind == "uplist" else None) \
                    if k == d else v
            decls, saved = len(self.top_decls), self.cur_dot
            self.depth += 1
            self.cur_dot = "$marg"
            if level is not None:
                self.rec_active.append((m.name, {k: bound[k].const for k in grow}, dv.kind))
            try:
                body = self.capture(lambda: self.body(m.body, inner))
            except Untranslatable:
                # a caller may catch it and try another way: the reserved name must not stay (an empty define)
                del self.macro_defs[key], self.defs[name]
                raise
            finally:
                self.depth -= 1
                self.cur_dot = saved
                if level is not None:
                    self.rec_active.pop()
            if len(self.top_decls) != decls:
                # declarations the body made at the template's top (flags, snapshots): the define's own top is
                # where they are in scope for it, and each call starts them afresh as Jinja's macro locals are
                body = "".join(self.top_decls[decls:]) + body
                del self.top_decls[decls:]
            declared = set(re.findall(r"(\$\w+)\s*:=", body)) | {"$marg"}
            declared |= {x for pair in re.findall(r"range (\$\w+), (\$\w+) :=", body) for x in pair}
            acts = _go_actions(body)  # the variables its actions read (not text, not string literals: `"$defs"`)
            code = " ".join(_GO_STRING.sub('""', a) for k, a in acts if k == "act") if acts is not None else body
            if len(self.top_decls) != decls or set(re.findall(r"\$\w+", code)) - declared \
                    or re.search(r"\$(?!\w)", code):
                del self.defs[name], self.macro_defs[key]
                raise Untranslatable(f"recursive macro {m.name}() that reads more than its argument")
            self.defs[name] = f'{{{{ define "{name}" }}}}{{{{ $marg := . }}}}{body}{{{{ end }}}}'
        self.emit(f'{{{{ template "{name}" {self.go_of(dv)} }}}}')

    TS_DEPTH = 8  # JSON-schema levels below a captured `render_typescript_type(items)` written exactly

    def ts_capture(self, call, scope) -> V | None:
        """`set inner_type = render_typescript_type(spec['items'], ...)` (gpt-oss, Apertus): the recursive macro's
        output captured to be compared and measured. Go cannot capture a template's output, so for this one macro
        (recognized by its whole AST, :data:`_TS_MACRO`) the text is built as a Go string by :func:`_ts_builder`,
        a transcription of the macro for JSON values unrolled to TS_DEPTH levels (one copy of each level: the
        branches that recurse share one loop); a deeper schema stops the template with an error, never other text.
        Its other parameters are never read (only handed on to itself)."""
        f = call.node
        if not (isinstance(f, nodes.Name) and f.name in self.macros and scope.get(f.name) is None) \
                or self.macro_prints.get(f.name) != _TS_MACRO or not call.args or call.kwargs \
                or len(call.args) > 3 or call.dyn_args or call.dyn_kwargs:
            return None
        arg = self.expr(call.args[0], scope)
        if arg.is_const or arg.kind != "any":  # a property's `items` (or deeper): a JSON value of the request
            return None
        self._need_range_int("a macro's output measured (code points)")
        self.note(f"render_typescript_type() of an array's `items` is built as text to JSON-schema depth "
                  f"{self.TS_DEPTH}: items nested deeper, or (below an array's items) a oneOf variant with a "
                  "`default`, a type list or enum with non-string entries, or a schema keyword of an unexpected "
                  "JSON type (e.g. `properties` not an object) stop the template with an error")
        self.n += 1
        out = f"$t{self.n}s1"
        self.emit(f'{{{{ {out} := "" }}}}{{{{ $t{self.n}x1 := {self.go_of(arg)} }}}}')
        self.emit(_ts_builder(f"t{self.n}", 1, self.TS_DEPTH))
        return V(go=out, kind="str")
    def _schema_rec(self) -> bool:
        """Inside a growing recursion entered on a tool's schema (its JSON values are schemas: any_has_key)."""
        return bool(self.rec_active) and self.rec_active[0][2] in _SCHEMA_KINDS

    REC_LEVELS = 8  # a recursive macro whose constant argument grows per call: levels 0..8 are defines, then an error

    @staticmethod
    def _growing_args(m: nodes.Macro) -> dict:
        """Parameters of the recursive macro ``m`` that each of its calls to itself hands on either unchanged or
        grown by one fixed constant step (``depth + 1``, ``indent + "  "``, ``indent ~ "  "``): name -> the step.
        Such a parameter takes one value per recursion level, so each level is its own define."""
        names = [a.name for a in m.args]
        steps: dict[str, set] = {n: set() for n in names}
        for c in m.find_all(nodes.Call):
            if not (isinstance(c.node, nodes.Name) and c.node.name == m.name):
                continue
            given = dict(zip(names, c.args)) | {k.key: k.value for k in c.kwargs}
            for n in names:
                a = given.get(n)
                if a is None or steps[n] is None:
                    continue
                if isinstance(a, nodes.Name) and a.name == n:
                    continue
                if isinstance(a, (nodes.Add, nodes.Concat)):
                    parts = [a.left, a.right] if isinstance(a, nodes.Add) else a.nodes
                    if len(parts) == 2 and isinstance(parts[0], nodes.Name) and parts[0].name == n \
                            and isinstance(parts[1], nodes.Const) and not isinstance(parts[1].value, bool) \
                            and isinstance(parts[1].value, (int, str)) and parts[1].value not in (0, ""):
                        if isinstance(a, nodes.Concat) and not isinstance(parts[1].value, str):
                            steps[n] = None
                            continue
                        steps[n].add(parts[1].value)
                        continue
                steps[n] = None
        return {n: next(iter(st)) for n, st in steps.items() if st is not None and len(st) == 1}

    def _rec_level(self, m: nodes.Macro, vals: dict, grow: dict) -> int:
        """How many steps the growing arguments ``vals`` are past their values where the recursion was entered (the
        outermost define of ``m`` being written; 0 when there is none). Refused unless it is a whole number of steps
        and every growing argument agrees."""
        entry = next((v for n, v, _ in self.rec_active if n == m.name), None)
        if entry is None:
            return 0
        levels = set()
        for k, st in grow.items():
            v0, v = entry.get(k), vals.get(k)
            if isinstance(st, int) and isinstance(v0, int) and isinstance(v, int) and not isinstance(v, bool) \
                    and (v - v0) % st == 0 and (v - v0) // st >= 0:
                levels.add((v - v0) // st)
            elif isinstance(st, str) and isinstance(v0, str) and isinstance(v, str) and v.startswith(v0) \
                    and len(v[len(v0):]) % len(st) == 0 and v[len(v0):] == st * (len(v[len(v0):]) // len(st)):
                levels.add(len(v[len(v0):]) // len(st))
            else:
                levels.add(None)
        if len(levels) != 1 or None in levels:
            raise Untranslatable(f"recursive macro {m.name}() whose constant arguments change (e.g. depth + 1)")
        return levels.pop()

    def _past_rec_levels(self, m: nodes.Macro, key: tuple, dv: V):
        """A call REC_LEVELS + 1 levels down a growing recursion: a define that stops the rendering with an error
        (never other text), noted for the Modelfile reader."""
        key = (*key, "past")
        name = self.macro_defs.get(key)
        if name is None:
            name = f"macro_{m.name}_{len(self.macro_defs)}"
            self.macro_defs[key] = name
            self.defs[name] = f'{{{{ define "{name}" }}}}{{{{ index "" 1 }}}}{{{{ end }}}}'
        kind = next((k for n, _, k in self.rec_active if n == m.name), dv.kind)  # where the recursion was entered
        what = {"params": "tool schemas", "props": "tool schemas", "property": "tool schemas", "fn": "tool schemas",
                "tool": "tool schemas", "args": "tool-call arguments", "tcfn": "tool-call arguments"}.get(kind,
                                                                                           "request values")
        self.note(f"{m.name}(): {what} nested deeper than {self.REC_LEVELS} levels stop the template (a Go error, "
                  f"never other text)")
        self.emit(f'{{{{ template "{name}" {self.go_of(dv)} }}}}')

    @staticmethod
    def _passed_through_only(m: nodes.Macro) -> list[str]:
        """Parameters of the recursive macro ``m`` that its body never reads: each use of the name is the same
        parameter's own slot of a call to ``m`` itself (``f(x.items, required)`` for ``f(spec, required)``), and it
        is never assigned. Such a parameter cannot change what ``m`` writes, whatever value it is given."""
        names = [a.name for a in m.args]
        body = [n for st in m.body for n in (st, *st.find_all(nodes.Node))]
        out = []
        for pos, name in enumerate(names):
            if any(isinstance(n, nodes.Name) and n.name == name and n.ctx != "load" for n in body):
                continue
            uses = [n for n in body if isinstance(n, nodes.Name) and n.name == name]
            slots = set()
            for c in (n for n in body if isinstance(n, nodes.Call)):
                if isinstance(c.node, nodes.Name) and c.node.name == m.name:
                    if len(c.args) > pos and isinstance(c.args[pos], nodes.Name) and c.args[pos].name == name:
                        slots.add(id(c.args[pos]))
                    slots |= {id(k.value) for k in c.kwargs if k.key == name and isinstance(k.value, nodes.Name)
                              and k.value.name == name}
            if all(id(n) in slots for n in uses):
                out.append(name)
        return out

    @staticmethod
    def _global(scope):
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def _collect_list(self, s, scope) -> bool:
        """`{% for x in SEQ %}{% if COND %}{% set ns.L = ns.L + [E] %}{% endif %}{% endfor %}` with ns.L = []: Go
        cannot build a list, so ns.L becomes that comprehension (kind vlist), re-ranged wherever it is read."""
        def stmts(b):
            return [st for st in b if not (isinstance(st, nodes.Output) and all(
                isinstance(n, nodes.TemplateData) and not n.data.strip() for n in st.nodes))]
        body, cond = stmts(s.body), s.test
        if len(body) == 1 and isinstance(body[0], nodes.If) and not body[0].elif_ and not body[0].else_:
            cond = body[0].test if cond is None else nodes.And(cond, body[0].test)
            body = stmts(body[0].body)
        if not (len(body) == 1 and isinstance(body[0], nodes.Assign) and isinstance(body[0].target, nodes.NSRef)
                and isinstance(s.target, nodes.Name)):
            return False
        t, rhs = body[0].target, body[0].node
        if not (isinstance(rhs, nodes.Add) and isinstance(rhs.left, nodes.Getattr) and isinstance(rhs.left.node, nodes.Name)
                and rhs.left.node.name == t.name and rhs.left.attr == t.attr and isinstance(rhs.right, nodes.List)
                and len(rhs.right.items) == 1):
            return False
        ns = scope.get(t.name)
        cur = ns.const.get(t.attr) if ns is not None and ns.kind == "ns" else None
        if cur is None or not (cur.is_const and cur.const == []) or self._own_loop_attrs(s):
            return False
        if len(self.loops) > getattr(self, "_ns_loops", {}).get(id(ns.const), 0):
            # inside a loop that the namespace outlives: the list grows over its iterations, which read what the
            # earlier ones added (one comprehension, re-ranged where read, cannot say that)
            return False
        seq = self.expr(s.iter, scope)
        if seq.is_const or seq.kind not in SEQ_KINDS:
            return False
        ns.const[t.attr] = V(go=None, kind="vlist", extra=(s.target.name, seq, cond, rhs.right.items[0], scope))
        return True

    def _collect_distinct(self, s, scope) -> bool:
        """`{% for x in SEQ %}{% set a = ... %}...{% if E not in ns.L %}{% set ns.L = ns.L + [E] %}{% endif %}
        {% endfor %}` with ns.L = []: the distinct values of E in the order they first occur (muse-glimmer's tool
        namespaces, `fn.name.split('.')[0]`). Go cannot build the list: ns.L becomes that comprehension (kind
        dlist), re-ranged where it is read, an element kept where no earlier element of SEQ gives the same E."""
        body = [st for st in s.body if not (isinstance(st, nodes.Output) and all(
            isinstance(n, nodes.TemplateData) and not n.data.strip() for n in st.nodes))]
        if not body or s.test is not None or s.else_ or not isinstance(s.target, nodes.Name) \
                or self._own_loop_attrs(s):
            return False
        pre, last = body[:-1], body[-1]
        if not all(isinstance(st, nodes.Assign) and isinstance(st.target, nodes.Name) and _pure_expr(st.node)
                   for st in pre):
            return False
        if not (isinstance(last, nodes.If) and not last.elif_ and not last.else_ and isinstance(last.test, nodes.Compare)
                and len(last.test.ops) == 1 and last.test.ops[0].op == "notin" and len(last.body) == 1
                and isinstance(last.body[0], nodes.Assign) and isinstance(last.body[0].target, nodes.NSRef)):
            return False
        t, rhs, ref = last.body[0].target, last.body[0].node, last.test.ops[0].expr
        elem = last.test.expr
        if not (isinstance(ref, nodes.Getattr) and isinstance(ref.node, nodes.Name) and ref.node.name == t.name
                and ref.attr == t.attr and isinstance(rhs, nodes.Add) and rhs.left == ref
                and isinstance(rhs.right, nodes.List) and len(rhs.right.items) == 1 and rhs.right.items[0] == elem
                and _pure_expr(elem)):
            return False
        if any(isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name == t.name
               for st in pre for n in st.find_all(nodes.Getattr)) or any(
                isinstance(n, nodes.Getattr) and n == ref for n in elem.find_all(nodes.Getattr)):
            return False
        ns = scope.get(t.name)
        cur = ns.const.get(t.attr) if ns is not None and ns.kind == "ns" else None
        if cur is None or not (cur.is_const and cur.const == []):
            return False
        seq = self.expr(s.iter, scope)
        if seq.is_const or seq.kind not in SEQ_KINDS or self._reads_predeclared(seq):
            return False  # (re-ranged where read: a sequence a branch reassigns could have changed by then)
        ns.const[t.attr] = V(go=None, kind="dlist", extra=(s.target.name, seq, pre, elem, scope))
        return True

    def range_dlist(self, v: V, inner_fn):
        """Range a dlist: ``inner_fn(element V, dot)`` emits the body for each element not seen before (``dot``: the
        Go variable `.` is there)."""
        name, seq, pre, elem, dscope = v.extra
        g = self.go_of(seq)
        i, x, y = self.index_var("i"), self.fresh(name), self.fresh(name)
        held, dup = self.fresh("elem"), self.fresh("dup")

        def value(var):  # E for the element in var, after the loop's own local assignments
            inner = _Scope(dscope, dot=var)
            inner.vars[name] = V(go=var, kind=ELEM[seq.kind])
            for st in pre:  # the loop's own names: never a variable of the enclosing scope (Jinja scoping)
                inner.vars[st.target.name] = C(UNDEF)
            saved, self.cur_dot = self.cur_dot, var
            try:
                self.body(pre, inner)
                ev = self.expr(elem, inner)
                if ev.is_const or ev.kind not in ("str", "int"):
                    raise Untranslatable("distinct values of a list other than text or ints")
                return ev, self.go_of(ev), inner
            finally:
                self.cur_dot = saved

        self.emit(f"{{{{ range {i}, {x} := {g} }}}}")
        ev, eg, _ = value(x)
        self.emit(f"{{{{ {held} := {eg} }}}}{{{{ {dup} := false }}}}{{{{ range {y} := slice {g} 0 {i} }}}}")
        _, eg2, _ = value(y)
        self.emit(f"{{{{ if eq {_paren(eg2)} {held} }}}}{{{{ {dup} = true }}}}{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ if not {dup} }}}}")
        saved, self.cur_dot = self.cur_dot, x
        try:
            inner_fn(V(go=held, kind=ev.kind), x)
        finally:
            self.cur_dot = saved
        self.emit("{{ end }}{{ end }}")

    def range_vlist(self, v: V, inner_fn):
        """Range a vlist: ``inner_fn(element V, scope)`` emits the body for each element the filter keeps."""
        name, seq, cond, elem, dscope = v.extra
        i, x = self.index_var("i"), self.fresh(name)
        inner = _Scope(dscope, dot=x)
        inner.vars[name] = V(go=x, kind=ELEM[seq.kind])
        self.emit(f"{{{{ range {i}, {x} := {self.go_of(seq)} }}}}")
        saved, self.cur_dot = self.cur_dot, x
        try:
            t = self.cond(cond, inner) if cond is not None else C(True)
            if not t.is_const:
                self.emit(f"{{{{ if {self.truth(t)} }}}}")
            if not t.is_const or self._truthy_const(t.const):
                inner_fn(self.expr(elem, inner), inner)
            if not t.is_const:
                self.emit("{{ end }}")
        finally:
            self.cur_dot = saved
        self.emit("{{ end }}")

    def vlist_truth(self, v: V) -> str:
        flag = self.fresh("any")
        self.top_decls.append(f"{{{{ {flag} := false }}}}")
        self.emit(f"{{{{ {flag} = false }}}}")
        self.range_vlist(v, lambda e, sc: self.emit(f"{{{{ {flag} = true }}}}"))
        return flag

    def s_For(self, s, scope):
        if _writes_nothing([s], False):  # its body sets only its own local names: Jinja forgets them (_dead_nodes)
            return
        if self.acc is None and self._collect_list(s, scope):
            return
        if self.acc is None and self._collect_distinct(s, scope):
            return
        mark = len(self.out)
        self.emit("")  # the place of the snapshots a re-run takes (_restoring): filled in place
        # the text values before the loop (translating the body re-binds them to one iteration's value)
        before = {key: scope.get(self._slot(key)) for key in self._text_keys_assigned(s)}
        # inside the body a text the loop appends to holds what earlier iterations appended: a mark there (it
        # prints nothing) stops a test that reads the text's end from reading past it (text_endswith)
        marked = {key: V(kind="out", extra=(v.extra or "") + EARLIER, truthy=v.truthy, dot=v.dot)
                  for key, v in before.items() if "." in key and v is not None and v.kind == "out"}

        def enter():
            for key, mv in marked.items():
                scope.set(self._slot(key), mv)
        enter()
        self._for(s, scope)
        finals = {}
        # a loop nested in one re-run for another text (acc) still builds its own: the outer body may read it
        # (LFM2.5: `args_ns.arg_strings`, joined into each of `tool_calls_ns.tool_calls`)
        outer = self.acc, self.suppress
        for key in self._text_keys_assigned(s):
            if "." not in key or key == outer[0]:
                continue  # plain names set in a loop body are local to the iteration (Jinja scoping)
            prior = before[key]
            prior = prior.extra if prior is not None and prior.kind == "out" else ""
            prior_v = before[key]
            prior_t = self.as_text(prior_v).truthy if prior_v is not None else "false"
            self.acc, self.suppress = key, True
            enter()
            try:
                loop = self.capture(lambda: self._for(s, scope))
            finally:
                self.acc, self.suppress = outer
            loop = self._restoring(loop, mark)
            # each iteration appends unconditionally: the text is non-empty when it was, or the list is
            direct = any(isinstance(st, nodes.Assign) and isinstance(st.target, nodes.NSRef)
                         and f"{st.target.name}.{st.target.attr}" == key for st in s.body)
            seq_t = None
            if direct and s.test is None:
                try:
                    at = len(self.out)  # (not `mark`: the next key's snapshots go to the loop's own slot)
                    sv = self.expr(s.iter, scope)
                    seq_t = None if len(self.out) != at or sv.is_const else self.go_of(sv)
                    del self.out[at:]
                except Untranslatable:
                    seq_t = None
            truthy = f"or ({prior_t}) ({seq_t})" if prior_t and seq_t else None
            finals[key] = V(kind="out", extra=prior + loop, truthy=truthy)
        for key in marked:
            scope.set(self._slot(key), finals.get(key, before[key]))
        for key, fv in finals.items():
            scope.set(self._slot(key), fv)

    def _restoring(self, loop: str, mark: int) -> str:
        """The loop re-run where its text is printed also re-runs its assignments (`ns.first = false`): it starts
        from the values they had before the loop (snapshots taken there, declared at the top so any later block
        sees them), so each re-run computes the same text and leaves the same values."""
        inner = set(re.findall(r"(\$\w+)\s*:=", loop))
        outer = []
        for m in re.finditer(r"\{\{ (\$\w+) = ", loop):
            if m.group(1) not in inner and m.group(1) not in outer:
                outer.append(m.group(1))
        if not outer:
            return loop
        snaps = []
        for v in outer:
            sn = self.fresh("snap")
            self.snap_vars.add(sn)
            self.top_decls.append(f'{{{{ {sn} := "" }}}}')
            snaps.append((v, sn))
        self.out[mark] += "".join(f"{{{{ {sn} = {v} }}}}" for v, sn in snaps)
        return "".join(f"{{{{ {v} = {sn} }}}}" for v, sn in snaps) + loop

    def _for(self, s, scope):
        if s.recursive:
            raise Untranslatable("recursive for loop")
        it = s.iter
        items = False
        if isinstance(it, nodes.Getitem) and isinstance(it.arg, nodes.Slice) and it.arg.start is None \
                and it.arg.stop is None and it.arg.step is not None and self.expr(it.arg.step, scope).const == -1:
            return self.for_reversed(s, self.expr(it.node, scope), scope)
        if isinstance(it, nodes.Call) and isinstance(it.node, nodes.Name) and it.node.name == "range" \
                and scope.get("range") is None:
            return self.for_range(s, scope)
        dsort = isinstance(it, nodes.Filter) and it.name == "dictsort"  # by key, case-insensitively: sorted here
        if dsort and (it.args or it.kwargs):
            raise Untranslatable("dictsort with arguments")
        if isinstance(it, nodes.Filter) and it.name in ("items", "dictsort") and not it.args:
            it, items = it.node, True
        elif isinstance(it, nodes.Call) and isinstance(it.node, nodes.Getattr) and it.node.attr == "items":
            it, items = it.node.node, True
        seq = self.expr(it, scope)
        if seq.kind == "any" and not seq.is_const and (items or self.depth and isinstance(s.target, nodes.Name)):
            # a JSON value of the request, inside a macro's `is mapping` / `is sequence` branch (Go ranges what it
            # is at run time; the type test keeps the other kinds out)
            seq = V(go=seq.go, kind="args" if items else "list")
        if seq.kind == "ptype" and not items and self.depth and isinstance(s.target, nodes.Name):
            # a property's list of types, in a macro's branch where it is not one string (`is string` is its length)
            seq = V(go=seq.go, kind="strlist")
        uses_loop = bool(self._own_loop_attrs(s))
        if seq.kind == "dlist":  # distinct values (_collect_distinct)
            if uses_loop or s.test is not None or s.else_ or not isinstance(s.target, nodes.Name) or items:
                raise Untranslatable("loop.*, a filter or else on a list of distinct values built in the template")

            def dbody(e, dot):  # the body reads this loop's scope; `.` is the dlist's element
                inner = _Scope(scope, dot=dot)
                inner.vars[s.target.name] = e
                self.body(s.body, inner)
            return self.range_dlist(seq, dbody)
        if seq.kind == "vlist":
            if uses_loop or s.test is not None or s.else_ or not isinstance(s.target, nodes.Name) or items:
                raise Untranslatable("loop.*, a filter or else on a list built in the template")

            def body(e, sc):
                inner = _Scope(sc)
                inner.vars[s.target.name] = e
                self.body(s.body, inner)
            return self.range_vlist(seq, body)
        if seq.is_const:
            if dsort and isinstance(seq.const, dict):
                return self.for_const(s, dict(sorted(seq.const.items(), key=lambda kv: kv[0].lower()
                                                     if isinstance(kv[0], str) else kv[0])), items, scope)
            return self.for_const(s, seq.const, items, scope)
        if seq.kind in FIELDS and seq.kind not in ("message",):  # keys of a fixed struct: unroll
            return self.for_struct(s, seq, items, scope, sort=dsort)
        if seq.kind in MAPS and dsort:
            return self.for_map_sorted(s, seq, scope)
        if seq.kind in MAPS:
            if not (items or isinstance(s.target, nodes.Name)):
                raise Untranslatable("for loop target over a mapping")
            attrs = self._own_loop_attrs(s)
            if attrs - {"first", "last"} or (s.test is not None and attrs):
                raise Untranslatable("loop.index over a mapping")
            k, v = self.fresh("k"), self.fresh("v")
            lastkey = None
            if "last" in attrs:  # Go ranges a map in key order, so the last key is known before the loop
                lastkey = self.fresh("lastkey")
                self.emit(f"{{{{ {lastkey} := \"\" }}}}{{{{ range $kk, $_ := {seq.go} }}}}{{{{ {lastkey} = $kk }}}}{{{{ end }}}}")
            inner = _Scope(scope, dot=v)
            if items:
                if not (isinstance(s.target, nodes.Tuple) and len(s.target.items) == 2):
                    raise Untranslatable("items() loop without a (key, value) target")
                inner.vars[s.target.items[0].name] = V(go=k, kind="str")
                inner.vars[s.target.items[1].name] = V(go=v, kind=MAPS[seq.kind])
            else:
                inner.vars[s.target.name] = V(go=k, kind="str")
            first = self.fresh("first")
            self.emit(f"{{{{ {first} := true }}}}")
            self.emit(f"{{{{ range {k}, {v} := {seq.go} }}}}")
            lp = _Loop(seq, idx="", elem=v, seq_go=seq.go)
            lp.first_flag = first
            lp.last_test = f"eq {k} {lastkey}" if lastkey else None
            self._loop_body(s, inner, lp, items_filter=s.test)
            self.emit(f"{{{{ {first} = false }}}}{{{{ end }}}}")
            return
        if seq.kind.startswith(_SPLIT) and not seq.is_const:
            return self.for_split(s, seq, scope)
        if seq.kind == "str" and isinstance(s.target, nodes.Name) and not uses_loop and s.test is None and not s.else_:
            # the characters of request text (a branch for list contents that Ollama's string content reaches
            # only when empty): translated once with an element whose attributes are all undefined; a body
            # that then writes nothing is dropped, anything else is refused
            inner = _Scope(scope)
            inner.vars[s.target.name] = V(go=None, kind="char")
            try:
                body = self.capture(lambda: self.body(s.body, inner))
            except Untranslatable:
                body = None
            if body == "":
                return
            raise Untranslatable("for loop over a str")
        up = seq.extra if seq.kind == "uplist" else None  # `x | map('upper') | list`: x's items, case-mapped
        if up:
            seq = V(go=seq.go, kind="list")
        if seq.kind not in SEQ_KINDS:
            raise Untranslatable(f"for loop over a {seq.kind}")
        if s.test is not None and uses_loop:
            raise Untranslatable("filtered for loop that uses loop.*")
        if not isinstance(s.target, nodes.Name):
            raise Untranslatable("for loop with a tuple target over a list")
        i, x = self.index_var("i"), self.fresh(s.target.name)
        inner = _Scope(scope, dot=x)
        inner.vars[s.target.name] = V(go=x, kind=ELEM[seq.kind])
        if up:
            inner.vars[s.target.name] = V(go=None, kind="folded", extra=(V(go=x, kind="any"), up, V(go=x, kind="any")))
        lp = _Loop(seq, idx=i, elem=x, seq_go=seq.go)
        # a loop over a message's tool calls sits inside `if .ToolCalls`: Ollama finds its tool-call tag there
        wrap = seq.kind == "tcalls" and seq.go == ".ToolCalls"
        if wrap:
            self.emit("{{ if .ToolCalls }}")
        self.none_guard(seq)
        late = seq.go in self.late_attrs and seq.defined  # a namespace attribute maybe never set: Jinja's empty loop
        if late:
            if s.else_:
                raise Untranslatable("for ... else over a namespace attribute that may be unset")
            self.emit(f"{{{{ if {seq.defined} }}}}")
        if seq.go.startswith("."):  # dot changes inside the range: loop.last etc. need the sequence by name
            sv = self.fresh("seq")
            self.emit(f"{{{{ {sv} := {seq.go} }}}}")
            lp.seq_go = sv
        slot = len(self.out)
        self.emit("")  # the prelude's place (a previous-element variable): filled in place, so positions hold
        self.emit(f"{{{{ range {i}, {x} := {seq.go} }}}}")
        lp.prelude_slot = slot
        self._loop_body(s, inner, lp, items_filter=s.test)
        if s.else_:
            self.emit("{{ else }}")
            self.body(s.else_, scope)
        self.emit("{{ end }}")
        if late:
            self.emit("{{ end }}")
        if wrap:
            self.emit("{{ end }}")

    def for_split(self, s, seq: V, scope):
        """`for line in s.split(sep)`: the pieces in turn, by one scan over the byte offsets and one past the end
        (Go >= 1.24): a piece ends at a match of ``sep`` (Python's left-to-right, non-overlapping ones: the next
        len(sep) - 1 offsets are skipped) or at the end; the next starts at the offset after the skipped ones. The
        body sees the piece as text; `.` is the offset inside the range, so the body reads no field of `.`."""
        if not isinstance(s.target, nodes.Name) or s.test is not None or s.else_ or self._own_loop_attrs(s):
            raise Untranslatable("loop.*, a filter or else on a loop over a split string")
        sep = seq.kind[len(_SPLIT):]
        self._need_range_int(f".split({sep!r})")
        n = len(sep.encode())
        h, j, start, skip, pend, piece = (self.fresh(x) for x in ("hay", "j", "start", "skip", "pend", "piece"))
        rest = self.fresh("rest")
        self.emit(f"{{{{ {h} := {_paren(seq.go)} }}}}{{{{ {start} := 0 }}}}{{{{ {skip} := \"\" }}}}"
                  f"{{{{ {pend} := false }}}}{{{{ range {j} := len (print {h} \"x\") }}}}"
                  f"{{{{ if {skip} }}}}{{{{ {skip} = slice {skip} 1 }}}}{{{{ else }}}}"
                  f"{{{{ if {pend} }}}}{{{{ {start} = {j} }}}}{{{{ {pend} = false }}}}{{{{ end }}}}"
                  f"{{{{ {rest} := slice {h} {j} }}}}{{{{ if or (eq {j} (len {h})) ({self._starts(rest, sep)}) }}}}"
                  f"{{{{ {piece} := slice {h} {start} {j} }}}}{{{{ {pend} = true }}}}"
                  f"{{{{ {skip} = {_go_lit('x' * (n - 1))} }}}}")
        inner = _Scope(scope, dot="<int>")
        inner.vars[s.target.name] = V(go=piece, kind="str")
        self.body(s.body, inner)
        self.emit("{{ end }}{{ end }}{{ end }}")

    @staticmethod
    def _own_loop_attrs(s: nodes.For) -> set:
        """The `loop.X` the loop's body reads of its own loop (a nested for has its own: only its iterable counts);
        "" stands for `loop` used other than as loop.X."""
        found = set()

        def walk(n, parent=None):
            if isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name == "loop":
                found.add(n.attr)
                return
            if isinstance(n, nodes.Name) and n.name == "loop":
                found.add("")
                return
            if isinstance(n, nodes.For):
                return walk(n.iter)
            for c in n.iter_child_nodes():
                walk(c)
        for st in s.body:
            walk(st)
        if s.test is not None:
            walk(s.test)
        return found

    def for_range(self, s, scope):
        """`for i in range(seq | length)` and `range(seq | length - 1, -1, -1)`: the indices of a sequence, forward
        or backward (Go ranges the sequence; a backward index is len (slice (slice SEQ $k) 1))."""
        args = s.iter.args
        if not isinstance(s.target, nodes.Name) or s.test is not None or s.else_ or s.iter.kwargs \
                or self._own_loop_attrs(s) or len(args) not in (1, 2, 3):
            raise Untranslatable("the call range()")
        if len(args) == 2:  # range(k, seq | length): the index only reads seq[idx], an element of seq[k:]
            start, lenarg = self.expr(args[0], scope), args[1]
            if not (isinstance(lenarg, nodes.Filter) and lenarg.name in ("length", "count") and not lenarg.args):
                raise Untranslatable("the call range()")
            seq = self.expr(lenarg.node, scope)
            if not seq.is_const and seq.kind in SEQ_KINDS and self._range_after_index(s, start, seq, scope):
                return
            if seq.is_const or seq.kind not in SEQ_KINDS or not (start.kind == "int" and (start.is_const or start.go)):
                raise Untranslatable("the call range()")
            g, j, x = self.go_of(seq), self.index_var("j"), self.fresh("elem")
            st = self.go_of(start)
            if not start.is_const:  # the index is start + j: start as it was when the loop began (_seqidx_int)
                st = self.fresh("start")
                self.emit(f"{{{{ {st} := {self.go_of(start)} }}}}")
            self.emit(f"{{{{ range {j}, {x} := slice {g} {st} }}}}")
            inner = _Scope(scope)
            inner.vars[s.target.name] = V(go=None, kind="seqidx", extra=(g, x, j, st))
            self.body(s.body, inner)
            self.emit("{{ end }}")
            return
        lenarg = args[0]
        back = len(args) == 3
        if back and self._range_down_from_index(s, scope):
            return
        if back:
            if not (isinstance(lenarg, nodes.Sub) and isinstance(lenarg.right, nodes.Const) and lenarg.right.value == 1
                    and all(isinstance(a, nodes.Neg) and isinstance(a.node, nodes.Const) and a.node.value == 1
                            or isinstance(a, nodes.Const) and a.value == -1 for a in args[1:])):
                raise Untranslatable("the call range()")
            lenarg = lenarg.left
        if not (isinstance(lenarg, nodes.Filter) and lenarg.name in ("length", "count") and not lenarg.args):
            raise Untranslatable("the call range()")
        seq = self.expr(lenarg.node, scope)
        if seq.is_const or seq.kind not in SEQ_KINDS:
            raise Untranslatable("the call range()")
        g, i = self.go_of(seq), self.index_var("i")
        self.emit(f"{{{{ range {i}, $_ := {g} }}}}")
        inner = _Scope(scope)
        inner.vars[s.target.name] = V(go=f"len (slice (slice {g} {i}) 1)", kind="int") if back else \
            V(go=i, kind="int", extra=Aff.atom(i))
        inner.vars["loop"] = C(UNDEF)
        self.body(s.body, inner)
        self.emit("{{ end }}")

    def _range_after_index(self, s, start: V, seq: V, scope) -> bool:
        """`for k in range(loop.index0 + 1, seq | length)` inside the loop over seq (Gemma 4's forward scan for the
        tool results after a call): Go ranges seq[i:] from the loop's index i and skips its first round, so the
        index is i + j as for range(k, seq | length). False where start is not that loop's index + 1."""
        f = _aff(start) if start.kind == "int" and not start.is_const else None
        if f is None or f.const != 1 or len(f.terms) != 1 or f.terms[0][1] != 1:
            return False
        g = self.go_of(seq)
        lp = next((x for x in reversed(self.loops) if x.idx and x.idx == f.terms[0][0] and not x.reversed
                   and g in (x.seq_go, x.seq.go)), None)
        if lp is None:
            return False
        j, x = self.index_var("j"), self.fresh("elem")
        self.emit(f"{{{{ range {j}, {x} := slice {g} {lp.idx} }}}}{{{{ if {j} }}}}")
        inner = _Scope(scope)
        inner.vars[s.target.name] = V(go=None, kind="seqidx", extra=(g, x, j, lp.idx))
        self.body(s.body, inner)
        self.emit("{{ end }}{{ end }}")
        return True

    def _range_down_from_index(self, s, scope) -> bool:
        """`for j in range(loop.index0 - 1, -1, -1)` (Gemma 4's look back for the previous non-tool message): the
        indices below an enclosing loop's index i, from i - 1 down to 0. Go ranges the prefix SEQ[:i] of that loop's
        sequence; its k-th round is index i - 1 - k = len (slice (slice PREFIX k) 1). False where the range is not
        of that shape (for_range goes on)."""
        a = s.iter.args
        if not (isinstance(a[0], nodes.Sub) and isinstance(a[0].right, nodes.Const) and a[0].right.value == 1
                and all(isinstance(x, nodes.Neg) and isinstance(x.node, nodes.Const) and x.node.value == 1
                        or isinstance(x, nodes.Const) and x.value == -1 for x in a[1:])):
            return False
        if isinstance(a[0].left, nodes.Filter) and a[0].left.name in ("length", "count"):
            return False
        start = self.expr(a[0].left, scope)
        f = _aff(start)
        if f is None or f.const or len(f.terms) != 1 or f.terms[0][1] != 1:
            return False
        lp = next((x for x in reversed(self.loops) if x.idx and x.idx == f.terms[0][0] and not x.reversed), None)
        if lp is None:
            return False
        pre, k = self.fresh("prefix"), self.index_var("k")
        self.emit(f"{{{{ {pre} := slice {_paren(lp.seq_go)} 0 {lp.idx} }}}}{{{{ range {k}, $_ := {pre} }}}}")
        inner = _Scope(scope)
        inner.vars[s.target.name] = V(go=f"len (slice (slice {pre} {k}) 1)", kind="int")
        inner.vars["loop"] = C(UNDEF)
        self.body(s.body, inner)
        self.emit("{{ end }}")
        return True

    def for_reversed(self, s, seq: V, scope):
        """`for x in seq[::-1]`: Go ranges forward; element k is index SEQ (len (slice (slice SEQ $k) 1))."""
        if seq.kind not in SEQ_KINDS or not isinstance(s.target, nodes.Name) or s.test is not None or s.else_:
            raise Untranslatable("a reversed loop over something other than a list")
        i, x = self.index_var("i"), self.fresh(s.target.name)
        g = self.go_of(seq)
        self.emit(f"{{{{ range {i}, $_ := {g} }}}}{{{{ {x} := index {g} (len (slice (slice {g} {i}) 1)) }}}}")
        inner = _Scope(scope, dot="")
        inner.vars[s.target.name] = V(go=x, kind=ELEM[seq.kind])
        lp = _Loop(seq, idx=i, elem=x, seq_go=g)
        lp.reversed = True
        lp.prelude_slot = None
        self._loop_body(s, inner, lp, items_filter=None)
        self.emit("{{ end }}")

    def _loop_body(self, s, inner, lp, items_filter):
        inner.vars["loop"] = V(const=lp, kind="loop")
        self.loops.append(lp)
        try:
            if items_filter is not None:
                t = self.expr(items_filter, inner)
                if t.is_const:
                    if not self._truthy_const(t.const):
                        return
                    self.body(s.body, inner)
                else:
                    self.emit(f"{{{{ if {self.truth(t)} }}}}")
                    self.body(s.body, _Scope(inner))
                    self.emit("{{ end }}")
            else:
                self.body(s.body, inner)
        finally:
            self.loops.pop()
            if lp.prev:
                self.emit(f"{{{{ {lp.prev} = {lp.elem} }}}}")

    def for_const(self, s, seq, items, scope):
        if isinstance(seq, dict):
            seq = list(seq.items()) if items else list(seq)
        if not isinstance(seq, (list, tuple, str)):
            raise Untranslatable("for loop over a constant that is not a list")
        seq = [x for x in seq]
        if any(isinstance(x, _CondItem) for x in seq) and (self._own_loop_attrs(s) or s.test is not None or s.else_):
            raise Untranslatable("loop.* or a filter over a list a branch appended to")
        for n, x in enumerate(seq):
            cond = x.cond if isinstance(x, _CondItem) else None
            x = x.item if cond else x
            inner = _Scope(scope)
            self._bind_target(s.target, C(x) if not isinstance(x, V) else x, inner)
            if self._unrolled_pass(s, inner, n, len(seq), "dynamic filter on a constant loop"):
                if cond:
                    self.emit(f"{{{{ if {cond} }}}}")
                self.body(s.body, inner)
                if cond:
                    self.emit("{{ end }}")

    def _unrolled_pass(self, s, inner, n: int, count: int, dynamic: str) -> bool:
        """Pass ``n`` of ``count`` of a loop unrolled at translation time: binds its ``loop.*`` constants in
        ``inner`` and says whether its ``if`` filter, which must be constant (else ``dynamic`` is refused), lets it run."""
        inner.vars["loop"] = C({"index0": n, "index": n + 1, "first": n == 0, "last": n == count - 1, "length": count})
        if s.test is None:
            return True
        t = self.expr(s.test, inner)
        if not t.is_const:
            raise Untranslatable(dynamic)
        return self._truthy_const(t.const)

    def for_map_sorted(self, s, seq: V, scope):
        """`for k, v in m | dictsort` over a request mapping: Jinja sorts the keys case-insensitively (str.lower),
        Go ranges a map bytewise. Ranged once per key, each round picks the smallest lowered key above the last
        one (ASCII A-Z lowered with a table); a key with a non-ASCII byte (whose lower() Go cannot know) or two keys
        equal once lowered (Jinja's stable sort keeps an order Go's map does not have) stop the template with an
        error, never other text (Go >= 1.24: the keys are read byte by byte). loop.first / loop.last only."""
        self._need_range_int("dictsort over a request mapping")
        self.note("`dictsort` of a request mapping (tool-call arguments, tool parameters) sorts ASCII keys as Jinja does; "
                  "a key with a non-ASCII character, or two keys equal but for ASCII case, stops the template with an "
                  "error")
        attrs = self._own_loop_attrs(s)
        if attrs - {"first", "last"} or s.test is not None or s.else_ \
                or not (isinstance(s.target, nodes.Tuple) and len(s.target.items) == 2):
            raise Untranslatable("dictsort over a request mapping other than `for k, v in m | dictsort`")
        table = _go_str("".join(chr(c).lower() if 65 <= c <= 90 else "?" for c in range(91)))
        m, prev, started, cnt = self.fresh("map"), self.fresh("prev"), self.fresh("started"), self.fresh("round")
        bk, bl, found, k, v, first = (self.fresh(n) for n in ("bestkey", "bestlow", "found", "k", "v", "first"))
        lower = (f'{{{{ $lk := "" }}}}{{{{ range $j := len $kk }}}}{{{{ $b := index $kk $j }}}}'
                 f'{{{{ if ge $b 128 }}}}{{{{ index "" 1 }}}}{{{{ else if and (ge $b 65) (le $b 90) }}}}'
                 f'{{{{ $lk = print $lk (printf "%.1s" (slice {table} $b)) }}}}'
                 f'{{{{ else }}}}{{{{ $lk = print $lk (printf "%c" $b) }}}}{{{{ end }}}}{{{{ end }}}}')
        self.emit(f'{{{{ {m} := {seq.go} }}}}{{{{ {prev} := "" }}}}{{{{ {started} := false }}}}{{{{ {cnt} := "" }}}}'
                  f'{{{{ {first} := true }}}}{{{{ range $r, $_ := {m} }}}}{{{{ {cnt} = print {cnt} "x" }}}}'
                  f'{{{{ {bk} := "" }}}}{{{{ {bl} := "" }}}}{{{{ {found} := false }}}}{{{{ range $kk, $_ := {m} }}}}{lower}'
                  f'{{{{ if or (not {started}) (gt $lk {prev}) }}}}{{{{ if or (not {found}) (lt $lk {bl}) }}}}'
                  f'{{{{ {bk} = $kk }}}}{{{{ {bl} = $lk }}}}{{{{ {found} = true }}}}{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}'
                  f'{{{{ if not {found} }}}}{{{{ index "" 1 }}}}{{{{ end }}}}{{{{ {prev} = {bl} }}}}{{{{ {started} = true }}}}'
                  f'{{{{ {k} := {bk} }}}}{{{{ {v} := index {m} {bk} }}}}')
        inner = _Scope(scope, dot="")
        inner.vars[s.target.items[0].name] = V(go=k, kind="str")
        inner.vars[s.target.items[1].name] = V(go=v, kind=MAPS[seq.kind])
        lp = _Loop(seq, idx="", elem=v, seq_go=m)
        lp.first_flag = first
        lp.last_test = f"eq (len {cnt}) (len {m})"
        lp.prelude_slot = None
        saved, self.cur_dot = self.cur_dot, ""
        try:
            self._loop_body(s, inner, lp, items_filter=None)
        finally:
            self.cur_dot = saved
        self.emit(f"{{{{ {first} = false }}}}{{{{ end }}}}")

    def for_struct(self, s, obj: V, items, scope, sort=False):
        """`for k, v in tool.items()` over one of Ollama's fixed structs: unrolled over its JSON fields in order
        (``sort``: dictsort's, case-insensitive). loop.first / loop.last where a key is optional: a flag that the
        first present key clears, and no later key present."""
        fields = FIELDS[obj.kind]
        seen = {}
        for key, (gofield, kind, always) in fields.items():
            if gofield in seen.values() or key in ("thinking", "tool_name", "name") and obj.kind == "message":
                continue
            if obj.kind == "tcall" and key in ("name", "arguments"):
                continue
            seen[key] = gofield
        keys = sorted(seen, key=str.lower) if sort else list(seen)
        present = {k: fields[k][2] for k in keys}
        dyn_loop = not all(present.values()) and self._own_loop_attrs(s)
        if dyn_loop and (self._own_loop_attrs(s) - {"first", "last"} or s.test is not None):
            raise Untranslatable(f"loop.* over the optional keys of a {obj.kind}")
        flag = None
        if dyn_loop:
            flag = self.fresh("first")
            self.emit(f"{{{{ {flag} := true }}}}")
        for n, key in enumerate(keys):
            gofield, kind, always = fields[key]
            val = V(go=f"{obj.go}.{gofield}", kind=kind)
            inner = _Scope(scope)
            if items:
                if not (isinstance(s.target, nodes.Tuple) and len(s.target.items) == 2):
                    raise Untranslatable("items() loop without a (key, value) target")
                inner.vars[s.target.items[0].name] = C(key)
                inner.vars[s.target.items[1].name] = val
            else:
                inner.vars[s.target.name] = C(key)
            if not self._unrolled_pass(s, inner, n, len(keys), "dynamic filter on a struct's keys"):
                continue
            if flag:
                later = [f"{obj.go}.{fields[x][0]}" for x in keys[n + 1:]]
                always_later = any(present[x] for x in keys[n + 1:])
                last = "false" if always_later else (f"not ({_t_or(later)})" if later else "true")
                inner.vars["loop"] = C({"first": V(go=flag, kind="bool"), "last": V(go=last, kind="bool")})
            if not always:
                self.emit(f"{{{{ if {val.go} }}}}")
            self.body(s.body, inner)
            if flag:
                self.emit(f"{{{{ {flag} = false }}}}")
            if not always:
                self.emit("{{ end }}")

    def _bind_target(self, target, v, scope):
        if isinstance(target, nodes.Name):
            scope.vars[target.name] = v
        elif isinstance(target, nodes.Tuple) and v.is_const and isinstance(v.const, (list, tuple)):
            for t, x in zip(target.items, v.const):
                self._bind_target(t, x if isinstance(x, V) else C(x), scope)
        else:
            raise Untranslatable("loop target unpacking")

    # ---- expressions ---------------------------------------------------------------------------------------
    @staticmethod
    def _truthy_const(x) -> bool:
        return bool(x) and x is not UNDEF

    def truth(self, v: V) -> str:
        if v.kind == "out":
            declared = set(re.findall(r"(\$\w+) :=", v.extra or ""))
            t = v.truthy
            if t is None or any(x in declared for x in re.findall(r"\$\w+", t)):
                t = text_truth(v.extra or "", self.print_truth)
                if t is not None:
                    t = self._redot(v, t)
            if t is None:
                try:
                    t = self.materialize(v).go
                except Untranslatable:
                    raise Untranslatable("the truth of text only Go's output can produce (tojson, a macro's output)") from None
            return t
        if v.is_const:
            return "true" if self._truthy_const(v.const) else "false"
        if v.kind.startswith(_SPLIT):
            return "true"  # s.split(sep) has at least one piece
        if v.kind == "dlist":  # every element of the sequence gives a value: non-empty exactly when it is
            return f"len {_paren(self.go_of(v.extra[1]))}"
        if v.kind == "vlist":
            return self.vlist_truth(v)
        if v.go is None and isinstance(v.extra, _StrLen):
            return f"len {_paren(v.extra.go)}"  # non-empty text: as many bytes as code points are non-zero
        if v.go is None and v.kind == "int":
            return self.go_of(v)
        return v.go

    def text_endswith(self, v: V, lit: str) -> V | None:
        """``text.endswith(lit)`` of text only Go's output produces (it may hold tojson): read from the snippet's end
        backwards, piece by piece, as Go that keeps the part of ``lit`` still to match (``$need``) until a piece
        decides. Literal text and printed strings are compared; an `if` chain is read branch by branch (its tests
        re-run, as materialize re-runs them); a JSON define decides by its last byte when ``lit`` is one byte. None
        where a piece that cannot be read backwards (a range, an assignment, where earlier iterations' text goes)
        may be reached before the end is decided."""
        if lit == "":
            return C(True)
        redone = self._redot(v, v.extra or "", action=False)
        toks = _go_actions(redone) if redone is not None else None
        orig = _go_actions(v.extra or "")  # what each printed pipeline was when it was written (print_truth)
        if toks is None or orig is None or len(orig) != len(toks):
            return None
        k = len(lit.encode())

        def parse(i):  # -> (items, next index, terminator)
            items = []
            while i < len(toks):
                kind, a = toks[i]
                i += 1
                if kind == "text":
                    items.append(("text", a))
                    continue
                head = a.split(" ", 1)[0]
                if head in ("end", "else"):
                    return items, i, a
                if kind == "act" and "{{ " + a + " }}" + "".join(
                        f"{{{{ {t} }}}}" if kk == "act" else t for kk, t in toks[i:i + 2]) == EARLIER:
                    items.append(("earlier", None))  # where earlier iterations' text goes: cannot be read past
                    i += 2
                    continue
                if head == "if":
                    branches, cond = [], a[3:]
                    while True:
                        body, i, term = parse(i)
                        branches.append((cond, body))
                        if term is None or term == "end":
                            break
                        cond = term[8:] if term.startswith("else if ") else (None if term == "else" else "?")
                        if cond == "?":
                            return None, i, None
                    if term is None or any(b is None for _, b in branches):
                        return None, i, None
                    items.append(("if", branches))
                elif head in ("range", "with", "define", "block"):
                    depth = 1
                    while i < len(toks) and depth:
                        h = toks[i][1].split(" ", 1)[0] if toks[i][0] == "act" else ""
                        depth += h in ("if", "range", "with", "define", "block")
                        depth -= h == "end"
                        i += 1
                    items.append(("opaque", a))
                elif head == "template":
                    m = re.match(r'template "pyjson_(\w+?)_(?:c|i\d+)a?_\d+"', a)
                    items.append(("json", _JSON_LAST.get(m.group(1)) if m else
                                  '"' if a.startswith('template "pyjson_str" ') else None))
                elif not _ASSIGN.match(a) and (_GO_STRING.fullmatch(a) or self.print_truth.get(orig[i - 1][1]) is not None):
                    items.append(("print", a))
                else:
                    items.append(("opaque", a))
            return items, i, None

        items, _, term = parse(0)
        if items is None or term is not None:
            return None
        # variables the snippet sets as it runs (a conditional's temporary, declared inside it): a piece reading one
        # cannot be read out of order
        own = {m.group(1) for kk, a in toks if kk == "act" for m in [_ASSIGN.match(a)] if m}
        own |= {x for kk, a in toks if kk == "act" and a.startswith("range ") for x in re.findall(r"\$\w+", a.split(":=")[0])}

        def reads_own(go):
            return bool(own & set(re.findall(r"\$\w+", _GO_STRING.sub('""', go))))
        need, done, res = self.fresh("need"), self.fresh("done"), self.fresh("ends")

        def piece(s):  # the Go that reads one more piece (a Go string) off the end
            sv = self.fresh("piece")
            return (f"{{{{ if not {done} }}}}{{{{ {sv} := {s} }}}}{{{{ if ge (len {sv}) (len {need}) }}}}"
                    f"{{{{ {res} = eq (slice {sv} (len (slice {sv} (len {need})))) {need} }}}}{{{{ {done} = true }}}}"
                    f"{{{{ else if eq (slice {need} (len (slice {need} (len {sv})))) {sv} }}}}"
                    f"{{{{ {need} = slice {need} 0 (len (slice {need} (len {sv}))) }}}}"
                    f"{{{{ else }}}}{{{{ {done} = true }}}}{{{{ end }}}}{{{{ end }}}}")

        enc = lit.encode()

        def back(items, lens):  # -> (Go, statically decided, the lengths $need may still have where undecided)
            out = []  # ($need is always a prefix of lit: the part left of what the later pieces matched)
            for kind, a in reversed(items):
                if kind == "text":
                    if a:
                        out.append(piece(_go_str(a)))
                        t = a.encode()
                        lens = {m - len(t) for m in lens if len(t) < m and enc[:m].endswith(t)}
                elif kind == "print":
                    if reads_own(a):
                        return None, False, lens
                    out.append(piece(f"print ({a})"))  # undecided: it matched a suffix of what was left
                    lens = set(range(1, max(lens) + 1))
                elif kind == "json" and a is not None and lens == {1}:
                    out.append(f"{{{{ if not {done} }}}}{{{{ if eq {need} {_go_str(a)} }}}}{{{{ {res} = true }}}}"
                               f"{{{{ end }}}}{{{{ {done} = true }}}}{{{{ end }}}}")
                    lens = set()
                elif kind == "if":
                    parts, left = [], set() if a[-1][0] is None else set(lens)
                    if any(cond and reads_own(cond) for cond, _ in a):
                        return None, False, lens
                    for n, (cond, body) in enumerate(a):
                        go, _, m = back(body, lens)
                        if go is None:
                            return None, False, lens
                        left |= m
                        parts.append(f"{{{{ {'if ' + cond if n == 0 else ('else if ' + cond if cond else 'else')} }}}}{go}")
                    out.append(f"{{{{ if not {done} }}}}{''.join(parts)}{{{{ end }}}}{{{{ end }}}}")
                    lens = left
                else:
                    return None, False, lens
                if not lens:
                    return "".join(out), True, lens
            return "".join(out), False, lens

        go, decided, _ = back(items, {k})
        if go is None or (not decided and EARLIER in (v.extra or "")):
            return None
        self.top_decls.append(f'{{{{ {need} := "" }}}}{{{{ {done} := false }}}}{{{{ {res} := false }}}}')
        self.emit(f"{{{{ {need} = {_go_str(lit)} }}}}{{{{ {done} = false }}}}{{{{ {res} = false }}}}{go}")
        return V(go=res, kind="bool")

    def materialize(self, v: V) -> V:
        """Text only Go's output produces (a macro's output, a text variable) as a Go string variable, built where it
        is needed: every piece the snippet prints is appended with `print`, which concatenates strings as they are.
        Refused where the snippet runs a define (tojson: a template's output cannot be captured), prints a value of
        unknown type, or assigns a variable it does not declare (running it twice would change that variable)."""
        toks = _go_actions(v.extra or "")
        redone = self._redot(v, v.extra or "", action=False)
        if toks is None or redone is None:
            raise Untranslatable("text only Go's output can produce (tojson, a macro's output) used inside an expression")
        var = self.fresh("text")
        declared = {m.group(1) for kind, s in toks if kind == "act" for m in [re.match(r"(\$\w+)\s*:=", s)] if m}
        declared |= {x for kind, s in toks if kind == "act" and s.startswith("range ")
                     for x in re.findall(r"\$\w+", s.split(":=")[0])}
        # declared at the top: a test the translator re-reads after the block that built it still sees it
        self.top_decls.append(f'{{{{ {var} := "" }}}}')
        parts = [f'{{{{ {var} = "" }}}}']
        for (kind, s), (_, go) in zip(toks, _go_actions(redone)):  # go: s read through the right `.`
            if kind == "text":
                if s:
                    parts.append(f"{{{{ {var} = print {var} {_go_str(s)} }}}}")
                continue
            head = s.split(" ", 1)[0]
            m = _ASSIGN.match(s)
            if head in ("if", "else", "end", "range", "break", "continue"):
                parts.append(f"{{{{ {go} }}}}")
            elif m:
                if re.fullmatch(r"\$\w+ = (\$\w+)", s) and s.split(" = ")[1] in self.snap_vars:
                    declared.add(m.group(1))  # restored from its snapshot: running the snippet again is harmless
                if m.group(1) not in declared:
                    raise Untranslatable("text that sets a variable as it is written, used inside an expression")
                parts.append(f"{{{{ {go} }}}}")
            elif _GO_STRING.fullmatch(s) or s.startswith("json ") or self.print_truth.get(s) is not None:
                parts.append(f"{{{{ {var} = print {var} ({go}) }}}}")
            else:
                raise Untranslatable("text only Go's output can produce (tojson, a macro's output) used inside an expression")
        self.emit("".join(parts))
        return V(go=var, kind="str")

    def char_count(self, x: str) -> V:
        """The length of the Go string ``x`` in code points (Python's len): one x per byte that does not continue a
        UTF-8 sequence (0x80-0xBF; Go's JSON decoding leaves valid UTF-8), ranging over the offsets (Go >= 1.24)."""
        var = self._char_tally(x)
        return V(go=f"len {var}", kind="int", extra=Aff.atom(f"len {var}"))

    def _char_tally(self, x: str) -> str:
        """Emit Go that binds a string holding one x per code point of the Go string ``x``; return its variable
        (char_count, text_head)."""
        self._need_range_int("the length of a string")
        h, var = self.fresh("str"), self.fresh("nchars")
        self.emit(f'{{{{ {h} := {x} }}}}{{{{ {var} := "" }}}}{{{{ range $j := len {h} }}}}'
                  f'{{{{ if or (lt (index {h} $j) 128) (ge (index {h} $j) 192) }}}}{{{{ {var} = print {var} "x" }}}}'
                  f'{{{{ end }}}}{{{{ end }}}}')
        return var

    def go_of(self, v: V) -> str:
        if v.kind.startswith(_SPLIT) and not v.is_const:
            raise Untranslatable("a split string used as a value (only its first / last piece, or a loop over it)")
        if v.go is None and isinstance(v.extra, _StrLen):
            return self.go_of(self.char_count(v.extra.go))
        if v.kind == "out":
            return self.materialize(v).go
        if v.kind == "vlist":  # only its truth has a Go value (and / or / if); printing or comparing it is refused
            return self.vlist_truth(v)
        if v.kind == "folded":
            return self.go_of(self.case_mapped(v))
        if v.go is None and isinstance(v.extra, Aff):
            g = v.extra.go()
            return g if re.fullmatch(r"[$.\w]+", g) else f"({g})"
        if v.is_const:
            if v.kind == "ns":
                raise Untranslatable("a namespace used as a value")
            return _go_lit(v.const)
        if v.go is None:
            raise Untranslatable(f"a {v.kind} used as a Go value")
        return v.go if re.fullmatch(r"[$.\w]+", v.go or "") else f"({v.go})"

    STRUCTS = ("message", "tcall", "tcfn", "tool", "fn", "params")  # never empty: truthy in Jinja and in Go

    def expr(self, e, scope, probe=False) -> V:
        m = getattr(self, f"e_{type(e).__name__}", None)
        if m is None:
            raise Untranslatable(f"the expression {type(e).__name__}")
        return m(e, scope)

    def cond(self, e, scope) -> V:
        """An expression in a truth context: a struct value is statically true."""
        v = self.expr(e, scope)
        # a variable the branches assign may still hold its first value (none): not statically true
        return C(True) if not v.is_const and v.kind in self.STRUCTS and v.go not in self.predeclared else v

    def e_Const(self, e, scope):
        return C(e.value)

    def e_TemplateData(self, e, scope):
        return C(e.data)

    def e_List(self, e, scope):
        vs = [self.expr(x, scope) for x in e.items]
        if all(v.is_const for v in vs):
            return C([v.const for v in vs])
        if isinstance(e, nodes.Tuple) and self.range_int:  # loop.index as a value: one more x than the index
            for n, v in enumerate(vs):
                if v.kind == "index1" and re.fullmatch(r"\$\w+", v.go or ""):
                    u = self.fresh("index")
                    self.emit(f'{{{{ {u} := "x" }}}}{{{{ range {v.go} }}}}{{{{ {u} = print {u} "x" }}}}{{{{ end }}}}')
                    self.note(RANGE_INT_NOTE)
                    vs[n] = V(go=f"len {u}", kind="int")
        if isinstance(e, nodes.Tuple) and all(v.is_const or v.kind in ("str", "int", "bool", "out") for v in vs):
            # a pair of a constant and a request value (Kimi-K3's `('name', message.name)`): read back by getitem
            return C([v.const if v.is_const else v for v in vs])
        raise Untranslatable("a list literal of request values")

    e_Tuple = e_List

    def e_Dict(self, e, scope):
        vs = [(self.expr(p.key, scope), self.expr(p.value, scope)) for p in e.items]
        if all(k.is_const and v.is_const for k, v in vs):
            return C({k.const: v.const for k, v in vs})
        if all(k.is_const and isinstance(k.const, str) for k, _ in vs) and not any(v.kind == "ns" for _, v in vs):
            return C({k.const: (v.const if v.is_const else self._pin_dot(v, scope)) for k, v in vs})  # read back by getitem
        raise Untranslatable("a dict literal of request values")

    @staticmethod
    def _pin_dot(v: V, scope) -> V:
        """A value kept for later (a dict literal's): its `.Field`s read through the variable `.` is here (a range's
        element), so a nested range that rebinds `.` still reads this element."""
        if v.go and v.kind != "out" and scope.dot and re.fullmatch(r"\$\w*", scope.dot) and _DOT_REF.search(v.go):
            return V(go=_dot_through(v.go, scope.dot), kind=v.kind, extra=v.extra,
                     defined=_dot_through(v.defined, scope.dot) if v.defined else None)
        return v

    def e_Name(self, e, scope):
        v = scope.get(e.name)
        if v is None:
            if e.name in self.macros:
                return C(("__macro__", e.name))
            return C(UNDEF)
        return v

    def e_Getattr(self, e, scope):
        return self.getitem(self.expr(e.node, scope), C(e.attr), scope)

    def e_Getitem(self, e, scope):
        obj = self.expr(e.node, scope)
        if isinstance(e.arg, nodes.Slice):
            return self.slice(obj, e.arg, scope)
        if isinstance(e.arg, (nodes.Sub, nodes.Add)) and isinstance(e.arg.left, nodes.Name) and not obj.is_const:
            iv, r = scope.get(e.arg.left.name), self.expr(e.arg.right, scope)
            if iv is not None and iv.kind == "seqidx" and r.is_const and r.const == 1 and obj.kind in SEQ_KINDS \
                    and iv.extra[0] == self.go_of(obj):
                return self.seqidx_neighbour(iv, isinstance(e.arg, nodes.Sub), obj.kind)
        # messages[loop.index0 - 1] / messages[loop.index0 + 1]
        if isinstance(e.arg, (nodes.Sub, nodes.Add)) and not obj.is_const:
            lp = self._loop_index_arg(e.arg.left, scope)
            r = self.expr(e.arg.right, scope)
            if lp is not None and r.is_const and r.const == 1 and lp.seq_go == obj.go and not lp.reversed:
                if isinstance(e.arg, nodes.Sub):
                    if lp.prev is None:
                        lp.prev = self.fresh("prev")
                        self.out[lp.prelude_slot] += f"{{{{ {lp.prev} := \"\" }}}}"
                    return V(go=lp.prev, kind=ELEM.get(obj.kind, "any"))
                return V(go=f"index (slice {obj.go} {lp.idx}) 1", kind=ELEM.get(obj.kind, "any"),
                         defined=f"(gt (len (slice {obj.go} {lp.idx})) 1)")
            if lp is not None and r.is_const and r.const == 1 and obj.kind in SEQ_KINDS and lp.idx \
                    and not lp.reversed and lp.seq_go.startswith(f"slice {obj.go} "):
                # `messages[loop.index0 ± 1]` in a loop over a slice of messages: the loop's index used on the whole
                # list (Bielik). Go has no ±, but lengths of slices count: i - 1 = len (slice LOOPSEQ 1 i), read
                # only for i > 0 (i = 0 is Python's messages[-1], the last one); i + 1 is index (slice SEQ 1) i.
                if isinstance(e.arg, nodes.Sub):
                    var = self.fresh("before")
                    self.emit(f"{{{{ {var} := \"\" }}}}{{{{ if {lp.idx} }}}}{{{{ {var} = index {obj.go} (len (slice "
                              f"{_paren(lp.seq_go)} 1 {lp.idx})) }}}}{{{{ else }}}}{{{{ range {obj.go} }}}}{{{{ {var} = . }}}}"
                              f"{{{{ end }}}}{{{{ end }}}}")
                    return V(go=var, kind=ELEM.get(obj.kind, "any"))
                return V(go=f"index (slice {obj.go} 1) {lp.idx}", kind=ELEM.get(obj.kind, "any"),
                         defined=f"(gt (len (slice {obj.go} 1)) {lp.idx})")
        return self.getitem(obj, self.expr(e.arg, scope), scope)

    def seqidx_neighbour(self, iv: V, before: bool, kind: str) -> V:
        """``seq[idx - 1]`` / ``seq[idx + 1]`` for ``idx`` in ``range(k, seq | length)`` (Reka-Edge's tool runs): Go
        ranges ``slice seq k`` with index j. idx + 1 is element j + 1 of that slice (``index (slice SL j) 1``,
        defined while it exists). idx - 1 is element j - 1 of it for j > 0 (``len (slice SL 1 j)`` is j - 1), else
        seq[k - 1]: Python's last element when k is 0."""
        g, _, j, st = iv.extra
        sl = f"(slice {g} {st})"
        if not before:
            return V(go=f"index (slice {sl} {j}) 1", kind=ELEM[kind], defined=f"(gt (len (slice {sl} {j})) 1)")
        var = self.fresh("before")
        self.emit(f'{{{{ {var} := "" }}}}{{{{ if gt {j} 0 }}}}{{{{ {var} = index {sl} (len (slice {sl} 1 {j})) }}}}'
                  f'{{{{ else if gt {st} 0 }}}}{{{{ {var} = index {g} (len (slice {g} 1 {st})) }}}}'
                  f'{{{{ else }}}}{{{{ range {g} }}}}{{{{ {var} = . }}}}{{{{ end }}}}{{{{ end }}}}')
        return V(go=var, kind=ELEM[kind])

    def _seqidx_int(self, v: V) -> V:
        """The index of ``range(k, seq | length)`` as an int: k + j (a linear form compare reads)."""
        _, _, j, st = v.extra
        k = Aff((), int(st)) if re.fullmatch(r"-?\d+", st) else Aff.atom(st)
        return V(go=None, kind="int", extra=k.add(Aff.atom(j)))

    def _loop_index_arg(self, node, scope):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "loop" \
                and node.attr == "index0":
            lv = scope.get("loop")
            if lv is not None and isinstance(lv.const, _Loop):
                return lv.const
        return None

    def slice(self, obj, sl, scope):
        start = self.expr(sl.start, scope) if sl.start is not None else C(None)
        stop = self.expr(sl.stop, scope) if sl.stop is not None else C(None)
        step = self.expr(sl.step, scope) if sl.step is not None else C(None)
        if obj.is_const:
            if start.is_const and stop.is_const and step.is_const:
                if not isinstance(obj.const, (str, list, tuple)):
                    raise Untranslatable(f"slicing a {_kind_of(obj.const)} constant")
                return C(obj.const[slice(start.const, stop.const, step.const)])
            raise Untranslatable("slicing a constant by a request value")
        if obj.kind in ("str", "out") and self.range_int and start.const in (None, 0) and step.const is None \
                and stop.kind == "int" and not stop.is_const:
            return self.text_head(obj, stop)  # `content[:n]` by an int of the request (LFM2.5's `_trunc_len`)
        if obj.kind == "out" and start.const is None and stop.const == -1 and step.const is None:
            # `(x | tojson)[:-1]` (Mistral: the call object, reopened to add its id): the object without its "}"
            m = re.fullmatch(r'(.*)\{\{ template "(pyjson_\w+)" ([^}]+) \}\}', obj.extra, re.S)
            if m and self.defs.get(m.group(2), "").endswith('}{{ end }}') and not m.group(2).endswith("_open") \
                    and m.group(2) not in ("pyjson_str", "pyjson_ascii"):
                name = m.group(2) + "_open"
                self.defs[name] = self.defs[m.group(2)].replace(f'define "{m.group(2)}"', f'define "{name}"')[
                    :-len('}{{ end }}')] + "{{ end }}"
                return V(kind="out", extra=f'{m.group(1)}{{{{ template "{name}" {m.group(3)} }}}}')
            raise Untranslatable("slicing printed-only text (tojson, a macro's output)")
        if step.const not in (None, 1):
            raise Untranslatable("a slice with a step (e.g. messages[::-1])")
        if obj.kind not in SEQ_KINDS:
            if obj.kind == "str":
                raise Untranslatable("slicing request text")
            raise Untranslatable(f"slicing a {obj.kind}")
        fa = _aff(start) if not start.is_const else None
        if stop.is_const and stop.const is None and fa is not None and len(fa.terms) == 1 and fa.terms[0][1] == 1 \
                and 0 < fa.const <= 8:
            # seq[i + k:] (the messages after this one): Go has no +, but slicing twice adds
            i, x = fa.terms[0][0], self.go_of(obj)
            if self._maybe_negative(i):
                return self.slice_from_var(x, i, fa.const, obj.kind)
            return V(go=f"slice (slice {x} {i}) {fa.const}", kind=obj.kind)
        if stop.is_const and stop.const is None and start.kind == "index1" and start.go in self.index_vars:
            # seq[loop.index:] (the messages after this one): the index + 1, empty past the end as in Python
            x, i, var = self.go_of(obj), start.go, self.fresh("after")
            self.emit(f"{{{{ {var} := slice {x} (len {x}) }}}}{{{{ if lt {i} (len {x}) }}}}"
                      f"{{{{ {var} = slice (slice {x} {i}) 1 }}}}{{{{ end }}}}")
            return V(go=var, kind=obj.kind)
        fb = _aff(stop) if not stop.is_const else None
        if start.is_const and start.const in (None, 0) and fb is not None and len(fb.terms) == 1 \
                and fb.terms[0][1] == 1 and 0 <= fb.const <= 8 and self._maybe_negative(fb.terms[0][0]):
            return self.slice_to_var(self.go_of(obj), fb.terms[0][0], fb.const, obj.kind)
        if stop.is_const and stop.const is None and not start.is_const and start.kind == "int":
            return V(go=f"slice {self.go_of(obj)} {self.go_of(start)}", kind=obj.kind)  # seq[i:], i a Go int
        if start.is_const and start.const in (None, 0) and stop.is_const and isinstance(stop.const, int) \
                and not isinstance(stop.const, bool) and -8 <= stop.const <= 64:
            # seq[:k] / seq[:-k]: Python clamps to the length, so the shorter slice only where it exists
            x, k = self.go_of(obj), stop.const
            var = self.fresh("head")
            cut = f"slice {x} 0 {k}" if k >= 0 else f"slice {x} 0 (len (slice {x} {-k}))"
            self.emit(f"{{{{ {var} := slice {x} 0 0 }}}}{{{{ if ge (len {x}) {abs(k)} }}}}{{{{ {var} = {cut} }}}}"
                      "{{ end }}" if k < 0 else
                      f"{{{{ {var} := {x} }}}}{{{{ if gt (len {x}) {k} }}}}{{{{ {var} = {cut} }}}}{{{{ end }}}}")
            return V(go=var, kind=obj.kind)
        if not (start.is_const and isinstance(start.const, (int, type(None))) and stop.is_const and stop.const is None):
            raise Untranslatable("a slice other than seq[n:]")
        n = start.const or 0
        if n < 0:
            raise Untranslatable("a slice from the end (seq[-n:])")
        return V(go=f"slice {self.go_of(obj)} {n}", kind=obj.kind) if n else obj

    def _maybe_negative(self, i: str) -> bool:
        """An int variable that is no range index (`namespace(k=-1)` set later): Python reads a negative one from the
        end, where Go's slice fails."""
        return bool(re.fullmatch(r"\$\w+", i)) and i not in self.index_vars

    def slice_from_var(self, x: str, i: str, k: int, kind: str) -> V:
        """seq[i + k:] for an int variable i that may be -1 (Kimi-K2-Thinking's `messages[ns.last + 1:]` with
        `namespace(last=-1)`): Python's seq[k - 1:] there; empty past the end, as in Python. Below -1 Go's slice
        fails (an error, never other text)."""
        var = self.fresh("tail")
        self.emit(f"{{{{ {var} := slice {x} (len {x}) }}}}{{{{ if eq {i} -1 }}}}{{{{ if gt (len {x}) {k - 1} }}}}"
                  f"{{{{ {var} = slice {x} {k - 1} }}}}{{{{ end }}}}{{{{ else if lt {i} 0 }}}}{{{{ {var} = slice {x} {i} }}}}"
                  f"{{{{ else if lt {i} (len {x}) }}}}{{{{ if gt (len (slice {x} {i})) {k} }}}}"
                  f"{{{{ {var} = slice (slice {x} {i}) {k} }}}}{{{{ end }}}}{{{{ end }}}}")
        return V(go=var, kind=kind)

    def slice_to_var(self, x: str, i: str, k: int, kind: str) -> V:
        """seq[:i + k] for an int variable i that may be -1 (`messages[:ns.last + 1]`), clamped to the length like
        Python: i + k as a string of x (i appended by ranging over it, Go >= 1.24). i == -1 is Python's seq[:k - 1]
        (seq[:-1] for k = 0); below -1 Go's slice fails (an error, never other text)."""
        self._need_range_int("a slice up to an int variable")
        var, u = self.fresh("head"), self.fresh("upto")
        minus1 = (f"{{{{ if ge (len {x}) 1 }}}}{{{{ {var} = slice {x} 0 (len (slice {x} 1)) }}}}{{{{ end }}}}" if k == 0
                  else f"{{{{ {var} = {x} }}}}{{{{ if gt (len {x}) {k - 1} }}}}{{{{ {var} = slice {x} 0 {k - 1} }}}}{{{{ end }}}}")
        self.emit(f"{{{{ {var} := slice {x} 0 0 }}}}{{{{ if ge {i} 0 }}}}{{{{ {u} := {_go_str('x' * k)} }}}}"
                  f"{{{{ range {i} }}}}{{{{ {u} = print {u} \"x\" }}}}{{{{ end }}}}{{{{ {var} = {x} }}}}"
                  f"{{{{ if lt (len {u}) (len {x}) }}}}{{{{ {var} = slice {x} 0 (len {u}) }}}}{{{{ end }}}}"
                  f"{{{{ else if eq {i} -1 }}}}{minus1}{{{{ else }}}}{{{{ {var} = slice {x} 0 {i} }}}}{{{{ end }}}}")
        return V(go=var, kind=kind)

    def getitem(self, obj: V, key: V, scope) -> V:
        if obj.kind.startswith(_SPLIT) and not obj.is_const:
            if key.is_const and key.const in (0, -1) and not isinstance(key.const, bool):
                return self.split_piece(obj, key.const)
            raise Untranslatable("a piece of a split string other than the first or the last")
        if obj.is_const:
            c = obj.const
            if isinstance(c, _Loop):
                return self.loop_attr(c, key.const)
            if obj.kind == "ns":
                owner = next((n for n, x in scope_items(scope) if x is obj), None)
                if owner and f"{owner}.{key.const}" in self.textvars:
                    tv = scope.get(self._slot(f"{owner}.{key.const}"))
                    return tv if tv is not None else V(kind="out", extra="", truthy="false")
                v = c.get(key.const)
                if v is None:
                    raise Untranslatable(f"namespace attribute {key.const!r} read before it is set")
                return v
            if not key.is_const:
                raise Untranslatable("indexing a constant by a request value")
            try:
                if isinstance(c, dict):
                    x = c.get(key.const, UNDEF)
                    return x if isinstance(x, V) else C(x)
                if isinstance(c, (list, tuple, str)) and isinstance(key.const, int):
                    if isinstance(c, list) and any(isinstance(y, _CondItem) for y in c):
                        raise Untranslatable("indexing a list a branch appended to")
                    if not -len(c) <= key.const < len(c):
                        return C(UNDEF)
                    x = c[key.const]
                    return x if isinstance(x, V) else C(x)  # an element of a split request string
            except Exception:  # noqa: BLE001
                pass
            if c is UNDEF or c is None:
                raise Untranslatable("an attribute of an undefined value")
            return C(UNDEF)
        if obj.kind in FIELDS and key.is_const:
            f = FIELDS[obj.kind].get(key.const)
            if f is None:
                if obj.kind == "tcall" and key.const == "type":
                    return C("function")
                if obj.kind == "tool" and key.const in FIELDS["fn"]:
                    return C(UNDEF)  # a flat tool: Ollama always nests under .Function
                return C(UNDEF)
            gofield, kind, always = f
            base = obj.go
            go = f"{base}.{gofield}" if re.fullmatch(r"[$.\w]+", base) else f"({base}).{gofield}"
            if base == "$":
                go = f"$.{gofield}"
            elif scope.dot and base == scope.dot and obj.kind == "message":
                # the range's own element: `.ToolCalls` / `eq .Role "tool"` are what Ollama looks for in a TEMPLATE
                go = f".{gofield}"
            return V(go=go, kind=kind, defined=None if always else go)
        if obj.kind == "selected" and key.is_const and key.const == -1:
            seq, attr, val = obj.extra
            f = FIELDS[ELEM[seq.kind]].get(attr)
            if f is None:
                raise Untranslatable(f"selectattr on {attr!r}")
            var = self.fresh("lastidx")
            self.emit(f"{{{{ {var} := -1 }}}}{{{{ range $j, $m := {seq.go} }}}}{{{{ if eq $m.{f[0]} {_go_lit(val)} }}}}"
                      f"{{{{ {var} = $j }}}}{{{{ end }}}}{{{{ end }}}}")
            return V(go=var, kind="elemidx", extra=seq.go)
        if obj.kind in SEQ_KINDS and key.kind == "seqidx":
            if key.extra[0] != self.go_of(obj):
                raise Untranslatable("an index from range() used on another sequence")
            return V(go=key.extra[1], kind=ELEM[obj.kind])
        if obj.kind in SEQ_KINDS and not key.is_const and key.kind == "int" and key.go:
            g, k = self.go_of(obj), self.go_of(key)
            if re.fullmatch(r"\$\w+", k) and k not in self.index_vars:
                # an int variable (`set ns.k = loop.index0` after `namespace(k=-1)`) may be negative: Python's
                # seq[-1] is the last element, where Go's index fails. Other negatives (< -1) still fail in Go
                # (Python's IndexError below -len; an error, never other text)
                ix = self.fresh("ix")
                self.emit(f"{{{{ {ix} := {k} }}}}{{{{ if eq {k} -1 }}}}{{{{ {ix} = len (slice {g} 1) }}}}{{{{ end }}}}")
                return V(go=f"index {g} {ix}", kind=ELEM[obj.kind])
            return V(go=f"index {g} {k}", kind=ELEM[obj.kind])  # an index from range()
        if obj.kind in SEQ_KINDS and not key.is_const and key.kind == "int" and key.go is None \
                and _aff(key) is not None:
            return self.index_by_sum(obj, _aff(key))
        if obj.kind in SEQ_KINDS and key.is_const and isinstance(key.const, int):
            k = key.const
            if k >= 0:
                return V(go=f"index {self.go_of(obj)} {k}", kind=ELEM[obj.kind])
            if k == -1:
                var = self.fresh("lastof")
                self.emit(f"{{{{ {var} := \"\" }}}}{{{{ range {obj.go} }}}}{{{{ {var} = . }}}}{{{{ end }}}}")
                return V(go=var, kind=ELEM[obj.kind])
            raise Untranslatable("seq[-n] with n > 1")
        if obj.kind in MAPS:
            if key.is_const:
                return V(go=f"index {self.go_of(obj)} {_go_lit(key.const)}", kind=MAPS[obj.kind])
            return V(go=f"index {self.go_of(obj)} {self.go_of(key)}", kind=MAPS[obj.kind])
        if obj.kind in ("str", "char") and key.is_const and isinstance(key.const, str):
            return C(UNDEF)  # a string has no such attribute: undefined, as in Jinja
        if obj.kind == "str" and key.is_const and isinstance(key.const, int):
            # one character of request text (`content[0].type` of a string content): only its attributes, all
            # undefined, are read; printing or comparing it (bytes are not characters) is refused
            return V(go=None, kind="char")
        if obj.kind == "ptype" and key.is_const and type(key.const) is int and key.const >= 0:
            # a property's type list (read where it is not one string: `is string` is its length)
            g = self.go_of(obj)
            return V(go=f"index {g} {key.const}", kind="str", defined=f"gt (len {g}) {key.const}")
        if obj.kind == "any" and key.is_const and isinstance(key.const, int) and key.const >= 0:
            return V(go=f"index {self.go_of(obj)} {key.const}", kind="any")  # a JSON list of the request
        if obj.kind == "any" and key.is_const and isinstance(key.const, str):
            # a JSON object of the request (a property's `items`): Go's index reads a map's key (zero when absent)
            return V(go=f"index {self.go_of(obj)} {_go_lit(key.const)}", kind="any")
        if obj.kind in SEQ_KINDS | {"ptype"} and key.is_const and isinstance(key.const, str) \
                and not hasattr([], key.const) and not hasattr("", key.const):
            return C(UNDEF)  # a list (or a property's type: a str or list in Jinja) has no such key: undefined
        if obj.kind == "tool" and not key.is_const:
            raise Untranslatable("indexing a tool by a request value")
        if obj.kind in FIELDS and not key.is_const:
            raise Untranslatable(f"indexing a {obj.kind} by a request value")
        if not key.is_const:
            raise Untranslatable(f"indexing a {obj.kind} by a request value other than the loop's neighbours")
        raise Untranslatable(f"[{key.const!r}] of a {obj.kind}")

    def index_by_sum(self, obj: V, f: Aff) -> V:
        """``seq[k]`` for a sum of ints of the request (Kimi-K3's `state.tool_calls[state.tool_index - 1]`, a
        counter less one): k as two strings of x (unary); k >= 0 is the index, a negative k counts from the end as
        in Python (``len seq + k``). Past either end Go's index fails where Python raises IndexError."""
        p, n, sq, ix = self.fresh("pos"), self.fresh("neg"), self.fresh("seq"), self.fresh("ix")
        self.emit(self.unary(f, p, n, declare=True))
        self.emit(f"{{{{ {sq} := {self.go_of(obj)} }}}}{{{{ {ix} := -1 }}}}{{{{ if ge (len {p}) (len {n}) }}}}"
                  f"{{{{ {ix} = len (slice {p} (len {n})) }}}}{{{{ else if le (len (slice {n} (len {p}))) (len {sq}) }}}}"
                  f"{{{{ {ix} = len (slice {sq} (len (slice {n} (len {p})))) }}}}{{{{ end }}}}")
        return V(go=f"index {sq} {ix}", kind=ELEM[obj.kind])

    def loop_attr(self, lp: _Loop, attr):
        if attr == "index0":
            if not lp.idx:
                raise Untranslatable("loop.index0 over a mapping")
            return V(go=lp.idx, kind="int", extra=Aff.atom(lp.idx))
        if attr == "first":
            if lp.first_flag:
                return V(go=lp.first_flag, kind="bool")
            return V(go=f"eq {lp.idx} 0", kind="bool")
        if attr == "last":
            if getattr(lp, "last_test", None):
                return V(go=lp.last_test, kind="bool")
            return V(go=f"eq (len (slice {_paren(lp.seq_go)} {lp.idx})) 1", kind="bool")
        if attr == "index":
            return V(go=lp.idx, kind="index1")  # only comparisons with constants are supported
        if attr in ("previtem", "nextitem") and (lp.reversed or lp.prelude_slot is None and attr == "previtem"):
            raise Untranslatable(f"loop.{attr} in a reversed loop or over a mapping")
        if attr == "previtem":
            if lp.prev is None:
                lp.prev = self.fresh("prev")
                self.out[lp.prelude_slot] += f"{{{{ {lp.prev} := \"\" }}}}"
            return V(go=lp.prev, kind=ELEM.get(lp.seq.kind, "any"))
        if attr == "nextitem":
            return V(go=f"index (slice {_paren(lp.seq_go)} {lp.idx}) 1", kind=ELEM.get(lp.seq.kind, "any"),
                     defined=f"(gt (len (slice {_paren(lp.seq_go)} {lp.idx})) 1)")
        if attr == "length":
            return V(go=f"len {_paren(lp.seq_go)}", kind="int")
        raise Untranslatable(f"loop.{attr}")

    # boolean logic: Go's and/or short-circuit and return an operand, like Python's
    def e_And(self, e, scope):
        narrowed = self._and_is_string(e, scope)
        if narrowed is not None:
            return narrowed
        a = self.cond(e.left, scope)
        if a.is_const:
            return self.expr(e.right, scope) if self._truthy_const(a.const) else a
        b = self.expr(e.right, scope)
        if b.kind == "out":
            return self._short_circuit(a, b, "and")
        if not b.is_const and b.go == a.go:
            return a
        if b.is_const:
            return a if self._truthy_const(b.const) and b.kind == "bool" else (
                V(go=f"and {self.go_of(a)} {self.go_of(b)}", kind="bool") if self._truthy_const(b.const) else C(False))
        return V(go=f"and {self.go_of(a)} {self.go_of(b)}", kind="bool" if a.kind == b.kind == "bool" else "any")

    def _and_is_string(self, e, scope) -> V | None:
        """`v is string and ('<' in v or ...)` on a JSON value of unknown type (a tool-call argument): the right side
        reads ``v`` as text, and the Go it needs first (the substring scans) runs only where ``v`` is a string, as
        Python evaluates it only then. None where that is not the shape (the general `and` translates it)."""
        t = e.left
        if not (isinstance(t, nodes.Test) and t.name == "string" and not t.args and isinstance(t.node, nodes.Name)):
            return None
        v = scope.get(t.node.name)
        if v is None or v.is_const or v.kind != "any" or not v.go:
            return None
        a = self.expr(t, scope)
        inner = _Scope(scope)
        inner.vars[t.node.name] = V(go=v.go, kind="str")
        mark = len(self.out)
        b = self.expr(e.right, inner)
        if b.kind != "bool" or b.is_const:
            del self.out[mark:]
            return None
        bg = self.go_of(b)
        pre = "".join(self.out[mark:])
        del self.out[mark:]
        r = self.fresh("and")
        self.emit(f"{{{{ {r} := false }}}}{{{{ if {a.go} }}}}{pre}{{{{ {r} = {bg} }}}}{{{{ end }}}}")
        return V(go=r, kind="bool")

    def e_Or(self, e, scope):
        a = self.cond(e.left, scope)
        if a.is_const:
            return a if self._truthy_const(a.const) else self.expr(e.right, scope)
        b = self.expr(e.right, scope)
        if b.kind == "out":
            return self._short_circuit(a, b, "or")
        if b.is_const and not self._truthy_const(b.const):
            return a
        if b.is_const:
            return V(go=f"or {self.go_of(a)} {self.go_of(b)}", kind="any")
        kind = a.kind if a.kind == b.kind else "any"
        return V(go=f"or {self.go_of(a)} {self.go_of(b)}", kind=kind)

    def _short_circuit(self, a: V, b: V, op: str) -> V:
        """`a and TEXT` / `a or TEXT`: the text is built (materialize) only where Python evaluates it."""
        r = self.fresh(op)
        self.emit(f"{{{{ {r} := {self.go_of(a)} }}}}{{{{ if {'' if op == 'and' else 'not '}{r} }}}}")
        self.emit(f"{{{{ {r} = {self.go_of(b)} }}}}{{{{ end }}}}")
        return V(go=r, kind="any")

    def e_Not(self, e, scope):
        a = self.cond(e.node, scope)
        if a.is_const:
            return C(not self._truthy_const(a.const))
        if a.go.startswith("not ") and re.fullmatch(r"not [$.\w]+", a.go):
            return V(go=a.go[4:], kind="bool")
        return V(go=f"not {self.go_of(a)}", kind="bool")

    def e_CondExpr(self, e, scope):
        t = self.cond(e.test, scope)  # a struct (a tool call's function) is statically true
        if t.is_const:
            if self._truthy_const(t.const):
                return self.expr(e.expr1, scope)
            return self.expr(e.expr2, scope) if e.expr2 is not None else C(UNDEF)
        a = self.expr(e.expr1, scope)
        b = self.expr(e.expr2, scope) if e.expr2 is not None else C("")
        if "out" in (a.kind, b.kind):
            ta, tb = self.as_text(a).truthy, self.as_text(b).truthy
            return V(kind="out", truthy=f"or (and ({self.truth(t)}) ({ta})) (and (not ({self.truth(t)})) ({tb}))"
                     if ta and tb else None,
                     extra=f"{{{{ if {self.truth(t)} }}}}{self.capture(lambda: self.print_value(a))}"
                                      f"{{{{ else }}}}{self.capture(lambda: self.print_value(b))}{{{{ end }}}}")
        # `seq if test else []`: the empty list as an empty slice of seq's type
        if b.is_const and b.const == [] and not a.is_const and a.kind in SEQ_KINDS:
            b = V(go=f"slice {self.go_of(a)} 0 0", kind=a.kind)
        elif a.is_const and a.const == [] and not b.is_const and b.kind in SEQ_KINDS:
            a = V(go=f"slice {self.go_of(b)} 0 0", kind=b.kind)
        var = self.fresh("cond")
        self.emit(f"{{{{ {var} := {self.go_of(b)} }}}}{{{{ if {self.truth(t)} }}}}{{{{ {var} = {self.go_of(a)} }}}}{{{{ end }}}}")
        return V(go=var, kind=a.kind if a.kind == b.kind else "any")

    def e_Compare(self, e, scope):
        left = self.expr(e.expr, scope)
        result = None
        for op in e.ops:
            right = self.expr(op.expr, scope)
            r = self.compare(left, op.op, right)
            result = r if result is None else self.e_And_vals(result, r)
            left = right
        return result

    def e_And_vals(self, a, b):
        if a.is_const:
            return b if self._truthy_const(a.const) else a
        if b.is_const:
            return a if self._truthy_const(b.const) else b
        return V(go=f"and {self.go_of(a)} {self.go_of(b)}", kind="bool")

    def compare(self, a: V, op: str, b: V) -> V:
        a, b = (self._seqidx_int(v) if v.kind == "seqidx" else v for v in (a, b))
        if a.is_const and b.is_const and not isinstance(a.const, (_Loop,)) and a.kind != "ns":
            if _holds_v(a.const) or _holds_v(b.const):
                raise Untranslatable("comparing a list or dict literal of request values")
            x, y = a.const, b.const
            x = None if x is UNDEF else x
            y = None if y is UNDEF else y
            try:
                return C({"eq": lambda: x == y, "ne": lambda: x != y, "lt": lambda: x < y, "gt": lambda: x > y,
                          "lteq": lambda: x <= y, "gteq": lambda: x >= y,
                          "in": lambda: x in y if y is not None else False,
                          "notin": lambda: x not in y if y is not None else True}[op]())
            except TypeError:
                raise Untranslatable(f"comparing {x!r} {op} {y!r}") from None
        if "folded" in (a.kind, b.kind):
            return self.casefold_compare(a, op, b)
        if op in ("in", "notin"):
            r = self.contains(a, b)
            if op == "notin":
                return C(not r.const) if r.is_const else V(go=f"not {self.go_of(r)}", kind="bool")
            return r
        if a.kind == "index1" or b.kind == "index1":  # loop.index (1-based) against a constant
            if a.kind == "index1" and b.is_const and isinstance(b.const, int):
                a, b = V(go=a.go, kind="int"), C(b.const - 1)
            elif b.kind == "index1" and a.is_const and isinstance(a.const, int):
                a, b = C(a.const - 1), V(go=b.go, kind="int")
            else:
                raise Untranslatable("loop.index in arithmetic")
        if "elemidx" in (a.kind, b.kind):  # message == selected[-1]: compare positions in the same sequence
            ref, other = (a, b) if a.kind == "elemidx" else (b, a)
            lp = next((lp for lp in reversed(self.loops) if lp.elem == other.go and lp.idx), None)
            if lp is None or lp.seq_go != ref.extra or op not in ("eq", "ne"):
                raise Untranslatable("comparing a message with a selected one outside its loop")
            return V(go=f"{op} {lp.idx} {ref.go}", kind="bool")
        gop = {"eq": "eq", "ne": "ne", "lt": "lt", "gt": "gt", "lteq": "le", "gteq": "ge"}[op]
        for x, y, flip in ((a, b, False), (b, a, True)):
            if isinstance(x.extra, _StrLen) and x.go is None:
                if y.is_const and type(y.const) is int and (y.const, op if not flip else
                                                            {"lt": "gt", "gt": "lt", "lteq": "gteq", "gteq": "lteq"}.get(op, op)) \
                        in ((0, "eq"), (0, "ne"), (0, "gt"), (0, "lteq"), (1, "gteq"), (1, "lt")):
                    # whether the text is empty: as many bytes as code points are zero
                    return V(go=f"{gop} (len {_paren(x.extra.go)}) {y.const}" if not flip else
                             f"{gop} {y.const} (len {_paren(x.extra.go)})", kind="bool")
                x2 = self.char_count(x.extra.go)
                a, b = (y, x2) if flip else (x2, y)
                break
        fa, fb = (_aff(v) or (Aff.atom(v.go) if v.kind == "int" and v.go else None) for v in (a, b))
        if a.kind == "int" and b.kind == "int" and fa is not None and fb is not None:
            d = fa.add(fb, -1)  # compare the difference with 0 when one side is a plain atom
            try:
                return V(go=f"{gop} {self.go_of(a)} {self.go_of(b)}", kind="bool")
            except Untranslatable:
                if len(d.terms) == 1 and d.terms[0][1] == 1:
                    return V(go=f"{gop} {d.terms[0][0]} {-d.const}", kind="bool")
                if not self.range_int:
                    raise
                # a - b compared with 0, a and b as strings of x (Go >= 1.24 ranges over an int)
                p, n = self.fresh("pos"), self.fresh("neg")
                self.emit(self.unary(d, p, n, declare=True))
                return V(go=f"{gop} (len {p}) (len {n})", kind="bool")
        for v in (a, b):
            if v.is_const and (v.const is None or v.const is UNDEF):
                # x == none: Ollama's fields are never none; an empty value is the closest
                other = b if v is a else a
                return V(go=f"not {self.go_of(other)}" if op == "eq" else other.go, kind="bool") if op in ("eq", "ne") \
                    else C(False)
        if a.kind == "ptype":
            a = V(go=f"index {self.go_of(a)} 0", kind="str")
        if b.kind == "ptype":
            b = V(go=f"index {self.go_of(b)} 0", kind="str")
        if a.kind in MAPPING_KINDS or b.kind in MAPPING_KINDS or a.kind in SEQ_KINDS or b.kind in SEQ_KINDS:
            raise Untranslatable(f"comparing a {a.kind} with a {b.kind}")
        # a JSON value == a constant: Go's eq fails on values of other types, Python's == is false there, so the type
        # is tested first; a string constant anywhere (a schema's `type`: a string, or a list of them), true/false
        # inside a schema recursion (where a JSON value may also be Python's 1 / 1.0)
        if op in ("eq", "ne") and (self._schema_rec() or {a.kind, b.kind} == {"any", "str"}):
            r = self._any_eq_const(a, b) or self._any_eq_const(b, a)
            if r is not None:
                return V(go=r if op == "eq" else f"not ({r})", kind="bool")
        return V(go=f"{gop} {self.go_of(a)} {self.go_of(b)}", kind="bool")

    def _any_eq_const(self, x: V, c: V) -> str | None:
        """`x == 'object'` / `x == true` for a JSON value x of a tool's schema (GigaChat's `ty == "object"`,
        `schema.additionalProperties == true` inside `items`): Go's eq fails on values of other types (a list, a
        mapping), Python's == is False there; so the type is tested first (true is also Python's 1 and 1.0)."""
        if x.is_const or x.kind != "any" or not x.go or not c.is_const:
            return None
        g = _paren(self.go_of(x))
        t = f'(printf "%T" {g})'
        if isinstance(c.const, bool):
            lit = "true" if c.const else "false"
            num = "1.0" if c.const else "0.0"
            return f'or (and (eq {t} "bool") (eq {g} {lit})) (and (eq {t} "float64") (eq {g} {num}))'
        if isinstance(c.const, str):
            return f'and (eq {t} "string") (eq {g} {_go_lit(c.const)})'
        return None

    def casefold_compare(self, a: V, op: str, b: V) -> V:
        """`x | upper == 'STRING'` (or `in [...]`) on request text: Go has no case mapping, so x is compared byte by
        byte: as long as the constant, each letter in either case (`and` stops before slicing a shorter string)."""
        folded, other = (a, b) if a.kind == "folded" else (b, a)
        base, how, orig = folded.extra
        if op in ("in", "notin") and folded is b and a.is_const and isinstance(a.const, str):
            r = self.substring_lowered(base, a.const) if how == "lower" else None
            if r is not None:
                return r if op == "in" else (C(not r.const) if r.is_const else V(go=f"not {r.go}", kind="bool"))
        if op not in ("eq", "ne", "in", "notin") or not other.is_const or (op in ("in", "notin") and folded is not a):
            raise Untranslatable(f"the `{how}` filter on a request value")
        consts = list(other.const) if op in ("in", "notin") else [other.const]
        guard = self._casefold_guard(orig, consts)
        go = self.go_of(base)
        tests = []
        for c in consts:
            if not isinstance(c, str) or not c.isascii() or getattr(c, how)() != c:
                continue  # no string maps to it (or a non-ASCII case mapping): never equal
            chars = []
            for k, ch in enumerate(c):
                at = f"(slice {go} {k} {k + 1})"
                chars.append(f"(or (eq {at} {_go_lit(ch.lower())}) (eq {at} {_go_lit(ch.upper())}))"
                             if ch.isalpha() else f"(eq {at} {_go_lit(ch)})")
            tests.append(f"and (eq (len {go}) {len(c.encode())}) {' '.join(chars)}" if chars else f"eq (len {go}) 0")
        positive = op in ("eq", "in")
        if not tests:
            return C(not positive)
        test = tests[0] if len(tests) == 1 else "or " + " ".join(f"({t})" for t in tests)
        if guard:
            test = f"and ({guard}) ({test})"
        return V(go=test if positive else f"not ({test})", kind="bool")

    CASE_NOTE = ("`| upper` / `| lower` of request text is written by mapping ASCII letters byte by byte (Python's "
                 "str.upper() on ASCII text); text with a non-ASCII character stops the template with an error, as do "
                 "a property's type list holding a quote, backslash or control character, and a JSON value (inside "
                 "`items`) that is neither a string nor a list of strings")

    def case_mapped(self, v: V) -> V:
        """`x | upper` (or lower) used as a value: a Go string built byte by byte (Go >= 1.24 ranges over its
        length), each byte through a 128-entry table that maps a-z to A-Z (or back); a byte >= 0x80 is past the
        table's end, so Go's `index` stops the template there (Python would map non-ASCII letters too). A
        property's type that is a list is Python's str() of it, mapped (`['STRING', 'NULL']`); none is ''."""
        base, how, orig = v.extra
        self._need_range_int(f"the `{how}` filter used as a value")
        self.note(self.CASE_NOTE)
        table = '"' + "".join(f"\\x{c:02x}" if c < 32 or c in (34, 92, 127) else
                              (chr(c).upper() if how == "upper" else chr(c).lower()) for c in range(128)) + '"'
        u, tv = self.fresh("case"), self.fresh("casetable")

        def walk(src, quoted=False):  # appends src's bytes, mapped, to u (quoted: as repr would quote it: plain only)
            chk = ('{{ if or (eq $b 39) (eq $b 92) (lt $b 32) (eq $b 127) }}{{ index "" 1 }}{{ end }}'
                   if quoted else "")
            return (f'{{{{ range $j := len {src} }}}}{{{{ $b := index {src} $j }}}}{chk}'
                    f'{{{{ {u} = print {u} (printf "%c" (index {tv} $b)) }}}}{{{{ end }}}}')

        def listed(src, strings_only):  # Python's str() of a list of strings: ['A', 'B']
            e = self.fresh("ce")
            chk = f'{{{{ if ne (printf "%T" {e}) "string" }}}}{{{{ index "" 1 }}}}{{{{ end }}}}' if strings_only else ""
            return (f'{{{{ {u} = "[" }}}}{{{{ range $k, {e} := {src} }}}}{chk}{{{{ if $k }}}}{{{{ {u} = print {u} ", " }}}}'
                    f'{{{{ end }}}}{{{{ {u} = print {u} "\'" }}}}{walk(e, True)}{{{{ {u} = print {u} "\'" }}}}{{{{ end }}}}'
                    f'{{{{ {u} = print {u} "]" }}}}')

        src, one = self.fresh("cs"), self.fresh("cs")
        self.emit(f"{{{{ {tv} := {table} }}}}")
        if orig.kind == "ptype":
            self.emit(f'{{{{ {src} := {self.go_of(orig)} }}}}{{{{ {u} := "" }}}}{{{{ if eq (len {src}) 1 }}}}'
                      f'{{{{ {one} := index {src} 0 }}}}{walk(one)}{{{{ else if gt (len {src}) 1 }}}}'
                      f'{listed(src, False)}{{{{ end }}}}')
        elif orig.kind == "any":
            t = f'(printf "%T" {src})'
            self.emit(f'{{{{ {src} := {self.go_of(orig)} }}}}{{{{ {u} := "" }}}}{{{{ if eq {t} "string" }}}}{walk(src)}'
                      f'{{{{ else if eq {t} "[]interface {{}}" }}}}{listed(src, True)}{{{{ else }}}}{{{{ index "" 1 }}}}'
                      f'{{{{ end }}}}')
        else:
            self.emit(f'{{{{ {src} := {self.go_of(base)} }}}}{{{{ {u} := "" }}}}{walk(src)}')
        return V(go=u, kind="str")

    def case_mapped_list(self, v: V, how: str) -> V:
        """`x | map('upper') | list` of a JSON value (Gemma 4's `items` type list): x's items, each case-mapped
        where it is read (a loop over it, kind uplist). x must be a list at run time: anything else (a mapping,
        whose keys Jinja would map, or a scalar, where Jinja fails) stops the template with an error."""
        self._need_range_int(f"map('{how}')")
        self.note(self.CASE_NOTE)
        self.emit(f'{{{{ if ne (printf "%.2s" (printf "%T" {self.go_of(v)})) "[]" }}}}{{{{ index "" 1 }}}}{{{{ end }}}}')
        return V(go=v.go, kind="uplist", extra=how)

    def _casefold_guard(self, orig: V, consts) -> str | None:
        """What must hold before `x | upper` is compared as one string (casefold_compare): a property's type is one
        name (a list of them is Python's str() of the list, `['STRING', 'NULL']`; none is ''), a JSON value is a
        string. Refused where a constant could equal what the other shapes print (Go cannot tell an absent key
        from null: '' vs 'NONE')."""
        strs = [c for c in consts if isinstance(c, str)]
        if orig.kind == "ptype":
            if any(c == "" or c.startswith("[") for c in strs):
                raise Untranslatable("`| upper` of a property's type compared with '' or a list's text")
            return f"eq (len {self.go_of(orig)}) 1"
        if orig.kind == "any":
            if any(c == "" or c[:1] in "[{-.0123456789" or c.lower() in ("none", "true", "false") for c in strs):
                raise Untranslatable("`| upper` of a JSON value compared with text a non-string prints")
            return f'eq (printf "%T" {self.go_of(orig)}) "string"'
        return None

    def contains(self, needle: V, hay: V) -> V:
        if hay.kind == "strset":
            return self.strset_has(needle, hay)
        if hay.is_const and isinstance(hay.const, (list, tuple, dict)) and not needle.is_const:
            opts = list(hay.const)
            if not opts:
                return C(False)
            if needle.kind == "ptype":  # a property's "type": its one name, as `==` compares it
                needle = V(go=f"index {self.go_of(needle)} 0", kind="str")
            return V(go="or " + " ".join(f"(eq {self.go_of(needle)} {_go_lit(o)})" for o in opts) if len(opts) > 1
                     else f"eq {self.go_of(needle)} {_go_lit(opts[0])}", kind="bool")
        if hay.kind in ("strlist", "list") and not needle.is_const or hay.kind == "strlist":
            # `name in params.required`: a flag set while ranging the list
            var = self.fresh("in")
            self.emit(f"{{{{ {var} := false }}}}{{{{ range {self.go_of(hay)} }}}}{{{{ if eq . {self.go_of(needle)} }}}}"
                      f"{{{{ {var} = true }}}}{{{{ end }}}}{{{{ end }}}}")
            return V(go=var, kind="bool")
        if hay.kind in FIELDS and needle.is_const:  # 'tool_calls' in message
            f = FIELDS[hay.kind].get(needle.const)
            if f is None:
                return C(False)
            if not f[2] and f[1] == "any" and self._schema_rec():
                # `"items" in schema`: a JSON value there, even `{}` (falsy in Go), is the key present (a JSON null
                # reads as absent, where Jinja's later `.get` on none would fail)
                return V(go=f'ne (printf "%T" {hay.go}.{f[0]}) "<nil>"', kind="bool")
            return C(True) if f[2] else V(go=f"{hay.go}.{f[0]}", kind="any")
        if hay.kind in ("str", "any", "out") and needle.is_const and isinstance(needle.const, str):
            if needle.const in THINK_TAGS:
                self.note("reasoning tags never occur in .Content: Ollama keeps the reasoning in .Thinking")
                return C(False)
            if hay.kind in ("str", "out"):
                return self.substring(hay, needle.const)
            if self._schema_rec():
                return self.any_has_key(hay, needle.const)
            raise Untranslatable(f"substring test {needle.const!r} in request text")
        if hay.kind in MAPS and needle.is_const:
            raise Untranslatable("key test on a request mapping")
        raise Untranslatable(f"`in` on a {hay.kind}")

    # ---- integers as strings of x (Go >= 1.24: range over an integer) ----------------------------------------
    def unary(self, f: Aff, p: str, n: str, declare: bool) -> str:
        """Go that sets the strings ``p`` and ``n`` so that ``len p - len n`` is the linear form ``f`` (Go's
        text/template has no + or -). A range index or a length adds one x per unit; any other int variable
        (it may be negative: `namespace(value=-1)`) adds ``range $v`` x's when >= 0, else the digits of
        ``printf "%d"`` read as a decimal, to the other side."""
        self._need_range_int("integer arithmetic")
        if any(abs(c) > 8 for _, c in f.terms) or abs(f.const) > self.MAX_COUNT:
            raise Untranslatable("arithmetic on request values with a large coefficient")
        op = ":=" if declare else "="
        go = [f"{{{{ {p} {op} \"\" }}}}{{{{ {n} {op} \"\" }}}}"]
        digits = "".join(f"{{{{ {'if' if d == 1 else 'else if'} eq $c \"{d}\" }}}}{{{{ $u = print $u \"{'x' * d}\" }}}}"
                         for d in range(1, 10)) + "{{ end }}"
        for atom, c in f.terms:
            plus, minus = (p, n) if c > 0 else (n, p)
            for _ in range(abs(c)):
                if atom in self.unary_of:
                    go.append(f"{{{{ {plus} = print {plus} {self.unary_of[atom]} }}}}")
                    continue
                up = f"{{{{ range {_paren(atom)} }}}}{{{{ {plus} = print {plus} \"x\" }}}}{{{{ end }}}}"
                if atom in self.index_vars or atom.startswith("len "):
                    go.append(up)
                    continue
                if not re.fullmatch(r"\$\w+", atom):
                    raise Untranslatable("arithmetic on request values that Go cannot express")
                go.append(f"{{{{ if ge {atom} 0 }}}}{up}{{{{ else }}}}{{{{ $d := slice (printf \"%d\" {atom}) 1 }}}}"
                          f"{{{{ $u := \"\" }}}}{{{{ range $k := len $d }}}}{{{{ $u = print $u $u $u $u $u $u $u $u $u $u }}}}"
                          f"{{{{ $c := printf \"%.1s\" (slice $d $k) }}}}{digits}{{{{ end }}}}"
                          f"{{{{ {minus} = print {minus} $u }}}}{{{{ end }}}}")
        if f.const:
            side = p if f.const > 0 else n
            go.append(f"{{{{ {side} = print {side} \"{'x' * abs(f.const)}\" }}}}")
        return "".join(go)

    # ---- request text scanned byte by byte (Go >= 1.24: range over an integer) ------------------------------
    def _need_range_int(self, what: str):
        if not self.range_int:
            raise Untranslatable(f"{what} in request text (translated only for Go >= 1.24, whose text/template ranges "
                                 "over an integer; the checking Go is older)")
        self.note(RANGE_INT_NOTE)

    # Python's str.isspace() characters, what str.strip() (and Jinja's trim) removes at either end
    PY_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200b))) + \
        "\u2028\u2029\u202f\u205f\u3000"

    def strip(self, v: V, how: str, chars: str | None = None) -> V:
        """`s.strip()` / `s | trim` (and lstrip / rstrip) on request text, exactly: one pass over the byte offsets
        (Go >= 1.24) that, at each character's first byte (not 0x80-0xBF), reads the character (`printf "%.1s"`: the
        first rune) and tests it against Python's whitespace; the result is the slice from the first non-space
        character to the end of the last one."""
        self._need_range_int(f".{how}()")
        x = self.go_of(v)  # request text only: a macro's output is still not stripped (noted where it is)
        h, st, en, seen, pend, c = (self.fresh(n) for n in ("trimmed", "start", "end", "seen", "pend", "ch"))
        if chars == "":
            return v  # Python strips nothing
        space = "or " + " ".join(f'(eq {c} "\\U{ord(ch):08x}")' for ch in dict.fromkeys(chars or self.PY_SPACE))
        space = space if space.count("(eq ") > 1 else space[3:]
        self.emit(f"{{{{ {h} := {x} }}}}{{{{ {st} := 0 }}}}{{{{ {en} := 0 }}}}{{{{ {seen} := false }}}}"
                  f"{{{{ {pend} := false }}}}{{{{ range $j := len {h} }}}}{{{{ $b := index {h} $j }}}}"
                  f"{{{{ if or (lt $b 128) (ge $b 192) }}}}{{{{ if {pend} }}}}{{{{ {en} = $j }}}}{{{{ {pend} = false }}}}"
                  f"{{{{ end }}}}{{{{ {c} := printf \"%.1s\" (slice {h} $j) }}}}{{{{ if not ({space}) }}}}"
                  f"{{{{ if not {seen} }}}}{{{{ {st} = $j }}}}{{{{ {seen} = true }}}}{{{{ end }}}}{{{{ {pend} = true }}}}"
                  f"{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}{{{{ if {pend} }}}}{{{{ {en} = len {h} }}}}{{{{ end }}}}")
        if how == "lstrip":  # all spaces: nothing is left
            self.emit(f"{{{{ if not {seen} }}}}{{{{ {st} = len {h} }}}}{{{{ end }}}}")
            return V(go=f"slice {h} {st}", kind="str")
        if how == "rstrip":
            return V(go=f"slice {h} 0 {en}", kind="str")
        return V(go=f"slice {h} {st} {en}", kind="str")

    def text_head(self, v: V, stop: V) -> V:
        """``s[:k]`` of request text (or text built by `print`) for an int ``k`` of the request: Python counts code
        points and reads a negative ``k`` from the end (clamped at 0). ``k`` becomes two strings of x (``len P - len
        N``, :meth:`unary`); the target t is ``len P - len N`` when that is >= 0, else the code-point count plus it
        (0 when that is negative); the cut is the byte offset of code point t, found in one pass over the offsets
        (Go >= 1.24), the whole string when t reaches its end."""
        f = _aff(stop) or (Aff.atom(stop.go) if stop.go else None)
        if f is None:
            raise Untranslatable("slicing request text by an int Go cannot express")
        x = self.go_of(v)
        h, p, n, t, cut, c = (self.fresh(b) for b in ("head", "pos", "neg", "at", "cut", "seen"))
        self.emit(self.unary(f, p, n, declare=True))
        self.emit(f'{{{{ {h} := {x} }}}}')
        cnt = self._char_tally(h)
        # k >= 0: t = len P - len N; k < 0: t = count - (len N - len P), or 0
        self.emit(f'{{{{ {t} := 0 }}}}{{{{ if ge (len {p}) (len {n}) }}}}{{{{ {t} = len (slice {p} (len {n})) }}}}'
                  f'{{{{ else if ge (len {cnt}) (len (slice {n} (len {p}))) }}}}'
                  f'{{{{ {t} = len (slice {cnt} (len (slice {n} (len {p})))) }}}}{{{{ end }}}}'
                  f'{{{{ {cut} := len {h} }}}}{{{{ {c} := "" }}}}{{{{ range $j := len {h} }}}}'
                  f'{{{{ if or (lt (index {h} $j) 128) (ge (index {h} $j) 192) }}}}{{{{ if eq (len {c}) {t} }}}}'
                  f'{{{{ {cut} = $j }}}}{{{{ break }}}}{{{{ end }}}}{{{{ {c} = print {c} "x" }}}}{{{{ end }}}}{{{{ end }}}}')
        return V(go=f"slice {h} 0 {cut}", kind="str")

    def _scan(self, hay: V, body) -> str:
        """Go that binds the string to a variable and ranges over its byte offsets; ``body(h, j, rest)`` writes the
        loop body, ``rest`` being the suffix of the string from offset ``j``. Literal needles compare as bytes,
        which for UTF-8 is what Python's comparison of characters decides."""
        x = self.go_of(hay)
        h, j, rest = self.fresh("hay"), self.fresh("j"), self.fresh("rest")
        return (f"{{{{ {h} := {x} }}}}{{{{ range {j} := len {h} }}}}{{{{ {rest} := slice {h} {j} }}}}"
                f"{body(h, j, rest)}{{{{ end }}}}")

    @staticmethod
    def _starts(rest: str, lit: str) -> str:
        k = len(lit.encode())
        return f"and (ge (len {rest}) {k}) (eq (slice {rest} 0 {k}) {_go_lit(lit)})"

    def substring_lowered(self, hay: V, lit: str) -> V | None:
        """``lit in (s | lower)`` for an ASCII ``lit``: a scan comparing each letter in either case. Exact because the
        only characters whose lower() holds ASCII are the ASCII ones, U+212A KELVIN SIGN (-> 'k') and U+0130 (-> 'i'
        and a combining dot, which no ASCII character of ``lit`` can follow): so ``lit`` must not hold a 'k', nor end
        in 'i'. None (refused by the caller) otherwise, and for a ``lit`` with upper-case letters (never found)."""
        if not lit.isascii() or lit != lit.lower() or "k" in lit or lit.endswith("i"):
            return C(False) if lit.isascii() and lit != lit.lower() else None
        if lit == "":
            return C(True)
        self._need_range_int(f"substring test {lit!r}")
        var = self.fresh("in")
        self.top_decls.append(f"{{{{ {var} := false }}}}")

        def body(h, j, rest):
            chars = []
            for k, ch in enumerate(lit):
                at = f"(slice {rest} {k} {k + 1})"
                chars.append(f"(or (eq {at} {_go_lit(ch)}) (eq {at} {_go_lit(ch.upper())}))" if ch.isalpha()
                             else f"(eq {at} {_go_lit(ch)})")
            return (f"{{{{ if ge (len {rest}) {len(lit)} }}}}{{{{ if and {' '.join(chars)} }}}}{{{{ {var} = true }}}}"
                    f"{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}")
        self.emit(f"{{{{ {var} = false }}}}" + self._scan(hay, body))
        return V(go=var, kind="bool")

    def split_piece(self, v: V, k: int) -> V:
        """``s.split(sep)[0]`` (the text before the first ``sep``, all of it without one) and ``s.split(sep)[-1]`` (the
        text after the last ``sep`` of Python's left-to-right, non-overlapping matches: after a match the next
        len(sep) - 1 offsets are skipped, and the piece starts at the next offset the scan reaches)."""
        sep = v.kind[len(_SPLIT):]
        self._need_range_int(f".split({sep!r})")
        n = len(sep.encode())
        if k == 0:
            cut, h = self.fresh("cut"), self.fresh("hay")
            self.emit(f"{{{{ {h} := {_paren(v.go)} }}}}{{{{ {cut} := len {h} }}}}"
                      + self._scan(V(go=h, kind="str"), lambda hh, j, rest: (
                          f"{{{{ if {self._starts(rest, sep)} }}}}{{{{ {cut} = {j} }}}}{{{{ break }}}}{{{{ end }}}}")))
            return V(go=f"slice {h} 0 {cut}", kind="str")
        start, skip, pend, h = self.fresh("start"), self.fresh("skip"), self.fresh("pend"), self.fresh("hay")
        self.emit(f"{{{{ {h} := {_paren(v.go)} }}}}{{{{ {start} := 0 }}}}{{{{ {skip} := \"\" }}}}"
                  f"{{{{ {pend} := false }}}}" + self._scan(V(go=h, kind="str"), lambda hh, j, rest: (
                      f"{{{{ if {skip} }}}}{{{{ {skip} = slice {skip} 1 }}}}{{{{ else }}}}"
                      f"{{{{ if {pend} }}}}{{{{ {start} = {j} }}}}{{{{ {pend} = false }}}}{{{{ end }}}}"
                      f"{{{{ if {self._starts(rest, sep)} }}}}{{{{ {pend} = true }}}}"
                      f"{{{{ {skip} = {_go_lit('x' * (n - 1))} }}}}{{{{ end }}}}{{{{ end }}}}"))
                  + f"{{{{ if {pend} }}}}{{{{ {start} = len {h} }}}}{{{{ end }}}}")
        return V(go=f"slice {h} {start}", kind="str")

    def substring(self, hay: V, lit: str) -> V:
        """``lit in s``: a flag set where some suffix of ``s`` starts with ``lit``."""
        if lit == "":
            return C(True)
        self._need_range_int(f"substring test {lit!r}")
        var = self.fresh("in")
        self.top_decls.append(f"{{{{ {var} := false }}}}")
        self.emit(f"{{{{ {var} = false }}}}" + self._scan(
            hay, lambda h, j, rest: f"{{{{ if {self._starts(rest, lit)} }}}}{{{{ {var} = true }}}}{{{{ break }}}}"
                                    f"{{{{ end }}}}"))
        return V(go=var, kind="bool")

    def replace(self, hay: V, old: str, new: V) -> V:
        """``s.replace(old, new)``: Python's left-to-right, non-overlapping replacement, built byte by byte with
        `print`; after a match the next len(old) - 1 offsets are skipped (a string of x counts them down)."""
        self._need_range_int(f".replace({old!r})")
        var, skip = self.fresh("repl"), self.fresh("skip")
        k = len(old.encode())
        pre = ""
        if new.kind == "out":  # text only Go's output produces (tojson): the replaced text is printed, not built
            saved, self.cur_dot = self.cur_dot, "<int>"  # inside the range `.` is the offset: read through a variable
            try:
                snippet = self._redot(new, new.extra or "", action=False)
            finally:
                self.cur_dot = saved
            if snippet is None:
                raise Untranslatable(".replace() by text only Go's output can produce, read where `.` changed")
            x = self.go_of(hay)
            skip = self.fresh("skip")

            def pbody(h, j, rest):
                return (f"{{{{ if {skip} }}}}{{{{ {skip} = slice {skip} 1 }}}}"
                        f"{{{{ else if {self._starts(rest, old)} }}}}{snippet}"
                        f'{{{{ {skip} = {_go_lit("x" * (k - 1))} }}}}'
                        f"{{{{ else }}}}{{{{ slice {rest} 0 1 }}}}{{{{ end }}}}")

            return V(kind="out", dot=self.cur_dot, extra=f'{{{{ {skip} := "" }}}}' + self._scan(V(go=x, kind="str"), pbody))
        if new.is_const:
            rep = _go_lit(new.const)
        else:  # bound before the range, where `.` is still what it reads
            rep = self.fresh("new")
            pre = f"{{{{ {rep} := {self.go_of(new)} }}}}"
        self.top_decls.append(f'{{{{ {var} := "" }}}}')

        def body(h, j, rest):
            return (f"{{{{ if {skip} }}}}{{{{ {skip} = slice {skip} 1 }}}}"
                    f"{{{{ else if {self._starts(rest, old)} }}}}{{{{ {var} = print {var} {rep} }}}}"
                    f'{{{{ {skip} = {_go_lit("x" * (k - 1))} }}}}'
                    f"{{{{ else }}}}{{{{ {var} = print {var} (slice {rest} 0 1) }}}}{{{{ end }}}}")

        self.emit(f'{pre}{{{{ {var} = "" }}}}{{{{ {skip} := "" }}}}' + self._scan(hay, body))
        return V(go=var, kind="str")

    def e_Test(self, e, scope):
        v = self.expr(e.node, scope)
        name = e.name
        if name in ("defined", "undefined"):
            if v.is_const:
                d = v.const is not UNDEF
            elif v.defined:
                r = V(go=v.defined, kind="bool")
                return r if name == "defined" else V(go=f"not {v.defined}", kind="bool")
            else:
                d = True
            return C(d if name == "defined" else not d)
        if name == "none":
            if v.is_const:
                return C(v.const is None)
            if v.go in self.__dict__.get("maybe_none", {}):  # a namespace attribute set to none or a sequence
                return V(go=f"not {self.maybe_none[v.go]}", kind="bool")
            if v.go in self.__dict__.get("none_flags", {}) and v.defined:  # last assigned none (_none_flag)
                return V(go=f"and {v.defined} {self.none_flags[v.go]}", kind="bool")
            if v.defined:  # an optional field: absent in Ollama's data reads as none in the probes' Jinja input
                return V(go=f"not {v.defined}", kind="bool")
            if v.kind == "any":  # a JSON value: only null is none (false, 0 and "" are not)
                return V(go=f"eq (printf \"%T\" {self.go_of(v)}) \"<nil>\"", kind="bool")
            if v.kind == "tools" or v.go in self.predeclared:
                return V(go=f"not {self.go_of(v)}", kind="bool")
            return C(False)
        if name in ("true", "false"):
            if v.is_const:
                return C(v.const is (name == "true"))
            if v.kind == "bool":
                return V(go=v.go if name == "true" else f"not {v.go}", kind="bool")
            return C(False)
        if v.kind.startswith(_SPLIT) or v.kind in ("dlist", "uplist"):  # a list built in the template
            return C(name in ("iterable", "sequence"))
        if v.kind == "folded" and name in ("string", "mapping", "iterable", "sequence", "boolean", "number", "integer"):
            return C(name in ("string", "iterable", "sequence"))  # `x | upper`: always a str in Jinja
        kinds = {"string": {"str"}, "mapping": MAPPING_KINDS, "iterable": SEQ_KINDS | MAPPING_KINDS | {"str"},
                 "sequence": SEQ_KINDS | {"str"}, "boolean": {"bool"}, "number": {"int"}, "integer": {"int"}}
        if name in kinds:
            if v.is_const:
                c = v.const
                py = {"string": isinstance(c, str), "mapping": isinstance(c, dict),
                      "iterable": isinstance(c, (list, tuple, dict, str)), "sequence": isinstance(c, (list, tuple, str)),
                      "boolean": isinstance(c, bool), "number": isinstance(c, (int, float)) and not isinstance(c, bool),
                      "integer": isinstance(c, int) and not isinstance(c, bool)}[name]
                return C(py)
            if v.kind == "any":
                return self.type_test(v, name)
            if v.kind == "ptype" and name == "string":  # a property's type: one string, or a list of them
                return V(go=f"eq (len {self.go_of(v)}) 1", kind="bool")
            if v.kind in ("ptype", "out"):
                return C(name in ("string", "iterable", "sequence"))
            return C(v.kind in kinds[name])
        if name in ("equalto", "eq", "sameas"):
            return self.compare(v, "eq", self.expr(e.args[0], scope))
        raise Untranslatable(f"the `is {name}` test")

    def type_test(self, v: V, name):
        """`is string` / `is mapping` on a JSON value of unknown type (tool-call arguments): Go's %T."""
        t = f"printf \"%T\" {self.go_of(v)}"
        go = {"string": f"eq ({t}) \"string\"", "mapping": f"eq (printf \"%.3s\" ({t})) \"map\"",
              "sequence": f"or (eq (printf \"%.2s\" ({t})) \"[]\") (eq ({t}) \"string\")",
              "iterable": f"or (eq (printf \"%.2s\" ({t})) \"[]\") (eq ({t}) \"string\") (eq (printf \"%.3s\" ({t})) \"map\")",
              "boolean": f"eq ({t}) \"bool\"", "number": f"eq ({t}) \"float64\"", "integer": f"eq ({t}) \"float64\""}[name]
        return V(go=go, kind="bool")

    def e_Add(self, e, scope):
        if not (self._is_markup(e.left) or self._is_markup(e.right)) \
                and (self._may_be_markup(e.left) or self._may_be_markup(e.right)):
            raise Untranslatable("`+` of a value that may be Markup (`|safe` kept in a variable: the other side is "
                                 "HTML-escaped)")
        if self._is_markup(e.left) or self._is_markup(e.right):
            # Markup + str HTML-escapes the str (markupsafe): folded when both sides are constants, else refused
            if any(not self._is_markup(x) and self._may_be_markup(x) for x in (e.left, e.right)):
                raise Untranslatable("`+` of |safe text and a value that may be Markup")
            a, b = self.expr(e.left, scope), self.expr(e.right, scope)
            if not (a.is_const and b.is_const and isinstance(a.const, str) and isinstance(b.const, str)):
                raise Untranslatable("`+` of |safe text and a request value (Markup HTML-escapes the other side)")
            from markupsafe import Markup, escape
            x = Markup(a.const) if self._is_markup(e.left) else escape(a.const)
            y = Markup(b.const) if self._is_markup(e.right) else escape(b.const)
            return V(const=str(x + y), kind="str", extra="markup")
        return self.arith(e, scope, lambda x, y: x + y, "+")

    def _markup_const(self, e, scope) -> bool:
        """Whether every operand of a `+` chain holding Markup is a constant (e_Add folds it with markupsafe)."""
        saved = len(self.out), self.n
        try:
            return all(self.expr(x, scope, probe=True).is_const for x in self._add_operands(e))
        except Untranslatable:
            return False
        finally:
            del self.out[saved[0]:]

    def markup_output(self, e, scope):
        """``'x' | safe + s + ...`` printed: markupsafe's Markup HTML-escapes every operand that is not Markup itself
        (``&``, ``<``, ``>``, ``'``, ``"`` as ``&amp;``, ``&lt;``, ``&gt;``, ``&#39;``, ``&#34;``; nothing else), so
        each operand is printed on its own: Markup as it is, a constant escaped here, request text by Go's ``html``
        one byte at a time (``html`` also turns NUL into U+FFFD, which markupsafe keeps: NUL bytes are printed as they
        are), tojson by an escaped copy of its JSON ``define``s (Go's json writes no NUL, so ``html`` of it is exact)."""
        from markupsafe import escape

        ops = self._add_operands(e)
        held = [self._markup_read(x, scope) for x in ops]  # a variable certainly holding Markup: printed as is
        if not any(held) and not any(self._is_markup(x) for x in ops):
            raise Untranslatable("`+` of a value that may be Markup (`|safe` kept in a variable: the other side is "
                                 "HTML-escaped)")
        for x, h in zip(ops, held):
            if h:
                self.print_value(self.expr(x, scope))
                continue
            if self._is_markup(x):  # `v | safe` (or Markup + ...): printed as it is
                self.output(x.node if isinstance(x, nodes.Filter) else x.expr, scope)
                continue
            if isinstance(x, nodes.Filter) and x.name == "tojson":
                self.emit(self._html_escaped(self.capture(lambda x=x: self.tojson(x, scope))))
                continue
            if self._may_be_markup(x):
                raise Untranslatable("`+` of a value that may be Markup (`|safe` kept in a variable: the other side "
                                     "is HTML-escaped)")
            v = self.expr(x, scope)
            if v.is_const and isinstance(v.const, str):
                self.emit(_text(str(escape(v.const))))
            elif v.kind == "str" and not v.is_const:
                self._need_range_int("HTML escaping (`|safe` text + a str: markupsafe escapes the str)")
                self.emit(self._scan(v, lambda h, j, rest: f"{{{{ if eq (index {rest} 0) 0 }}}}{{{{ slice {rest} 0 1 }}}}"
                                                           f"{{{{ else }}}}{{{{ html (slice {rest} 0 1) }}}}{{{{ end }}}}"))
            else:
                raise Untranslatable(f"`+` of |safe text and a {v.kind if not v.is_const else type(v.const).__name__} "
                                     "(Markup HTML-escapes the other side)")

    def _html_escaped(self, go: str) -> str:
        """Go text that prints markupsafe.escape() of what ``go`` prints: text escaped here, ``json`` through Go's
        ``html``, the JSON ``define``s it calls copied the same way (``<name>_html``); anything else is refused."""
        from markupsafe import escape

        while "{{{" in go:
            go = go.replace("{{{", '{{ "{" }}{{')
        toks = _go_actions(go)
        if toks is None:
            raise Untranslatable("HTML escaping of generated Go")
        out = []
        for k, t in toks:
            m = re.fullmatch(r'template "(pyjson_\w+)" (.+)', t) if k == "act" else None
            if k == "text":
                out.append(_text(str(escape(t))))
            elif m:
                out.append(f'{{{{ template "{self._html_define(m.group(1))}" {m.group(2)} }}}}')
            elif t.startswith("json "):
                out.append(f"{{{{ html ({t}) }}}}")
            elif t in ('"{"', '"{{"'):  # literal braces before an action
                out.append(_text(str(escape(t[1:-1]))))
            elif t.split(" ", 1)[0] in ("if", "else", "end", "range", "break", "continue") \
                    or re.match(r"\$\w+ :?= ", t):
                out.append(f"{{{{ {t} }}}}")
            else:
                raise Untranslatable(f"HTML escaping of what `{{{{ {t} }}}}` prints")
        return "".join(out)

    MARKUP_FILTERS = ("safe", "escape", "e", "forceescape", "urlize", "xmlattr")

    def _markup_read(self, x, scope) -> bool:
        """Whether ``x`` reads a variable that certainly holds Markup here (its value came from `| safe`)."""
        if not (isinstance(x, nodes.Name) or isinstance(x, nodes.Getattr) and isinstance(x.node, nodes.Name)) \
                or not self._may_be_markup(x):
            return False
        saved = len(self.out)
        try:
            return self.expr(x, scope, probe=True).markup
        except Untranslatable:
            return False
        finally:
            del self.out[saved:]

    def _may_be_markup(self, e) -> bool:
        """Whether the Jinja expression ``e`` may evaluate to Markup, or hold a value that may: it holds a Markup
        filter, or a name (``ns.attr``) that some `set`, `for` or macro call may bind to such an expression."""
        names = getattr(self, "_markup_names", None)
        if names is None:
            names = self._markup_names = self._find_markup_names()
        return self._holds_markup(e, names)

    def _holds_markup(self, e, names) -> bool:
        for n in [e, *e.find_all((nodes.Filter, nodes.MarkSafe, nodes.MarkSafeIfAutoescape, nodes.Name,
                                  nodes.Getattr))]:
            if isinstance(n, (nodes.MarkSafe, nodes.MarkSafeIfAutoescape)) \
                    or isinstance(n, nodes.Filter) and n.name in self.MARKUP_FILTERS \
                    or isinstance(n, nodes.Name) and n.name in names \
                    or isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and f"{n.node.name}.{n.attr}" in names:
                return True
        return False

    def _find_markup_names(self) -> set:
        root = getattr(self, "_ast", None)
        if root is None:
            return set()
        macros = {m.name: m for m in root.find_all(nodes.Macro)}

        def targets(t):
            if isinstance(t, nodes.NSRef):
                return {f"{t.name}.{t.attr}"}
            return {n.name for n in ([t] if isinstance(t, nodes.Name) else t.find_all(nodes.Name))}

        binds = []  # (names bound, expression bound to them)
        for a in root.find_all(nodes.Assign):
            binds.append((targets(a.target), a.node))
        for f in root.find_all(nodes.For):
            binds.append((targets(f.target), f.iter))
        for c in root.find_all(nodes.Call):
            m = macros.get(c.node.name) if isinstance(c.node, nodes.Name) else None
            if m is not None:
                binds += [({p.name}, a) for p, a in zip(m.args, c.args)]
                binds += [({k.key}, k.value) for k in c.kwargs]
        names: set = set()
        while True:
            more = {n for ts, x in binds if self._holds_markup(x, names) for n in ts} - names
            if not more:
                return names
            names |= more

    @staticmethod
    def _add_operands(e) -> list:
        """The operands of a chain of `+`, left to right (Markup escapes each str operand on its own)."""
        return [y for x in (e.left, e.right) for y in (Translator._add_operands(x) if isinstance(x, nodes.Add) else [x])]

    def _html_define(self, name: str) -> str:
        h = name + "_html"
        if name == "pyjson_str":
            self.defs[h] = _pyjson_str_def(html=True)
        if h not in self.defs:
            self.defs[h] = ""  # reserved: recursive JSON defines call themselves
            body = self.defs[name]
            head = f'{{{{ define "{name}" }}}}'
            assert body.startswith(head) and body.endswith("{{ end }}"), name
            self.defs[h] = f'{{{{ define "{h}" }}}}{self._html_escaped(body[len(head):-len("{{ end }}")])}{{{{ end }}}}'
        return h

    @classmethod
    def _is_markup(cls, e) -> bool:
        """Whether the Jinja expression ``e`` evaluates to markupsafe's Markup (``'x' | safe``, and ``+`` with it)."""
        if isinstance(e, nodes.Filter) and e.name == "safe":
            return True
        if isinstance(e, nodes.Add):
            return cls._is_markup(e.left) or cls._is_markup(e.right)
        return isinstance(e, nodes.MarkSafe)

    def e_Sub(self, e, scope):
        return self.arith(e, scope, lambda x, y: x - y, "-")

    def e_Mul(self, e, scope):
        return self.arith(e, scope, lambda x, y: x * y, "*")

    def e_Mod(self, e, scope):
        return self.arith(e, scope, lambda x, y: x % y, "%")

    def e_Div(self, e, scope):
        return self.arith(e, scope, lambda x, y: x / y, "/")

    def e_FloorDiv(self, e, scope):
        return self.arith(e, scope, lambda x, y: x // y, "//")

    def arith(self, e, scope, fn, sym):
        a, b = self.expr(e.left, scope), self.expr(e.right, scope)
        a, b = (self.char_count(v.extra.go) if v.go is None and isinstance(v.extra, _StrLen) else v for v in (a, b))
        if a.is_const and b.is_const:
            try:
                return C(fn(a.const, b.const))
            except TypeError:
                raise Untranslatable(f"{a.const!r} {sym} {b.const!r}") from None
        if sym == "+" and (a.kind in ("str", "ptype", "any", "out") or b.kind in ("str", "ptype", "any", "out")):
            return self.concat([a, b])
        fa, fb = _aff(a), _aff(b)
        if sym in "+-" and fa is not None and fb is not None:
            f = fa.add(fb, 1 if sym == "+" else -1)
            return V(go=None, kind="int", extra=f)
        raise Untranslatable(f"arithmetic `{sym}` on request values")

    def concat(self, vs):
        if any(v.kind == "out" for v in vs):
            vs = [self.snapshot(v) if self._reads_predeclared(v) else v for v in vs]
            ts = [self.as_text(v).truthy for v in vs]
            truthy = "true" if "true" in ts else ("or " + " ".join(f"({t})" for t in ts) if all(ts) else None)
            # pieces written here, and texts whose `.Field`s are this `.`'s: the whole reads `.` as it is here
            dot = self.cur_dot if all(v.kind != "out" or self._dot_safe(v, v.extra or "") for v in vs) else None
            return V(kind="out", extra="".join(self.capture(lambda v=v: self.print_value(v)) for v in vs),
                     truthy=truthy, dot=dot)
        parts = []
        for v in vs:
            if v.is_const and v.const == "":
                continue
            if v.kind == "ptype":
                v = V(go=f"index {self.go_of(v)} 0", kind="str")
            if not v.is_const and v.kind not in ("str", "int", "any"):
                raise Untranslatable(f"string concatenation with a {v.kind}")
            parts.append(_go_lit(_py_str(v.const)) if v.is_const else self.go_of(v))
        if all(p.startswith('"') for p in parts):
            return C("".join(v.const for v in vs if v.is_const))
        return V(go="print " + " ".join(parts), kind="str") if len(parts) > 1 else V(go=parts[0], kind="str")

    def e_Concat(self, e, scope):
        vs = [self.expr(n, scope) for n in e.nodes]
        if all(v.is_const for v in vs):
            return C("".join(_py_str(v.const) for v in vs))
        return self.concat([C(_py_str(v.const)) if v.is_const else v for v in vs])

    def e_Neg(self, e, scope):
        v = self.expr(e.node, scope)
        if v.is_const:
            return C(-v.const)
        raise Untranslatable("negating a request value")

    def e_Filter(self, e, scope):
        if e.node is None:
            raise Untranslatable("filter block")
        v = self.expr(e.node, scope)
        args = [self.expr(a, scope) for a in e.args]
        kwargs = {k.key: self.expr(k.value, scope) for k in e.kwargs}
        name = e.name
        if v.is_const and _holds_v(v.const) and name not in ("default", "d"):
            raise Untranslatable(f"the `{name}` filter on a dict literal of request values")
        if v.is_const and name not in ("tojson",) and all(a.is_const for a in args) and all(k.is_const for k in kwargs.values()):
            return C(self.const_filter(name, v.const, [a.const for a in args], {k: x.const for k, x in kwargs.items()}))
        if v.kind == "out" and name in ("string", "list"):
            return v
        if name in ("trim", "strip") and self.range_int and v.kind == "str" and not args and not kwargs:
            return self.strip(v, "strip")
        if name == "safe" and v.kind in ("str", "out"):
            import dataclasses

            return dataclasses.replace(v, markup=True)
        if name in ("trim", "strip") and not args and not kwargs and v.kind == "out" and _trim_is_identity(v.extra):
            return v  # the text starts and ends with literal non-whitespace (Gemma 4's `declaration:...}`): exact
        if name in ("trim", "strip") or (name in ("safe",)):
            if name != "safe":
                self.note("`trim` is not applied: Go templates cannot trim, so content with surrounding whitespace "
                          "keeps it")
            return v
        if name == "string":
            if v.kind in ("str", "int"):
                return v
            if v.kind == "ptype":
                return V(go=f"index {self.go_of(v)} 0", kind="str")
            if v.kind == "any":
                # a JSON value: printed as Python's str() of it (True, None, a list's repr) by generated defines
                # (print_value); inside an expression it is still Go's formatting
                self.note("`| string` of a value of unknown type uses Go's formatting inside an expression")
                return V(go=self.go_of(v), kind="any", extra="pystr", defined=v.defined)
            if v.kind in _PyRepr.KINDS:  # Python's str() of a tool dict (Apriel): repr written by generated defines
                return self.pyrepr(v)
            raise Untranslatable(f"the string filter on a {v.kind}")
        if name == "replace" and len(args) == 2 and not kwargs and v.kind in ("str", "out") and args[0].is_const \
                and isinstance(args[0].const, str) and args[0].const \
                and (args[1].is_const and isinstance(args[1].const, str) or args[1].kind in ("str", "out")):
            return self.replace(v, args[0].const, args[1])  # `s | replace(a, b)`: as `s.replace(a, b)` (Kimi-K3's escape_attr)
        if name == "replace" and len(args) == 2 and v.kind == "int" and not v.is_const and args[0].is_const \
                and isinstance(args[0].const, str) and args[0].const \
                and not any(c.isalnum() or c in "+-." for c in args[0].const):
            return v  # a number's text (digits, sign, point, exponent, inf / nan) holds no such text
        if name in ("upper", "lower") and v.kind in ("str", "ptype", "out", "any"):
            # compared with constants byte by byte (casefold_compare); used as a value it is built as a Go string
            # (case_mapped, Go >= 1.24)
            base = V(go=f"index {self.go_of(v)} 0", kind="str") if v.kind == "ptype" else v
            return V(go=None, kind="folded", extra=(base, name, v))
        if name == "map" and v.kind == "any" and len(args) == 1 and not kwargs and args[0].is_const \
                and args[0].const in ("upper", "lower"):
            return self.case_mapped_list(v, args[0].const)
        if name == "list" and v.kind == "uplist":
            return v
        if name in ("length", "count"):
            if v.kind == "selected":  # how many elements selectattr keeps: counted as a string of x
                seq, attr, val = v.extra
                f = FIELDS[ELEM[seq.kind]].get(attr)
                if f is None or not isinstance(val, (str, int)) or isinstance(val, bool) or f[1] not in ("str", "int"):
                    raise Untranslatable(f"length of selectattr on {attr!r}")
                var = self.fresh("nsel")
                self.emit(f'{{{{ {var} := "" }}}}{{{{ range $m := {self.go_of(seq)} }}}}{{{{ if eq $m.{f[0]} '
                          f'{_go_lit(val)} }}}}{{{{ {var} = print {var} "x" }}}}{{{{ end }}}}{{{{ end }}}}')
                return V(go=f"len {var}", kind="int", extra=Aff.atom(f"len {var}"))
            if v.kind in SEQ_KINDS:
                g = f"len {self.go_of(v)}"
                flag = self.__dict__.get("maybe_none", {}).get(v.go)
                if flag is not None:  # none: Jinja's TypeError, an error here too (inside the test: `and` stops early)
                    g = f'and (or {flag} (index "" 1)) ({g})'
                return V(go=g, kind="int", extra=Aff.atom(g, self.go_of(v)))
            if v.kind == "out":  # text built by `print` (materialize): then as request text
                v = self.materialize(v)
            if v.kind == "str":  # bytes in Go, code points in Python: counted where the count matters (compare)
                return V(go=None, kind="int", extra=_StrLen(self.go_of(v)))
            if v.kind in set(MAPS) | {"any"}:  # any: a JSON string, list or object (Go's len takes each)
                return V(go=f"len {self.go_of(v)}", kind="int")
            if v.kind == "ptype":
                return self.ptype_length(v)
            raise Untranslatable(f"length of a {v.kind}")
        if name == "default":
            d = args[0] if args else C("")
            if v.is_const:
                return d if v.const is UNDEF else v
            if v.defined and v.defined == v.go and d.is_const and d.const == [] and v.kind in SEQ_KINDS:
                return V(go=v.go, kind=v.kind)  # an absent list field is Go's nil slice: as empty as [] everywhere
            if v.defined:
                var = self.fresh("dflt")
                self.emit(f"{{{{ {var} := {self.go_of(d)} }}}}{{{{ if {v.defined} }}}}{{{{ {var} = {self.go_of(v)} }}}}{{{{ end }}}}")
                return V(go=var, kind=v.kind)
            return v
        if name == "list" and v.kind in SEQ_KINDS | {"selected", "vlist"}:
            return v
        if name == "rejectattr" and v.kind in SEQ_KINDS and len(args) == 3 and all(a.is_const for a in args) \
                and args[1].const in ("equalto", "eq", "==") and ELEM[v.kind] in FIELDS \
                and isinstance(args[0].const, str) and isinstance(args[2].const, (str, int)) \
                and FIELDS[ELEM[v.kind]].get(args[0].const, (None, None))[1] in ("str", "int"):
            # the elements whose attribute differs: a comprehension (vlist), re-ranged where it is read
            nm = self.fresh("rej")[1:]
            cond = nodes.Compare(nodes.Getattr(nodes.Name(nm, "load"), args[0].const, "load"),
                                 [nodes.Operand("ne", nodes.Const(args[2].const))])
            return V(go=None, kind="vlist", extra=(nm, v, cond, nodes.Name(nm, "load"), scope))
        if name == "selectattr" and v.kind in SEQ_KINDS and len(args) == 3 and all(a.is_const for a in args) \
                and args[1].const in ("equalto", "eq", "==") and ELEM[v.kind] in FIELDS:
            return V(go=v.go, kind="selected", extra=(v, args[0].const, args[2].const))
        if name == "map" and v.kind == "tools" and not args and set(kwargs) == {"attribute"} \
                and kwargs["attribute"].const == "function":
            return V(go=v.go, kind="fnlist")  # `tools | map(attribute='function')`: written by tojson only
        if name == "items" and v.kind in MAPS:
            return v
        if name == "tojson":
            if v.go in self.__dict__.get("maybe_none", {}):
                raise Untranslatable("tojson of a namespace attribute that may be none or a sequence")
            return self.snippet(lambda: self.tojson(e, scope), truthy="true")  # JSON is never empty
        if name == "join" and v.kind in ("list", "strlist") and not kwargs and len(args) <= 1 and v.go \
                and re.fullmatch(r"\$\w*(\.\w+)*\.(Enum|Required)", v.go) \
                and all(a.is_const and isinstance(a.const, str) for a in args):  # the request's own list fields
            return self.snippet(lambda: self.join_list(v, args[0].const if args else ""))
        if name == "join" and v.kind == "ptype" and len(args) <= 1 and not kwargs \
                and re.search(r"\.[A-Z]\w*$", v.go or "") \
                and all(a.is_const and isinstance(a.const, str) for a in args):
            return self.join_seq(v, args[0].const if args else "")
        if name == "join" and v.kind == "any" and v.go and not kwargs and len(args) <= 1 and self._schema_rec() \
                and all(a.is_const and isinstance(a.const, str) for a in args):
            # a list of a JSON schema inside a tool's schema (GigaChat's `schema.enum | join(' | ')` in items):
            # joined as a property's enum is where it is a JSON list; anything else (a string, whose characters
            # Jinja would join, a mapping, null) stops the template with an error, never other text
            lv = self.fresh("lst")
            self.emit(f"{{{{ {lv} := {self.go_of(v)} }}}}{{{{ if ne (printf \"%T\" {lv}) \"[]interface {{}}\" }}}}"
                      f"{{{{ index \"\" 1 }}}}{{{{ end }}}}")
            return self.snippet(lambda: self.join_list(V(go=lv, kind="list"), args[0].const if args else ""))
        raise Untranslatable(f"the `{name}` filter on a request value")

    def join_list(self, v: V, sep: str):
        """``seq | join(sep)`` of a request list (a property's ``enum``): Jinja joins ``str()`` of each element,
        Python's str() of a JSON value (written by the generated pystr defines; a string as it is)."""
        i, x = self.index_var("j"), self.fresh("e")
        if v.kind == "strlist":
            item = f"{{{{ {x} }}}}"
        else:
            self.defs.update(_py_str_defs(self.range_int))
            item = f'{{{{ template "pystr_any" {x} }}}}'
        self.emit(f"{{{{ range {i}, {x} := {self.go_of(v)} }}}}{{{{ if {i} }}}}{_text(sep)}{{{{ end }}}}{item}{{{{ end }}}}")

    def join_seq(self, v: V, sep: str) -> V:
        """`type | join(sep)` of a property's type (a list of names; one name is a one-element list, whose join is
        that name): the names with `sep` between them, kept as the Go that prints it (a text value)."""
        k, el = self.fresh("k"), self.fresh("e")
        go = f"{{{{ range {k}, {el} := {self.go_of(v)} }}}}{{{{ if {k} }}}}{_text(sep)}{{{{ end }}}}{{{{ {el} }}}}{{{{ end }}}}"
        return V(kind="out", extra=go, truthy=None, dot=self.cur_dot)

    def ptype_length(self, v: V) -> V:
        """`type | length` of a property's type (one string, or a list of them; one name is the string form, as
        Ollama writes it back): the list's length, or the one name's length in code points (Go >= 1.24)."""
        g, var = self.go_of(v), self.fresh("plen")
        self.emit(f"{{{{ {var} := len {g} }}}}")
        if self.range_int:
            self.emit(f"{{{{ if eq {var} 1 }}}}")
            n = self.char_count(f"index {g} 0")
            self.emit(f"{{{{ {var} = {n.go} }}}}{{{{ end }}}}")
        else:  # one name without a code-point count: an error, never other text
            self.emit(f'{{{{ if eq {var} 1 }}}}{{{{ index "" 1 }}}}{{{{ end }}}}')
            self.note("`| length` of a property type that is one name stops the template (it needs Go >= 1.24)")
        return V(go=var, kind="int", extra=Aff.atom(var))

    @staticmethod
    def const_filter(name, x, args, kwargs):
        import json as _json

        if x is UNDEF and name not in ("default", "d"):
            x = ""
        f = {
            "trim": lambda: x.strip(), "length": lambda: len(x), "count": lambda: len(x), "string": lambda: _py_str(x),
            "lower": lambda: x.lower(), "upper": lambda: x.upper(), "list": lambda: list(x), "safe": lambda: x,
            "default": lambda: (args[0] if args else "") if x is UNDEF else x, "d": lambda: (args[0] if args else "") if x is UNDEF else x,
            "join": lambda: (args[0] if args else "").join(_py_str(i) for i in x), "int": lambda: int(x),
            "items": lambda: list(x.items()), "first": lambda: x[0], "last": lambda: x[-1],
            "tojson": lambda: _json.dumps(x, ensure_ascii=False, indent=kwargs.get("indent")),
            "capitalize": lambda: x.capitalize(), "title": lambda: x.title(),
            "replace": lambda: x.replace(args[0], args[1]),
        }.get(name)
        if f is None:
            raise Untranslatable(f"the `{name}` filter")
        return f()

    def e_Call(self, e, scope):
        if isinstance(e.node, nodes.Getattr):
            return self.method(e, scope)
        if isinstance(e.node, nodes.Name):
            f = scope.get(e.node.name)
            if f is not None and f.is_const and f.const == "__strftime__":
                fmt = self.expr(e.args[0], scope)
                if not fmt.is_const:
                    raise Untranslatable("strftime_now with a request format")
                return self.strftime(fmt.const)
            if f is not None and f.is_const and f.const == "__raise__":
                return C("")
            if e.node.name in self.macros and f is None:
                m = self.macros[e.node.name]
                return self.snippet(lambda: self.inline_macro(m, e, scope))
        raise Untranslatable(f"the call {getattr(e.node, 'name', '?')}()")

    def strftime(self, fmt: str) -> V:
        """strftime_now(fmt) from Ollama's currentDate (YYYY-MM-DD), re-formatted with slice / if chains."""
        d = self.fresh("date")
        self.emit(f"{{{{ {d} := currentDate }}}}")
        parts, i = [], 0
        while i < len(fmt):
            if fmt[i] == "%" and i + 1 < len(fmt):
                c = fmt[i + 1]
                i += 2
                if c == "Y":
                    parts.append(f"(slice {d} 0 4)")
                elif c == "m":
                    parts.append(f"(slice {d} 5 7)")
                elif c == "d":
                    parts.append(f"(slice {d} 8 10)")
                elif c in "bB":
                    names = _MONTHS if c == "b" else _MONTHS_LONG
                    mv = self.fresh("month")
                    chain = "".join(f"{{{{ {'if' if k == 0 else 'else if'} eq (slice {d} 5 7) \"{k + 1:02d}\" }}}}"
                                    f"{{{{ {mv} = \"{n}\" }}}}" for k, n in enumerate(names)) + "{{ end }}"
                    self.emit(f"{{{{ {mv} := \"\" }}}}" + chain)
                    parts.append(mv)
                elif c == "%":
                    parts.append('"%"')
                else:
                    raise Untranslatable(f"strftime_now('%{c}')")
            else:
                j = fmt.find("%", i)
                j = len(fmt) if j < 0 else j
                parts.append(_go_str(fmt[i:j]))
                i = j
        return V(go="print " + " ".join(parts), kind="str")

    def method(self, e, scope):
        obj = self.expr(e.node.node, scope)
        name = e.node.attr
        args = [self.expr(a, scope) for a in e.args]
        if obj.is_const and all(a.is_const for a in args):
            c = obj.const
            if c is UNDEF:
                raise Untranslatable(f".{name}() of an undefined value")
            fn = getattr(c, name, None) if name in ("strip", "lstrip", "rstrip", "split", "startswith", "endswith",
                                                     "upper", "lower", "replace", "get", "keys", "values", "items",
                                                     "title", "capitalize", "format", "join") else None
            if fn is None:
                raise Untranslatable(f"the method .{name}()")
            return C(fn(*[a.const for a in args]))
        if obj.kind in ("str", "any", "out"):
            if name in ("strip", "lstrip", "rstrip") and self.range_int and obj.kind == "str" and (
                    not args or len(args) == 1 and args[0].is_const and isinstance(args[0].const, str)):
                return self.strip(obj, name, args[0].const if args else None)
            if name in ("strip", "lstrip", "rstrip"):
                self.note("`strip` is not applied: Go templates cannot trim, so content with surrounding whitespace "
                          "keeps it")
                return obj
            if name == "split" and args and args[0].is_const and args[0].const in THINK_TAGS:
                self.note("reasoning tags never occur in .Content: Ollama keeps the reasoning in .Thinking")
                return V(const=[obj], kind="strsplit")
            if (name == "replace" and len(args) == 2 and args[0].is_const and isinstance(args[0].const, str)
                    and args[0].const and (args[1].is_const and isinstance(args[1].const, str) or args[1].kind in ("str", "out"))):
                return self.replace(obj if obj.kind != "any" else V(go=self.go_of(obj), kind="str"), args[0].const,
                                    args[1])
            if name == "endswith" and obj.kind == "out" and len(args) == 1 and args[0].is_const \
                    and isinstance(args[0].const, str):
                r = self.text_endswith(obj, args[0].const)
                if r is not None:
                    return r
                if EARLIER in (obj.extra or ""):
                    raise Untranslatable("the end of a text read inside the loop that appends to it")
            if name in ("startswith", "endswith") and len(args) == 1 and args[0].is_const and isinstance(args[0].const, str):
                # byte slices of the string (equal prefixes/suffixes are equal bytes); `and` guards short strings
                x, lit = self.go_of(obj), args[0].const
                k = len(lit.encode())
                part = f"slice {x} 0 {k}" if name == "startswith" else f"slice {x} (len (slice {x} {k}))"
                return V(go=f"and (ge (len {x}) {k}) (eq ({part}) {_go_lit(lit)})", kind="bool")
            if name in ("startswith", "endswith") and len(args) == 1 and not args[0].is_const \
                    and args[0].kind in ("str", "out"):
                # a request string or a variable holding text (LFM2.5's `content.endswith(_cfm_tag)`): the same byte
                # slices, by the other string's length (a whole UTF-8 string matches only at a character boundary)
                x, y = self.go_of(obj), self.go_of(args[0])
                part = f"slice {x} 0 (len {y})" if name == "startswith" else f"slice {x} (len (slice {x} (len {y})))"
                return V(go=f"and (ge (len {x}) (len {y})) (eq ({part}) {y})", kind="bool")
        if name == "get" and obj.kind in FIELDS and args and args[0].is_const:
            v = self.getitem(obj, args[0], scope)
            if v.is_const and v.const is UNDEF:
                return args[1] if len(args) > 1 else C(None)
            if len(args) > 1 and v.defined and v.kind == "str" and args[1].is_const and isinstance(args[1].const, str) \
                    and args[1].const:
                # `message.get('name', 'unknown')`: an optional field Ollama leaves empty is the absent key (as
                # `is defined` reads it), so the default where it is empty
                return V(go=f"or {self.go_of(v)} {_go_lit(args[1].const)}", kind="str")
            return v
        if name == "get" and obj.kind == "any" and not obj.is_const and obj.go and 1 <= len(args) <= 2 \
                and args[0].is_const and isinstance(args[0].const, str):
            return self.any_get(obj, args[0].const, args[1] if len(args) > 1 else C(None))
        if name == "items" and obj.kind in MAPS:
            return obj
        if name == "pop" and obj.kind == "strqueue" and len(args) == 1 and args[0].is_const and args[0].const == 0:
            return self.queue_pop(obj)
        if name == "split" and obj.kind == "any" and not obj.is_const and obj.go and len(args) == 1 \
                and args[0].is_const and isinstance(args[0].const, str) and args[0].const and not e.kwargs:
            # a JSON value's split (GigaChat's `val['description'].split('\n')` in items): Jinja fails unless it is
            # a string, and so does Go here (an error, never other text); a string splits as request text does
            sv = self.fresh("str")
            self.emit(f"{{{{ {sv} := {self.go_of(obj)} }}}}{{{{ if ne (printf \"%T\" {sv}) \"string\" }}}}"
                      f"{{{{ index \"\" 1 }}}}{{{{ end }}}}")
            obj = V(go=f"print {sv}", kind="str")
        if name == "split" and obj.kind == "str" and len(args) == 1 and args[0].is_const \
                and isinstance(args[0].const, str) and args[0].const and not e.kwargs:
            # the list of pieces is never built: its first / last piece and its pieces in turn are read by scanning
            # the text (split_piece, for_split); the kind carries the separator through variables
            return V(go=self.go_of(obj), kind=_SPLIT + args[0].const)
        raise Untranslatable(f"the method .{name}() on a {obj.kind}")

    def any_get(self, obj: V, key: str, default: V) -> V:
        """`x.get('k')` / `x.get('k', d)` of a JSON value of the request (a property's `items`): Go's index reads
        the key of a map (nil when absent: none, as Jinja's get gives; a JSON null is none too). x that is not a
        mapping fails in Go's index as Jinja's call of an undefined method does (an error, never other text). A
        default d (a str, int or bool constant) is taken where the key is absent, tested by ranging the keys."""
        x = self.go_of(obj)
        got = V(go=f"index {_paren(x)} {_go_lit(key)}", kind="any")
        if default.is_const and default.const is None:
            return got
        if default.is_const and (default.const == {} or default.const == []) and type(default.const) in (dict, list):
            # `.get('properties', {})`: nil where absent (Go ranges nil as nothing; it is falsy, as {} and [] are),
            # so a value that is there must be a JSON object (a list): anything else, null included, stops the
            # template with an error (Jinja's value would not be the empty default), never other text
            r = self.fresh("got")
            t = f'(printf "%T" {r})'
            want = 'eq (printf "%.3s" ' + t + ') "map"' if default.const == {} else f'eq {t} "[]interface {{}}"'
            self.emit(f"{{{{ {r} := {got.go} }}}}{{{{ if not (or ({want}) (eq (printf \"%T\" {r}) \"<nil>\")) }}}}"
                      f"{{{{ index \"\" 1 }}}}{{{{ end }}}}")
            self.emit(self._null_key_error(x, key))
            return V(go=r, kind="args" if default.const == {} else "list")
        if not default.is_const and default.kind == "any" and default.go:
            # `val.get("default", val.get("defalut_value"))`: another JSON value where the key is absent
            m, has, r = self.fresh("obj"), self.fresh("has"), self.fresh("got")
            self.emit(f"{{{{ {m} := {x} }}}}{{{{ {r} := index {m} {_go_lit(key)} }}}}{{{{ {has} := false }}}}"
                      f"{{{{ range $gk, $_ := {m} }}}}{{{{ if eq $gk {_go_lit(key)} }}}}{{{{ {has} = true }}}}{{{{ end }}}}"
                      f"{{{{ end }}}}{{{{ if not {has} }}}}{{{{ {r} = {self.go_of(default)} }}}}{{{{ end }}}}")
            return V(go=r, kind="any")
        if not (default.is_const and type(default.const) in (str, int, bool)):
            raise Untranslatable(".get() of a JSON value with a default other than a str, int or bool constant")
        m, has, r = self.fresh("obj"), self.fresh("has"), self.fresh("got")
        d = default.const
        lit = _go_lit(d) if isinstance(d, str) else ("true" if d is True else "false" if d is False else str(d))
        self.emit(f"{{{{ {m} := {x} }}}}{{{{ {r} := index {m} {_go_lit(key)} }}}}{{{{ {has} := false }}}}"
                  f"{{{{ range $gk, $_ := {m} }}}}{{{{ if eq $gk {_go_lit(key)} }}}}{{{{ {has} = true }}}}{{{{ end }}}}"
                  f"{{{{ end }}}}{{{{ if not {has} }}}}{{{{ {r} = {lit} }}}}{{{{ end }}}}")
        return V(go=r, kind="any")

    def any_has_key(self, hay: V, key: str) -> V:
        """`'k' in x` for a JSON schema value inside a recursive macro on one (GigaChat's `"description" in val`):
        a key test where x is a JSON object (its keys ranged); x of another type (a string, where Jinja would test a
        substring, a list, null) stops the template with an error, never other text."""
        m, has = self.fresh("obj"), self.fresh("has")
        self.emit(f"{{{{ {m} := {self.go_of(hay)} }}}}{{{{ if ne (printf \"%.3s\" (printf \"%T\" {m})) \"map\" }}}}"
                  f"{{{{ index \"\" 1 }}}}{{{{ end }}}}{{{{ {has} := false }}}}{{{{ range $gk, $_ := {m} }}}}"
                  f"{{{{ if eq $gk {_go_lit(key)} }}}}{{{{ {has} = true }}}}{{{{ end }}}}{{{{ end }}}}")
        return V(go=has, kind="bool")

    def _null_key_error(self, x: str, key: str) -> str:
        """Go that stops the template where the JSON object x has the key with a null value (Jinja's get gives none
        there, not the default)."""
        return (f"{{{{ range $gk, $gv := {x} }}}}{{{{ if and (eq $gk {_go_lit(key)}) (eq (printf \"%T\" $gv) "
                f"\"<nil>\") }}}}{{{{ index \"\" 1 }}}}{{{{ end }}}}{{{{ end }}}}")

    def pyrepr(self, v: V) -> V:
        """``v | string`` of a tool (or a part of one): Python's repr of the dict Ollama's value serializes to,
        by generated defines (:class:`_PyRepr`); strings are quoted and escaped by a scan of their bytes (Go >= 1.24)."""
        self._need_range_int("Python's str() of a dict (repr quoting of its strings)")
        self.note(_PyRepr.NOTE)
        name = _PyRepr(self.defs).template(v.kind)
        go = self.go_of(v)
        return self.snippet(lambda: self.emit(f'{{{{ template "{name}" {go} }}}}'), truthy="true")

    # ---- tojson --------------------------------------------------------------------------------------------
    def tojson(self, e: nodes.Filter, scope):
        v = self.expr(e.node, scope)
        kwargs = {k.key: self.expr(k.value, scope) for k in e.kwargs}
        indent = kwargs.get("indent", self.expr(e.args[0], scope) if e.args else C(None))
        if not indent.is_const or any(k not in ("indent", "ensure_ascii") for k in kwargs):
            raise Untranslatable("tojson with options other than indent")
        indent = indent.const
        ea = kwargs.get("ensure_ascii", C(False))
        if not ea.is_const:
            raise Untranslatable("tojson with ensure_ascii set by the request")
        ascii_ = bool(ea.const) and ea.const is not UNDEF
        if v.is_const and _holds_v(v.const):
            return self.emit(self.tojson_literal(v.const, indent, 0))
        if v.is_const:
            import json as _json

            return self.emit(_text(_json.dumps(v.const, ensure_ascii=ascii_, indent=indent)))
        if ascii_:  # non-ASCII characters as \\uXXXX (Reka-Edge): the JSON text re-read byte by byte (Go >= 1.24)
            self._need_range_int("tojson(ensure_ascii=True)")
        if v.kind == "str":
            if ascii_ or self.range_int:  # Python's escapes (pyjson_str, pyjson_ascii): Go >= 1.24
                self.note(RANGE_INT_NOTE)
                return self.emit(_PyJSON(self.defs, indent, ascii_, exact=self.range_int).js(self.go_of(v)))
            self.note("strings are JSON-escaped by Go: <, > and & become \\u003c, \\u003e, \\u0026")
            return self.emit(f"{{{{ json {self.go_of(v)} }}}}")
        if v.kind in ("tool", "fn", "params", "property", "props", "args", "any", "tools", "strlist", "list", "ptype",
                      "tcall", "tcfn", "tcalls", "proplist", "fnlist"):
            self.note("JSON is written with Python's spacing by generated templates" + (
                "" if self.range_int else "; strings inside are escaped by Go's json (<, > and & "
                                          "become \\u003c, \\u003e, \\u0026)"))
            if self.range_int:
                self.note(RANGE_INT_NOTE)
            name = _PyJSON(self.defs, indent, ascii_, exact=self.range_int).template(v.kind, 0)
            return self.emit(f"{{{{ template \"{name}\" {self.go_of(v)} }}}}")
        raise Untranslatable(f"tojson of a {v.kind}")

    JSON_KINDS = ("tool", "fn", "params", "property", "props", "args", "any", "tools", "strlist", "list", "ptype",
                  "tcall", "tcfn", "tcalls", "proplist", "fnlist")

    def tojson_literal(self, x, indent, d: int) -> str:
        """Go text writing ``json.dumps(x, ensure_ascii=False, indent=indent)`` (transformers' tojson) for a dict
        literal with constant string keys that holds request values (``{"content": msg.content} | tojson``), nested
        ``d`` levels deep: the JSON skeleton written here, in the literal's key order (a Python dict keeps it), each
        request value spliced in as tojson writes it on its own (Go's json for a string, the generated defines for
        Ollama's structs)."""
        import json as _json

        if indent is not None and (type(indent) is not int or indent < 0):
            raise Untranslatable("tojson with an indent that is not a non-negative int")
        pj = _PyJSON(self.defs, indent, exact=self.range_int)
        if isinstance(x, V):
            if x.is_const:
                return self.tojson_literal(x.const, indent, d)
            if x.kind == "str" and x.go:
                if self.range_int:
                    self.note(RANGE_INT_NOTE)
                    return pj.js(self.go_of(x))
                self.note("strings are JSON-escaped by Go: <, > and & become \\u003c, \\u003e, \\u0026")
                return f"{{{{ json {self.go_of(x)} }}}}"
            if x.kind in self.JSON_KINDS and x.go:
                self.note("JSON is written with Python's spacing by generated templates" + (
                    "" if self.range_int else "; strings inside are escaped by Go's json (<, > and & become "
                                              "\\u003c, \\u003e, \\u0026)"))
                if self.range_int:
                    self.note(RANGE_INT_NOTE)
                return f'{{{{ template "{pj.template(x.kind, d)}" {self.go_of(x)} }}}}'
            raise Untranslatable(f"tojson of a dict literal holding a {x.kind}")
        if isinstance(x, dict) and _holds_v(x):
            if not all(isinstance(k, str) for k in x):
                raise Untranslatable("tojson of a dict literal with keys that are not strings")
            items = [f"{_text(pj.nl(d + 1))}{_text(_json_key(k))}: {self.tojson_literal(y, indent, d + 1)}"
                     for k, y in x.items()]
            return "{" + pj.sep.join(items) + _text(pj.nl(d)) + "}"
        if _holds_v(x):
            raise Untranslatable("tojson of a list literal of request values")
        try:
            text = _json.dumps(x, ensure_ascii=False, indent=indent)
        except (TypeError, ValueError):
            raise Untranslatable(f"tojson of a {type(x).__name__} constant") from None
        return _text(text if indent is None else text.replace("\n", "\n" + " " * (indent * d)))


class _PyJSON:
    """Go `define` blocks that print Ollama's values the way Python's json.dumps(ensure_ascii=False) does."""

    MAX_DEPTH = 8

    def __init__(self, defs: dict, indent, ascii_: bool = False, exact: bool = False):
        self.defs, self.indent, self.ascii = defs, indent, ascii_
        self.exact = exact  # strings through pyjson_str (Go >= 1.24: the define ranges over an integer)

    def _n(self, kind, d):
        return f"pyjson_{kind}_{'c' if self.indent is None else f'i{self.indent}'}{'a' if self.ascii else ''}_{d}"

    @staticmethod
    def _ascii_def() -> str:
        """json.dumps(ensure_ascii=True): Go's JSON text re-read byte by byte, each non-ASCII character written as
        Python does: \\uXXXX (Go's %+q of the character gives it, lowercase hex) in the basic plane, DEL as \\u007f,
        and beyond it Python's surrogate pair, computed from the 8 hex digits %+q gives (\\U00PPXXXX): v = cp -
        0x10000, high = D800 + (v >> 10), low = DC00 + (v & 3FF), each hex digit looked up from two of those digits
        (tables indexed by the byte of a hex digit)."""
        hexd = "0123456789abcdef"

        def lut(f):  # a string whose byte at each hex digit's byte value is f(that digit's value)
            t = ["?"] * 103
            for k, ch in enumerate(hexd):
                t[ord(ch)] = f(k)
            return _go_str("".join(t))

        def at(table, b):
            return f'printf "%.1s" (slice {table} {b})'

        def two(z, y):  # hex((z & 3) * 4 + (y >> 2)) for the hex-digit bytes z, y
            chain = "".join(f'{{{{ {"if" if c == 0 else "else if"} eq ({at(lut(lambda k: str(k & 3)), z)}) "{c}" }}}}'
                            f'{{{{ {at(lut(lambda k, c=c: hexd[c * 4 + (k >> 2)]), y)} }}}}' for c in range(4))
            return chain + "{{ end }}"

        astral = ('{{ $h := slice (printf "%+q" (printf "%.1s" (slice $s $j))) 3 11 }}'
                  '{{ $pm := "f" }}{{ if eq (slice $h 2 3) "0" }}'
                  f'{{{{ $pm = {at(lut(lambda k: hexd[(k - 1) % 16]), "(index $h 3)")} }}}}{{{{ end }}}}'
                  f'\\ud{{{{ {at(lut(lambda k: hexd[8 + (k >> 2)]), "(index $pm 0)")} }}}}'
                  f'{two("(index $pm 0)", "(index $h 4)")}{two("(index $h 4)", "(index $h 5)")}'
                  f'\\ud{{{{ {at(lut(lambda k: hexd[12 + (k & 3)]), "(index $h 5)")} }}}}{{{{ slice $h 6 8 }}}}')
        # Go's escapes that Python writes otherwise (<, >, & as they are; \\b, \\f), read escape by escape
        rewrite = "".join(f'{{{{ else if eq $e {_go_str(esc)} }}}}{_text(py)}{{{{ $skip = "xxxxx" }}}}'
                          for esc, py in _GO_JSON_REWRITES.items() if not esc.startswith("\\u202"))
        return ('{{ define "pyjson_ascii" }}{{ $s := json . }}{{ $skip := "" }}{{ $esc := false }}'
                '{{ range $j := len $s }}{{ $b := index $s $j }}{{ if $skip }}{{ $skip = slice $skip 1 }}'
                '{{ else if $esc }}{{ $esc = false }}{{ printf "%c" $b }}'
                '{{ else if eq $b 92 }}{{ $e := printf "%.6s" (slice $s $j) }}{{ if false }}'
                f'{rewrite}{{{{ else }}}}\\{{{{ $esc = true }}}}{{{{ end }}}}'
                '{{ else if lt $b 127 }}{{ printf "%c" $b }}{{ else if eq $b 127 }}\\u007f'
                f'{{{{ else if ge $b 240 }}}}{astral}'
                '{{ else if ge $b 192 }}{{ $q := printf "%+q" (printf "%.1s" (slice $s $j)) }}'
                '{{ slice $q 1 (len (slice $q 1)) }}{{ end }}{{ end }}{{ end }}')

    def js(self, go: str) -> str:
        """Go that writes the JSON of ``go`` (a string, a number, a key) as Python's json.dumps does."""
        if not self.ascii:
            if self.exact:
                self.defs["pyjson_str"] = _pyjson_str_def()
                return f'{{{{ template "pyjson_str" {go} }}}}'
            return f"{{{{ json {go} }}}}"
        self.defs["pyjson_ascii"] = self._ascii_def()
        return f'{{{{ template "pyjson_ascii" {go} }}}}'

    def nl(self, d):
        return "" if self.indent is None else "\n" + " " * (self.indent * d)

    @property
    def sep(self):
        return ", " if self.indent is None else ","

    def template(self, kind, d) -> str:
        name = self._n(kind, d)
        if name in self.defs:
            return name
        self.defs[name] = ""  # reserve (recursion)
        if d >= self.MAX_DEPTH:
            body = self.js(".")
        else:
            body = getattr(self, f"b_{kind}")(d)
        self.defs[name] = f'{{{{ define "{name}" }}}}{body}{{{{ end }}}}'
        return name

    def call(self, kind, d, go):
        return f'{{{{ template "{self.template(kind, d)}" {go} }}}}'

    def obj(self, fields, d):
        """fields: [(json key, Go field, kind, omitempty)] of a struct at depth d."""
        out = ["{{ $f := true }}{"]
        for key, gofield, kind, omit in fields:
            value = '"function"' if gofield == "__function__" else self.call(kind, d + 1, '.' + gofield)
            item = (f"{{{{ if not $f }}}}{self.sep}{{{{ end }}}}{{{{ $f = false }}}}{_text(self.nl(d + 1))}"
                    f"{_text(_json_key(key))}: {value}")
            out.append(f"{{{{ if .{gofield} }}}}{item}{{{{ end }}}}" if omit else item)
        out.append(f"{{{{ if not $f }}}}{_text(self.nl(d))}{{{{ end }}}}}}")
        return "".join(out)

    def b_tool(self, d):
        return self.obj([("type", "Type", "str", False), ("items", "Items", "any", True),
                         ("function", "Function", "fn", False)], d)

    def b_fn(self, d):
        return self.obj([("name", "Name", "str", False), ("description", "Description", "str", False),
                         ("parameters", "Parameters", "params", False)], d)

    def b_params(self, d):
        return self.obj([("type", "Type", "str", False), ("$defs", "Defs", "any", True), ("items", "Items", "any", True),
                         ("required", "Required", "list", True), ("properties", "Properties", "props", False)], d)

    def b_property(self, d):
        return self.obj([("anyOf", "AnyOf", "proplist", True), ("type", "Type", "ptype", True),
                         ("items", "Items", "any", True), ("description", "Description", "str", True),
                         ("enum", "Enum", "list", True), ("properties", "Properties.ToMap", "props", True),
                         ("required", "Required", "list", True)], d)

    # a tool call as transformers' messages carry it: {"id", "type", "function": {"name", "arguments"}}
    def b_tcfn(self, d):
        return self.obj([("name", "Name", "str", False), ("arguments", "Arguments", "args", False)], d)

    def b_tcall(self, d):
        return self.obj([("id", "ID", "str", True), ("type", "__function__", "str", False),
                         ("function", "Function", "tcfn", False)], d)

    def b_tcalls(self, d):
        return self._list(d, "tcall")

    def b_str(self, d):
        return self.js(".")

    def b_ptype(self, d):
        return f"{{{{ if eq (len .) 1 }}}}{self.js('(index . 0)')}{{{{ else }}}}{self.call('list', d, '.')}{{{{ end }}}}"

    def _map(self, d, vkind):
        return (f"{{{{ $f := true }}}}{{{{{{ range $k, $v := . }}}}{{{{ if not $f }}}}{self.sep}{{{{ end }}}}"
                f"{{{{ $f = false }}}}{_text(self.nl(d + 1))}{self.js('$k')}: {self.call(vkind, d + 1, '$v')}{{{{ end }}}}"
                f"{{{{ if not $f }}}}{_text(self.nl(d))}{{{{ end }}}}}}")

    def _list(self, d, vkind):
        return (f"{{{{ $f := true }}}}[{{{{ range . }}}}{{{{ if not $f }}}}{self.sep}{{{{ end }}}}{{{{ $f = false }}}}"
                f"{_text(self.nl(d + 1))}{self.call(vkind, d + 1, '.')}{{{{ end }}}}{{{{ if not $f }}}}{_text(self.nl(d))}{{{{ end }}}}]")

    def b_props(self, d):
        return self._map(d, "property")

    def b_args(self, d):
        return self._map(d, "any")

    def b_tools(self, d):
        return self._list(d, "tool")

    def b_fnlist(self, d):  # the tools' functions
        return (f"{{{{ $f := true }}}}[{{{{ range . }}}}{{{{ if not $f }}}}{self.sep}{{{{ end }}}}{{{{ $f = false }}}}"
                f"{_text(self.nl(d + 1))}{self.call('fn', d + 1, '.Function')}{{{{ end }}}}"
                f"{{{{ if not $f }}}}{_text(self.nl(d))}{{{{ end }}}}]")

    def b_proplist(self, d):
        return self._list(d, "property")

    def b_list(self, d):
        return self._list(d, "any")

    b_strlist = b_list

    def b_any(self, d):
        t = '(printf "%T" .)'
        return (f'{{{{ if eq {t} "string" }}}}{self.js(".")}'
                f'{{{{ else if eq {t} "<nil>" }}}}null'
                f'{{{{ else if eq {t} "bool" }}}}{{{{ if . }}}}true{{{{ else }}}}false{{{{ end }}}}'
                f'{{{{ else if eq (printf "%.3s" {t}) "map" }}}}{self.call("args", d, ".")}'
                f'{{{{ else if eq (printf "%.2s" {t}) "[]" }}}}{self.call("list", d, ".")}'
                f'{{{{ else }}}}{self.js(".")}{{{{ end }}}}')


# Go's json escapes that Python's json.dumps(ensure_ascii=False) writes otherwise (\\b and \\f: Go < 1.22)
_GO_JSON_REWRITES = {"\\u003c": "<", "\\u003e": ">", "\\u0026": "&", "\\u2028": "\u2028", "\\u2029": "\u2029",
                     "\\u0008": "\\b", "\\u000c": "\\f"}


def _pyjson_str_def(html: bool = False) -> str:
    """The define ``pyjson_str``: Go's JSON text of a value re-read byte by byte (Go >= 1.24: range over an
    integer), runs of bytes copied with ``slice``, and only the escapes Go writes where Python writes otherwise
    (:data:`_GO_JSON_REWRITES`) replaced. A backslash starts an escape; the byte after it is part of that escape
    (``\\\\`` then ``u003c`` is a backslash, then text). ``html``: the same, as markupsafe.escape() of it
    (``pyjson_str_html``)."""
    from markupsafe import escape

    out = (lambda go: f"{{{{ html ({go}) }}}}") if html else (lambda go: f"{{{{ {go} }}}}")
    chain = "".join(f'{{{{ {"if" if k == 0 else "else if"} eq $e {_go_str(esc)} }}}}{out("slice $s $st $j")}'
                    f'{_text(str(escape(py)) if html else py)}{{{{ $skip = "xxxxx" }}}}{{{{ $run = false }}}}'
                    for k, (esc, py) in enumerate(_GO_JSON_REWRITES.items()))
    name = "pyjson_str_html" if html else "pyjson_str"
    return (f'{{{{ define "{name}" }}}}{{{{ $s := json . }}}}{{{{ $st := 0 }}}}{{{{ $run := true }}}}'
            '{{ $skip := "" }}{{ $esc := false }}{{ range $j := len $s }}'
            '{{ if $skip }}{{ $skip = slice $skip 1 }}{{ else }}'
            '{{ if not $run }}{{ $st = $j }}{{ $run = true }}{{ end }}'
            '{{ if $esc }}{{ $esc = false }}{{ else if eq (index $s $j) 92 }}'
            '{{ $e := printf "%.6s" (slice $s $j) }}'
            f'{chain}{{{{ else }}}}{{{{ $esc = true }}}}{{{{ end }}}}'
            '{{ end }}{{ end }}{{ end }}'
            f'{{{{ if $run }}}}{out("slice $s $st")}{{{{ end }}}}{{{{ end }}}}')


def _py_str_defs(range_int: bool) -> dict:
    """Go defines that write Python's str() of a JSON value of the request: a string as it is, True / False, None, a
    number as JSON writes it (an integer without a point, as Python's int), a list or object as Python's repr
    ([1, 'a'], {'k': None}; keys in the order Go ranges them). A string inside a list is quoted as repr quotes it
    (single quotes unless it holds ' and no "), escaping backslash, the quote, \\n \\r \\t and other control bytes
    (\\xNN); one holding a non-ASCII character (repr keeps it or escapes it by Unicode's printability, which Go
    cannot look up), or any string inside a list where the TEMPLATE may not range over an integer (Go < 1.24),
    stops the template with an error, never other text."""
    t = '(printf "%T" .)'
    scalars = ('{{ else if eq $t "bool" }}{{ if . }}True{{ else }}False{{ end }}{{ else if eq $t "<nil>" }}None'
               '{{ else if eq $t "float64" }}{{ if and (ne . 0.0) (lt . 0.0001) (gt . -0.0001) }}{{ index "" 1 }}'
               '{{ end }}{{ json . }}{{ else if eq $t "int" }}{{ . }}')  # below 1e-4 Python writes 1e-05, Go 0.00001
    if range_int:
        quote = (r"""{{ $q := "'" }}{{ $sq := false }}{{ $dq := false }}{{ range $j := len . }}"""
                 r"""{{ if eq (index $ $j) 39 }}{{ $sq = true }}{{ else if eq (index $ $j) 34 }}{{ $dq = true }}"""
                 r"""{{ end }}{{ end }}{{ if and $sq (not $dq) }}{{ $q = "\"" }}{{ end }}{{ $q }}"""
                 r"""{{ range $j := len . }}{{ $b := index $ $j }}{{ if ge $b 128 }}{{ index "" 1 }}"""
                 r"""{{ else if eq $b 92 }}\\{{ else if eq (printf "%c" $b) $q }}\{{ $q }}"""
                 r"""{{ else if eq $b 10 }}\n{{ else if eq $b 13 }}\r{{ else if eq $b 9 }}\t"""
                 r"""{{ else if or (lt $b 32) (eq $b 127) }}{{ printf "\\x%02x" $b }}{{ else }}{{ printf "%c" $b }}"""
                 r"""{{ end }}{{ end }}{{ $q }}""")
    else:
        quote = '{{ index "" 1 }}'
    rep = ('{{ define "pyrepr_any" }}{{ $t := ' + t + ' }}{{ if eq $t "string" }}' + quote + scalars
           + '{{ else if eq (printf "%.3s" $t) "map" }}{{ "{" }}{{ $f := true }}{{ range $k, $v := . }}'
             '{{ if not $f }}, {{ end }}{{ $f = false }}{{ template "pyrepr_any" $k }}: {{ template "pyrepr_any" $v }}'
             '{{ end }}}{{ else if eq (printf "%.2s" $t) "[]" }}[{{ $f := true }}{{ range . }}{{ if not $f }}, {{ end }}'
             '{{ $f = false }}{{ template "pyrepr_any" . }}{{ end }}]{{ else }}{{ index "" 1 }}{{ end }}{{ end }}')
    st = ('{{ define "pystr_any" }}{{ $t := ' + t + ' }}{{ if eq $t "string" }}{{ . }}' + scalars
          + '{{ else }}{{ template "pyrepr_any" . }}{{ end }}{{ end }}')
    return {"pystr_any": st, "pyrepr_any": rep}


class _PyRepr:
    """Go `define` blocks that print Ollama's tool values as Python's ``str()`` prints the dicts they serialize to
    (the fields and omissions of :class:`_PyJSON`): ``{'k': v, ...}``, ``[a, b]``, ``True`` / ``False`` / ``None``,
    strings as ``repr`` quotes them. A JSON number is int or float in Python (``1`` / ``1.0``) but float64 in Go,
    so it cannot be written exactly: the define stops the rendering with an error there instead."""

    # not `tools` (None without tools in Jinja) nor `tools | map(...)` (a generator's repr in Jinja)
    KINDS = ("tool", "fn", "params", "property", "props", "proplist")
    NOTE = ("`| string` of a tool is written as Python's repr (its strings as repr quotes them, printable by the "
            "checking Python's Unicode tables); a JSON number inside it (int or float: Go cannot tell) makes the "
            "rendering fail instead of writing one")

    def __init__(self, defs: dict):
        self.defs = defs

    def template(self, kind) -> str:
        name = f"pyrepr_{kind}"
        if name not in self.defs:
            self.defs[name] = ""  # reserved (recursion)
            self.defs[name] = f'{{{{ define "{name}" }}}}{getattr(self, f"b_{kind}")()}{{{{ end }}}}'
        return name

    def call(self, kind, go):
        return f'{{{{ template "{self.template(kind)}" {go} }}}}'

    def obj(self, fields):
        """fields: [(key, Go field, kind, omitted when empty)]."""
        out = ["{{ $f := true }}{"]
        for key, gofield, kind, omit in fields:
            item = (f"{{{{ if not $f }}}}, {{{{ end }}}}{{{{ $f = false }}}}{_text(repr(key))}: "
                    f"{self.call(kind, '.' + gofield)}")
            if omit == "nil":  # an interface: omitted only when nil (false, 0, "" are written)
                item = f'{{{{ if ne (printf "%T" .{gofield}) "<nil>" }}}}{item}{{{{ end }}}}'
            elif omit:
                item = f"{{{{ if .{gofield} }}}}{item}{{{{ end }}}}"
            out.append(item)
        out.append("}")
        return "".join(out)

    def b_tool(self):
        return self.obj([("type", "Type", "str", False), ("items", "Items", "any", "nil"),
                         ("function", "Function", "fn", False)])

    def b_fn(self):
        return self.obj([("name", "Name", "str", False), ("description", "Description", "str", False),
                         ("parameters", "Parameters", "params", False)])

    def b_params(self):
        return self.obj([("type", "Type", "str", False), ("$defs", "Defs", "any", "nil"),
                         ("items", "Items", "any", "nil"), ("required", "Required", "list", True),
                         ("properties", "Properties", "props", False)])

    def b_property(self):
        return self.obj([("anyOf", "AnyOf", "proplist", True), ("type", "Type", "ptype", True),
                         ("items", "Items", "any", "nil"), ("description", "Description", "str", True),
                         ("enum", "Enum", "list", True), ("properties", "Properties.ToMap", "props", True),
                         ("required", "Required", "list", True)])

    def _map(self, vkind):
        return (f"{{{{ $f := true }}}}{{{{{{ range $k, $v := . }}}}{{{{ if not $f }}}}, {{{{ end }}}}{{{{ $f = false }}}}"
                f"{self.call('str', '$k')}: {self.call(vkind, '$v')}{{{{ end }}}}}}")

    def _list(self, vkind):
        return (f"{{{{ $f := true }}}}[{{{{ range . }}}}{{{{ if not $f }}}}, {{{{ end }}}}{{{{ $f = false }}}}"
                f"{self.call(vkind, '.')}{{{{ end }}}}]")

    def b_props(self):  # a nil map (a function without properties) serializes to null: None
        return f'{{{{ if eq (printf "%p" .) "0x0" }}}}None{{{{ else }}}}{self._map("property")}{{{{ end }}}}'

    def b_map(self):
        return self._map("any")

    def b_proplist(self):
        return self._list("property")

    def b_list(self):
        return self._list("any")

    def b_ptype(self):
        return f"{{{{ if eq (len .) 1 }}}}{self.call('str', '(index . 0)')}{{{{ else }}}}{self.call('list', '.')}{{{{ end }}}}"

    def b_any(self):
        t = '(printf "%T" .)'
        return (f'{{{{ if eq {t} "string" }}}}{self.call("str", ".")}'
                f'{{{{ else if eq {t} "<nil>" }}}}None'
                f'{{{{ else if eq {t} "bool" }}}}{{{{ if . }}}}True{{{{ else }}}}False{{{{ end }}}}'
                f'{{{{ else if eq (printf "%.3s" {t}) "map" }}}}{self.call("map", ".")}'
                f'{{{{ else if eq (printf "%.2s" {t}) "[]" }}}}{self.call("list", ".")}'
                f'{{{{ else }}}}{self.call("number", ".")}{{{{ end }}}}')

    def b_number(self):
        # Python writes 1 or 1.0 as the JSON had it; Go holds float64 either way: an error, not a guess
        return "{{ index . 0 }}"

    def b_str(self):
        r"""repr(s): '…' unless s holds ' and no " (then "…"); backslash, the quote, \n \r \t, other control
        characters as \xNN; non-ASCII characters as they are where str.isprintable(), else \xNN / \uNNNN /
        \UNNNNNNNN (`pyrepr_char`)."""
        return ('{{ $s := . }}{{ $sq := false }}{{ $dq := false }}{{ range $j := len $s }}{{ $b := index $s $j }}'
                '{{ if eq $b 39 }}{{ $sq = true }}{{ else if eq $b 34 }}{{ $dq = true }}{{ end }}{{ end }}'
                '{{ $d := and $sq (not $dq) }}{{ if $d }}"{{ else }}\'{{ end }}'
                '{{ range $j := len $s }}{{ $r := slice $s $j }}{{ $b := index $r 0 }}{{ if lt $b 128 }}'
                '{{ if eq $b 92 }}\\\\{{ else if and (eq $b 39) (not $d) }}\\\'{{ else if eq $b 10 }}\\n'
                '{{ else if eq $b 13 }}\\r{{ else if eq $b 9 }}\\t{{ else if or (lt $b 32) (eq $b 127) }}'
                '{{ printf "\\\\x%02x" $b }}{{ else }}{{ slice $r 0 1 }}{{ end }}'
                '{{ else if ge $b 240 }}' + self.call("char", "(slice $r 0 4)") +
                '{{ else if ge $b 224 }}' + self.call("char", "(slice $r 0 3)") +
                '{{ else if ge $b 192 }}' + self.call("char", "(slice $r 0 2)") +
                '{{ end }}{{ end }}{{ if $d }}"{{ else }}\'{{ end }}')

    def b_char(self):
        """One non-ASCII character (its UTF-8 bytes): as it is where the checking Python's str.isprintable() says
        so, found by comparing the bytes (UTF-8 orders as code points) in a binary tree of its ranges."""
        spans, start, cur = [], 0x80, False  # (first code point, printable) runs from U+0080
        for c in range(0x80, 0x110000):
            if 0xD800 <= c < 0xE000:  # surrogates never reach Go (its json writes U+FFFD) nor a Go literal
                continue
            p = chr(c).isprintable()
            if c == 0x80:
                cur = p
            elif p != cur:
                spans.append((start, cur))
                start, cur = c, p
        spans.append((start, cur))

        esc = f'{{{{template "{self.template("esc")}" .}}}}'

        def tree(lo, hi):  # compact spacing: ~1400 ranges
            if hi - lo == 1:
                return "{{.}}" if spans[lo][1] else esc
            mid = (lo + hi) // 2
            c = spans[mid][0]
            lit = f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"
            return f'{{{{if lt . "{lit}"}}}}{tree(lo, mid)}{{{{else}}}}{tree(mid, hi)}{{{{end}}}}'

        return tree(0, len(spans))

    def b_esc(self):
        # Python: \xNN up to U+00FF (only U+0080..U+00A0 and U+00AD: lead byte C2), \uNNNN, \UNNNNNNNN; Go's
        # %+q writes the last two the same (lower-case hex)
        return ('{{ if lt . "\\u0100" }}{{ printf "\\\\x%02x" (index . 1) }}{{ else if lt . "\\U00010000" }}'
                '{{ slice (printf "%+q" .) 1 7 }}{{ else }}{{ slice (printf "%+q" .) 1 11 }}{{ end }}')


def _json_key(k: str) -> str:
    import json as _json

    return _json.dumps(k, ensure_ascii=False)


def parse(source: str):
    """The template's AST, parsed by transformers' own Jinja environment (so `{% generation %}` parses)."""
    from transformers.utils.chat_template_utils import _cached_compile_jinja_template

    env = _cached_compile_jinja_template(source).environment
    return env.parse(source)


def translate(source: str, bos_token: str = "", eos_token: str = "", extra: dict | None = None, *,
              range_int: bool = False) -> GoTemplate:
    """The Go TEMPLATE for ``source``; raises Untranslatable naming the first construct Go cannot express.
    ``range_int``: the TEMPLATE may range over an integer (Go >= 1.24's text/template; Ollama built with it), which
    substring tests and ``replace`` on request text need; pass ``gocheck.go_range_int()`` so it can be checked."""
    try:
        ast = parse(source)
    except Exception as e:  # noqa: BLE001 — a template jinja2 cannot parse
        raise Untranslatable(f"Jinja syntax error: {e}") from None
    t = Translator(bos_token, eos_token, extra, range_int=range_int)
    t._ast = ast
    return t.run(ast)
