"""The tokenizer of a Hugging Face folder as transformers' ``AutoTokenizer`` would run it, built with the
``tokenizers`` library and json alone (no transformers, so no torch: the converter stays small).

``AutoTokenizer`` does more than read tokenizer.json: it picks a tokenizer class from tokenizer_config.json and the
model type, may rebuild the pipeline (``Qwen2Tokenizer`` replaces the pre-tokenizer with its own regex), adds the
special tokens named in tokenizer_config.json / special_tokens_map.json that the vocabulary lacks, ignores
``add_bos_token``/``add_eos_token`` when tokenizer.json exists (its post-processor decides), and reads the chat
template from chat_template.jinja or tokenizer_config.json. ``load_tokenizer`` reproduces those steps (transformers
5.x, tokenization_utils_base / tokenization_utils_tokenizers / tokenization_auto) for the two classes
that byte-level BPE checkpoints of the supported families use, ``TokenizersBackend`` (tokenizer.json as saved;
also ``PreTrainedTokenizerFast``, and ``LlamaTokenizer`` over a byte-level tokenizer.json) and ``Qwen2Tokenizer``.
tests/export/test_tokenizer.py compares the result with transformers on each case.

Anything else -- no tokenizer.json (a SentencePiece tokenizer.model or vocab.json/merges.txt that transformers
converts with its own Python converters), remote tokenizer code, another tokenizer class -- falls back to
transformers itself, imported only then.

    >>> from downsize.export.gguf.config import load_config
    >>> from downsize.zoo import zoo_path
    >>> root = zoo_path("coder-teacher-qwen")
    >>> tok = load_tokenizer(root, load_config(root))
    >>> tok.how, tok.special["eos_token"], tok.token_id("<|im_end|>"), tok.encode("a", add_special_tokens=True)
    ('tokenizer.json (Qwen2Tokenizer)', '<|endoftext|>', 2, [68])
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from downsize.errors import DownsizeError

log = logging.getLogger(__name__)

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
ADDED_TOKENS = "added_tokens.json"
CHAT_TEMPLATE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"
TOKENIZER_FILES = (TOKENIZER_JSON, "tokenizer.model", "vocab.json")
# transformers' PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES
SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Tokenizer classes (tokenizer_config.json "tokenizer_class") -> how transformers builds them.
PASS_THROUGH_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")  # tokenizer.json as saved
QWEN2_CLASSES = ("Qwen2Tokenizer", "Qwen2TokenizerFast")  # vocab + merges, Qwen2's own pre-tokenizer
LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")  # as saved if tokenizer.json is byte-level
# Qwen2Tokenizer's pre-tokenizer regex (transformers/models/qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX)
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_DEFAULT_SPECIALS = {"unk_token": "<|endoftext|>", "bos_token": None, "eos_token": "<|endoftext|>",
                          "pad_token": "<|endoftext|>"}


class _Unsupported(Exception):
    """This folder needs transformers' own tokenizer code (the reason is the message)."""


@dataclass
class LoadedTokenizer:
    """A tokenizer as transformers runs it: the ``tokenizers`` backend, the named special tokens, the chat template."""

    backend: Tokenizer
    special: dict[str, str | None]  # "bos_token" ... -> token text (None when unset)
    chat_template: str | dict | None
    how: str  # "tokenizer.json", "tokenizer.json (Qwen2Tokenizer)" or "transformers (<reason>)"
    # tokenizer_config.json's clean_up_tokenization_spaces (transformers' default False): whether the model's authors
    # declared that decoding removes the space before punctuation; llama.cpp's pre-tokenizer names fix that choice.
    clean_up_spaces: bool = False
    _hf: Any = field(default=None, repr=False)  # the transformers tokenizer, on the fallback path only

    def token_id(self, text: str | None) -> int | None:
        """transformers' convert_tokens_to_ids: the id of ``text``, else the unknown token's id (else None)."""
        if text is None:
            return None
        i = self.backend.token_to_id(text)
        if i is None and self.special.get("unk_token") is not None:
            i = self.backend.token_to_id(self.special["unk_token"])
        return i

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self._hf is not None:
            return self._hf(text, add_special_tokens=add_special_tokens)["input_ids"]
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids


def load_tokenizer(root: Path, cfg) -> LoadedTokenizer:
    """The tokenizer in ``root`` (see the module docstring); ``cfg`` supplies model_type (and tokenizer_class)."""
    root = Path(root)
    if not any((root / f).exists() for f in TOKENIZER_FILES):
        raise DownsizeError(f"{root} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
                            hint="copy the tokenizer of the model it came from into the folder (tokenizer.save_pretrained)")
    try:
        return _load_fast(root, cfg)
    except _Unsupported as why:
        log.info("loading the tokenizer in %s with transformers: %s", root, why)
        return _load_with_transformers(root, str(why))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise DownsizeError(f"the tokenizer in {root} does not load: {e}",
                            hint="re-save it with tokenizer.save_pretrained") from None


def _load_with_transformers(root: Path, why: str) -> LoadedTokenizer:
    # Imported only here: transformers (which imports torch, ~250 MiB) is needed solely for tokenizers that only its
    # Python code can build -- SentencePiece/vocab-file conversion, remote code, other tokenizer classes.
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(root), trust_remote_code=False)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise DownsizeError(f"the tokenizer in {root} does not load: {e}",
                            hint="re-save it with tokenizer.save_pretrained") from None
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise DownsizeError(f"the tokenizer in {root} is a slow (Python) tokenizer", hint="save a fast tokenizer (tokenizer.json)")
    special = {k: getattr(tok, k, None) for k in SPECIAL_TOKENS_ATTRIBUTES}
    return LoadedTokenizer(backend, special, tok.chat_template, f"transformers ({why})",
                           bool(getattr(tok, "clean_up_tokenization_spaces", False)), tok)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tokenizer_kind(model_type: str | None, declared: str | None, tokenizer_json_text: str) -> str:
    """Which of transformers' tokenizer classes ``AutoTokenizer`` picks here: "tokenizers" (TokenizersBackend over
    tokenizer.json as saved) or "qwen2" (Qwen2Tokenizer); raise _Unsupported for anything else.

    The rules are AutoTokenizer.from_pretrained's for the supported model types (transformers 5.x): qwen2 is on its
    list of model types whose declared class is unreliable, so it always builds Qwen2Tokenizer; a declared
    LlamaTokenizer over a byte-level tokenizer.json loads as TokenizersBackend.
    """
    if model_type == "qwen2" and declared in (None, *PASS_THROUGH_CLASSES, *QWEN2_CLASSES, *LLAMA_CLASSES):
        return "qwen2"
    if declared in QWEN2_CLASSES and model_type == "qwen3":
        return "qwen2"
    if model_type == "mistral" and importlib.util.find_spec("mistral_common") is not None:
        raise _Unsupported("with mistral-common installed, transformers may load Mistral tokenizers through it")
    if declared in PASS_THROUGH_CLASSES and model_type in ("llama", "mistral", "qwen3", "gemma2", "gemma3_text", "phi3"):
        return "tokenizers"
    if declared in LLAMA_CLASSES and model_type in ("llama", "mistral", "qwen3", "gemma2", "gemma3_text") \
            and '"ByteLevel"' in tokenizer_json_text:
        return "tokenizers"
    if declared in LLAMA_CLASSES and model_type == "phi3":
        return "tokenizers"
    raise _Unsupported(f"tokenizer class {declared!r} for model type {model_type!r} is built by transformers' own code")


def _added_token(d: dict) -> AddedToken:
    try:
        d = {k: v for k, v in d.items() if k != "__type"}
        return AddedToken(**d)
    except TypeError as e:
        raise _Unsupported(f"an added-token entry has fields the tokenizers library does not take ({e})") from None


def _convert_added_tokens(obj: Any) -> Any:
    """transformers' convert_added_tokens(save=False): serialised AddedToken dicts back to AddedToken objects."""
    if isinstance(obj, dict) and obj.get("__type") == "AddedToken":
        return _added_token(obj)
    if isinstance(obj, (list, tuple)):
        return [_convert_added_tokens(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _convert_added_tokens(v) for k, v in obj.items()}
    return obj


def _init_kwargs(root: Path, cfg) -> tuple[dict, dict[int, AddedToken], str]:
    """tokenizer_config.json and friends as PreTrainedTokenizerBase._from_pretrained turns them into __init__
    arguments; returns (kwargs, added_tokens_decoder, kind)."""
    tc_path = root / TOKENIZER_CONFIG
    init = _read_json(tc_path) if tc_path.exists() else {}
    if not isinstance(init, dict):
        raise _Unsupported(f"{TOKENIZER_CONFIG} is not a JSON object")
    for key, why in (("auto_map", "it names remote tokenizer code"), ("fast_tokenizer_files", "it lists versioned tokenizer files")):
        if key in init:
            raise _Unsupported(f"{TOKENIZER_CONFIG} has {key!r}: {why}")
    if (root / ADDED_TOKENS).exists():
        raise _Unsupported(f"a legacy {ADDED_TOKENS} is present")
    tj_text = (root / TOKENIZER_JSON).read_text(encoding="utf-8")
    declared = init.get("tokenizer_class") or getattr(cfg, "tokenizer_class", None)
    kind = tokenizer_kind(getattr(cfg, "model_type", None), declared, tj_text)

    init.pop("tokenizer_class", None)
    init.pop("init_inputs", None)
    # With a tokenizer.json, its post-processor decides whether BOS/EOS are added: these flags are dropped.
    init.pop("add_bos_token", None)
    init.pop("add_eos_token", None)
    templates: dict[str, str] = {}
    if (root / CHAT_TEMPLATE).exists():
        templates["default"] = (root / CHAT_TEMPLATE).read_text(encoding="utf-8")
    if (root / CHAT_TEMPLATE_DIR).is_dir():
        for f in (root / CHAT_TEMPLATE_DIR).glob("*.jinja"):  # same order as transformers' own glob
            templates[f.name.removesuffix(".jinja")] = f.read_text(encoding="utf-8")
    if len(templates) == 1 and "default" in templates:
        init["chat_template"] = templates["default"]
    elif templates:
        init["chat_template"] = templates
    if "additional_special_tokens" in init and not init.get("extra_special_tokens"):
        init["extra_special_tokens"] = init.pop("additional_special_tokens")
    model_specific = {k: init.pop(k) for k in list(init)
                      if k not in SPECIAL_TOKENS_ATTRIBUTES and k.endswith("_token") and isinstance(init[k], str)}
    if isinstance(init.get("extra_special_tokens"), dict):
        model_specific.update(init.pop("extra_special_tokens"))
    if model_specific:
        init["model_specific_special_tokens"] = model_specific

    added: dict[int, AddedToken] = {}
    added_map: dict[str, AddedToken] = {}
    if "added_tokens_decoder" in init:
        for idx, tok in init["added_tokens_decoder"].items():
            if not isinstance(tok, dict):
                raise _Unsupported("added_tokens_decoder holds a non-object entry")
            added[int(idx)] = _added_token(tok)
            added_map[str(added[int(idx)].content)] = added[int(idx)]
    else:
        if (root / SPECIAL_TOKENS_MAP).exists():
            for key, value in _read_json(root / SPECIAL_TOKENS_MAP).items():
                if isinstance(value, dict) and key != "extra_special_tokens":
                    value = {k: v for k, v in value.items() if k != "special"}
                    value = _added_token({**value, "special": True})
                elif key == "extra_special_tokens" and isinstance(value, list):
                    existing = list(init.get("extra_special_tokens") or [])
                    for t in value:
                        t = _added_token({**t, "special": True}) if isinstance(t, dict) else t
                        if t not in existing:
                            existing.append(t)
                    value = existing
                init[key] = value
            if isinstance(init.get("extra_special_tokens"), dict):
                init.setdefault("model_specific_special_tokens", {}).update(init.pop("extra_special_tokens"))
        for t in json.loads(tj_text).get("added_tokens", []):
            t = dict(t)
            idx = t.pop("id")
            added[idx] = _added_token(t)
            added_map[str(added[idx].content)] = added[idx]
    init["added_tokens_decoder"] = added
    init = _convert_added_tokens(init)
    for key in SPECIAL_TOKENS_ATTRIBUTES:
        if key in init and added_map and init[key] is not None:
            init[key] = added_map.get(_text(init[key]), init[key])
    return init, added, kind


def _text(t) -> str:
    return t.content if isinstance(t, AddedToken) else str(t)


def _qwen2_backend(tj: dict, add_prefix_space: bool) -> Tokenizer:
    """Qwen2Tokenizer.__init__'s pipeline over tokenizer.json's vocabulary and merges."""
    model = tj.get("model", {})
    vocab = model.get("vocab") or {}
    if isinstance(vocab, list):
        vocab = {(t[0] if isinstance(t, list) else t): i for i, t in enumerate(vocab)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    tk = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                       end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tk.decoder = decoders.ByteLevel()
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False)])
    return tk


def _json_post_processor(tj: dict):
    """tokenizer.json's post-processor, parsed without its (large) vocabulary, as transformers extracts it."""
    minimal = dict(tj)
    minimal["model"] = dict(tj["model"], vocab={}, **({"merges": []} if tj["model"].get("type") == "BPE" else {}))
    minimal["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(minimal))


def _load_fast(root: Path, cfg) -> LoadedTokenizer:
    if not (root / TOKENIZER_JSON).exists():
        raise _Unsupported("there is no tokenizer.json, so transformers converts the tokenizer files itself")
    init, added_decoder, kind = _init_kwargs(root, cfg)
    how = TOKENIZER_JSON
    post_processor = None
    if kind == "qwen2":
        tj = _read_json(root / TOKENIZER_JSON)
        if tj.get("model", {}).get("type") != "BPE":
            raise _Unsupported("a Qwen2Tokenizer over a non-BPE tokenizer.json")
        minimal = _json_post_processor(tj)
        post_processor = minimal.post_processor
        aps = init.get("add_prefix_space")
        backend = _qwen2_backend(tj, bool(aps) if aps is not None else False)
        for k, v in QWEN2_DEFAULT_SPECIALS.items():  # Qwen2Tokenizer.__init__'s keyword defaults
            init.setdefault(k, v)
        if minimal.padding is not None:
            init.setdefault("pad_token", minimal.padding["pad_token"])
        how = f"{TOKENIZER_JSON} (Qwen2Tokenizer)"
    else:
        try:
            backend = Tokenizer.from_file(str(root / TOKENIZER_JSON))
        except Exception as e:  # the tokenizers library raises a bare Exception for a file it cannot parse
            raise DownsizeError(f"{root / TOKENIZER_JSON} does not load: {e}",
                                hint="the file is truncated or not a tokenizers file; re-save it with tokenizer.save_pretrained") from None
        if backend.padding is not None:
            init.setdefault("pad_token", backend.padding["pad_token"])
    if post_processor is not None:
        backend.post_processor = post_processor
    update_post_processor = backend.post_processor is None

    # PreTrainedTokenizerBase.__init__: named special tokens, extra and model-specific ones.
    if "additional_special_tokens" in init and "extra_special_tokens" not in init:
        init["extra_special_tokens"] = init.pop("additional_special_tokens")
    attrs = list(SPECIAL_TOKENS_ATTRIBUTES)
    special: dict[str, Any] = dict.fromkeys(attrs)
    extra: list = []
    auto_specific: dict[str, Any] = {}
    for key in list(init):
        value = init[key]
        if key in SPECIAL_TOKENS_ATTRIBUTES:
            if value is None:
                continue
            if not isinstance(value, (str, AddedToken)):
                raise _Unsupported(f"special token {key} is a {type(value).__name__}")
            special[key] = value
        elif key == "extra_special_tokens":
            if value is None:
                continue
            if isinstance(value, dict):
                auto_specific.update(value)
            elif isinstance(value, (list, tuple)):
                extra = list(value)
            else:
                raise _Unsupported("extra_special_tokens is neither a list nor a dict")
        elif key.endswith("_token") and isinstance(value, (str, AddedToken)):
            auto_specific[key] = value
    for key, value in {**auto_specific, **(init.get("model_specific_special_tokens") or {})}.items():
        if not isinstance(value, (str, AddedToken)):
            raise _Unsupported(f"special token {key} is a {type(value).__name__}")
        attrs.append(key)
        special[key] = value

    # TokenizersBackend.__init__: the saved added tokens, then any named/extra special token the vocabulary lacks.
    to_add = [t for _, t in sorted(added_decoder.items(), key=lambda kv: kv[0])]
    encoder = [t.content for _, t in sorted(backend.get_added_tokens_decoder().items())] + [_text(t) for t in to_add]
    for value in special.values():
        if value is not None and _text(value) not in encoder and value not in to_add:
            to_add.append(value)
    for value in extra:
        if _text(value) not in encoder and value not in to_add:
            to_add.append(value)
    if to_add:
        named = [_text(t) for t in special.values() if t]
        tokens = []
        for t in to_add:
            if isinstance(t, str):
                t = AddedToken(t, special=True)
            elif not t.special and t.content in named:
                t.special = True
            tokens.append(t)
        backend.add_tokens(tokens)
    if update_post_processor or backend.post_processor is None:
        # update_post_processor() with add_bos_token = add_eos_token = False (dropped above): no special tokens added
        backend.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    if kind == "qwen2":
        # Qwen2Tokenizer.__init__ ends by adding every special token (as special)
        seen: list[str] = []
        for key in attrs:
            if special.get(key) is not None and _text(special[key]) not in seen:
                seen.append(_text(special[key]))
        for t in extra:
            if _text(t) not in seen:
                seen.append(_text(t))
        if seen:
            backend.add_tokens([AddedToken(t, special=True) for t in seen])
    backend.encode_special_tokens = bool(init.get("split_special_tokens", False))
    # transformers encodes without the padding/truncation a tokenizer.json may carry
    backend.no_padding()
    backend.no_truncation()

    template = init.get("chat_template")
    if isinstance(template, (list, tuple)):
        template = {t["name"]: t["template"] for t in template}
    names = {k: (None if v is None else _text(v)) for k, v in special.items()}
    return LoadedTokenizer(backend, names, copy.deepcopy(template), how, bool(init.get("clean_up_tokenization_spaces", False)))
