"""The run report: ``report.html`` and its Markdown twin, written into the run directory.

    >>> write_report(Path("runs/quickstart"), recipe, manifest)

A waterfall table (teacher → pruned → distilled → quantized: params, MB, perplexity, KL,
agreement, tokens/s, RAM), plots drawn as inline SVG (loss curves of every training stage,
perplexity against size), sample completions side by side, and the commands to use the result.
No plotting library is needed and the HTML is self-contained.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from downsize.io import write_text_atomic

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
COLUMNS = [("params", "params", lambda v: f"{v / 1e6:.2f}M"), ("size_mb", "MB", lambda v: f"{v:.1f}"),
           ("perplexity", "perplexity", lambda v: f"{v:.3f}"), ("kl_to_teacher", "KL to teacher", lambda v: f"{v:.4f}"),
           ("top1_agreement", "top-1 agree", lambda v: f"{100 * v:.1f}%"), ("prompt_tok_s", "prompt tok/s", lambda v: f"{v:,.0f}"),
           ("gen_tok_s", "gen tok/s", lambda v: f"{v:,.1f}"), ("peak_rss_mb", "peak RSS MB", lambda v: f"{v:,.0f}")]

WATERFALL_COLUMNS = [("backend", "backend", str), *COLUMNS]
# The table a user planning a 30B -> 7B tool-use distillation tracks (see downsize.eval.tools).
TOOL_COLUMNS = [("tasks", "tasks", str), ("tool_use_pct", "tool use %", lambda v: f"{v:.1f}"),
                ("no_tool_on_negative_pct", "no tools on negatives %", lambda v: f"{v:.1f}"),
                ("accuracy_pct", "accuracy %", lambda v: f"{v:.1f}"), ("median_s", "s / query", lambda v: f"{v:.2f}"),
                ("peak_rss_mb", "peak RAM MB", lambda v: f"{v:,.0f}")]


def _fmt(row: dict, key: str, f) -> str:
    v = row.get(key)
    return "–" if v is None else f(v)


def _md_table(title: str, rows: dict[str, dict], columns: list) -> list[str]:
    out = ["", f"## {title}", "", "| model | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    return out + [f"| {n} | " + " | ".join(_fmt(r, k, f) for k, _, f in columns) + " |" for n, r in rows.items()]


def _html_table(title: str, rows: dict[str, dict], columns: list) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c[1])}</th>" for c in columns)
    body = "".join(f"<tr><td>{esc(n)}</td>" + "".join(f"<td>{esc(_fmt(r, k, f))}</td>" for k, _, f in columns) + "</tr>"
                   for n, r in rows.items())
    return f"<h2>{esc(title)}</h2><table><tr><th>model</th>{head}</tr>{body}</table>"


def _svg_lines(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str,
               logy: bool = False, points_only: bool = False) -> str:
    import math

    w, h, pad = 560, 300, 48
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    tf = (lambda y: math.log10(y)) if logy else (lambda y: y)
    xs, ys = [p[0] for p in pts], [tf(p[1]) for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x): return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)
    def sy(y): return h - pad - (tf(y) - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="11">{html.escape(xlabel)}</text>',
             f'<text x="12" y="{h / 2}" font-size="11" transform="rotate(-90 12 {h / 2})" text-anchor="middle">{html.escape(ylabel)}</text>']
    for frac in (0, 0.5, 1):
        yv = y0 + frac * (y1 - y0)
        label = f"{10 ** yv:.3g}" if logy else f"{yv:.3g}"
        parts.append(f'<text x="{pad - 4}" y="{h - pad - frac * (h - 2 * pad) + 4}" font-size="10" text-anchor="end">{label}</text>')
        xv = x0 + frac * (x1 - x0)
        parts.append(f'<text x="{pad + frac * (w - 2 * pad)}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{xv:.3g}</text>')
    for i, (name, s) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        if points_only:
            for x, y in s:
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"/>')
                parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" font-size="10">{html.escape(name)}</text>')
        else:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{d}"/>')
            parts.append(f'<text x="{w - pad - 4}" y="{pad + 14 * i}" font-size="11" text-anchor="end" fill="{c}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _loss_curves(run_dir: Path, manifest: dict) -> dict[str, list[tuple[float, float]]]:
    curves = {}
    for st in manifest["stages"]:
        f = run_dir / st["dir"] / "output.work" / "metrics.jsonl"
        if f.exists():
            recs = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            if recs:  # the cross entropy on the data where logged (a distill stage's loss is its KD loss, not comparable)
                curves[st["name"]] = [(r["step"], r.get("ce", r["loss"])) for r in recs]
    return curves


def _usage(run_dir: Path, manifest: dict) -> list[str]:
    cmds = []
    for st in manifest["stages"]:
        m = st.get("metrics") or {}
        if m.get("gguf"):
            cmds.append(f"llama-cli -m {m['gguf']} -cnv")
        if m.get("ollama_command"):
            cmds.append(m["ollama_command"])
            cmds.append(f"ollama run {m.get('ollama_name', '')}".strip())
    return cmds


def write_report(run_dir: Path, recipe, manifest: dict) -> tuple[Path, Path]:
    evals = [st for st in manifest["stages"] if st["kind"] == "eval" and st.get("metrics", {}).get("models")]
    rows: dict[str, dict] = evals[-1]["metrics"]["models"] if evals else {}
    tools: dict[str, dict] = evals[-1]["metrics"].get("tools", {}) if evals else {}
    samples: dict = evals[-1]["metrics"].get("samples", {}) if evals else {}
    curves = _loss_curves(run_dir, manifest)
    size_pts = {n: [(r["size_mb"], r["perplexity"])] for n, r in rows.items() if r.get("size_mb") and r.get("perplexity")}
    svg_loss = _svg_lines(curves, "training cross entropy per stage", "step", "cross entropy (nats/token)") if curves else ""
    svg_size = _svg_lines(size_pts, "perplexity against size on disk", "MB", "perplexity (log)", logy=True,
                          points_only=True) if size_pts else ""
    usage = _usage(run_dir, manifest)
    if usage:
        usage = [f"cd {run_dir.name}   # the run directory; paths below are relative to it", *usage]

    # Markdown twin
    md = [f"# downsize report: {recipe.name}", "", recipe.description or "", "",
          f"Teacher `{recipe.teacher}`, data `{recipe.data}`, seed {recipe.seed}.", "", "## Stages", "",
          "| # | stage | kind | status | wall s |", "|---|---|---|---|---|"]
    for st in manifest["stages"]:
        md.append(f"| {st['index']} | {st['name']} | {st['kind']} | {'skipped (unchanged)' if st.get('skipped') else st.get('status')} | {st.get('wall_s', '–')} |")
    if rows:
        md += _md_table("Waterfall", rows, WATERFALL_COLUMNS)
    if tools:
        md += _md_table("Tool use", tools, TOOL_COLUMNS)
    if samples:
        md += ["", "## Sample completions", ""]
        for prompt, outs in samples.items():
            md += ["```", prompt, "```"]
            for n, text in outs.items():
                md += [f"**{n}**:", "```", text, "```"]
    if usage:
        md += ["", "## Use the result", "", "```bash", *usage, "```"]
    md_path = run_dir / "report.md"
    write_text_atomic(md_path, "\n".join(md) + "\n")

    esc = html.escape
    table = (_html_table("Waterfall", rows, WATERFALL_COLUMNS) if rows else "") + \
        (_html_table("Tool use", tools, TOOL_COLUMNS) if tools else "")
    stages = "".join(f"<tr><td>{st['index']}</td><td>{esc(st['name'])}</td><td>{esc(st['kind'])}</td>"
                     f"<td>{'skipped (unchanged)' if st.get('skipped') else esc(str(st.get('status')))}</td><td>{st.get('wall_s', '–')}</td></tr>"
                     for st in manifest["stages"])
    sample_html = ""
    for prompt, outs in samples.items():
        cells = "".join(f"<div class='s'><h4>{esc(n)}</h4><pre>{esc(t)}</pre></div>" for n, t in outs.items())
        sample_html += f"<h3>Prompt</h3><pre class='p'>{esc(prompt)}</pre><div class='grid'>{cells}</div>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>downsize report: {esc(recipe.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
pre{{background:#f6f6f6;padding:8px;white-space:pre-wrap}}.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:8px}}
.plots{{display:flex;flex-wrap:wrap;gap:16px}}</style></head><body>
<h1>downsize report: {esc(recipe.name)}</h1><p>{esc(recipe.description or '')}</p>
<p>Teacher <code>{esc(recipe.teacher)}</code>, data <code>{esc(recipe.data)}</code>, seed {recipe.seed}.</p>
<h2>Stages</h2><table><tr><th>#</th><th>stage</th><th>kind</th><th>status</th><th>wall s</th></tr>{stages}</table>
{table}<h2>Plots</h2><div class="plots">{svg_loss}{svg_size}</div>
{'<h2>Sample completions</h2>' + sample_html if sample_html else ''}
{'<h2>Use the result</h2><pre>' + esc(chr(10).join(usage)) + '</pre>' if usage else ''}
</body></html>"""
    html_path = run_dir / "report.html"
    write_text_atomic(html_path, page)
    return html_path, md_path
