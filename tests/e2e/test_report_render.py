"""The run report of a real recipe (prune -> distill -> a too-short train -> Q8_0 -> export -> eval with speed),
rendered in headless Chromium at desktop (1280 px) and phone (390 px) widths.

The screenshots are checked for content (not blank, the chart colours are drawn) and the narrow layout
for horizontal overflow: a host page shows the report in a 390 px iframe and a small script measures it
(Chromium's headless window cannot be narrower than 500 px, an iframe can).
"""

import io
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from downsize.eval.report import CHARTS, COLORS, TEACHER_COLOR, backend_of, headline, usage_commands
from downsize.pipeline import run_recipe
from downsize.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make system-deps)")

# A page that loads SRC in an iframe WIDTH px wide and writes what overflows it into the DOM.
PROBE = """<!doctype html><html><body style="margin:0"><iframe id="f" src="{src}" style="width:{width}px;height:900px;border:0">
</iframe><script>
document.getElementById("f").addEventListener("load", () => {{
  const w = document.getElementById("f").contentWindow, d = w.document, vw = w.innerWidth;
  const over = [...d.querySelectorAll("body *")].filter(e => {{ const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > vw + 1 && !e.closest(".scroll"); }}).map(e => e.tagName + "." + e.className);
  const p = document.createElement("pre"); p.id = "probe";
  p.textContent = JSON.stringify({{innerWidth: vw, scrollWidth: d.documentElement.scrollWidth, overflowing: over}});
  document.body.appendChild(p);
}});
</script></body></html>"""


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def _layout(page: Path, width: int, profile: Path) -> dict:
    host = page.with_name(f"probe-{page.stem}-{width}.html")
    host.write_text(PROBE.format(src=page.name, width=width))
    dom = _chromium(profile, "--allow-file-access-from-files", "--window-size=1000,1000", "--dump-dom",
                    host.as_uri()).stdout
    m = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert m, f"the layout probe did not run: {dom[-500:]}"
    return json.loads(m.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, tiny_model_dir, stdlib_texts):
    """A real run in a folder the test treats as the user's working directory."""
    import os

    home = tmp_path_factory.mktemp("user")
    data = home / "data.txt"
    data.write_text("\n".join(stdlib_texts[:3])[:15000])
    train = {"batch_size": 2, "seq_len": 32, "warmup_steps": 2, "checkpoint_every": 0, "mixed_precision": "no"}
    recipe = {"name": "render", "teacher": str(tiny_model_dir), "data": str(data), "stages": [
        {"prune": {"name": "pruned", "method": "width", "targets": {"ffn": 64}, "calib_samples": 4, "seq_len": 32}},
        {"distill": {"name": "distilled", "steps": 40, **train}},
        {"train": {"name": "short", "steps": 3, **train}},
        {"quantize": {"name": "q8", "quant": "Q8_0", "imatrix": False}},
        {"export": {"name": "ollama", "model_name": "render-small", "create": False}},
        {"eval": {"max_tokens": 512, "seq_len": 32, "speed": True}}]}
    (home / "r.yaml").write_text(yaml.safe_dump(recipe))
    old = os.getcwd()
    os.chdir(home)
    try:
        manifest = run_recipe(load_recipe("r.yaml"), "runs/render", log=lambda s: None)
    finally:
        os.chdir(old)
    return home, home / "runs" / "render", manifest


def test_report_content_ratios_notes_and_commands(report_run):
    home, run, manifest = report_run
    page = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    rows = manifest["stages"][-1]["metrics"]["models"]
    # the waterfall as four charts, one bar per model each
    for _, title in CHARTS:
        assert f'aria-label="{title}"' in page.replace("&#x27;", "'")
    assert page.count("<rect x=") >= 4 * len(rows)
    # ratios against the teacher in the table and the headline
    size_ratio = rows["teacher"]["size_mb"] / rows["q8"]["size_mb"]
    assert f"×{size_ratio:.1f} smaller" in page and f"×{size_ratio:.1f} smaller" in headline(rows)
    assert "| q8 | llama.cpp |" in md and "| teacher | transformers |" in md
    # every row names its backend (speed rows included)
    assert all(backend_of(r) in ("transformers", "llama.cpp") for r in rows.values())
    assert all(r.get("gen_tok_s") for r in rows.values())
    # a curve for the 40-step stage, a note instead of an empty plot for the 3-step one
    assert 'aria-label="distilled (distill): KD loss"' in page and "<polyline" in page
    assert "Too short to plot: 3 steps gave 1 logged point" in page
    assert "short (train): 3 steps, 1 logged point" in md
    # commands: correct from the user's directory, only tools that set-up installs (and Ollama)
    assert "llama-cli" not in page + md and "cd " not in md.split("## Use the result")[1]
    block = md.split("```bash\n")[1].split("```")[0]
    assert "python -m llama_cpp.server --model runs/render/" in block
    assert "ollama create render-small -f runs/render/" in block and "ollama run render-small" in block
    for path in re.findall(r"(runs/render/\S+)", block):
        assert (home / path).exists(), path


def test_commands_use_absolute_paths_outside_the_working_directory(report_run, tmp_path):
    home, run, manifest = report_run
    cmds = usage_commands(run, manifest, cwd=tmp_path)
    server = next(c for c in cmds if c.startswith("python -m llama_cpp.server"))
    path = Path(server.split("--model ")[1])
    assert path.is_absolute() and path.exists()


def test_backend_is_never_blank():
    assert backend_of({"ref": "runs/x/model-q4_k_m.gguf"}) == "llama.cpp"
    assert backend_of({"ref": "runs/x/01-distill/output"}) == "transformers"
    assert backend_of({"backend": "llama.cpp", "ref": "x"}) == "llama.cpp"


def _png(path: Path):
    from PIL import Image

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24]), Image.open(io.BytesIO(path.read_bytes())).convert("RGB")


def _hex(c: str) -> tuple[int, int, int]:
    return tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_report_screenshots(report_run, tmp_path, width):
    _, run, _ = report_run
    png = tmp_path / f"report-{width}.png"
    _chromium(tmp_path / "profile", f"--screenshot={png}", f"--window-size={width},1500", (run / "report.html").as_uri())
    (w, h), img = _png(png)
    assert (w, h) == (width, 1500)
    counts = {c: n for n, c in img.getcolors(maxcolors=w * h)}
    non_white = sum(n for p, n in counts.items() if sum(p) < 3 * 245)
    assert non_white > 0.04 * w * h, "the page is (nearly) blank"
    # the bars are drawn: the teacher's grey and the first models' colours cover real areas
    for c in (TEACHER_COLOR, COLORS[1], COLORS[2]):
        assert counts.get(_hex(c), 0) > 200, f"no {c} bars in the {width} px screenshot"
    shutil.copy(png, run / png.name)  # kept beside the report for a person to look at


@needs_chromium
def test_no_horizontal_overflow_at_phone_width(report_run, tmp_path):
    _, run, _ = report_run
    phone = _layout(run / "report.html", 390, tmp_path / "profile")
    assert phone["innerWidth"] == 390
    assert phone["scrollWidth"] <= phone["innerWidth"] and phone["overflowing"] == [], phone
    # the probe does see overflow when there is some: a fixed 600 px element in the same frame
    bad = run / "wide.html"
    bad.write_text("<!doctype html><html><body><div style='width:600px;height:20px;background:#000'></div></body></html>")
    wide = _layout(bad, 390, tmp_path / "profile")
    assert wide["scrollWidth"] > 390 and wide["overflowing"], wide
