"""The reliability catalogue (issue #14): bad inputs and failing environments for every command.

    env = build_env(Path("/tmp/rel"))                  # a tiny model, its GGUF, data, a recipe (a few seconds)
    for case in CASES:
        r = run_case(case, env, Path("/tmp/rel/w") / case.id)
        assert r.code == case.code and case.expect in r.output and not r.changed

Each case builds its inputs in a fresh folder (``Ctx``), runs one command line — in process through
``downsize.cli.main`` (the same boundary as the installed command), or as a real subprocess for
``sub=True`` — and is judged on: the exit code (2: bad input or environment), a message that names
the problem (``expect``, matched case-insensitively), no traceback in the output, and nothing that
existed before changed (every file and folder under the case folder and the shared inputs is hashed
before and after; no temporary ``.tmp-`` file is left behind).

Environment failures are real where the machine allows it (root: a 64 KiB tmpfs for a full disk, a
read-only tmpfs); elsewhere the same OSError is injected at the write (``inject``).
Imported by tests/reliability/test_catalogue.py and benchmarks/reliability_catalogue.py.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@dataclass
class Env:
    root: Path
    model: Path  # a tiny Llama HF folder (safetensors, fp32)
    gguf: Path  # the same model as an F32 GGUF written by downsize
    text: Path  # a text file of stdlib code
    chats: Path  # valid chat JSONL
    recipe: Path  # a valid two-stage recipe (prune -> eval) on the tiny model


@dataclass
class Ctx:
    env: Env
    w: Path  # this case's own folder

    def model_copy(self, name: str = "m") -> Path:
        import shutil

        dst = self.w / name
        shutil.copytree(self.env.model, dst)
        return dst

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.w / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def user_dir(self, name: str = "mine") -> Path:
        d = self.w / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "thesis.tex").write_text("years of work\n")
        (d / "notes").mkdir(exist_ok=True)
        (d / "notes" / "a.txt").write_text("do not delete\n")
        return d


@dataclass
class Case:
    id: str
    command: str  # the command under test, for the coverage count
    argv: Callable[[Ctx], list[str]]
    expect: str  # a part of the message that names the problem (case-insensitive)
    code: int = 2
    sub: bool = False  # run as a real subprocess
    inject: str | None = None  # "ENOSPC", "EROFS", "EACCES": an OSError raised by the first atomic write
    mount: str | None = None  # "full", "ro": a real tmpfs at ctx.w / "mnt" (root only; else ``inject``)
    group: str = ""


@dataclass
class Result:
    code: int
    output: str
    changed: list[str] = field(default_factory=list)


# ---- the shared inputs ---------------------------------------------------------------------

def build_env(root: Path) -> Env:
    import torch

    from downsize.data.stdlib import StdlibCorpus
    from downsize.export.gguf import export_gguf
    from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer
    from tiny_models import make_tiny_model, save_tiny

    root.mkdir(parents=True, exist_ok=True)
    texts = [t for _, t in StdlibCorpus.local().documents("validation")][:12]
    tok = train_bpe_tokenizer(texts, TokenizerSpec(vocab_size=512, pretokenizer="llama-bpe"))
    from transformers import AutoTokenizer

    tok.save_pretrained(root / "tok")
    tok = AutoTokenizer.from_pretrained(root / "tok")
    torch.manual_seed(0)
    model = save_tiny(make_tiny_model("llama", tok), tok, root / "model")
    gguf = root / "model.gguf"
    if not gguf.exists():
        export_gguf(model, gguf, "F32")
    text = root / "code.txt"
    text.write_text("\n\n".join(texts[:4]))
    chats = root / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"add {i} and 1"},
                                                      {"role": "assistant", "content": f"{i + 1}"}]}) + "\n"
                             for i in range(4)))
    import yaml

    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "tiny", "teacher": str(model), "data": str(text), "seed": 0, "stages": [
        {"prune": {"name": "pruned", "method": "depth", "targets": {"remove": 1}, "calib_samples": 2}},
        {"train": {"name": "trained", "input": "pruned", "steps": 1, "batch_size": 1, "seq_len": 32,
                   "mixed_precision": "no"}}]}))
    return Env(root, Path(model), gguf, text, chats, recipe)


# ---- bad files -----------------------------------------------------------------------------

def _st_header(ctx: Ctx) -> Path:
    return ctx.model_copy() / "model.safetensors"


def bad_model(kind: str) -> Callable[[Ctx], Path]:
    """A model folder damaged in one way (the catalogue's bad-weights cases)."""
    def make(ctx: Ctx) -> Path:
        m = ctx.model_copy()
        st = m / "model.safetensors"
        data = st.read_bytes()
        if kind == "garbage-header":
            st.write_bytes(b"\xff" * 8 + data[8:])
        elif kind == "bad-header-json":
            n = struct.unpack("<Q", data[:8])[0]
            st.write_bytes(data[:8] + b"{" * n + data[8 + n:])
        elif kind == "truncated":
            st.write_bytes(data[: len(data) // 2])
        elif kind == "empty":
            st.write_bytes(b"")
        elif kind == "missing-shard":
            n = struct.unpack("<Q", data[:8])[0]
            names = [k for k in json.loads(data[8:8 + n]) if k != "__metadata__"]
            st.rename(m / "model-00001-of-00002.safetensors")
            (m / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
                **{k: "model-00001-of-00002.safetensors" for k in names[:-1]},
                names[-1]: "model-00002-of-00002.safetensors"}}))
        elif kind == "bad-index":
            st.rename(m / "model-00001-of-00001.safetensors")
            (m / "model.safetensors.index.json").write_text("{not json")
        elif kind == "config-not-json":
            (m / "config.json").write_text('{"model_type": "llama",')
        elif kind == "config-list":
            (m / "config.json").write_text("[1, 2]")
        elif kind == "config-no-type":
            cfg = json.loads((m / "config.json").read_text())
            cfg.pop("model_type")
            (m / "config.json").write_text(json.dumps(cfg))
        elif kind == "config-binary":
            (m / "config.json").write_bytes(b"\x80\x81\xfe\xff" * 10)
        elif kind == "no-weights":
            st.unlink()
        elif kind == "pickle":
            st.unlink()
            (m / "pytorch_model.bin").write_bytes(_evil_pickle(ctx.w / "PWNED"))
        elif kind == "remote-code":
            cfg = json.loads((m / "config.json").read_text())
            cfg.update(model_type="evilnet", auto_map={"AutoConfig": "evil.EvilConfig",
                                                       "AutoModelForCausalLM": "evil.EvilModel"})
            (m / "config.json").write_text(json.dumps(cfg))
            (m / "evil.py").write_text(f"open({str(ctx.w / 'PWNED')!r}, 'w').write('ran')\n")
        elif kind == "bad-tokenizer":
            (m / "tokenizer.json").write_text("{\"version\": ")
        elif kind == "no-tokenizer":
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                (m / f).unlink(missing_ok=True)
        else:
            raise KeyError(kind)
        return m
    return make


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"model.embed_tokens.weight": _Evil(marker)})


BAD_MODELS = {  # kind -> words the message must contain
    "garbage-header": "damaged safetensors", "bad-header-json": "damaged safetensors", "truncated": "damaged safetensors",
    "empty": "damaged safetensors", "missing-shard": "missing", "bad-index": "not a valid shard index",
    "config-not-json": "not valid json", "config-list": "not an object", "config-no-type": "model_type",
    "config-binary": "not text", "no-weights": "no weights", "pickle": "pickle", "remote-code": "code",
}


def bad_gguf(kind: str) -> Callable[[Ctx], Path]:
    def make(ctx: Ctx) -> Path:
        data = ctx.env.gguf.read_bytes()
        blob = {"empty": b"", "tiny": data[:10], "truncated": data[: len(data) // 2],
                "header-garbage": data[:8] + b"\xff" * 64 + data[72:], "not-gguf": b"hello world, not a model\n" * 4,
                "header-only": data[:4096]}[kind]
        return ctx.file(f"{kind}.gguf", blob)
    return make


BAD_GGUFS = {"empty": "empty", "tiny": "not a complete gguf", "truncated": "truncated", "header-garbage": "damaged gguf",
             "not-gguf": "not a gguf", "header-only": "gguf"}


# ---- the cases -----------------------------------------------------------------------------

def _prune(m, out) -> list[str]:
    return ["prune", str(m), "--method", "depth", "--targets", "remove=1", "--calib-samples", "2", "--seq-len", "32",
            "--out", str(out)]


def _distill(teacher, out, **kw) -> list[str]:
    argv = ["distill", "--teacher", str(teacher), "--student", "teacher:num_hidden_layers=1", "--out", str(out),
            "--steps", "1", "--batch-size", "1", "--seq-len", "32", "--mixed-precision", "no", "--warmup", "1"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def _eval(m, **kw) -> list[str]:
    argv = ["eval", str(m), "--max-tokens", "64", "--seq-len", "32", "--no-sample"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def _sft(m, data, out) -> list[str]:
    return ["sft", "--model", str(m), "--data", str(data), "--out", str(out), "--steps", "1", "--batch-size", "1",
            "--mixed-precision", "no", "--max-seq-len", "64"]


def _gen(out, *extra) -> list[str]:
    return ["generate", "--teacher", "openai:http://127.0.0.1:9/v1#m", "--out", str(out), "--retries", "0",
            "--timeout", "1", *extra]


def _q8(ctx: Ctx) -> Path:
    """An already quantized GGUF: llama.cpp refuses to quantize it again (its log says why)."""
    from downsize.export.gguf import export_gguf

    p = ctx.w / "q8.gguf"
    export_gguf(ctx.env.model, p, "Q8_0")
    return p


def _distill_output(ctx: Ctx) -> Path:
    d = ctx.w / "student"
    d.mkdir()
    (d / ".downsize.json").write_text('{"kind": "distill"}\n')
    (d / "config.json").write_text("{}")
    return d


def _checkpointed(ctx: Ctx) -> Path:
    work = ctx.w / "s.work" / "checkpoints"
    (work / "step-00000005").mkdir(parents=True)
    (work / "step-00000005" / "state.json").write_text('{"step": 5}')
    (work / "latest.json").write_text('{"step": 5, "path": "step-00000005"}')
    return ctx.w / "s"


NOSPACE = "no space left on the device"  # the boundary's words for ENOSPC, however it surfaces


def _cases() -> list[Case]:
    C: list[Case] = []

    def add(id, command, argv, expect, **kw):
        C.append(Case(id, command, argv, expect, **kw))

    # -- outputs: never destroy what downsize did not write --------------------------------
    g = "outputs"
    add("prune-out-user-dir", "prune", lambda c: _prune(c.env.model, c.user_dir()), "did not write", group=g, sub=True)
    add("prune-out-user-file", "prune", lambda c: _prune(c.env.model, c.file("paper.pdf", "%PDF")), "is a file", group=g)
    add("prune-out-parent-file", "prune", lambda c: _prune(c.env.model, c.file("f", "x") / "sub"), "is a file, not a folder", group=g)
    add("prune-out-other-kind", "prune", lambda c: _prune(c.env.model, _distill_output(c)), "distill output", group=g)
    add("distill-out-user-dir", "distill", lambda c: _distill(c.env.model, c.user_dir()), "did not write", group=g)
    add("distill-out-user-file", "distill", lambda c: _distill(c.env.model, c.file("x.bin", "data")), "is a file", group=g)
    add("distill-out-parent-file", "distill", lambda c: _distill(c.env.model, c.file("f", "x") / "s"), "not a folder", group=g)
    add("distill-checkpoint-no-resume", "distill", lambda c: _distill(c.env.model, _checkpointed(c)), "--resume", group=g)
    add("distill-write-cache-user-dir", "distill",
        lambda c: ["distill", "--teacher", str(c.env.model), "--write-cache", str(c.user_dir()), "--seq-len", "32",
                   "--windows", "2"], "did not write", group=g)
    add("train-out-user-dir", "train", lambda c: ["train", str(c.env.model), "--out", str(c.user_dir()), "--steps", "1",
                                                  "--mixed-precision", "no"], "did not write", group=g)
    add("train-checkpoint-no-resume", "train", lambda c: ["train", str(c.env.model), "--out", str(_checkpointed(c)),
                                                          "--steps", "1", "--mixed-precision", "no"], "--resume", group=g)
    add("sft-out-user-dir", "sft", lambda c: _sft(c.env.model, c.env.chats, c.user_dir()), "did not write", group=g)
    add("sft-checkpoint-no-resume", "sft", lambda c: _sft(c.env.model, c.env.chats, _checkpointed(c)), "--resume", group=g)
    add("zoo-train-out-user-dir", "zoo train", lambda c: ["zoo", "train", "coder-teacher", "--steps", "1", "--out",
                                                          str(c.user_dir())], "did not write", group=g)
    add("export-gguf-out-user-file", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.file("theirs.gguf", "GGUF-ish"))], "did not write",
        group=g, sub=True)
    add("export-gguf-out-dir", "export gguf", lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.user_dir())],
        "is a folder", group=g)
    add("export-gguf-out-parent-file", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.file("f", "x") / "m.gguf")], "not a folder", group=g)
    add("export-gguf-foreign-gguf", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.file("dl.gguf", c.env.gguf.read_bytes()))],
        "did not write", group=g)
    add("quantize-out-user-file", "quantize",
        lambda c: ["quantize", str(c.env.gguf), "--out", str(c.file("q.gguf", "mine")), "--quant", "Q8_0"], "did not write", group=g)
    add("quantize-out-is-src", "quantize", lambda c: ["quantize", str(c.file("s.gguf", c.env.gguf.read_bytes())),
                                                      "--out", str(c.w / "s.gguf"), "--quant", "Q8_0"], "input file itself", group=g)
    add("quantize-out-dir", "quantize", lambda c: ["quantize", str(c.env.gguf), "--out", str(c.user_dir()), "--quant", "Q8_0"],
        "is a folder", group=g)
    add("export-ollama-out-user-dir", "export ollama",
        lambda c: ["export", "ollama", str(c.env.model), "--name", "t", "--out", str(c.user_dir()), "--no-create",
                   "--template-style", "chatml"], "did not write", group=g)
    add("export-lora-out-user-file", "export lora",
        lambda c: ["export", "lora", str(c.w), "--base", str(c.env.model), "--out", str(c.file("a.gguf", "mine"))],
        "did not write", group=g)
    add("convert-user-modelfile", "convert",
        lambda c: (c.file("Modelfile", "FROM ./mine.gguf\n# my edits\n"),
                   ["convert", "--gguf", str(c.file("m.gguf", c.env.gguf.read_bytes())), "--name", "t", "--no-create",
                    "--template-style", "chatml"])[1], "did not write", group=g)
    add("generate-out-user-jsonl", "generate",
        lambda c: _gen(c.file("prompts.jsonl", '{"prompt": "mine"}\n'), "--prompts", str(c.file("p.txt", "hi\n"))),
        "did not write", group=g)
    add("generate-out-text-file", "generate",
        lambda c: _gen(c.file("essay.txt", "my essay\n"), "--prompts", str(c.file("p.txt", "hi\n"))), "did not write", group=g)
    add("generate-out-dir", "generate", lambda c: _gen(c.user_dir(), "--prompts", str(c.file("p.txt", "hi\n"))),
        "is a folder", group=g)
    add("eval-tools-tasks-user-file", "eval-tools",
        lambda c: ["eval-tools", "--model", str(c.env.model), "--tasks", str(c.file("t.jsonl", "my notes\n")),
                   "--codebase", str(c.user_dir("repo")), "--make-tasks", "2"], "did not write", group=g)
    add("run-out-user-dir", "run", lambda c: ["run", str(c.env.recipe), "--out", str(c.user_dir())], "did not write",
        group=g, sub=True)
    add("run-out-file", "run", lambda c: ["run", str(c.env.recipe), "--out", str(c.file("r", "x"))], "is a file", group=g)

    # -- bad weights: the same message from every command that loads them -------------------
    for kind, words in BAD_MODELS.items():
        add(f"eval-{kind}", "eval", lambda c, k=kind: _eval(bad_model(k)(c)), words, group="weights")
        add(f"prune-{kind}", "prune", lambda c, k=kind: _prune(bad_model(k)(c), c.w / "out"), words, group="weights")
        add(f"distill-{kind}", "distill", lambda c, k=kind: _distill(bad_model(k)(c), c.w / "out"), words, group="weights")
        add(f"export-gguf-{kind}", "export gguf",
            lambda c, k=kind: ["export", "gguf", str(bad_model(k)(c)), "--out", str(c.w / "o.gguf")], words, group="weights")
    for kind, words in (("truncated", "damaged safetensors"), ("pickle", "pickle"), ("config-not-json", "not valid json")):
        add(f"sft-{kind}", "sft", lambda c, k=kind: _sft(bad_model(k)(c), c.env.chats, c.w / "out"), words, group="weights")
    add("eval-bad-tokenizer", "eval", lambda c: _eval(bad_model("bad-tokenizer")(c)), "tokenizer", group="weights")
    add("eval-no-tokenizer", "eval", lambda c: _eval(bad_model("no-tokenizer")(c)), "no tokenizer", group="weights")
    add("prune-bad-tokenizer", "prune", lambda c: _prune(bad_model("bad-tokenizer")(c), c.w / "o"), "tokenizer", group="weights")
    add("eval-pickle-sub", "eval", lambda c: _eval(bad_model("pickle")(c)), "pickle", group="weights", sub=True)
    add("eval-missing-path", "eval", lambda c: _eval(c.w / "nope"), "does not exist", group="weights")
    add("eval-unknown-scheme", "eval", lambda c: _eval("hub:someone/model"), "unknown model reference scheme", group="weights")
    add("eval-unknown-zoo", "eval", lambda c: _eval("zoo:nonexistent"), "no zoo model", group="weights")
    add("eval-dir-no-config", "eval", lambda c: _eval(c.user_dir()), "config.json", group="weights")
    add("distill-student-bad", "distill",
        lambda c: _distill(c.env.model, c.w / "o")[:3] + ["--student", str(bad_model("truncated")(c))] + _distill(c.env.model, c.w / "o")[5:],
        "damaged safetensors", group="weights")
    add("export-ollama-truncated", "export ollama",
        lambda c: ["export", "ollama", str(bad_model("truncated")(c)), "--name", "t", "--out", str(c.w / "o"),
                   "--no-create", "--template-style", "chatml"], "damaged safetensors", group="weights")
    add("export-lora-not-adapter", "export lora",
        lambda c: ["export", "lora", str(c.user_dir()), "--base", str(c.env.model), "--out", str(c.w / "a.gguf")],
        "not a peft adapter", group="weights")
    add("export-lora-bad-config", "export lora",
        lambda c: (c.file("ad/adapter_config.json", "{oops"), c.file("ad/adapter_model.safetensors", b"\0" * 8),
                   ["export", "lora", str(c.w / "ad"), "--base", str(c.env.model), "--out", str(c.w / "a.gguf")])[2],
        "not valid json", group="weights")
    add("export-lora-bad-weights", "export lora",
        lambda c: (c.file("ad/adapter_config.json", '{"peft_type": "LORA", "r": 2}'),
                   c.file("ad/adapter_model.safetensors", b"\x10" + b"\0" * 7 + b"{}"),
                   ["export", "lora", str(c.w / "ad"), "--base", str(c.env.model), "--out", str(c.w / "a.gguf")])[2],
        "damaged safetensors", group="weights")

    # -- damaged GGUF files --------------------------------------------------------------------
    for kind, words in BAD_GGUFS.items():
        add(f"eval-gguf-{kind}", "eval", lambda c, k=kind: _eval(bad_gguf(k)(c)), words, group="gguf")
        add(f"convert-gguf-{kind}", "convert",
            lambda c, k=kind: ["convert", "--gguf", str(bad_gguf(k)(c)), "--name", "t", "--no-create"], words, group="gguf")
        add(f"quantize-gguf-{kind}", "quantize",
            lambda c, k=kind: ["quantize", str(bad_gguf(k)(c)), "--out", str(c.w / "q.gguf"), "--quant", "Q8_0"], words,
            group="gguf")
    add("eval-gguf-truncated-sub", "eval", lambda c: _eval(bad_gguf("truncated")(c)), "truncated", group="gguf", sub=True)
    add("quantize-requantize", "quantize",
        lambda c: (["quantize", str(c.env.gguf), "--out", str(c.w / "q8.gguf"), "--quant", "Q8_0"],)[0], "", code=0,
        group="gguf")  # control: a good quantize passes (and leaves its output)
    add("quantize-requantize-refused", "quantize",
        lambda c: ["quantize", str(_q8(c)), "--out", str(c.w / "q4.gguf"), "--quant", "Q4_0"], "requantiz", group="gguf")
    add("quantize-missing-src", "quantize", lambda c: ["quantize", str(c.w / "none.gguf"), "--out", str(c.w / "q.gguf")],
        "no gguf file", group="gguf")
    add("quantize-src-dir", "quantize", lambda c: ["quantize", str(c.user_dir()), "--out", str(c.w / "q.gguf")],
        "is a folder", group="gguf")
    add("convert-missing", "convert", lambda c: ["convert", "--gguf", str(c.w / "x.gguf"), "--name", "t"], "no gguf file",
        group="gguf")
    add("export-gguf-from-truncated-gguf", "export gguf",
        lambda c: ["export", "gguf", str(bad_gguf("truncated")(c)), "--out", str(c.w / "o.gguf"), "--quant", "Q8_0"],
        "truncated", group="gguf")

    # -- bad data ------------------------------------------------------------------------------
    g = "data"
    add("eval-data-whitespace", "eval", lambda c: _eval(c.env.model, data=c.file("ws.txt", "   \n\n\t\n")), "only whitespace", group=g)
    add("eval-data-empty", "eval", lambda c: _eval(c.env.model, data=c.file("e.txt", "")), "is empty", group=g)
    add("eval-data-binary-jsonl", "eval", lambda c: _eval(c.env.model, data=c.file("b.jsonl", bytes(range(256)) * 4)), "b.jsonl is not utf-8",
        group=g)
    add("eval-data-missing", "eval", lambda c: _eval(c.env.model, data=str(c.w / "none.txt")), "does not exist", group=g)
    add("eval-data-empty-dir", "eval", lambda c: _eval(c.env.model, data=str((c.w / "d").mkdir() or c.w / "d")), "holds no text files", group=g)
    add("eval-data-bad-jsonl", "eval", lambda c: _eval(c.env.model, data=c.file("x.jsonl", '{"text": "a"}\n{broken\n')), "x.jsonl:2: not valid json",
        group=g)
    add("prune-calib-whitespace", "prune",
        lambda c: _prune(c.env.model, c.w / "o")[:-2] + ["--calib", str(c.file("ws.txt", " \n \n")), "--out", str(c.w / "o")],
        "has 0 tokens", group=g)
    add("distill-data-whitespace", "distill", lambda c: _distill(c.env.model, c.w / "o", data=c.file("ws.txt", "\n \n")), "fewer than one window",
        group=g)
    add("distill-data-binary", "distill", lambda c: _distill(c.env.model, c.w / "o", data=c.file("b.jsonl", b"\xff\xfe" * 99)),
        "b.jsonl is not utf-8", group=g)
    add("sft-data-binary", "sft", lambda c: _sft(c.env.model, c.file("b.jsonl", b"\x00\xff" * 64), c.w / "o"), "b.jsonl is not utf-8", group=g)
    add("sft-data-bad-json", "sft", lambda c: _sft(c.env.model, c.file("c.jsonl", '{"messages": [}\n'), c.w / "o"),
        "not valid json", group=g)
    add("sft-data-no-assistant", "sft",
        lambda c: _sft(c.env.model, c.file("c.jsonl", '{"messages": [{"role": "user", "content": "x"}]}\n'), c.w / "o"),
        "assistant", group=g)
    add("sft-data-empty", "sft", lambda c: _sft(c.env.model, c.file("c.jsonl", "\n\n"), c.w / "o"), "no chat records", group=g)
    add("sft-data-text", "sft", lambda c: _sft(c.env.model, c.env.text, c.w / "o"), "chat jsonl", group=g)
    add("generate-prompts-empty", "generate", lambda c: _gen(c.w / "o.jsonl", "--prompts", str(c.file("p.txt", ""))), "no prompts",
        group=g)
    add("generate-prompts-binary", "generate",
        lambda c: _gen(c.w / "o.jsonl", "--prompts", str(c.file("p.jsonl", b"\x00\xff\xfe" * 50))), "no prompts", group=g)
    add("generate-prompts-missing", "generate", lambda c: _gen(c.w / "o.jsonl", "--prompts", str(c.w / "none.txt")), "no prompt file",
        group=g)
    add("generate-server-down", "generate", lambda c: _gen(c.w / "o.jsonl", "--prompts", str(c.file("p.txt", "hi\n"))),
        "connection refused", group=g)
    add("generate-codebase-missing", "generate", lambda c: _gen(c.w / "o.jsonl", "--codebase", str(c.w / "nope")), "is not a directory",
        group=g)
    add("eval-tools-tasks-missing", "eval-tools",
        lambda c: ["eval-tools", "--model", str(c.env.model), "--tasks", str(c.w / "none.jsonl"), "--codebase",
                   str(c.user_dir("repo"))], "no prompt file", group=g)
    add("eval-tools-tasks-bad-json", "eval-tools",
        lambda c: ["eval-tools", "--model", str(c.env.model), "--tasks", str(c.file("t.jsonl", "{bad\n")), "--codebase",
                   str(c.user_dir("repo"))], "no tasks", group=g)

    # -- recipes and overrides -----------------------------------------------------------------
    g = "recipes"
    add("validate-bad-yaml", "validate", lambda c: ["validate", str(c.file("r.yaml", "name: [unclosed\n"))], "yaml", group=g)
    add("validate-empty", "validate", lambda c: ["validate", str(c.file("r.yaml", ""))], "mapping", group=g)
    add("validate-missing", "validate", lambda c: ["validate", str(c.w / "none.yaml")], "no recipe", group=g)
    add("validate-override-into-scalar", "validate", lambda c: ["validate", str(c.env.recipe), "seed.x=1"], "seed", group=g)
    add("validate-override-out-of-range", "validate", lambda c: ["validate", str(c.env.recipe), "stages.7=1"], "outside",
        group=g)
    add("validate-override-empty-recipe", "validate", lambda c: ["validate", str(c.file("r.yaml", "")), "seed=1"], "empty",
        group=g)
    add("validate-override-bad-yaml", "validate", lambda c: ["validate", str(c.env.recipe), "seed=[1"], "not valid yaml",
        group=g)
    add("validate-override-not-kv", "validate", lambda c: ["validate", str(c.env.recipe), "seed"], "key=value", group=g)
    add("validate-override-missing-path", "validate", lambda c: ["validate", str(c.env.recipe), "stages.0.nope.x=1"],
        "does not exist", group=g)
    add("validate-bad-value", "validate", lambda c: ["validate", str(c.env.recipe), "stages.0.prune.method=chainsaw"],
        "method", group=g)
    add("validate-binary", "validate", lambda c: ["validate", str(c.file("r.yaml", b"\xff\xfe\x00" * 20))], "not a text file", group=g)
    add("plan-bad-yaml", "plan", lambda c: ["plan", str(c.file("r.yaml", "a: b: c\n"))], "yaml", group=g)
    add("plan-override-into-scalar", "plan", lambda c: ["plan", str(c.env.recipe), "name.x=1"], "name", group=g)
    add("run-bad-override", "run", lambda c: ["run", str(c.env.recipe), "stages.0.prune.calib_samples=-3", "--out",
                                              str(c.w / "r")], "calib_samples", group=g)
    add("run-bad-from", "run", lambda c: ["run", str(c.env.recipe), "--from", "nowhere", "--out", str(c.w / "r")],
        "not a stage", group=g)
    add("run-bad-yaml", "run", lambda c: ["run", str(c.file("r.yaml", "stages: [\n")), "--out", str(c.w / "r")], "yaml",
        group=g)

    # -- bad options ---------------------------------------------------------------------------
    g = "options"
    add("quantize-unknown-type", "quantize", lambda c: ["quantize", str(c.env.gguf), "--out", str(c.w / "q.gguf"), "--quant",
                                                        "Q9_Z"], "unknown quant type", group=g)
    add("export-gguf-unknown-type", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.w / "o.gguf"), "--quant", "Q9"], "'Q9' is not one of",
        group=g)  # the option's choices are the quantizer's types, so the command line itself names them
    add("prune-unknown-method", "prune", lambda c: ["prune", str(c.env.model), "--method", "chainsaw", "--out",
                                                    str(c.w / "o")], "chainsaw", group=g)
    add("prune-depth-no-target", "prune", lambda c: ["prune", str(c.env.model), "--method", "depth", "--out",
                                                     str(c.w / "o")], "target", group=g)
    add("prune-bad-nm", "prune", lambda c: ["prune", str(c.env.model), "--method", "wanda", "--nm", "5:4", "--out",
                                            str(c.w / "o")], "5:4", group=g)
    add("distill-bad-loss", "distill", lambda c: _distill(c.env.model, c.w / "o", loss="kll"), "kll", group=g)
    add("distill-no-student", "distill", lambda c: ["distill", "--teacher", str(c.env.model)], "--student", group=g)
    add("distill-bad-precision", "distill", lambda c: _distill(c.env.model, c.w / "o")[:-4] + ["--mixed-precision", "fp8"],
        "fp8", group=g)
    add("distill-zero-steps", "distill", lambda c: _distill(c.env.model, c.w / "o")[:-8] + ["--steps", "0"], "steps", group=g)
    add("generate-in-flight-zero", "generate",
        lambda c: _gen(c.w / "o.jsonl", "--prompts", str(c.file("p.txt", "hi\n")), "--in-flight", "0"), "greater than or equal to 1", group=g)
    add("zoo-train-steps-and-minutes", "zoo train",
        lambda c: ["zoo", "train", "coder-teacher", "--steps", "1", "--minutes", "1", "--out", str(c.w / "z")], "exactly one",
        group=g)
    add("zoo-train-unknown", "zoo train", lambda c: ["zoo", "train", "nope", "--steps", "1"], "no zoo model", group=g)
    add("zoo-path-unknown", "zoo path", lambda c: ["zoo", "path", "nope"], "no zoo model", group=g)
    add("zoo-list-control", "zoo list", lambda c: ["zoo", "list", "--json"], "", code=0, group=g)
    add("export-ollama-bad-style", "export ollama",
        lambda c: ["export", "ollama", str(c.env.model), "--name", "t", "--out", str(c.w / "o"), "--no-create",
                   "--template-style", "klingon"], "klingon", group=g)
    add("convert-bad-name", "convert", lambda c: ["convert", "--gguf", str(c.env.gguf), "--name", "has space", "--no-create",
                                                  "--out", str(c.w / "o")], "invalid ollama model name", group=g)
    add("eval-bad-split", "eval", lambda c: _eval(c.env.model, split="nosuchsplit"), "unknown split", group=g)
    add("unknown-command", "(none)", lambda c: ["frobnicate"], "no such command", group=g)

    # -- user text is never markup ------------------------------------------------------------
    g = "markup"
    add("markup-closing-tag-path", "eval", lambda c: _eval(c.w / "[/x]" / "model"), "[/x]", group=g)
    add("markup-style-tag-path", "prune", lambda c: _prune(c.w / "[red]mine", c.w / "o"), "[red]mine", group=g)
    add("markup-in-out-path", "prune", lambda c: _prune(c.env.model, c.user_dir("[bold]x[/bold]")), "[bold]x[/bold]",
        group=g, sub=True)

    # -- the environment: full disk, read-only file system, permission -------------------------
    g = "environment"
    add("prune-disk-full", "prune", lambda c: _prune(c.env.model, c.w / "mnt" / "o"), NOSPACE, mount="full",
        inject="ENOSPC", group=g)
    add("export-gguf-disk-full", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.w / "mnt" / "o.gguf")], NOSPACE, mount="full",
        inject="ENOSPC", group=g)
    add("distill-disk-full", "distill", lambda c: _distill(c.env.model, c.w / "mnt" / "o"), NOSPACE, mount="full",
        inject="ENOSPC", group=g)
    add("prune-read-only", "prune", lambda c: _prune(c.env.model, c.w / "mnt" / "o"), "read-only", mount="ro",
        inject="EROFS", group=g)
    add("export-gguf-read-only", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.w / "mnt" / "o.gguf")], "read-only", mount="ro",
        inject="EROFS", group=g)
    add("quantize-read-only", "quantize",
        lambda c: ["quantize", str(c.env.gguf), "--out", str(c.w / "mnt" / "q.gguf"), "--quant", "Q8_0"], "read-only",
        mount="ro", inject="EROFS", group=g)
    add("generate-read-only", "generate",
        lambda c: _gen(c.w / "mnt" / "o.jsonl", "--prompts", str(c.file("p.txt", "hi\n"))), "read-only", mount="ro",
        inject="EROFS", group=g)
    add("prune-permission-denied", "prune", lambda c: _prune(c.env.model, c.w / "o"), "permission denied",
        inject="EACCES", group=g)
    add("export-gguf-permission-denied", "export gguf",
        lambda c: ["export", "gguf", str(c.env.model), "--out", str(c.w / "o.gguf")], "permission denied", inject="EACCES",
        group=g)
    add("eval-model-permission-denied", "eval", lambda c: _eval(c.env.model), "permission denied", inject="EACCES-read",
        group=g)
    return C


CASES = _cases()


# ---- running a case ------------------------------------------------------------------------

def tree_state(*roots: Path) -> dict[str, str]:
    """path -> content hash (files), "dir" (folders), "-> target" (symlinks), for everything under roots."""
    state: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "mnt" or Path(dirpath) != root]
            for d in dirnames:
                state[os.path.join(dirpath, d)] = "dir"
            for f in filenames:
                p = os.path.join(dirpath, f)
                if os.path.islink(p):
                    state[p] = "-> " + os.readlink(p)
                    continue
                try:
                    with open(p, "rb") as fh:
                        state[p] = hashlib.sha256(fh.read()).hexdigest()
                except OSError as e:
                    state[p] = f"unreadable {e.errno}"
    return state


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changed = [f"changed {p}" for p, h in before.items() if after.get(p) != h]
    changed += [f"left {p}" for p in after if p not in before and ".tmp-" in os.path.basename(p)]
    return changed


@contextlib.contextmanager
def _mounted(path: Path, mode: str):
    """A real tiny tmpfs at ``path`` (64 KiB for "full", read-only for "ro"); yields False where mounting fails."""
    path.mkdir(parents=True, exist_ok=True)
    opts = "size=64k" if mode == "full" else "ro,size=64k"
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def _injected(what: str | None):
    """Raise the OSError of ``what`` where downsize first creates an output (or opens a weights file)."""
    if what is None:
        yield
        return
    import tempfile

    name = what.split("-")[0]
    err = getattr(errno, name)
    if what.endswith("-read"):
        import safetensors

        real_open = safetensors.safe_open

        def fail_open(path, *a, **k):
            raise PermissionError(err, os.strerror(err), str(path))

        import builtins

        real = builtins.open

        def fail(file, mode="r", *a, **k):
            if str(file).endswith(".safetensors") and "r" in mode:
                raise PermissionError(err, os.strerror(err), str(file))
            return real(file, mode, *a, **k)

        builtins.open, safetensors.safe_open = fail, fail_open
        try:
            yield
        finally:
            builtins.open, safetensors.safe_open = real, real_open
        return
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def boom(*a, dir=None, **k):
        raise OSError(err, os.strerror(err), str(dir))

    tempfile.mkstemp, tempfile.mkdtemp = boom, boom
    try:
        yield
    finally:
        tempfile.mkstemp, tempfile.mkdtemp = real_mkstemp, real_mkdtemp


def _inprocess(argv: list[str], inject: str | None) -> tuple[int, str]:
    """``downsize.cli.main(argv)`` with stdout and stderr captured; an exception that escapes main (an older
    downsize without the boundary) is recorded as Python would print it: exit 1 and a traceback."""
    import inspect
    import traceback

    from downsize import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _injected(inject):
        try:
            if inspect.signature(cli.main).parameters:
                cli.main(argv)
            else:  # before #14 main() read sys.argv
                saved, sys.argv = sys.argv, ["downsize", *argv]
                try:
                    cli.main()
                finally:
                    sys.argv = saved
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - recorded, judged by verdict()
            traceback.print_exc(file=out)
            code = 1
    return code, out.getvalue()


SRC = Path(os.environ.get("DOWNSIZE_CATALOGUE_SRC") or Path(__file__).resolve().parents[2] / "src")


def _subprocess(argv: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("DOWNSIZE_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "downsize.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout + p.stderr


def run_case(case: Case, env: Env, w: Path) -> Result:
    w.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(env, w)
    with contextlib.ExitStack() as stack:
        inject = case.inject
        if case.mount:
            if stack.enter_context(_mounted(w / "mnt", case.mount)):
                inject = None  # the real thing
        argv = case.argv(ctx)
        before = tree_state(w, env.root)
        cwd = os.getcwd()
        os.chdir(w)  # outputs with a default path (convert's Modelfile beside the GGUF) land in the case folder
        try:
            code, output = _subprocess(argv, w) if case.sub else _inprocess(argv, inject)
        finally:
            os.chdir(cwd)
        after = tree_state(w, env.root)
    changed = _changes(before, after)
    if (w / "PWNED").exists():
        changed.append("a pickle or remote code RAN")
    return Result(code, output, changed)


def verdict(case: Case, r: Result) -> tuple[bool, str]:
    """(handled, why not) for one result."""
    if r.changed:
        return False, "; ".join(r.changed[:3])
    if "Traceback" in r.output:
        return False, "traceback"
    if r.code != case.code:
        return False, f"exit {r.code}, expected {case.code}: {r.output.strip()[-300:]}"
    if case.code == 2 and "error" not in r.output.lower() and "usage" not in r.output.lower():
        return False, "no error message"
    if case.expect.lower() not in r.output.lower():
        return False, f"message lacks {case.expect!r}: {r.output.strip()[-300:]}"
    return True, ""
