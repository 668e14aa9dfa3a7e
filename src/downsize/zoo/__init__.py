"""The reference zoo: small models trained by this project on ``zoo:stdlib`` and shipped with it.

    >>> from downsize.zoo import ZOO, zoo_path
    >>> zoo_path("coder-teacher-qwen").name, sorted(p.name for p in zoo_path("coder-teacher-qwen").iterdir())[:3]
    ('coder-teacher-qwen', ['README.md', 'chat_template.jinja', 'config.json'])
    >>> ZOO["coder-teacher"].arch, ZOO["coder-teacher-qwen"].arch
    ('llama', 'qwen2')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from downsize.zoo.tokenizer import TokenizerSpec
from downsize.registry import Registry

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class ZooSpec:
    name: str
    arch: str  # key of ARCH_CONFIGS
    tokenizer: TokenizerSpec
    model: dict  # config fields for the architecture
    train: dict = field(default_factory=dict)  # TrainConfig defaults (steps resolved per run)
    seq_len: int = 256
    shipped: bool = True
    description: str = ""


ZOO: Registry[ZooSpec] = Registry("zoo model", ZooSpec)


def register(spec: ZooSpec) -> ZooSpec:
    return ZOO.add(spec.name, spec)


register(
    ZooSpec(
        name="coder-teacher",
        arch="llama",
        tokenizer=TokenizerSpec(vocab_size=8192, pretokenizer="llama-bpe"),
        model=dict(
            hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
            num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=False,
        ),
        train=dict(batch_size=16, lr=2e-3, warmup_steps=100, weight_decay=0.1),
        description="Llama-architecture teacher, GQA 6/2 heads, byte-level BPE 8k (llama-bpe pre-tokenizer)",
    )
)
register(
    ZooSpec(
        name="coder-teacher-qwen",
        arch="qwen2",
        tokenizer=TokenizerSpec(vocab_size=4096, pretokenizer="qwen2"),
        model=dict(
            hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=True,
        ),
        train=dict(batch_size=16, lr=2e-3, warmup_steps=100, weight_decay=0.1),
        description="Qwen2-architecture teacher, another tokenizer (byte-level BPE 4k, qwen2 pre-tokenizer)",
    )
)
# The baseline the teacher is compared with: about 4x fewer parameters, same tokenizer, same wall time.
register(
    ZooSpec(
        name="coder-small-baseline",
        arch="llama",
        tokenizer=TokenizerSpec(vocab_size=8192, pretokenizer="llama-bpe"),
        model=dict(
            hidden_size=160, intermediate_size=448, num_hidden_layers=4, num_attention_heads=5,
            num_key_value_heads=5, max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=False,
        ),
        train=dict(batch_size=16, lr=3e-3, warmup_steps=100, weight_decay=0.1),
        shipped=False,
        description="about 4x smaller than coder-teacher; trained for the same wall time as a baseline",
    )
)


def zoo_path(name: str) -> Path:
    return MODELS_DIR / name
