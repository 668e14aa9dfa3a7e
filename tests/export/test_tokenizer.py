"""The tokenizer built without transformers (export/gguf/tokenizer.py) is the one transformers' AutoTokenizer
runs: same vocabulary, merges, added tokens and their special flags, pre-tokenizer, special tokens and ids,
BOS/EOS added or not, same ids on mixed text, same chat template -- per model type and tokenizer_config form."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoTokenizer

from downsize.export.gguf.convert import load_config
from downsize.export.gguf.tokenizer import SPECIAL_TOKENS_ATTRIBUTES, load_tokenizer
from downsize.export.verify import MIXED_TEXT
from downsize.models.arch import build_config

from tiny_models import TINY_SHAPES

POST_BOS = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}


def _tc(**kv):
    return lambda d: _edit(d / "tokenizer_config.json", lambda c: c.update(kv))


def _edit(path, fn):
    c = json.loads(path.read_text())
    fn(c)
    path.write_text(json.dumps(c))


def _added_decoder(d):
    tj = json.loads((d / "tokenizer.json").read_text())
    dec = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tj["added_tokens"]}
    dec[str(tj["added_tokens"][1]["id"])]["special"] = False
    _edit(d / "tokenizer_config.json", lambda c: c.update(added_tokens_decoder=dec))


def _special_map(d):
    _edit(d / "tokenizer_config.json", lambda c: [c.pop(k, None) for k in ("extra_special_tokens", "eos_token")])
    (d / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": {"content": "<|im_end|>", "special": False, "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False}, "additional_special_tokens": ["<|im_start|>", "<|brand_new|>"]}))


def _template_in_config(d, as_list=False):
    t = (d / "chat_template.jinja").read_text()
    (d / "chat_template.jinja").unlink()
    value = [{"name": "default", "template": t}, {"name": "tool_use", "template": "{{ 'x' }}"}] if as_list else t
    _edit(d / "tokenizer_config.json", lambda c: c.update(chat_template=value))


def _post_bos(d):
    _edit(d / "tokenizer.json", lambda c: c.update(post_processor=POST_BOS))
    _edit(d / "tokenizer_config.json", lambda c: c.update(bos_token="<|endoftext|>"))


def _padding(d):
    _edit(d / "tokenizer.json", lambda c: c.update(padding={"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": None,
                                                            "pad_id": 3, "pad_type_id": 0, "pad_token": "<|pad|>"}))
    _edit(d / "tokenizer_config.json", lambda c: c.pop("pad_token"))


CASES = {  # name -> (config family, edit of the saved tokenizer folder, expected loader)
    "llama": ("llama", None, "tokenizer.json"),
    "mistral": ("mistral", None, "tokenizer.json"),
    "qwen3": ("qwen3", None, "tokenizer.json"),
    "gemma2": ("gemma2", None, "tokenizer.json"),
    "gemma3": ("gemma3", None, "tokenizer.json"),
    "phi3": ("phi3", None, "tokenizer.json"),
    "qwen2 (Qwen2Tokenizer rebuilds the pre-tokenizer)": ("qwen2", None, "tokenizer.json (Qwen2Tokenizer)"),
    "qwen2 declared Qwen2Tokenizer + bos post-processor": ("qwen2", lambda d: (_post_bos(d), _tc(tokenizer_class="Qwen2Tokenizer")(d)),
                                                           "tokenizer.json (Qwen2Tokenizer)"),
    "qwen2 added_tokens_decoder + new token": ("qwen2", _added_decoder, "tokenizer.json (Qwen2Tokenizer)"),
    "qwen2 no tokenizer_class": ("qwen2", lambda d: _edit(d / "tokenizer_config.json", lambda c: c.pop("tokenizer_class")),
                                 "tokenizer.json (Qwen2Tokenizer)"),
    "qwen3 declared Qwen2Tokenizer": ("qwen3", _tc(tokenizer_class="Qwen2Tokenizer"), "tokenizer.json (Qwen2Tokenizer)"),
    "llama PreTrainedTokenizerFast": ("llama", _tc(tokenizer_class="PreTrainedTokenizerFast"), "tokenizer.json"),
    "llama LlamaTokenizerFast over byte-level": ("llama", _tc(tokenizer_class="LlamaTokenizerFast"), "tokenizer.json"),
    "phi3 LlamaTokenizer": ("phi3", _tc(tokenizer_class="LlamaTokenizer"), "tokenizer.json"),
    "add_bos_token ignored with tokenizer.json": ("llama", _tc(add_bos_token=True, bos_token="<|endoftext|>"), "tokenizer.json"),
    "bos from the post-processor": ("llama", _post_bos, "tokenizer.json"),
    "added_tokens_decoder with a non-special named token": ("llama", _added_decoder, "tokenizer.json"),
    "special_tokens_map.json": ("llama", _special_map, "tokenizer.json"),
    "extra special tokens as a dict": ("llama", _tc(extra_special_tokens={"image_token": "<|im_start|>", "boi_token": "<|new|>"}),
                                       "tokenizer.json"),
    "unknown unk token": ("llama", _tc(unk_token="<unk>"), "tokenizer.json"),
    "no eos": ("llama", _tc(eos_token=None), "tokenizer.json"),
    "padding in tokenizer.json": ("llama", _padding, "tokenizer.json"),
    "chat template in tokenizer_config": ("llama", _template_in_config, "tokenizer.json"),
    "named chat templates": ("llama", lambda d: _template_in_config(d, as_list=True), "tokenizer.json"),
}


def _view(backend, special: dict, ids: dict, encode, template) -> dict:
    tj = json.loads(backend.to_str())
    return {"vocab": tj["model"]["vocab"], "merges": tj["model"].get("merges"), "pre": tj["pre_tokenizer"],
            "normalizer": tj["normalizer"],
            "added": [(t["id"], t["content"], t["special"]) for t in tj["added_tokens"]],
            "special": special, "ids": ids, "template": template,
            "a": (encode("a", True), encode("a", False)), "mixed": encode(MIXED_TEXT, False)}


def _folder(tiny_model_dir, tmp_path, family, edit):
    d = tmp_path / "m"
    d.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dir / f, d / f)
    build_config(family, vocab_size=512, **TINY_SHAPES).save_pretrained(d)
    if edit is not None:
        edit(d)
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_tokenizer_loads_like_transformers(case, tiny_model_dir, tmp_path):
    family, edit, how = CASES[case]
    d = _folder(tiny_model_dir, tmp_path, family, edit)
    tok = load_tokenizer(d, load_config(d))
    assert tok.how.startswith(how), tok.how
    ours = _view(tok.backend, {k: tok.special.get(k) for k in SPECIAL_TOKENS_ATTRIBUTES},
                 {k: tok.token_id(tok.special.get(k)) for k in SPECIAL_TOKENS_ATTRIBUTES},
                 lambda t, s: tok.encode(t, add_special_tokens=s), tok.chat_template)
    hf = AutoTokenizer.from_pretrained(d, trust_remote_code=False)
    ref = _view(hf.backend_tokenizer, {k: getattr(hf, k) for k in SPECIAL_TOKENS_ATTRIBUTES},
                {k: getattr(hf, f"{k}_id") for k in SPECIAL_TOKENS_ATTRIBUTES},
                lambda t, s: hf(t, add_special_tokens=s)["input_ids"], hf.chat_template)
    for key in ref:
        assert ours[key] == ref[key], (case, key)


def test_other_tokenizer_classes_fall_back_to_transformers(tiny_model_dir, tmp_path):
    """GemmaTokenizer rebuilds a SentencePiece-style pipeline in transformers' Python code: that is left to transformers."""
    d = _folder(tiny_model_dir, tmp_path, "gemma2", _tc(tokenizer_class="GemmaTokenizerFast"))
    tok = load_tokenizer(d, load_config(d))
    assert tok.how.startswith("transformers (tokenizer class 'GemmaTokenizerFast'"), tok.how
    assert tok.backend.to_str() == AutoTokenizer.from_pretrained(d).backend_tokenizer.to_str()
