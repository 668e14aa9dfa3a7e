"""The Python examples in docs/*.md run: every ```python example block of a page, in order, in one namespace
(like notebook cells), in a fresh folder. Blocks fenced as plain ```python are illustrations and are not run."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python example\n(.*?)^```", re.S | re.M)
PRELUDE = "from pathlib import Path\n"
BUDGET_S = 60  # the examples of all pages together, on one thread


def _examples(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


PAGES = sorted(p for p in DOCS.glob("*.md") if _examples(p))


def test_there_are_examples_to_run():
    assert {p.name for p in PAGES} >= {"api.md", "prune.md"}


def test_the_root_api_names_are_importable_and_documented():
    import downsize

    api = (DOCS / "api.md").read_text()
    for name in downsize.__all__:
        if name != "__version__":
            assert getattr(downsize, name) is not None
            assert f"`{name}" in api, f"{name} is exported but not documented in docs/api.md"
    with pytest.raises(AttributeError):
        downsize.no_such_name  # noqa: B018


_elapsed: dict[str, float] = {}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_examples_run(page, tmp_path):
    blocks = _examples(page)
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text(PRELUDE + "\n".join(f"# --- example {i + 1} of {page.name}\n{b}" for i, b in enumerate(blocks)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    _elapsed[page.name] = time.perf_counter() - t0
    assert r.returncode == 0, f"{page.name}: an example failed\n{r.stderr[-3000:]}"
    print(f"{page.name}: {len(blocks)} examples in {_elapsed[page.name]:.1f} s")


def test_doc_examples_are_fast():
    if len(_elapsed) < len(PAGES):
        pytest.skip("run together with test_doc_examples_run")
    assert sum(_elapsed.values()) < BUDGET_S * max(1.0, os.getloadavg()[0] / 2), _elapsed
