"""Train a reference-zoo model from scratch on ``zoo:stdlib`` (the code behind ``downsize zoo train``).

    $ downsize zoo train coder-teacher --steps 4000 --seed 0 --threads 1 --out runs/zoo/coder-teacher

Reproducible from the seed: the tokenizer is trained on the sorted train split, the batches are
a pure function of the step, and the initial weights come from ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import json
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


def stdlib_stream(tokenizer, split: str):
    """A split of zoo:stdlib as a token stream (downsize.data.stream)."""
    from downsize.data.stream import token_stream

    return token_stream(tokenizer, "zoo:stdlib", split=split)


def train_zoo_model(name: str, steps: int | None, out: Path, seed: int = 0, threads: int | None = None,
                    resume: bool = False, eval_batch_size: int = 8, minutes: float | None = None,
                    batch_size: int | None = None, overwrite: bool = False) -> Path:
    """Train zoo model ``name`` and write a complete HF directory to ``out``.

    Give ``steps``, or ``minutes`` to resolve the step count from the measured speed (the card
    then records the equivalent ``--steps`` command).
    """
    if (steps is None) == (minutes is None):
        raise ValueError("give exactly one of steps and minutes")
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

    # One tokenizer per (spec, corpus): models with the same spec share it exactly.
    tok_dir = cache_dir() / "tokenizers" / (
        f"{spec.tokenizer.pretokenizer}-{spec.tokenizer.vocab_size}-{spec.tokenizer.min_frequency}-{corpus.fingerprint[:16]}")
    if not (tok_dir / "tokenizer.json").exists():
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
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    train_kw = dict(spec.train, **({"batch_size": batch_size} if batch_size else {}))
    cfg = TrainConfig(steps=steps or 10**9, seed=seed, checkpoint_every=max(50, (steps or 0) // 20), **train_kw)
    t0 = time.time()
    result = train(model, lm_loss, data, cfg, work, resume=resume,
                   time_budget_s=minutes * 60 if minutes else None)
    wall = time.time() - t0
    steps = result.steps
    cfg = replace(cfg, steps=steps, checkpoint_every=max(50, steps // 20))
    # Evaluate the weights as shipped (bf16), not the fp32 training copy.
    model = model.to(torch.bfloat16).to(torch.float32)

    model.eval()
    ppl = {split: perplexity(model, stdlib_stream(tok, split), seq_len=spec.seq_len,
                             batch_size=eval_batch_size) for split in ("validation", "test")}
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
            + (f" --threads {threads}" if threads else "") + (f" --batch-size {batch_size}" if batch_size else ""),
            "invoked_as": command,
            "steps": steps, "seq_len": spec.seq_len, "tokens_seen": result.tokens, "wall_time_s": round(wall, 1),
            "torch_threads": torch.get_num_threads(), "precision": result.precision, "config": asdict(cfg), "final_train_loss": result.final_loss,
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
        write_text_atomic(tmp / "README.md", render_card(card))
    return out


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
| wall time | {t['wall_time_s'] / 60:.1f} min on {t['torch_threads']} CPU thread(s), {t.get('precision') or 'bf16'} |
| validation perplexity | {e['validation']['perplexity']:.3f} ({e['validation']['tokens']:,} tokens, windows of {e['validation']['seq_len']}) |
| test perplexity | {e['test']['perplexity']:.3f} ({e['test']['tokens']:,} tokens) |

Trained by downsize from random initialisation; reproduce with the command above.
"""


def load_card(path: Path) -> dict | None:
    p = Path(path) / "zoo_card.json"
    return json.loads(p.read_text()) if p.exists() else None
