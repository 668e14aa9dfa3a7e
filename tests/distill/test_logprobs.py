"""Stored teacher logprobs -> training tokens: the assistant turn is the teacher's own token sequence, whether
the record carries ids (local backend) or token text (endpoints), and mapping stops at an unmappable token."""

from downsize.distill.logprobs import teacher_token_example, token_table
from downsize.distill.supervised import _assistant_example

MSGS = [{"role": "user", "content": "add two numbers"},
        {"role": "assistant", "content": "def add(a, b):\n    return a + b\n"}]


def _turn(tok, as_ids: bool):
    ids = tok(MSGS[1]["content"], add_special_tokens=False).input_ids
    text = lambda i: tok.decode([i])  # noqa: E731
    return [dict({"id": i, "top": [[i, -0.1], [(i + 1) % len(tok), -3.0]]} if as_ids else
                 {"token": text(i), "top": [[text(i), -0.1], [text((i + 1) % len(tok)), -3.0]]}, logprob=-0.1)
            for i in ids], ids


def test_ids_and_text_records_give_the_teachers_tokens_with_their_top_k(tiny_tokenizer):
    table = token_table(tiny_tokenizer)
    plain_ids, plain_labels, _ = _assistant_example(tiny_tokenizer, MSGS)
    for as_ids in (True, False):
        lp, gen = _turn(tiny_tokenizer, as_ids)
        ids, labels, teacher = _assistant_example(tiny_tokenizer, MSGS, None, None, [lp], table)
        assert ids == plain_ids and labels == plain_labels  # canonical tokens: the same sequence as plain SFT
        pos = sorted(teacher)
        assert [ids[i] for i in pos] == gen and len(pos) == len(gen)
        assert all(labels[i] == ids[i] for i in pos)  # every teacher position is a trained assistant token
        first_ids, first_lps = teacher[pos[0]]
        assert first_ids == [gen[0], (gen[0] + 1) % len(tiny_tokenizer)] and first_lps == [-0.1, -3.0]


def test_mapping_stops_at_an_empty_token_and_the_rest_keeps_cross_entropy(tiny_tokenizer):
    table = token_table(tiny_tokenizer)
    lp, gen = _turn(tiny_tokenizer, as_ids=False)
    full = tiny_tokenizer.apply_chat_template(MSGS, tokenize=False)
    before = tiny_tokenizer.apply_chat_template(MSGS[:1], tokenize=False, add_generation_prompt=True)
    lp[3] = dict(lp[3], token="")  # llama.cpp's text for a token holding part of a UTF-8 character
    text = "".join(t["token"] for t in lp)
    full = full.replace(MSGS[1]["content"], text)
    ids, offsets, teacher = teacher_token_example(tiny_tokenizer, full, [(len(before), len(full))], [lp], table)
    assert len(teacher) == 3 and [ids[i] for i in sorted(teacher)] == gen[:3]
    assert tiny_tokenizer.decode(ids) == full  # the rest of the turn is tokenized as text, nothing lost
