"""Every real chat template in the llama-cpp-python sdist through the Ollama export's template path (issue #15).

    .venv/bin/python benchmarks/ollama_templates.py            # per-template table + totals (Markdown)

For each template: the mechanism downsize chooses (translated TEMPLATE, + PARSER, or the GGUF's own template),
whether the TEMPLATE reproduces the Jinja rendering byte for byte on the plain probes (user; user/assistant/user;
system/user/assistant/user) and, where the Jinja writes tools, on the tool probes (tool definitions; tool call +
tool result), the tool-call tag Ollama derives from it, and for refusals the construct that could not be translated.
All Go renders of the run go through one gorender process per check (downsize.export.gocheck).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sdist import llama_cpp_dir  # noqa: E402

from downsize.export import gocheck, renderers  # noqa: E402
from downsize.export.template import convert_chat_template  # noqa: E402

BOS, EOS = "<s>", "</s>"


def main() -> None:
    if not gocheck.go_available():
        raise SystemExit(gocheck.GO_MISSING)
    files = sorted((llama_cpp_dir() / "models" / "templates").glob("*.jinja"))
    t0 = time.perf_counter()
    rows, nearest = [], []
    for f in files:
        src = f.read_text()
        try:
            conv = convert_chat_template(src, BOS, EOS)
        except Exception as e:  # noqa: BLE001 — a template that fails on a plain one-message chat
            rows.append((f.name, "refused", False, None, None, str(e)[:80]))
            continue
        writes_tools = gocheck.jinja_writes_tools(src, BOS, EOS)
        near = renderers.closest(renderers.expected_prompts(src, BOS, EOS))
        if near is not None:
            nearest.append((f.name, *near))
        if conv.renderer:  # chosen only when its recorded prompts equal the Jinja rendering on every probe
            rows.append((f.name, f"RENDERER {conv.renderer}", True, writes_tools, True if writes_tools else None, ""))
            continue
        if conv.go_template:
            r = gocheck.check_templates([(src, conv.go_template, BOS, EOS)])[0]
            plain, tools = r.plain_ok, (r.tools_ok if writes_tools else None)
            mech = "TEMPLATE" + (f" + PARSER {conv.parser}" if conv.parser else "")
            detail = f"tag {conv.tool_tag!r}" if conv.tool_tag else ""
            if any("calls come back as text" in n or "will not read this model's calls" in n for n in conv.notes):
                detail += "; tool calls not parsed back by Ollama"
        else:
            plain, tools, mech = False, (False if writes_tools else None), "GGUF template"
            detail = conv.fallback.split(";")[0].replace("the Jinja construct ", "").replace(
                " has no Go text/template counterpart", "")
        rows.append((f.name, mech, plain, writes_tools, tools, detail))
    secs = time.perf_counter() - t0
    print("| template | Ollama mechanism | plain chats | tools | detail |")
    print("|---|---|---|---|---|")
    for name, mech, plain, wt, tools, detail in rows:
        t = "-" if not wt else ("ok" if tools else "no")
        print(f"| {name.removesuffix('.jinja')} | {mech} | {'ok' if plain else 'no'} | {t} | {detail} |")
    n = len(rows)
    plain_ok = sum(1 for r in rows if r[2])
    tool_rows = [r for r in rows if r[3]]
    tools_ok = sum(1 for r in tool_rows if r[2] and r[4])
    print()
    print(f"templates: {n}; TEMPLATE reproduces the plain chats: {plain_ok}/{n} ({100 * plain_ok / n:.0f}%); "
          f"of the {len(tool_rows)} whose Jinja writes tools, tools + tool round trip too: {tools_ok}/{len(tool_rows)} "
          f"({100 * tools_ok / max(1, len(tool_rows)):.0f}%); with a PARSER: {sum(1 for r in rows if 'PARSER' in r[1])}; "
          f"with a RENDERER: {sum(1 for r in rows if 'RENDERER' in r[1])}; "
          f"tool calls not parsed back: {sum(1 for r in rows if 'not parsed back' in r[5])}; "
          f"GGUF-template fallback: {sum(1 for r in rows if r[1] == 'GGUF template')}; {secs:.1f} s")
    rec = renderers.recorded()
    print()
    print(f"Ollama's built-in renderers (recorded from Ollama {rec.commit[:12]}, {len(rec.renderers)} names): the closest "
          "to each template, where one reproduces its plain chats (a RENDERER is written only when every probe is exact)")
    print()
    print("| template | closest renderer | probes exact | differs on |")
    print("|---|---|---|---|")
    for name, r, differ, n_probes in nearest:
        print(f"| {name.removesuffix('.jinja')} | {r} | {n_probes - len(differ)}/{n_probes} | {', '.join(differ) or '-'} |")


if __name__ == "__main__":
    main()
