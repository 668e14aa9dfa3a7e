"""push_to_hub against a local stand-in for the Hub API (a real HTTP server on 127.0.0.1, tests/ux/hub_standin.py):
exactly the expected files arrive with the expected bytes, weights through the LFS batch/upload path."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf
from downsize.export.ollama import convert_gguf
from downsize.hub import CardInfo, push_run, push_to_hub
from hub_standin import HubStandIn

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_standin_token"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # hf_xet is installed with huggingface_hub; the real Hub would take weights through Xet storage, which this
    # stand-in does not implement, so the client is told to use the git-LFS protocol (the documented switch).
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubStandIn(tmp_path / "hub", TOKEN) as h:
        yield h


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    d = tmp_path_factory.mktemp("export")
    g = d / "tiny.f32.gguf"
    export_gguf(tiny_model_dir, g, "F32")
    info = convert_gguf(g, "tiny", d, create=False)
    return g, Path(info["modelfile"])


def test_push_model_dir_gguf_and_modelfile(hub, exported, tiny_model_dir):
    gguf, modelfile = exported
    card = CardInfo(name="tiny", teacher="zoo:coder-teacher", data="zoo:stdlib", stages=["distilled: distill (steps=40)"],
                    rows={"teacher": {"backend": "transformers", "size_mb": 0.53, "perplexity": 500.0},
                          "tiny": {"backend": "llama.cpp", "size_mb": 0.25, "perplexity": 510.0, "kl_to_teacher": 0.01}})
    r = push_to_hub("me/tiny", model_dir=tiny_model_dir, ggufs=[gguf], modelfile=modelfile, card=card, token=TOKEN,
                    endpoint=hub.url)
    got = hub.files("me/tiny")
    local = {p.name: p.read_bytes() for p in Path(tiny_model_dir).iterdir() if p.is_file() and p.name != "README.md"}
    assert set(got) == set(local) | {gguf.name, "Modelfile", "README.md"}
    for name, data in local.items():
        assert got[name] == data, name
    assert got[gguf.name] == gguf.read_bytes()
    assert r["files"] == {p: len(b) for p, b in got.items()}
    # the Modelfile points at the GGUF beside it in the repository; the rest is unchanged
    mf = got["Modelfile"].decode().splitlines()
    assert mf[0] == f"FROM ./{gguf.name}" and mf[1:] == modelfile.read_text().splitlines()[1:]
    # the card: valid front matter, teacher, data, method, the waterfall with ratios, how to run it
    readme = got["README.md"].decode()
    front = yaml.safe_load(readme.split("---")[1])
    assert "downsize" in front["tags"] and "base_model" not in front  # zoo:… is not a Hub id
    for text in ("Teacher: `zoo:coder-teacher`", "Data: `zoo:stdlib`", "distilled: distill (steps=40)",
                 "| tiny | llama.cpp |", "×2.1 smaller", "+2.0 %", "ollama run hf.co/me/tiny:F32",
                 f"python -m llama_cpp.server --model {gguf.name}", "AutoModelForCausalLM.from_pretrained(\"me/tiny\")"):
        assert text in readme, text
    # weights went through the LFS batch API and a PUT per object; small files inline in the commit
    commit = hub.repos["me/tiny"]["commits"][-1]
    assert commit["ops"].count("lfsFile") == 2 and commit["ops"].count("file") == len(got) - 2
    assert sum(1 for m, p in hub.requests if m == "PUT" and p.startswith("/lfs/")) == 2
    assert hub.unknown == []


def test_push_again_updates_the_same_repo(hub, exported):
    gguf, _ = exported
    push_to_hub("me/again", ggufs=[gguf], token=TOKEN, endpoint=hub.url)
    first = hub.files("me/again")
    push_to_hub("me/again", ggufs=[gguf], token=TOKEN, endpoint=hub.url, commit_message="second",
                card=CardInfo(name="again", teacher="zoo:coder-teacher"))
    commits = hub.repos["me/again"]["commits"]
    assert len(commits) == 2 and set(hub.files("me/again")) == {gguf.name, "README.md"}
    # the unchanged GGUF is not sent again (its sha256 matches the Hub's); only the new card is
    assert commits[1]["ops"] == ["file"] and commits[1]["summary"] == "second"
    assert hub.files("me/again")["README.md"] != first["README.md"] and b"zoo:coder-teacher" in hub.files("me/again")["README.md"]


def test_clear_errors_token_offline_unreachable(hub, exported, monkeypatch):
    gguf, _ = exported
    with pytest.raises(DownsizeError, match="needs a token") as e:
        push_to_hub("me/x", ggufs=[gguf], endpoint=hub.url)
    assert "HF_TOKEN" in e.value.hint
    with pytest.raises(DownsizeError, match="refused the token"):
        push_to_hub("me/x", ggufs=[gguf], endpoint=hub.url, token="hf_wrong")
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # HF_TOKEN is honoured
    assert push_to_hub("me/env", ggufs=[gguf], endpoint=hub.url)["files"][gguf.name] == gguf.stat().st_size
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DownsizeError, match="cannot reach"):
        push_to_hub("me/x", ggufs=[gguf], endpoint=f"http://127.0.0.1:{port}")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownsizeError, match="offline"):
        push_to_hub("me/x", ggufs=[gguf], endpoint=hub.url)
    with pytest.raises(DownsizeError, match="not a Hub repository id"):
        push_to_hub("no-namespace", ggufs=[gguf])
    assert "me/x" not in hub.repos  # nothing was created by the failed pushes


def test_cli_export_ollama_push_to_hub(hub, tmp_path, tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}", "OMP_NUM_THREADS": "1", "HF_ENDPOINT": hub.url,
           "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN_PATH": str(tmp_path / "no-token")}
    r = subprocess.run([sys.executable, "-m", "downsize.cli", "export", "ollama", str(tiny_model_dir), "--name", "tiny",
                        "--out", "out", "--quant", "Q8_0", "--no-create", "--push-to-hub", "me/cli"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    got = hub.files("me/cli")
    assert set(got) == {"tiny.q8_0.gguf", "Modelfile", "README.md"}
    assert got["tiny.q8_0.gguf"] == (tmp_path / "out" / "tiny.q8_0.gguf").read_bytes()
    assert "ollama run hf.co/me/cli:Q8_0" in got["README.md"].decode() and "pushed 3 files" in r.stderr
    env.pop("HF_TOKEN")
    r = subprocess.run([sys.executable, "-m", "downsize.cli", "export", "gguf", str(tiny_model_dir), "--out", "x.gguf",
                        "--quant", "F32", "--push-to-hub", "me/notoken"], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=300)
    assert r.returncode == 2 and "needs a token" in r.stderr and "Traceback" not in r.stderr


def test_push_run_uses_the_manifest(hub, tmp_path, tiny_model_dir, stdlib_texts):
    from downsize.pipeline import run_recipe
    from downsize.recipe import load_recipe

    data = tmp_path / "data.txt"  # a single text file lands in one split by its name; this one is train
    data.write_text("\n".join(stdlib_texts[:3])[:15000])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"name": "pushme", "teacher": str(tiny_model_dir), "data": str(data),
        "stages": [{"train": {"name": "ce", "steps": 2, "batch_size": 2, "seq_len": 32, "warmup_steps": 1,
                              "checkpoint_every": 0, "mixed_precision": "no"}},
                   {"quantize": {"name": "q8", "quant": "Q8_0", "imatrix": False}},
                   {"export": {"model_name": "pushme", "create": False}},
                   {"eval": {"max_tokens": 256, "seq_len": 32, "speed": False, "samples": False}}]}))
    run = tmp_path / "run"
    run_recipe(load_recipe(tmp_path / "r.yaml"), run, log=lambda s: None)
    r = push_run(run, "me/run", token=TOKEN, endpoint=hub.url)
    got = hub.files("me/run")
    assert {"config.json", "model.safetensors", "pushme.q8_0.gguf", "Modelfile", "README.md"} <= set(got)
    assert got["model.safetensors"] == (run / "00-ce" / "output" / "model.safetensors").read_bytes()
    assert got["pushme.q8_0.gguf"] == (run / "02-export" / "pushme.q8_0.gguf").read_bytes()
    assert sum(n.endswith(".gguf") for n in got) == 1  # the export's GGUF is the quantize stage's, hard-linked
    readme = got["README.md"].decode()
    assert "ce: train (steps=2" in readme and "q8: quantize (quant=Q8_0" in readme and "| q8 | llama.cpp |" in readme
    assert r["files"]["pushme.q8_0.gguf"] == len(got["pushme.q8_0.gguf"])
