"""Hub ids for models and datasets, resolved offline through real Hugging Face cache layouts built here
(tests/hub_cache.py): HF_HOME points at a tmp folder and HF_HUB_OFFLINE=1, so nothing is downloaded."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from downsize.data.refs import resolve_data
from downsize.errors import DownsizeError
from downsize.models.hub import HUB_MODEL_FILES, parse_hub_id
from downsize.models.refs import load_model, model_config, resolve_model
from hub_cache import add_cached_dataset, add_hub_repo, add_model_dir
from tiny_models import make_tiny_model, save_tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty HF_HOME with downloads off (env for subprocesses; the libraries' import-time flags patched)."""
    import datasets.config
    import huggingface_hub.constants

    home = tmp_path / "hf"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return home


def _logits(model, ids=(1, 5, 9, 2, 7)):
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref,repo,rev", [
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", None),
    ("meta-llama/Llama-3.1-8B-Instruct@main", "meta-llama/Llama-3.1-8B-Instruct", "main"),
    ("hf:Org/Name@refs/pr/1", "Org/Name", "refs/pr/1"),
])
def test_parse_hub_id(ref, repo, rev):
    h = parse_hub_id(ref)
    assert (h.repo_id, h.revision) == (repo, rev)


@pytest.mark.parametrize("ref", ["./runs/student", "runs/x/student", "model.gguf", "out/m-q4.gguf", "/abs/path",
                                 "Org/../x", "a--b/c", "zoo:coder-teacher"])
def test_paths_are_not_hub_ids(ref):
    assert parse_hub_id(ref) is None


def test_download_patterns_take_only_what_a_model_needs():
    from huggingface_hub.utils import filter_repo_objects

    repo_files = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                  "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
                  "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja", "README.md",
                  "pytorch_model.bin", "modeling_custom.py", "original/consolidated.00.pth", "LICENSE", ".gitattributes"]
    kept = set(filter_repo_objects(repo_files, allow_patterns=list(HUB_MODEL_FILES)))
    assert kept == set(repo_files[:10])  # no pickles, no remote code, no originals, no docs


# -- models through the Hub cache ----------------------------------------------------------------

def test_hub_id_resolves_through_the_cache(hf_home, tiny_model_dir):
    from huggingface_hub import scan_cache_dir

    snap = add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    info = scan_cache_dir(hf_home / "hub")  # huggingface_hub itself reads the layout as a valid cache
    assert [r.repo_id for r in info.repos] == ["Org/Tiny"] and not info.warnings
    ref = resolve_model("Org/Tiny")
    assert ref.kind == "hf" and ref.path == snap and ref.repo_id == "Org/Tiny" and ref.revision is None
    model, tok = load_model("Org/Tiny")
    local, _ = load_model(tiny_model_dir)
    assert torch.equal(_logits(model), _logits(local))
    assert len(tok) == model.config.vocab_size
    assert resolve_model("hf:Org/Tiny").path == snap


def test_revision_picks_its_snapshot(hf_home, tiny_model_dir, tiny_tokenizer, tmp_path):
    main = add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    other = save_tiny(make_tiny_model("llama", tiny_tokenizer, seed=1), tiny_tokenizer, tmp_path / "v2")
    v2 = add_model_dir(hf_home / "hub", "Org/Tiny", other, ref="v2")
    assert main != v2
    assert resolve_model("Org/Tiny").path == main
    assert resolve_model("Org/Tiny@v2").path == v2 and resolve_model("Org/Tiny@v2").revision == "v2"
    assert resolve_model(f"Org/Tiny@{v2.name}").path == v2  # a commit hash, no ref needed
    a, _ = load_model("Org/Tiny")
    b, _ = load_model("Org/Tiny@v2")
    assert not torch.equal(_logits(a), _logits(b))
    with pytest.raises(DownsizeError) as e:
        resolve_model("Org/Tiny@v3")
    assert "Org/Tiny@v3" in e.value.message and "--revision v3" in e.value.hint


def test_not_cached_gives_the_download_command(hf_home):
    with pytest.raises(DownsizeError) as e:
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert "not in the local Hugging Face cache" in e.value.message and "HF_HUB_OFFLINE=1" in e.value.message
    assert str(hf_home / "hub") in e.value.message
    assert "hf download Qwen/Qwen2.5-0.5B-Instruct --include config.json generation_config.json" in e.value.hint
    assert "'model*.safetensors'" in e.value.hint and "unset HF_HUB_OFFLINE" in e.value.hint


def test_local_directory_wins_over_hub_id(hf_home, tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    snap = add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    local = save_tiny(make_tiny_model("llama", tiny_tokenizer, seed=2), tiny_tokenizer, tmp_path / "work" / "Org" / "Tiny")
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_model("Org/Tiny").path == local.resolve() and resolve_model("Org/Tiny").repo_id is None
    assert resolve_model("hf:Org/Tiny").path == snap  # hf: forces the Hub


def test_config_only_snapshot(hf_home, tiny_model_dir):
    cfg = (tiny_model_dir / "config.json").read_bytes()
    add_hub_repo(hf_home / "hub", "Org/ConfigOnly", {"config.json": cfg})
    assert model_config("Org/ConfigOnly") == json.loads(cfg)
    with pytest.raises(DownsizeError) as e:
        resolve_model("Org/ConfigOnly")
    assert "no safetensors weights" in e.value.message and "hf download Org/ConfigOnly" in e.value.hint
    assert model_config(str(tiny_model_dir)) == json.loads(cfg)
    assert model_config(str(tiny_model_dir / "config.json")) == json.loads(cfg)
    with pytest.raises(DownsizeError, match="not in the local Hugging Face cache"):
        model_config("Org/Absent")


def test_malformed_hf_scheme(hf_home):
    with pytest.raises(DownsizeError, match="malformed Hub reference"):
        resolve_model("hf:not-a-repo")


# -- datasets ------------------------------------------------------------------------------------

CHATS = [{"messages": [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}."}]}
         for i in range(6)]


def test_cached_hub_dataset_splits(hf_home, tmp_path, tiny_tokenizer):
    add_cached_dataset(hf_home / "datasets", "Org/tiny_chat", {"train": CHATS[:4], "test": CHATS[4:]}, tmp_path / "src")
    ref = resolve_data("Org/tiny_chat")
    assert ref.kind == "hub" and ref.hub.shape == "messages"
    assert [r["messages"] for r in ref.records("train")] == [c["messages"] for c in CHATS[:4]]
    assert [r["messages"] for r in ref.records("test")] == [c["messages"] for c in CHATS[4:]]
    assert len(list(ref.records())) == 6  # default: every split
    texts = list(resolve_data("Org/tiny_chat:test").texts(tokenizer=tiny_tokenizer))
    assert texts == [tiny_tokenizer.apply_chat_template(c["messages"], tokenize=False) for c in CHATS[4:]]
    assert len(list(resolve_data("Org/tiny_chat:default:train").records())) == 4
    with pytest.raises(DownsizeError, match="has no split 'validation'"):
        list(ref.records("validation"))  # two Hub splits, neither called validation: say so, never guess
    with pytest.raises(DownsizeError, match="no split 'dev'"):
        resolve_data("Org/tiny_chat:dev")
    assert ref.fingerprint == resolve_data("Org/tiny_chat").fingerprint


def test_one_split_is_cut_by_hash(hf_home, tmp_path):
    rows = [{"text": f"document number {i}"} for i in range(60)]
    add_cached_dataset(hf_home / "datasets", "Org/tiny_text", {"train": rows}, tmp_path / "src")
    ref = resolve_data("Org/tiny_text")
    parts = {s: [r["text"] for r in ref.records(s)] for s in ("train", "validation", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(r["text"] for r in rows)
    assert all(parts.values())  # a stable hash split gives each part some rows


@pytest.mark.parametrize("rows,ref_suffix,expect", [
    ([{"text": "plain", "n": 1}], "", {"text": "plain"}),
    ([{"content": "code()"}], "", {"text": "code()"}),
    ([{"prompt": "2+2=", "completion": "4"}], "", {"text": "2+2=4"}),
    ([{"prompt": "hi", "response": "hello"}], "", {"messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "hello"}]}),
    ([{"instruction": "sum", "input": "1 2", "output": "3"}], "", {"messages": [
        {"role": "user", "content": "sum\n\n1 2"}, {"role": "assistant", "content": "3"}]}),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}], "",
     {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ([{"text": "not this", "body": "this"}], "#body", {"text": "this"}),
])
def test_column_shapes(hf_home, tmp_path, rows, ref_suffix, expect):
    name = f"shape_{abs(hash(json.dumps(rows))) % 10**8}"
    add_cached_dataset(hf_home / "datasets", f"Org/{name}", {"train": rows}, tmp_path / "src")
    rec = next(resolve_data(f"Org/{name}{ref_suffix}").records())
    assert {k: v for k, v in rec.items() if k in ("text", "messages")} == expect


def test_data_column_setting_and_errors(hf_home, tmp_path):
    add_cached_dataset(hf_home / "datasets", "Org/cols", {"train": [{"body": "x", "n": 3}]}, tmp_path / "src")
    assert next(resolve_data("Org/cols", column="body").records())["text"] == "x"
    with pytest.raises(DownsizeError) as e:
        resolve_data("Org/cols")
    assert "no column downsize can read (columns: body, n)" in e.value.message and "#COLUMN" in e.value.hint
    with pytest.raises(DownsizeError, match="has no column 'nope'"):
        resolve_data("Org/cols#nope")
    with pytest.raises(DownsizeError, match="holds int, not text"):
        resolve_data("Org/cols#n")


def test_hub_layout_dataset_snapshot(hf_home):
    """A dataset fetched with `hf download --repo-type dataset` (Hub cache only) loads offline too."""
    rows = "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(5)).encode()
    add_hub_repo(hf_home / "hub", "Org/snap_text", {"data/train.jsonl": rows, "README.md": b"# snap"},
                 repo_type="dataset")
    assert [r["text"] for r in resolve_data("Org/snap_text:train").records()] == [f"line {i}" for i in range(5)]


def test_missing_dataset_is_clear(hf_home):
    with pytest.raises(DownsizeError) as e:
        resolve_data("HuggingFaceH4/ultrachat_200k:train_sft")
    assert "no local file or folder" in e.value.message and "Hub dataset HuggingFaceH4/ultrachat_200k" in e.value.message
    assert "hf download HuggingFaceH4/ultrachat_200k --repo-type dataset" in e.value.hint


def test_bad_data_fails_before_any_model_loads(hf_home, tiny_model_dir, monkeypatch):
    import downsize.distill.train as dtrain
    import downsize.eval.run as erun
    import downsize.models.refs as refs
    from downsize.distill import DistillConfig

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(refs, "load_model", boom)  # every loader (eval's placement path too) ends in this one
    with pytest.raises(DownsizeError, match="Hub dataset Org/missing"):
        erun.evaluate(str(tiny_model_dir), "Org/missing")
    with pytest.raises(DownsizeError, match="Hub dataset Org/missing"):
        dtrain.distill(str(tiny_model_dir), str(tiny_model_dir), "Org/missing", DistillConfig(), hf_home / "out")


@pytest.mark.slow  # over 10 s; resolution through the cache is tested without the CLI above
def test_cli_eval_through_the_cache(hf_home, tiny_model_dir, tmp_path):
    """`downsize eval Org/Name --data Org/data` end to end in a fresh process, offline; same numbers as the local files."""
    from downsize.eval.run import evaluate

    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(30)]
    add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    add_cached_dataset(hf_home / "datasets", "Org/tiny_code", {"train": [{"text": t} for t in texts]}, tmp_path / "src")
    local = tmp_path / "local.jsonl"
    local.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "downsize.cli", "eval", "Org/Tiny", "--data", "Org/tiny_code", "--data-column", "text",
           "--json", "--no-sample"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want = evaluate(str(tiny_model_dir), str(local))
    assert got["tokens"] == want["tokens"] > 100
    assert math.isclose(got["perplexity"], want["perplexity"], rel_tol=1e-5)
    p = subprocess.run([*cmd[:4], "Org/Absent", *cmd[5:]], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "hf download Org/Absent" in p.stderr


def test_no_network_falls_back_to_the_cache(hf_home, tiny_model_dir, monkeypatch):
    """Downloads on, but the Hub unreachable (a closed local port as the endpoint): the cache answers."""
    import huggingface_hub.constants

    from downsize.models.refs import check_model_ref

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    snap = add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    assert resolve_model("Org/Tiny").path == snap
    add_hub_repo(hf_home / "hub", "Org/ConfigOnly", {"config.json": (tiny_model_dir / "config.json").read_bytes()})
    check_model_ref("Org/ConfigOnly")  # online validate checks the config alone
    with pytest.raises(DownsizeError) as e:
        resolve_model("Org/Absent")
    assert "the Hub could not be reached" in e.value.message and "hf download Org/Absent" in e.value.hint


def test_offline_validate_needs_the_weights(hf_home, tiny_model_dir):
    from downsize.models.refs import check_model_ref

    add_hub_repo(hf_home / "hub", "Org/ConfigOnly", {"config.json": (tiny_model_dir / "config.json").read_bytes()})
    with pytest.raises(DownsizeError, match="no safetensors weights"):
        check_model_ref("Org/ConfigOnly")


def test_with_column_folds_the_setting_into_the_reference(hf_home, tmp_path):
    from downsize.data.refs import with_column

    add_cached_dataset(hf_home / "datasets", "Org/cols2", {"train": [{"body": "x", "text": "y"}]}, tmp_path / "src")
    ref = with_column("Org/cols2:train", "body")
    assert ref == "Org/cols2:train#body" and next(resolve_data(ref).records())["text"] == "x"
    assert with_column("Org/cols2", None) == "Org/cols2"
    with pytest.raises(DownsizeError, match="already names a column"):
        with_column("Org/cols2#text", "body")


def test_recipe_runs_on_hub_ids(hf_home, tiny_model_dir, tmp_path):
    """A whole recipe whose teacher and data are Hub ids, run offline through the caches."""
    import yaml

    from downsize.pipeline import run_recipe
    from downsize.recipe import load_recipe

    add_model_dir(hf_home / "hub", "Org/Tiny", tiny_model_dir)
    texts = [f"def g{i}(a, b):\n    return a * {i} + b\n" for i in range(40)]
    add_cached_dataset(hf_home / "datasets", "Org/tiny_code2", {"train": [{"content": t} for t in texts]},
                       tmp_path / "src")
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({"name": "hub", "teacher": "Org/Tiny", "data": "Org/tiny_code2", "stages": [
        {"train": {"name": "ce", "steps": 2, "batch_size": 2, "seq_len": 32, "warmup_steps": 0, "checkpoint_every": 0,
                   "mixed_precision": "no"}},
        {"eval": {"max_tokens": 512, "seq_len": 32, "speed": False, "samples": False}}]}))
    recipe = load_recipe(p)  # references checked: both resolve offline
    run_dir = tmp_path / "run"
    m = run_recipe(recipe, run_dir, log=lambda m: None)
    assert [s["status"] for s in m["stages"]] == ["done", "done"]
    rows = m["stages"][1]["metrics"]["models"]
    assert set(rows) == {"teacher", "ce"} and rows["ce"]["perplexity"] < rows["teacher"]["perplexity"]
    assert rows["ce"]["vocab"].startswith("same vocabulary")
    again = run_recipe(load_recipe(p), run_dir, log=lambda m: None)  # Hub refs hash stably: nothing reruns
    assert all(s.get("skipped") for s in again["stages"])


def test_sft_on_a_hub_chat_dataset(hf_home, tiny_model_dir, tmp_path):
    from downsize.distill import SFTConfig, sft
    from downsize.train.loop import TrainConfig

    add_cached_dataset(hf_home / "datasets", "Org/tiny_chat2", {"train": CHATS}, tmp_path / "src")
    cfg = SFTConfig(train=TrainConfig(steps=2, lr=5e-3, batch_size=2, warmup_steps=0, checkpoint_every=0,
                                      mixed_precision="no", progress=False), max_seq_len=64, save_dtype="float32")
    out = sft(str(tiny_model_dir), "Org/tiny_chat2:train", cfg, tmp_path / "sft")
    card = json.loads((out / "distill_card.json").read_text())
    assert card["examples"] == len(CHATS) and card["assistant_tokens"] > 10


def test_download_takes_only_the_needed_files_and_sends_hf_token(hf_home, tiny_model_dir, monkeypatch):
    """Online: a Hub-protocol server on 127.0.0.1 (tests/hub_server.py) serves a repo with extras; only the
    model's files are downloaded, HF_TOKEN is sent, then the same id resolves offline from what was cached."""
    import huggingface_hub.constants

    from hub_server import HubServer

    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()}
    extras = {"pytorch_model.bin": b"pickle!", "modeling_evil.py": b"import os", "README.md": b"# card",
              "original/consolidated.00.pth": b"x" * 100}
    with HubServer({"Org/Remote": {**files, **extras}}, gated={"Org/Gated"}) as hub:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        ref = resolve_model("Org/Remote")
        assert hub.fetched("Org/Remote") == set(files)  # no pickles, no code, no card, no originals
        assert {p.name for p in ref.path.iterdir()} == set(files)
        repo_calls = [auth for _, path, auth in hub.requests if "Org/Remote" in path]
        assert repo_calls and all(auth == "Bearer hf_test_token" for auth in repo_calls)
        model, _ = load_model("Org/Remote")
        local, _ = load_model(tiny_model_dir)
        assert torch.equal(_logits(model), _logits(local))
        with pytest.raises(DownsizeError) as e:
            resolve_model("Org/Gated")
        assert "is gated" in e.value.message and "HF_TOKEN" in e.value.hint
        with pytest.raises(DownsizeError, match="no Hub model Org/Nope .or it is private."):
            resolve_model("Org/Nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone: the cache answers
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_model("Org/Remote").path == ref.path
