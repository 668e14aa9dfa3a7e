"""What the zoo holds on this installation: ``downsize zoo list``.

    >>> sorted(r["name"] for r in list_zoo())
    ['coder-teacher', 'coder-teacher-qwen']
"""

from __future__ import annotations

from downsize.zoo import ZOO, zoo_path
from downsize.zoo.train import load_card


def list_zoo() -> list[dict]:
    rows = []
    for name, spec in ZOO.items():
        if not spec.shipped:
            continue
        path = zoo_path(name)
        card = load_card(path)
        row = {"name": name, "path": str(path), "status": "ok" if card else "missing: `downsize zoo train NAME`"}
        if card:
            row.update(architecture=card["architecture"], parameters=card["parameters"],
                       vocab_size=card["tokenizer"]["vocab_size"], val_ppl=card["eval"]["validation"]["perplexity"],
                       test_ppl=card["eval"]["test"]["perplexity"], wall_min=card["training"]["wall_time_s"] / 60,
                       tokens_seen=card["training"]["tokens_seen"])
        rows.append(row)
    return rows
