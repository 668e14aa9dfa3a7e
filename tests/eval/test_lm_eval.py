"""lm-evaluation-harness on local data: the built-in stdlib task is well formed, and lm-eval's accuracy equals
an independent computation of the same log-likelihood comparison with the model itself."""

import json
import subprocess
import sys

import pytest
import torch

from downsize.errors import DownsizeError
from downsize.eval.harness import N_CHOICES, next_line_docs, run_lm_eval, write_builtin_tasks

pytest.importorskip("lm_eval")


def test_next_line_docs_are_deterministic_and_true_to_the_source():
    from downsize.data.stdlib import StdlibCorpus

    a, b = next_line_docs(max_docs=40), next_line_docs(max_docs=40)
    assert a == b and len(a) == 40
    files = dict(StdlibCorpus.local().documents("test"))
    for d in a:
        assert len(set(d["choices"])) == N_CHOICES and 0 <= d["answer"] < N_CHOICES
        rel, line_no = d["id"].rsplit(":", 1)
        lines = files[rel].splitlines(keepends=True)
        assert lines[int(line_no) - 1] == d["choices"][d["answer"]]  # the answer is the file's real next line
        assert "".join(lines[: int(line_no) - 1]).endswith(d["context"])


def _reference_acc(model, tok, docs) -> float:
    """The multiple-choice rule lm-eval documents, computed here: argmax over choices of the summed
    log-probability of the choice's tokens after the context (trailing context whitespace moves into the
    continuation; inputs longer than the model's window keep their last tokens)."""
    max_len = model.config.max_position_embeddings
    right = 0
    for d in docs:
        scores = []
        for choice in d["choices"]:
            ctx, cont = d["context"], choice
            n = len(ctx) - len(ctx.rstrip())
            if n:
                ctx, cont = ctx[:-n], ctx[-n:] + cont
            whole = tok(ctx + cont, add_special_tokens=False).input_ids
            c = tok(ctx, add_special_tokens=False).input_ids
            cont_ids = whole[len(c):]
            seq = (c + cont_ids)[-(max_len + 1):]
            with torch.no_grad():
                logp = model(torch.tensor([seq[:-1]])).logits[0].float().log_softmax(-1)
            tgt = torch.tensor(seq[1:])[-len(cont_ids):]
            scores.append(logp[-len(cont_ids):].gather(-1, tgt[:, None]).sum().item())
        right += int(max(range(len(scores)), key=scores.__getitem__) == d["answer"])
    return right / len(docs)


def test_lm_eval_accuracy_equals_an_independent_computation(tiny_model_dir):
    from downsize.models.refs import load_model

    limit = 12
    res = run_lm_eval(str(tiny_model_dir), ["stdlib_next_line"], limit=limit, batch_size=4)
    r = res["stdlib_next_line"]
    rows = [json.loads(x) for x in (write_builtin_tasks() / "stdlib_next_line.jsonl").read_text().splitlines()[:limit]]
    model, tok = load_model(str(tiny_model_dir))
    model.eval()
    assert r["acc"] == pytest.approx(_reference_acc(model, tok, rows), abs=1e-9)
    assert 0 <= r["acc_norm"] <= 1 and r["acc_stderr"] > 0


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_unknown_task_and_missing_include_are_clear(tiny_model_dir, tmp_path):
    with pytest.raises(DownsizeError, match="knows no task 'nope'") as e:
        run_lm_eval(str(tiny_model_dir), ["nope"])
    assert "stdlib_next_line" in e.value.hint
    with pytest.raises(DownsizeError, match="not a folder"):
        run_lm_eval(str(tiny_model_dir), ["stdlib_next_line"], include=tmp_path / "missing")


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_cli_runs_a_user_yaml_task_on_local_jsonl(tiny_model_dir, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"q": f"x = {i}\ny = x + 1\n", "choices": ["y\n", "z\n"], "gold": 0}) + "\n"
                            for i in range(6)))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text(f"""task: my_local_task
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: q
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
metadata:
  version: 1.0
""")
    text = tmp_path / "t.txt"
    text.write_text("x = 1\ny = x + 1\n" * 40)
    out = subprocess.run([sys.executable, "-m", "downsize.cli", "eval", str(tiny_model_dir), "--data", str(text),
                          "--no-sample", "--lm-eval", "my_local_task", "--lm-eval-include", str(tmp_path / "tasks"),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)["lm_eval"]["my_local_task"]
    assert r["sample_len"] == 6 and 0 <= r["acc"] <= 1
