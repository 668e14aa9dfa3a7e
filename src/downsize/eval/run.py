"""``downsize eval MODEL --data D``: perplexity of any model reference on any data reference.

    >>> evaluate("zoo:coder-teacher", "zoo:stdlib")["perplexity"]
"""

from __future__ import annotations

from typing import Callable

import torch

from downsize.data.packing import tokenize_documents
from downsize.data.refs import resolve_data
from downsize.eval.perplexity import perplexity
from downsize.models.refs import load_model, resolve_model

SAMPLE_PROMPT = "def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n"


def token_stream(tokenizer, data_ref: str, split: str | None = None):
    """The token stream of a data reference's split (zoo:stdlib streams are cached on disk)."""
    data = resolve_data(data_ref)
    split = split or data.default_split
    if data.kind == "stdlib":
        from downsize.zoo.train import stdlib_stream

        return stdlib_stream(tokenizer, split)
    return tokenize_documents(tokenizer, data.texts(split, tokenizer))


def sample_completion(model, tokenizer, prompt: str = SAMPLE_PROMPT, max_new_tokens: int = 48, seed: int = 0) -> str:
    torch.manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def evaluate(model_ref: str, data_ref: str = "zoo:stdlib", split: str | None = None, seq_len: int = 256,
             batch_size: int = 8, max_tokens: int | None = None, sample: bool = False,
             warn: Callable[[str], None] | None = None) -> dict:
    ref = resolve_model(model_ref)
    model, tok = load_model(ref)
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
    result = {"model": model_ref, "data": f"{data_ref} ({split})", "parameters": sum(p.numel() for p in model.parameters()),
              "tokens": r.tokens, "perplexity": r.perplexity, "nll": r.nll, "seq_len": seq_len}
    if sample:
        result["sample"] = {"prompt": SAMPLE_PROMPT, "completion": sample_completion(model, tok)}
    return result
