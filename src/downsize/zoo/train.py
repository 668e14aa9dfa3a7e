"""Train a reference-zoo model from scratch on ``zoo:stdlib`` (the code behind ``downsize zoo train``).

    $ downsize zoo train coder-teacher --steps 4000 --seed 0 --threads 1 --out runs/zoo/coder-teacher
    $ downsize zoo train coder-teacher --init-from zoo:coder-teacher --passes 3 --lr 1e-3 --seed 1 \\
          --mixed-precision bf16 --eval-every 200 --out runs/zoo/coder-teacher-v2

The second continues the shipped model under a fresh schedule.

Reproducible from the seed: the tokenizer is trained on the sorted train split, the batches are
a pure function of the step, and the initial weights come from ``torch.manual_seed(seed)`` — or,
with ``init_from``, from a model of the same architecture and tokenizer, trained on under a fresh
linear warmup + cosine schedule (the card records the source, its tokens and the passes in total).
With ``eval_every`` the validation perplexity (first ``eval_tokens`` tokens) is measured every that
many steps; the curve goes into the card and ``training_curve.json``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from downsize.data.packing import PackedDataset, cache_dir
from downsize.data.stdlib import StdlibCorpus
from downsize.io import KIND_ZOO, atomic_dir, check_output, write_json_atomic, write_text_atomic
from downsize.models.arch import build_config
from downsize.train.loop import TrainConfig, lm_loss, train
from downsize.zoo import ZOO, ZooSpec
from downsize.zoo.tokenizer import IM_END, train_bpe_tokenizer

# The first tokens of the validation split, for a fast check that a loaded model matches its card.
QUICK_EVAL_TOKENS = 16384
CURVE_FILE = "training_curve.json"
CURVE_EVAL_TOKENS = 65536  # validation tokens per point of the curve


def stdlib_stream(tokenizer, split: str):
    """A split of zoo:stdlib as a token stream (downsize.data.stream)."""
    from downsize.data.stream import token_stream

    return token_stream(tokenizer, "zoo:stdlib", split=split)


def train_zoo_model(name: str, steps: int | None, out: Path, seed: int = 0, threads: int | None = None,
                    resume: bool = False, eval_batch_size: int = 8, minutes: float | None = None,
                    batch_size: int | None = None, init_from: str | None = None, passes: float | None = None,
                    lr: float | None = None, warmup_steps: int | None = None, mixed_precision: str | None = None,
                    eval_every: int = 0, eval_tokens: int = CURVE_EVAL_TOKENS, final_eval_tokens: int | None = None,
                    overwrite: bool = False) -> Path:
    """Train zoo model ``name`` and write a complete HF directory to ``out``.

    Give ``steps``, ``passes`` over the train split, or ``minutes`` to resolve the step count from the
    measured speed (the card then records the equivalent ``--steps`` command). ``init_from``: a model
    reference to continue from (same architecture and tokenizer) under a fresh schedule.
    ``final_eval_tokens`` limits the closing validation/test perplexities (default: the whole splits).
    """
    if sum(x is not None for x in (steps, minutes, passes)) != 1:
        raise ValueError("give exactly one of steps, passes and minutes")
    from downsize.eval.perplexity import perplexity

    spec: ZooSpec = ZOO[name]
    from downsize.hardware import set_threads

    set_threads(threads)
    command = "downsize " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("downsize") else None
    corpus = StdlibCorpus.local()
    work = out.with_name(out.name + ".work")
    from downsize.train.loop import check_fresh_start

    check_output(out, KIND_ZOO, overwrite)
    check_fresh_start(work, resume, overwrite)
    work.mkdir(parents=True, exist_ok=True)

    # One tokenizer per (spec, corpus): models with the same spec share it exactly. A continued model keeps its own.
    tok_dir = cache_dir() / "tokenizers" / (
        f"{spec.tokenizer.pretokenizer}-{spec.tokenizer.vocab_size}-{spec.tokenizer.min_frequency}-{corpus.fingerprint[:16]}")
    if init_from:
        from downsize.models.refs import resolve_model

        tok_dir = resolve_model(init_from).path
    elif not (tok_dir / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast  # noqa: F401

        tok = train_bpe_tokenizer((t for _, t in corpus.documents("train")), spec.tokenizer)
        with atomic_dir(tok_dir) as tmp:
            tok.save_pretrained(tmp)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tok_dir)
    stream = stdlib_stream(tok, "train")
    data = PackedDataset(stream, seq_len=spec.seq_len, seed=seed)

    config = build_config(spec.arch, vocab_size=len(tok), tokenizer=tok, **spec.model)
    torch.manual_seed(seed)
    source = None
    if init_from:
        model, source = _init_from(init_from, config)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    overrides = {"batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "mixed_precision": mixed_precision}
    train_kw = dict(spec.train, **{k: v for k, v in overrides.items() if v is not None})
    if passes is not None:
        steps = max(1, math.ceil(passes * len(stream) / (train_kw.get("batch_size", 8) * spec.seq_len)))
    cfg = TrainConfig(steps=steps or 10**9, seed=seed, checkpoint_every=max(50, (steps or 0) // 20), **train_kw)
    val_stream = stdlib_stream(tok, "validation")
    curve: list[dict] = []
    if eval_every:
        data = _CurveData(data, model, cfg, val_stream, spec.seq_len, eval_every, eval_tokens, eval_batch_size, curve)
    t0 = time.time()
    result = train(model, lm_loss, data, cfg, work, resume=resume,
                   time_budget_s=minutes * 60 if minutes else None)
    wall = time.time() - t0
    steps = result.steps
    cfg = replace(cfg, steps=steps, checkpoint_every=max(50, steps // 20))
    # Evaluate the weights as shipped (bf16), not the fp32 training copy.
    model = model.to(torch.bfloat16).to(torch.float32)

    model.eval()
    if eval_every:  # the last point: the weights as shipped
        curve.append({"step": steps, **_val_point(model, val_stream, spec.seq_len, eval_tokens, eval_batch_size)})
    ppl = {split: perplexity(model, stdlib_stream(tok, split), seq_len=spec.seq_len,
                             batch_size=eval_batch_size, max_tokens=final_eval_tokens) for split in ("validation", "test")}
    quick = perplexity(model, stdlib_stream(tok, "validation"), seq_len=spec.seq_len,
                       batch_size=eval_batch_size, max_tokens=QUICK_EVAL_TOKENS)
    im_end = tok.convert_tokens_to_ids(IM_END)
    gen = GenerationConfig(eos_token_id=[tok.eos_token_id, im_end], pad_token_id=tok.pad_token_id,
                           do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=256)
    card = {
        "name": name,
        "description": spec.description,
        "architecture": config.architectures[0],
        "parameters": n_params,
        "tokenizer": {"vocab_size": len(tok), "pretokenizer": spec.tokenizer.pretokenizer},
        "training": {
            "command": f"downsize zoo train {name} --steps {steps} --seed {seed}"
            + (f" --threads {threads}" if threads else "") + (f" --batch-size {batch_size}" if batch_size else "")
            + "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("init_from", init_from), ("lr", lr),
                      ("warmup_steps", warmup_steps), ("mixed_precision", mixed_precision),
                      ("eval_every", eval_every or None)) if v is not None),
            "invoked_as": command,
            "steps": steps, "seq_len": spec.seq_len, "tokens_seen": result.tokens, "wall_time_s": round(wall, 1),
            "torch_threads": torch.get_num_threads(), "precision": result.precision, "config": asdict(cfg), "final_train_loss": result.final_loss,
            "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "passes": round(result.tokens / len(stream), 3),
            "init_from": source,
            "passes_total": round(result.tokens / len(stream) + (source or {}).get("passes", 0.0), 3),
            "schedule": ("fresh " if source else "") + f"linear warmup {cfg.warmup_steps} steps + cosine to "
                        f"{cfg.min_lr_ratio} x lr {cfg.lr}",
            "validation_curve": curve,
            "convergence": convergence(curve, steps),
        },
        "data": {"corpus": "zoo:stdlib", "fingerprint": corpus.fingerprint, "train_tokens": int(len(stream))},
        "eval": {**{split: {"perplexity": r.perplexity, "tokens": r.tokens, "seq_len": spec.seq_len}
                    for split, r in ppl.items()},
                 "validation_quick": {"perplexity": quick.perplexity, "tokens": quick.tokens, "seq_len": spec.seq_len,
                                      "max_tokens": QUICK_EVAL_TOKENS}},
    }
    with atomic_dir(out, KIND_ZOO, overwrite) as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        write_json_atomic(tmp / "zoo_card.json", card)
        if curve:
            write_json_atomic(tmp / CURVE_FILE, {"validation": curve, "eval_tokens": eval_tokens,
                                                 "train": _train_curve(work)})
        write_text_atomic(tmp / "README.md", render_card(card))
    return out


def _init_from(ref: str, config) -> tuple[torch.nn.Module, dict]:
    """The weights to continue from (fp32 master copy), checked against the zoo spec's config; and what they were."""
    from downsize.errors import DownsizeError
    from downsize.models.refs import load_model, resolve_model

    model, _ = load_model(ref, dtype=torch.float32, with_tokenizer=False)
    fields = ("architectures", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")
    diff = {f: (getattr(model.config, f, None), getattr(config, f, None)) for f in fields
            if getattr(model.config, f, None) != getattr(config, f, None)}
    if diff:
        raise DownsizeError(f"{ref} is not this zoo model's shape: " + ", ".join(f"{f} {a} vs {b}" for f, (a, b) in diff.items()),
                            hint="continue from a model trained by `downsize zoo train` with the same name")
    card = load_card(resolve_model(ref).path) or {}
    t = card.get("training", {})
    return model, {"ref": ref, "tokens_seen": t.get("tokens_seen"), "steps": t.get("steps"),
                   "passes": t.get("passes_total") or (t.get("tokens_seen") or 0) / max(1, card.get("data", {}).get("train_tokens") or 1),
                   "validation_perplexity": card.get("eval", {}).get("validation", {}).get("perplexity")}


def _val_point(model, stream, seq_len: int, tokens: int, batch_size: int) -> dict:
    from downsize.eval.perplexity import perplexity

    r = perplexity(model, stream, seq_len=seq_len, batch_size=batch_size, max_tokens=tokens)
    return {"val_perplexity": round(r.perplexity, 4), "tokens": r.tokens}


class _CurveData:
    """The packed data, measuring validation perplexity before every ``every``-th step's first micro-batch (the
    weights after that many updates, exact across ``resume``): the loop asks the data for each step's batch."""

    def __init__(self, inner, model, cfg: TrainConfig, val_stream, seq_len: int, every: int, tokens: int,
                 batch_size: int, curve: list):
        self.inner, self.model, self.cfg, self.curve = inner, model, cfg, curve
        self.val = (val_stream, seq_len, tokens, batch_size)
        self.every = every

    def batch(self, index, batch_size, rank=0, world=1):
        step, micro = divmod(index, self.cfg.grad_accum)
        if micro == 0 and step % self.every == 0 and not any(p["step"] == step for p in self.curve):
            was = self.model.training
            self.model.eval()
            self.curve.append({"step": step, **_val_point(self.model, *self.val)})
            self.model.train(was)
        return self.inner.batch(index, batch_size, rank, world)


def _train_curve(work: Path) -> list[dict]:
    from downsize.train.loop import METRICS

    p = work / METRICS
    rows = [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []
    return [{k: r[k] for k in ("step", "loss", "lr") if k in r} for r in rows]


def render_card(card: dict) -> str:
    t, e = card["training"], card["eval"]
    return f"""# {card['name']}

{card['description']}.

| | |
|---|---|
| architecture | {card['architecture']} |
| parameters | {card['parameters']:,} |
| tokenizer | byte-level BPE, {card['tokenizer']['vocab_size']} tokens, `{card['tokenizer']['pretokenizer']}` pre-tokenizer |
| training data | `zoo:stdlib` train split, corpus fingerprint `{card['data']['fingerprint'][:16]}` ({card['data']['train_tokens']:,} tokens) |
| training command | `{t['command']}` |
| steps × batch × seq_len | {t['steps']} × {t['config']['batch_size']} × {t['seq_len']} |
| tokens seen | {t['tokens_seen']:,} |
| wall time | {t['wall_time_s'] / 60:.1f} min on {_where(t)} |{_continued(t)}
| validation perplexity | {e['validation']['perplexity']:.3f} ({e['validation']['tokens']:,} tokens, windows of {e['validation']['seq_len']}) |
| test perplexity | {e['test']['perplexity']:.3f} ({e['test']['tokens']:,} tokens) |

Trained by downsize (from random initialisation unless continued, see above); reproduce with the command above.
"""


def convergence(curve: list[dict], steps: int) -> dict | None:
    """Issue #17's criterion: the validation perplexity's relative improvement over the last quarter of training."""
    if len(curve) < 2:
        return None
    at = next(p for p in curve if p["step"] >= 0.75 * steps)
    last = curve[-1]
    gain = (at["val_perplexity"] - last["val_perplexity"]) / at["val_perplexity"]
    return {"from_step": at["step"], "to_step": last["step"], "val_perplexity": [at["val_perplexity"], last["val_perplexity"]],
            "last_quarter_improvement": round(gain, 4), "converged_3pct": gain < 0.03}


def _where(t: dict) -> str:
    prec = t.get("precision") or ("bf16 autocast" if t["config"].get("mixed_precision", "bf16") == "bf16" else "fp32")
    dev = t.get("device") or "cpu"
    return (f"{t['torch_threads']} CPU thread(s)" if dev == "cpu" else dev) + f", {prec}"


def _continued(t: dict) -> str:
    src = t.get("init_from")
    if not src:
        return ""
    return (f"\n| continued from | `{src['ref']}` ({src['tokens_seen']:,} tokens, {src['passes']:.2f} passes), "
            f"{t['schedule']} |\n| passes in total | {t['passes_total']:.2f} ({t['passes']:.2f} in this run) |"
            + (f"\n| last quarter | validation perplexity {c['val_perplexity'][0]:.3f} -> {c['val_perplexity'][1]:.3f} "
               f"({c['last_quarter_improvement']:.1%} better) |" if (c := t.get("convergence")) else ""))


def load_card(path: Path) -> dict | None:
    p = Path(path) / "zoo_card.json"
    return json.loads(p.read_text()) if p.exists() else None
