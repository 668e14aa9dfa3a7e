"""``downsize eval MODEL [--teacher T] --data D [--speed]``: metrics of any model reference on any data.

    >>> r = evaluate("zoo:coder-teacher-qwen", "zoo:stdlib", max_tokens=2048)     # exact, streamed, HF model
    >>> r["tokens"], round(r["perplexity"], 1)
    (2040, 31.6)

An HF model alone gets the exact token-weighted perplexity over the whole split (``max_tokens`` to
cut it). With a teacher, or for a GGUF file, every model is run on the same windows of the teacher's
token stream (GGUF files in llama.cpp itself, not dequantised): perplexity, KL(teacher || model) and
top-1 agreement, over the first ``max_tokens`` tokens (32768 unless given). ``speed`` measures
prompt and generation tokens/s and peak RSS of the model (and of the teacher) in fresh processes.
"""

from __future__ import annotations

from typing import Callable

import torch

from downsize.data.refs import resolve_data
from downsize.errors import DownsizeError, reading
from downsize.eval.perplexity import perplexity
from downsize.models.placement import Placement, load_placed
from downsize.models.refs import resolve_model

SAMPLE_PROMPT = "def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n"


MIN_EVAL_TOKENS = 2  # one prediction needs a context token and a target


def token_stream(tokenizer, data_ref: str, split: str | None = None):
    """The evaluation stream of a data reference (downsize.data.stream, purpose "eval"); a split with too few
    tokens to score is a DownsizeError, not a table of nothing."""
    from downsize.data.refs import resolve_data
    from downsize.data.stream import split_for
    from downsize.data.stream import token_stream as stream_of

    with reading(data_ref):
        stream = stream_of(tokenizer, data_ref, "eval", split)
    if len(stream) < MIN_EVAL_TOKENS:
        split = split_for(data_ref, "eval", split)
        resolve_data(data_ref)
        raise DownsizeError(f"{data_ref} ({split}) holds {len(stream)} token{'s' if len(stream) != 1 else ''}: nothing "
                            "to evaluate (the file is empty or only whitespace)", hint="pass a file or folder with text in it")
    return stream


def sample_completion(model, tokenizer, prompt: str = SAMPLE_PROMPT, max_new_tokens: int = 48, seed: int = 0) -> str:
    torch.manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


COMPARE_TOKENS = 32768  # default token budget when models are compared window by window


def evaluate(model_ref: str, data_ref: str = "zoo:stdlib", split: str | None = None, seq_len: int = 256,
             batch_size: int = 8, max_tokens: int | None = None, sample: bool = False,
             warn: Callable[[str], None] | None = None, teacher: str | None = None, speed: bool = False,
             threads: int | None = None) -> dict:
    ref = resolve_model(model_ref)
    resolve_data(data_ref)  # a missing dataset or unusable column fails before any model loads
    if teacher is not None or ref.is_gguf:
        result = _compare(model_ref, teacher, data_ref, split, seq_len, max_tokens or COMPARE_TOKENS)
    else:
        result = _exact(ref, model_ref, data_ref, split, seq_len, batch_size, max_tokens, sample, warn)
    if speed:
        from downsize.eval.speed import measure_speed

        result["speed"] = measure_speed(model_ref, threads=threads)
        if teacher is not None:
            result["teacher_speed"] = measure_speed(teacher, threads=threads)
    return result


def _compare(model_ref: str, teacher: str | None, data_ref: str, split: str | None, seq_len: int,
             max_tokens: int) -> dict:
    from downsize.eval.compare import compare_models

    models = {"model": model_ref} | ({"teacher": teacher} if teacher is not None else {})
    rows = compare_models(models, teacher="teacher" if teacher is not None else "model", data=data_ref,
                          split=split, seq_len=seq_len, max_tokens=max_tokens)
    m = rows["model"]
    split = split or resolve_data(data_ref).default_split
    result = {"model": model_ref, "data": f"{data_ref} ({split})", "backend": m["backend"], "parameters": m["params"],
              "size_mb": m["size_mb"], "tokens": m["tokens"], "perplexity": m["perplexity"], "seq_len": seq_len}
    if teacher is not None:
        t = rows["teacher"]
        result.update(teacher=teacher, teacher_backend=t["backend"], teacher_perplexity=t["perplexity"],
                      teacher_parameters=t["params"], teacher_size_mb=t["size_mb"], kl_to_teacher=m["kl_to_teacher"],
                      top1_agreement=m["top1_agreement"], vocab=m["vocab"])
    return result


def _exact(ref, model_ref: str, data_ref: str, split: str | None, seq_len: int, batch_size: int,
           max_tokens: int | None, sample: bool, warn: Callable[[str], None] | None) -> dict:
    from downsize.eval.compare import size_on_disk_mb

    model, tok = load_placed(ref, Placement("auto", "fp32"))
    model.eval()
    data = resolve_data(data_ref)
    if data.kind == "stdlib" and warn:
        from downsize.data.stdlib import corpus_warning
        from downsize.zoo.train import load_card

        card = load_card(ref.path) if not ref.is_gguf else None
        msg = corpus_warning(card["data"]["fingerprint"] if card else None)
        if msg:
            warn(msg)
    split = split or data.default_split
    stream = token_stream(tok, data_ref, split)
    r = perplexity(model, stream, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens)
    result = {"model": model_ref, "data": f"{data_ref} ({split})", "backend": "transformers",
              "parameters": sum(p.numel() for p in model.parameters()), "size_mb": round(size_on_disk_mb(ref.path), 2),
              "tokens": r.tokens, "perplexity": r.perplexity, "nll": r.nll, "seq_len": seq_len}
    if sample:
        result["sample"] = {"prompt": SAMPLE_PROMPT, "completion": sample_completion(model, tok)}
    return result
