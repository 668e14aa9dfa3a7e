"""The run report: ``report.html`` and its Markdown twin, written into the run directory.

    >>> rows = {"teacher": {"size_mb": 30.0, "perplexity": 10.0, "gen_tok_s": 100.0},
    ...         "q4": {"size_mb": 4.0, "perplexity": 11.2, "gen_tok_s": 310.0, "top1_agreement": 0.9}}
    >>> headline(rows)
    'q4 against the teacher: ×7.5 smaller, +12.0 % perplexity, ×3.1 faster, 90.0 % top-1 agreement'
    >>> svg_bars(rows, "size_mb", "size").startswith("<svg")
    True

What it shows, top to bottom: a headline (the final model against the teacher: ×N smaller,
+X % perplexity, ×N faster), the waterfall as four bar charts (size, perplexity, KL to the
teacher, generation speed; each bar labelled with its value and its ratio to the teacher), the
waterfall table with those ratios, one loss curve per training stage (a note instead of an empty
plot when a run logged too few points), perplexity against size, sample completions side by
side, the commands to use the result, and the stages. Charts are inline SVG with a viewBox, so the
page is self-contained, needs no JavaScript, and scales down to a phone's width.

Why this module is long: the page is one document; its charts, tables and commands share the run's numbers
and the formatting helpers, and splitting it would pass the same manifest through several modules.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from downsize.console import fmt_duration, fmt_mib, fmt_params, fmt_pct_change, fmt_ratio, fmt_sig
from downsize.io import write_text_atomic

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
TEACHER = "teacher"
METRICS_FILE = "metrics.jsonl"  # written by downsize.train.loop into a training stage's output.work
COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"]
TEACHER_COLOR = "#9a9a9a"
BACKENDS = {".gguf": "llama.cpp"}  # by file suffix; anything else is run through transformers
DEFAULT_BACKEND = "transformers"


@dataclass(frozen=True)
class Metric:
    """One waterfall quantity: how to print it and which direction is better (None: no ratio is shown)."""

    key: str
    label: str
    fmt: Callable[[float], str]
    smaller_is_better: bool | None = None
    change: str = "ratio"  # "ratio" (×2.0 smaller) or "pct" (+5.0 %)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


METRICS = [Metric("params", "params", fmt_params, True), Metric("size_mb", "size", fmt_mib, True),
           Metric("perplexity", "perplexity", lambda v: fmt_sig(v, 4), True, change="pct"),
           Metric("kl_to_teacher", "KL to teacher", lambda v: f"{v:.4f}"),
           Metric("top1_agreement", "top-1 agree", _pct),
           Metric("prompt_tok_s", "prompt tok/s", fmt_sig, False), Metric("gen_tok_s", "gen tok/s", fmt_sig, False),
           Metric("peak_rss_mb", "peak RSS", fmt_mib, True)]
# The four charts of the waterfall: (metric key, title, what the bar's ratio is against the teacher).
CHARTS = [("size_mb", "Size on disk"), ("perplexity", "Perplexity (lower is better)"),
          ("kl_to_teacher", "KL(teacher ‖ model), nats/token"), ("gen_tok_s", "Generation speed, tokens/s")]
# The table a user planning a 30B -> 7B tool-use distillation tracks (see downsize.eval.tools).
TOOL_COLUMNS = [("tasks", "tasks", str), ("tool_use_pct", "tool use %", lambda v: f"{v:.1f}"),
                ("no_tool_on_negative_pct", "no tools on negatives %", lambda v: f"{v:.1f}"),
                ("accuracy_pct", "accuracy %", lambda v: f"{v:.1f}"), ("median_s", "s / query", lambda v: f"{v:.2f}"),
                ("peak_rss_mb", "peak RAM", fmt_mib)]
MIN_CURVE_POINTS = 2  # fewer logged points than this draw no line, only a note

esc = html.escape


# --- numbers -------------------------------------------------------------------------------------

def backend_of(row: dict) -> str:
    """The runtime a row was measured in; never blank (older manifests lack the field)."""
    return row.get("backend") or BACKENDS.get(Path(str(row.get("ref", ""))).suffix, DEFAULT_BACKEND)


def _reference(rows: dict[str, dict]) -> dict | None:
    return rows.get(TEACHER) or next(iter(rows.values()), None)


def _change(m: Metric, value, ref: dict | None, is_ref: bool) -> str:
    """The cell's second line: the change against the teacher ('' for the teacher itself or when undefined)."""
    if is_ref or ref is None or m.smaller_is_better is None or value is None or ref.get(m.key) in (None, 0):
        return ""
    if m.change == "pct":
        return fmt_pct_change(value, ref[m.key])
    return fmt_ratio(value, ref[m.key], smaller_is_better=m.smaller_is_better)


def _cell(m: Metric, row: dict, ref: dict | None, is_ref: bool) -> tuple[str, str]:
    v = row.get(m.key)
    return ("–" if v is None else m.fmt(v)), _change(m, v, ref, is_ref)


def headline(rows: dict[str, dict]) -> str:
    """'q4 against the teacher: ×7.5 smaller, +12.0 % perplexity, ×3.1 faster' for the last model of the run."""
    ref = _reference(rows)
    names = [n for n in rows if rows[n] is not ref]
    if ref is None or not names:
        return ""
    last, row = names[-1], rows[names[-1]]
    parts = []
    for key in ("size_mb", "perplexity", "gen_tok_s"):
        m = next(x for x in METRICS if x.key == key)
        c = _change(m, row.get(key), ref, False)
        if c and c != "–":
            parts.append(f"{c} perplexity" if key == "perplexity" else c)
    if row.get("top1_agreement") is not None:
        parts.append(f"{_pct(row['top1_agreement'])} top-1 agreement")
    return f"{last} against the teacher: " + ", ".join(parts) if parts else ""


# --- charts --------------------------------------------------------------------------------------

def _short(name: str, n: int = 16) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _svg_open(w: int, h: int, title: str) -> str:
    # viewBox + width 100%: the chart shrinks with the page instead of overflowing a narrow screen
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
            f'style="max-width:{w}px" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>')


def svg_bars(rows: dict[str, dict], key: str, title: str) -> str:
    """Horizontal bars, one per model, each labelled with its value and its change against the teacher."""
    m = next(x for x in METRICS if x.key == key)
    ref = _reference(rows)
    vals = [(n, r.get(key)) for n, r in rows.items()]
    present = [v for _, v in vals if v is not None]
    w, row_h, top, label_w, text_w = 440, 28, 30, 100, 140
    h = top + row_h * len(vals) + 8
    parts = [_svg_open(w, h, title), f'<text x="0" y="16" font-size="13" font-weight="600">{esc(title)}</text>']
    if not present:
        parts.append(f'<text x="0" y="{top + 14}" font-size="12" fill="#666">not measured in this run</text></svg>')
        return "".join(parts)
    vmax = max(present) or 1.0
    bar_w = w - label_w - text_w
    for i, (n, v) in enumerate(vals):
        y = top + i * row_h
        is_ref = rows[n] is ref
        color = TEACHER_COLOR if is_ref else COLORS[i % len(COLORS)]
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" font-size="12" text-anchor="end"><title>{esc(n)}</title>'
                     f'{esc(_short(n, 14))}</text>')
        if v is None:
            parts.append(f'<text x="{label_w}" y="{y + 17}" font-size="11" fill="#888">not measured</text>')
            continue
        length = max(1.5, bar_w * v / vmax)
        parts.append(f'<rect x="{label_w}" y="{y + 5}" width="{length:.1f}" height="{row_h - 10}" fill="{color}" rx="2"/>')
        change = _change(m, v, ref, is_ref)
        text = m.fmt(v) + (f"  {change}" if change and change != "–" else "")
        parts.append(f'<text x="{label_w + length + 5:.1f}" y="{y + 17}" font-size="11">{esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float) -> list[float]:
    return [lo + f * (hi - lo) for f in (0, 0.5, 1)]


def _axes(w, h, left, right_x, top, bottom, title: str, xlabel: str, ylabel: str) -> list[str]:
    """The frame both charts share: the SVG element, the title, both axes and their labels (x axis up to right_x)."""
    return [_svg_open(w, h, title), f'<text x="0" y="16" font-size="13" font-weight="600">{esc(title)}</text>',
            f'<line x1="{left}" y1="{h - bottom}" x2="{right_x}" y2="{h - bottom}" stroke="#444"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#444"/>',
            f'<text x="{(left + right_x) / 2}" y="{h - 4}" font-size="11" text-anchor="middle">{esc(xlabel)}</text>',
            f'<text x="10" y="{(top + h - bottom) / 2}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 10 {(top + h - bottom) / 2})">{esc(ylabel)}</text>']


def svg_lines(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """A line chart with a legend above the plot (labels never sit on the lines)."""
    pts = [p for s in series.values() for p in s]
    w, h, left, right, bottom = 440, 240, 66, 12, 36
    legend = len(series) > 1
    top = 24 + (16 * len(series) if legend else 8)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    sy = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    parts = _axes(w, h, left, w - right, top, bottom, title, xlabel, ylabel)
    for yv in _ticks(y0, y1):
        parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{fmt_sig(yv)}</text>')
    for xv in _ticks(x0, x1):
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - bottom + 13}" font-size="10" text-anchor="middle">{xv:.0f}</text>')
    for i, (name, s) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{d}"/>')
        if legend:
            parts.append(f'<rect x="{left}" y="{22 + 16 * i}" width="10" height="10" fill="{c}"/>'
                         f'<text x="{left + 14}" y="{31 + 16 * i}" font-size="11">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_scatter(points: dict[str, tuple[float, float]], title: str, xlabel: str, ylabel: str) -> str:
    """Points coloured per model with a legend beside the plot instead of labels at the points, so close
    points (a Q8_0 GGUF and its float parent) never print over each other. y is on a log scale."""
    import math

    w, h, left, bottom, top = 440, 260, 66, 36, 28
    legend_w = 130
    plot_r = w - legend_w - 8
    xs = [p[0] for p in points.values()]
    ys = [math.log10(p[1]) for p in points.values()]
    x0, x1 = min(xs) * 0.9, max(xs) * 1.05
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.1 or 0.05
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda x: left + (x - x0) / (x1 - x0) * (plot_r - left)  # noqa: E731
    sy = lambda y: h - bottom - (math.log10(y) - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    parts = _axes(w, h, left, plot_r, top, bottom, title, xlabel, ylabel)
    for yl in _ticks(y0, y1):
        parts.append(f'<text x="{left - 4}" y="{sy(10 ** yl) + 4:.1f}" font-size="10" text-anchor="end">{fmt_sig(10 ** yl)}</text>')
    for xv in _ticks(x0, x1):
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - bottom + 13}" font-size="10" text-anchor="middle">{fmt_sig(xv, 2)}</text>')
    for i, (name, (x, y)) in enumerate(points.items()):
        c = TEACHER_COLOR if name == TEACHER else COLORS[i % len(COLORS)]
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="{c}" fill-opacity="0.85" stroke="white">'
                     f'<title>{esc(name)}: {fmt_mib(x)}, perplexity {fmt_sig(y, 4)}</title></circle>')
        parts.append(f'<circle cx="{plot_r + 14}" cy="{top + 6 + 18 * i}" r="5" fill="{c}"/>'
                     f'<text x="{plot_r + 24}" y="{top + 10 + 18 * i}" font-size="11">{esc(_short(name, 14))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- run directory readers ------------------------------------------------------------------------

@dataclass
class Curve:
    stage: str
    kind: str
    steps: int | None
    series: dict[str, list[tuple[float, float]]]  # label -> [(step, value)]

    @property
    def n_points(self) -> int:
        return max((len(s) for s in self.series.values()), default=0)


TRAINING_KINDS = ("train", "distill", "sft", "lora")


def loss_curves(run_dir: Path, manifest: dict) -> list[Curve]:
    """One curve per training stage from its metrics.jsonl: the training loss, and the cross entropy on the
    data where the stage logs it separately (a distillation stage's loss is its KD loss)."""
    out = []
    for st in manifest["stages"]:
        if st["kind"] not in TRAINING_KINDS:
            continue
        f = run_dir / st["dir"] / "output.work" / METRICS_FILE
        recs = [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []
        loss_label = "KD loss" if st["kind"] == "distill" else "loss"
        series: dict[str, list[tuple[float, float]]] = {loss_label: [(r["step"], r["loss"]) for r in recs if "loss" in r]}
        if any("ce" in r for r in recs) and st["kind"] == "distill":
            series["cross entropy"] = [(r["step"], r["ce"]) for r in recs if "ce" in r]
        steps = (st.get("metrics") or {}).get("steps") or (recs[-1]["step"] if recs else None)
        out.append(Curve(st["name"], st["kind"], steps, series))
    return out


def _curve_html(c: Curve) -> str:
    if c.n_points >= MIN_CURVE_POINTS:
        # one chart per quantity: a KD loss and the cross entropy differ by orders of magnitude on one axis
        return "".join(f'<figure>{svg_lines({label: s}, f"{c.stage} ({c.kind}): {label}", "step", f"{label} (nats/token)")}'
                       "</figure>" for label, s in c.series.items() if len(s) >= MIN_CURVE_POINTS)
    title = f"{c.stage} ({c.kind}): training loss"
    return f'<figure class="note"><h4>{esc(title)}</h4><p>{esc(_short_run_note(c))}</p></figure>'


def _short_run_note(c: Curve) -> str:
    first = next(iter(c.series.values()), [])
    last = first[-1] if first else None
    logged = f"{c.n_points} logged point" + ("" if c.n_points == 1 else "s")
    tail = f"; final loss {fmt_sig(last[1], 4)} at step {last[0]}" if last else ""
    return (f"Too short to plot: {c.steps or '?'} steps gave {logged} (the loop logs every 10 steps and at the end)"
            f"{tail}. Run more steps for a curve.")


def _display_path(p: Path, cwd: Path) -> str:
    """``p`` as the user types it from where they ran downsize: relative when inside cwd, else absolute."""
    p = p.resolve()
    try:
        return str(p.relative_to(cwd.resolve()))
    except ValueError:
        return str(p)


def usage_commands(run_dir: Path, manifest: dict, cwd: Path) -> list[str]:
    """Commands that work from ``cwd`` with what `make setup` installs (llama-cpp-python's server) and Ollama."""
    cmds: list[str] = []
    gguf = model_dir = None
    for st in manifest["stages"]:
        m = st.get("metrics") or {}
        if m.get("gguf"):
            gguf = run_dir / m["gguf"]
        if st.get("output_kind") == "model" and st.get("output"):
            model_dir = run_dir / st["output"]
        if m.get("modelfile"):
            name = m.get("ollama_name") or manifest.get("recipe", "model")
            mf = _display_path(run_dir / m["modelfile"], cwd)
            cmds += ["# Ollama (FROM in the Modelfile is relative to the Modelfile's folder)",
                     f"ollama create {name} -f {mf}", f"ollama run {name}"]
    if gguf is not None:
        g = _display_path(gguf, cwd)
        cmds = ["# an OpenAI-compatible server on http://127.0.0.1:8000/v1 (llama-cpp-python, installed by make setup)",
                f"python -m llama_cpp.server --model {g}", *cmds]
    if model_dir is not None:
        cmds += ["# the Hugging Face model (transformers), and its metrics again",
                 f"downsize eval {_display_path(model_dir, cwd)} --teacher {manifest.get('teacher', 'TEACHER')}"]
    return cmds


# --- tables ---------------------------------------------------------------------------------------

def _md_waterfall(rows: dict[str, dict]) -> list[str]:
    ref = _reference(rows)
    out = ["", "## Waterfall", "", "| model | backend | " + " | ".join(m.label for m in METRICS) + " |",
           "|---|---|" + "---:|" * len(METRICS)]
    for n, r in rows.items():
        cells = []
        for m in METRICS:
            v, c = _cell(m, r, ref, r is ref)
            cells.append(f"{v} ({c})" if c and c != "–" else v)
        out.append(f"| {n} | {backend_of(r)} | " + " | ".join(cells) + " |")
    return out


def _html_waterfall(rows: dict[str, dict]) -> str:
    ref = _reference(rows)
    head = "".join(f"<th>{esc(m.label)}</th>" for m in METRICS)
    body = []
    for n, r in rows.items():
        cells = []
        for m in METRICS:
            v, c = _cell(m, r, ref, r is ref)
            cls = ""
            if c and c not in ("–", "same") and m.smaller_is_better is not None:
                good = ("smaller" in c or "faster" in c) or (m.change == "pct" and c.startswith("-"))
                cls = " class='good'" if good else " class='bad'"
            cells.append(f"<td>{esc(v)}" + (f"<br><small{cls}>{esc(c)}</small>" if c and c != "–" else "") + "</td>")
        body.append(f"<tr{' class=ref' if r is ref else ''}><td>{esc(n)}</td><td>{esc(backend_of(r))}</td>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table><tr><th>model</th><th>backend</th>{head}</tr>{''.join(body)}</table></div>"
            "<p class='muted'>Second lines compare with the teacher. Speed and RAM are measured in a fresh process "
            "per model, in the backend named (GGUF files in llama.cpp, the rest in transformers).</p>")


def _fmt(row: dict, key: str, f) -> str:
    v = row.get(key)
    return "–" if v is None else f(v)


def _html_table(rows: dict[str, dict], columns: list) -> str:
    head = "".join(f"<th>{esc(c[1])}</th>" for c in columns)
    body = "".join(f"<tr><td>{esc(n)}</td>" + "".join(f"<td>{esc(_fmt(r, k, f))}</td>" for k, _, f in columns) + "</tr>"
                   for n, r in rows.items())
    return f"<div class='scroll'><table><tr><th>model</th>{head}</tr>{body}</table></div>"


def _md_table(title: str, rows: dict[str, dict], columns: list) -> list[str]:
    out = ["", f"## {title}", "", "| model | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    return out + [f"| {n} | " + " | ".join(_fmt(r, k, f) for k, _, f in columns) + " |" for n, r in rows.items()]


def _status(st: dict) -> str:
    return "skipped (unchanged)" if st.get("skipped") else str(st.get("status"))


CSS = """
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;padding:16px;
max-width:1200px;color:#222;line-height:1.4}h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;
border-bottom:1px solid #e4e4e4;padding-bottom:4px}.headline{font-size:1.1em;background:#f1f6fb;border-left:4px solid #4c78a8;
padding:8px 12px}.muted{color:#666;font-size:.85em}.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;
margin:6px 0;font-size:.9em}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top;white-space:nowrap}
td:first-child,th:first-child{text-align:left}th{background:#fafafa}tr.ref td{background:#f7f7f7}small.good{color:#2a7d2a}
small.bad{color:#b03a2e}.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));gap:16px 32px;align-items:start}
figure{margin:0;min-width:0}figure.note{border:1px dashed #bbb;padding:8px 12px;border-radius:4px}figure.note h4{margin:0 0 4px;
font-size:.95em}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0}code{overflow-wrap:anywhere}
@media (max-width:600px){table{font-size:.8em}body{padding:10px}}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:8px}.s h4{margin:4px 0}
"""


def write_report(run_dir: Path, recipe, manifest: dict, cwd: Path | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md into ``run_dir``; commands in them are correct from ``cwd`` (default: the
    process's working directory, where the user ran downsize)."""
    run_dir = Path(run_dir)
    cwd = Path(cwd) if cwd is not None else Path(os.getcwd())
    evals = [st for st in manifest["stages"] if st["kind"] == "eval" and st.get("metrics", {}).get("models")]
    rows: dict[str, dict] = evals[-1]["metrics"]["models"] if evals else {}
    tools: dict[str, dict] = evals[-1]["metrics"].get("tools", {}) if evals else {}
    samples: dict = evals[-1]["metrics"].get("samples", {}) if evals else {}
    curves = loss_curves(run_dir, manifest)
    size_pts = {n: (r["size_mb"], r["perplexity"]) for n, r in rows.items() if r.get("size_mb") and r.get("perplexity")}
    usage = usage_commands(run_dir, manifest, cwd)
    head = headline(rows)
    total_s = sum(st.get("wall_s") or 0 for st in manifest["stages"])

    md = [f"# downsize report: {recipe.name}", "", recipe.description or "", "",
          f"Teacher `{recipe.teacher}`, data `{recipe.data}`, seed {recipe.seed}; {len(manifest['stages'])} stages, "
          f"{fmt_duration(total_s)}.", ""]
    if head:
        md += [f"**{head}**", ""]
    if rows:
        md += _md_waterfall(rows)
    if tools:
        md += _md_table("Tool use", tools, TOOL_COLUMNS)
    if curves:
        md += ["", "## Training", ""]
        for c in curves:
            first = next(iter(c.series.values()), [])
            last = first[-1] if first else None
            md.append(f"- {c.stage} ({c.kind}): {c.steps or '?'} steps, {c.n_points} logged point{'' if c.n_points == 1 else 's'}"
                      + (f", final loss {fmt_sig(last[1], 4)}" if last else "")
                      + ("" if c.n_points >= MIN_CURVE_POINTS else " (too short to plot)"))
    if samples:
        md += ["", "## Sample completions", ""]
        for prompt, outs in samples.items():
            md += ["```", prompt, "```"]
            for n, text in outs.items():
                md += [f"**{n}**:", "```", text, "```"]
    if usage:
        md += ["", "## Use the result", "", "```bash", *usage, "```"]
    md += ["", "## Stages", "", "| # | stage | kind | status | wall time |", "|---|---|---|---|---|"]
    for st in manifest["stages"]:
        md.append(f"| {st['index']} | {st['name']} | {st['kind']} | {_status(st)} | {fmt_duration(st.get('wall_s'))} |")
    md_path = run_dir / REPORT_MD
    write_text_atomic(md_path, "\n".join(md) + "\n")

    sections = []
    if head:
        sections.append(f"<p class='headline'>{esc(head)}</p>")
    if rows:
        charts = "".join(f"<figure>{svg_bars(rows, key, title)}</figure>" for key, title in CHARTS)
        sections.append(f"<h2>Waterfall</h2><div class='charts'>{charts}</div>{_html_waterfall(rows)}")
    if tools:
        sections.append(f"<h2>Tool use</h2>{_html_table(tools, TOOL_COLUMNS)}")
    if curves:
        sections.append("<h2>Training</h2><div class='charts'>" + "".join(_curve_html(c) for c in curves) + "</div>")
    if len(size_pts) >= 1:
        sections.append("<h2>Perplexity against size</h2><div class='charts'><figure>"
                        + svg_scatter(size_pts, "Perplexity against size on disk", "MiB on disk", "perplexity (log scale)")
                        + "</figure></div>")
    if samples:
        s_html = ""
        for prompt, outs in samples.items():
            cells = "".join(f"<div class='s'><h4>{esc(n)}</h4><pre>{esc(t)}</pre></div>" for n, t in outs.items())
            s_html += f"<h3>Prompt</h3><pre class='p'>{esc(prompt)}</pre><div class='grid'>{cells}</div>"
        sections.append(f"<h2>Sample completions</h2>{s_html}")
    if usage:
        sections.append(f"<h2>Use the result</h2><p class='muted'>From the folder you ran downsize in "
                        f"(<code>{esc(str(cwd.resolve()))}</code>).</p>"
                        f"<pre>{esc(chr(10).join(usage))}</pre>")
    stages = "".join(f"<tr><td>{st['index']}</td><td>{esc(st['name'])}</td><td>{esc(st['kind'])}</td>"
                     f"<td>{esc(_status(st))}</td><td>{esc(fmt_duration(st.get('wall_s')))}</td></tr>"
                     for st in manifest["stages"])
    sections.append("<h2>Stages</h2><div class='scroll'><table><tr><th>#</th><th>stage</th><th>kind</th><th>status</th>"
                    f"<th>wall time</th></tr>{stages}</table></div>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>downsize report: {esc(recipe.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>downsize report: {esc(recipe.name)}</h1>"
            + (f"<p>{esc(recipe.description)}</p>" if recipe.description else "")
            + f"<p class='muted'>Teacher <code>{esc(str(recipe.teacher))}</code>, data <code>{esc(str(recipe.data))}</code>, "
            f"seed {recipe.seed}; {len(manifest['stages'])} stages in {esc(fmt_duration(total_s))}.</p>"
            + "".join(sections) + "</body></html>")
    html_path = run_dir / REPORT_HTML
    write_text_atomic(html_path, page)
    return html_path, md_path


__all__ = ["write_report", "headline", "usage_commands", "loss_curves", "svg_bars", "svg_lines", "svg_scatter",
           "backend_of"]
