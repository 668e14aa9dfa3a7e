"""Model and data references: every kind resolves, every bad input gives a clear DownsizeError."""

import json

import pytest
from hub_cache import add_ollama_model, write_minimal_gguf

from downsize.data.refs import resolve_data
from downsize.errors import DownsizeError
from downsize.models.refs import load_model, resolve_model

# -- models --------------------------------------------------------------------------------------

def test_hf_directory(tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir))
    assert ref.kind == "hf" and ref.path == tiny_model_dir.resolve()
    model, tok = load_model(ref)
    assert model.config.vocab_size == len(tok)


def test_gguf_file(tmp_path):
    p = write_minimal_gguf(tmp_path / "m.gguf")
    ref = resolve_model(str(p))
    assert ref.kind == "gguf" and ref.is_gguf


def test_zoo_reference_unknown_name_lists_shipped():
    with pytest.raises(DownsizeError, match="no zoo model called 'nope'") as e:
        resolve_model("zoo:nope")
    assert "coder-teacher" in e.value.hint


def test_zoo_reference_resolves_when_installed():
    from downsize.zoo import zoo_path

    if not (zoo_path("coder-teacher") / "config.json").exists():
        pytest.skip("zoo teacher not installed")
    ref = resolve_model("zoo:coder-teacher")
    assert ref.kind == "zoo" and (ref.path / "model.safetensors").exists()


def test_ollama_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    digest = add_ollama_model(tmp_path)
    for ref in ("ollama:tiny", "ollama:tiny:latest", "ollama:library/tiny"):
        r = resolve_model(ref)
        assert r.kind == "gguf" and r.path.name == digest.replace(":", "-")


@pytest.mark.parametrize("case,match", [
    ("no-manifest", "no manifest at"),
    ("no-model-layer", "has no model layer"),
    ("missing-blob", "which is missing"),
])
def test_ollama_bad(tmp_path, monkeypatch, case, match):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    if case == "no-model-layer":
        add_ollama_model(tmp_path, media="application/vnd.ollama.image.license")
    elif case == "missing-blob":
        add_ollama_model(tmp_path, blob_ok=False)
    with pytest.raises(DownsizeError, match=match) as e:
        resolve_model("ollama:tiny")
    assert e.value.hint


def test_ollama_malformed_name():
    with pytest.raises(DownsizeError, match="malformed Ollama reference"):
        resolve_model("ollama:")


def test_path_errors(tmp_path):
    with pytest.raises(DownsizeError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(DownsizeError, match="without config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DownsizeError, match="no weights"):
        resolve_model(str(tmp_path))
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 16)
    with pytest.raises(DownsizeError, match="not a GGUF file"):
        resolve_model(str(bad))
    with pytest.raises(DownsizeError, match="unknown model reference scheme 's3'"):
        resolve_model("s3:meta-llama/Llama-3")  # hf: is a scheme now (tests/foundation/test_hub.py)


def test_missing_tokenizer(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    for f in d.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(DownsizeError, match="no tokenizer files"):
        load_model(str(d))


# -- data ----------------------------------------------------------------------------------------

def test_data_kinds(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "x.py").write_text("x = 1\n")
    (d / "y.md").write_text("# y\n")
    (d / "bin.dat").write_bytes(b"\0\1")
    j = tmp_path / "d.jsonl"
    j.write_text(json.dumps({"text": "t1"}) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert list(resolve_data(str(tmp_path / "a.txt")).texts()) == ["hello"]
    assert [r["id"] for r in resolve_data(str(d)).records()] == ["x.py", "y.md"]
    recs = list(resolve_data(str(j)).records())
    assert recs[0] == {"id": "1", "text": "t1"} and recs[1]["messages"][0]["content"] == "hi"
    assert resolve_data("zoo:stdlib").default_split == "validation"


def test_chat_records_render_with_template(tmp_path, tiny_tokenizer):
    j = tmp_path / "c.jsonl"
    j.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert list(resolve_data(str(j)).texts(tokenizer=tiny_tokenizer)) == ["<|im_start|>user\nhi<|im_end|>\n"]
    with pytest.raises(DownsizeError, match="need a tokenizer with a chat template"):
        list(resolve_data(str(j)).texts())


def test_data_errors(tmp_path):
    with pytest.raises(DownsizeError, match="does not exist"):
        resolve_data(str(tmp_path / "nope.txt"))
    with pytest.raises(DownsizeError, match="no zoo dataset"):
        resolve_data("zoo:wikipedia")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DownsizeError, match="is empty"):
        resolve_data(str(tmp_path / "empty.txt"))
    e = tmp_path / "emptydir"
    e.mkdir()
    with pytest.raises(DownsizeError, match="holds no text files"):
        resolve_data(str(e))
    j = tmp_path / "bad.jsonl"
    j.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(DownsizeError, match="bad.jsonl:2: not valid JSON"):
        list(resolve_data(str(j)).records())
    j.write_text('{"txt": "wrong key"}\n')
    with pytest.raises(DownsizeError, match="bad.jsonl:1: a record needs"):
        list(resolve_data(str(j)).records())
    with pytest.raises(DownsizeError, match="unknown split"):
        list(resolve_data("zoo:stdlib").records("dev"))
