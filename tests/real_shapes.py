"""Real model shapes for the slow test and benchmarks/real_shapes.py: the public configs of Qwen2.5-0.5B/1.5B
(all layers) and Qwen2.5-7B / Llama-3.1-8B (a few layers), random-init, with the real Qwen2 vocabulary.

    from real_shapes import SHAPES, qwen25_tokenizer, make_shape
    tok_dir = qwen25_tokenizer(tmp / "tok")            # 151,643 BPE tokens + 22 Qwen2.5 specials, real template
    model = make_shape("qwen2.5-0.5b")                  # bf16 random init, tied 151,936 x 896 embedding

The tokenizer is built at run time from llama.cpp's own test vocabulary ``ggml-vocab-qwen2.gguf`` (the
original Qwen2 tokens and merges, in the llama-cpp-python sdist, see tests/sdist.py) and the Qwen2.5 chat
template llama.cpp ships (``models/templates/Qwen-Qwen2.5-7B-Instruct.jinja``); nothing is downloaded
beyond that sdist and nothing is copied into the repo.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Public config.json values (Hugging Face model pages of the named models).
_QWEN25 = dict(hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
               use_sliding_window=False, sliding_window=32768, attention_dropout=0.0, bos_token_id=151643,
               eos_token_id=151645)
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(arch="Qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                         max_window_layers=24, **_QWEN25),
    "qwen2.5-1.5b": dict(arch="Qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                         max_window_layers=21, **_QWEN25),
    # the 7B/8B shapes with 2 of their 28/32 layers: every per-layer tensor at full size, the full vocabulary
    "qwen2.5-7b-2l": dict(arch="Qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=2,
                          num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                          max_window_layers=28, **_QWEN25),
    "llama3.1-8b-2l": dict(arch="Llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=2,
                           num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                           tie_word_embeddings=False, max_position_embeddings=131072, rms_norm_eps=1e-5,
                           rope_theta=500000.0, rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                                  high_freq_factor=4.0,
                                                                  original_max_position_embeddings=8192),
                           hidden_act="silu", bos_token_id=128000, eos_token_id=128009),
}
FULL_LAYERS = {"qwen2.5-7b-2l": 28, "llama3.1-8b-2l": 32}  # the real models' depth, to extrapolate per layer

QWEN2_BPE_TOKENS = 151643
# Qwen2.5's added tokens in id order from 151643; the two tool-call tags are not special there.
QWEN25_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
NOT_SPECIAL = {"<tool_call>", "</tool_call>"}


def shape_config(name: str):
    import transformers

    fields = dict(SHAPES[name])
    arch = fields.pop("arch")
    cfg = getattr(transformers, f"{arch}Config")(**fields)
    cfg.architectures = [f"{arch}ForCausalLM"]
    return cfg


def make_shape(name: str, seed: int = 0, dtype=torch.bfloat16):
    """A random-init model of ``name``'s config, built directly in ``dtype`` (a 1.5B never exists in fp32)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(shape_config(name), dtype=dtype)


def matmul_params(model_dir) -> int:
    """Parameters of a saved model that take part in matmuls (the compute-bound figures' N): all of them, less an
    untied input embedding (a lookup). Counted on the meta device, so nothing is allocated."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in m.parameters())
    return n if cfg.tie_word_embeddings else n - m.get_input_embeddings().weight.numel()


def qwen25_tokenizer(out_dir) -> Path:
    """Write a Qwen2.5-Instruct tokenizer folder (tokenizer.json, tokenizer_config.json) to ``out_dir``."""
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from downsize.export.gguf.tokenizer import QWEN2_PRETOKENIZE_REGEX
    from sdist import llama_cpp_dir

    out = Path(out_dir)
    if (out / "tokenizer.json").exists():
        return out
    root = llama_cpp_dir() / "models"
    r = gguf.GGUFReader(root / "ggml-vocab-qwen2.gguf")

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")[:QWEN2_BPE_TOKENS]
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, byte_fallback=False,
                               fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    for t in QWEN25_ADDED:  # one at a time: ids follow the list from 151643
        tok.add_tokens([AddedToken(t, special=t not in NOT_SPECIAL, normalized=False)])
    assert tok.token_to_id("<|file_sep|>") == QWEN2_BPE_TOKENS + len(QWEN25_ADDED) - 1
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=131072,
                                   clean_up_tokenization_spaces=False, errors="replace")
    fast.chat_template = (root / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"  # as the real checkpoints declare it
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return out
