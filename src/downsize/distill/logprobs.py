"""Sparse logit KD from the teacher's own top-k logprobs, stored while it wrote the data.

    $ downsize generate --teacher openai:http://127.0.0.1:8080/v1#teacher --codebase repo --top-logprobs 8 --out t.jsonl
    $ downsize sft --model student/ --data t.jsonl --logprob-kd 0.5 --out tuned/

One teacher pass then serves both text KD (cross entropy on what the teacher wrote) and logit KD (forward KL
to its top-k distribution at every generated token), which is how a teacher that only runs behind a server
(Ollama, vLLM, llama.cpp) can still give soft targets. It needs the student to share the teacher's tokenizer.

The student trains on the very tokens the teacher generated (servers return token *text*; each must be exactly
one student token), found by their text in the rendered conversation, so the teacher's distribution at each
position was conditioned on the same prefix the student sees. Top-k entries whose text is not one student
token fall into the tail bucket with the rest of the teacher's mass, as in the offline cache (losses.TopK);
turns that cannot be matched keep plain cross entropy.
"""

from __future__ import annotations

from downsize.errors import DownsizeError


def token_table(tokenizer) -> dict[str, int]:
    """Decoded text of each single token -> its id (the first id wins where several decode alike)."""
    table: dict[str, int] = {}
    for i in range(len(tokenizer)):
        table.setdefault(tokenizer.decode([i]), i)
    return table


def _turn_tokens(tokenizer, lp: list, table: dict[str, int]) -> tuple[list[tuple[int, int]], str]:
    """([(student id, characters)] for the leading stored tokens that map to one student id each, the turn's text).

    Records from the local backend carry each token's id; endpoints return token text, mapped through ``table``.
    The mapping stops at the first token that is empty (llama.cpp returns "" for a token holding part of a
    UTF-8 character) or is not one student token: the teacher's later distributions were conditioned on it.
    """
    if lp and all("id" in t for t in lp):
        ids, out, prev = [int(t["id"]) for t in lp], [], ""
        for i, j in enumerate(ids):
            cur = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
            out.append((j, max(0, len(cur) - len(prev))))
            prev = cur
        return out, prev
    out = []
    for t in lp:
        j = table.get(t["token"]) if t["token"] else None
        if j is None:
            break
        out.append((j, len(t["token"])))
    return out, "".join(t["token"] for t in lp)


def teacher_token_example(tokenizer, full: str, spans: list[tuple[int, int]], turns: list, table: dict[str, int]):
    """Token ids and character offsets of the rendered chat ``full`` in which each assistant turn with stored
    logprobs starts with the exact tokens the teacher generated, and {token index: (top-k ids, logprobs)}.

    The teacher's distribution at a token was conditioned on exactly the tokens it had generated before it, so
    the student is trained on those tokens, not on a re-tokenization of the text, which can split differently.
    From the first stored token that cannot be mapped (see ``_turn_tokens``) the turn is tokenized as usual and
    gets plain cross entropy only; so does a turn whose text is not found in the rendering (a template that
    re-renders tool calls).
    """
    segments = []  # (start of the turn's text, mapped leading tokens, their stored entries)
    cursor = 0
    for (a, b), lp in zip(spans, turns):
        if not lp:
            continue
        mapped, text = _turn_tokens(tokenizer, lp, table)
        c = full.find(text, max(a, cursor), b) if text else -1
        if c >= 0 and mapped:
            segments.append((c, mapped, lp))
            cursor = c + len(text)
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    teacher: dict[int, tuple[list[int], list[float]]] = {}

    def plain(s: int, e: int) -> None:
        if e > s:
            enc = tokenizer(full[s:e], add_special_tokens=False, return_offsets_mapping=True)
            ids.extend(enc["input_ids"])
            offsets.extend((s + x, s + y) for x, y in enc["offset_mapping"])

    pos = 0
    for c, mapped, lp in segments:
        plain(pos, c)
        for (j, n), t in zip(mapped, lp):
            top: dict[int, float] = {}
            for x, v in t["top"]:
                k = x if isinstance(x, int) else table.get(x)
                if k is not None and k not in top:  # endpoints key top-k by text; the first id of a text wins
                    top[k] = float(v)
            if top:
                teacher[len(ids)] = (list(top), list(top.values()))
            ids.append(j)
            offsets.append((c, c + n))
            c += n
        pos = c
    plain(pos, len(full))
    return ids, offsets, teacher


def require_logprobs(records: list[dict]) -> None:
    if not any(r.get("logprobs") for r in records):
        raise DownsizeError("logit KD from the data needs the teacher's stored top-k logprobs, and no record has them",
                            hint="generate with --top-logprobs K against an endpoint that returns logprobs "
                                 "(llama.cpp, vLLM, OpenAI), or set the KD weight to 0 for plain SFT")
