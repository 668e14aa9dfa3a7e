"""Every shipped recipe validates; the quickstart one fully, with its references, on this machine."""

from pathlib import Path

import pytest

from downsize.recipe import load_recipe
from downsize.zoo import zoo_path

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "tool-use-30b-to-7b", "qwen2.5-7b-to-1.5b-vocab-align"} <= names and len(names) >= 7


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_schema_and_stage_graph(path):
    r = load_recipe(path, check_refs=False)
    assert r.stages and r.name


def test_quickstart_validates_with_references():
    if not (zoo_path("coder-teacher") / "config.json").exists():
        pytest.skip("zoo teacher not installed")
    r = load_recipe(RECIPES[[p.stem for p in RECIPES].index("quickstart")])
    assert [s.kind for s in r.stages] == ["prune", "distill", "train", "quantize", "export", "eval"]
