"""The output policy (downsize.io), the error boundary (downsize.errors) and the smaller fixes of #14:
the log truncated on resume, a checkpoint not silently dropped, file modes, no empty outputs, --debug.

    python -m pytest -q tests/reliability/test_policy.py
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat

import pytest
import torch

from downsize.errors import DownsizeError, report, run_guarded
from downsize.io import (KIND_DISTILL, KIND_GGUF, KIND_JSONL, KIND_PRUNE, MARKER, atomic_dir, atomic_path, check_output,
                         output_kind)


def test_dir_outputs_replace_only_their_own_kind(tmp_path):
    out = tmp_path / "o"
    with atomic_dir(out, KIND_PRUNE) as t:
        (t / "a").write_text("1")
    assert output_kind(out) == KIND_PRUNE and json.loads((out / MARKER).read_text()) == {"kind": KIND_PRUNE}
    with atomic_dir(out, KIND_PRUNE) as t:  # a previous output of the same kind is replaced whole
        (t / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b"]
    with pytest.raises(DownsizeError, match="prune output, not a distill output"):
        check_output(out, KIND_DISTILL)
    check_output(out, KIND_DISTILL, overwrite=True)
    assert not list(tmp_path.glob(".o.*"))  # no temporary or old folder left


def test_user_folder_is_refused_and_survives_a_failed_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years")
    with pytest.raises(DownsizeError, match="did not write"):
        with atomic_dir(mine, KIND_PRUNE):
            raise AssertionError("never reached")
    assert (mine / "thesis.tex").read_text() == "years"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", KIND_PRUNE)  # an empty folder is fine


def test_file_in_place_of_a_folder_is_replaced_only_with_overwrite(tmp_path):
    f = tmp_path / "out"
    f.write_text("mine")
    with pytest.raises(DownsizeError, match="is a file"):
        check_output(f, KIND_PRUNE)
    with atomic_dir(f, KIND_PRUNE, overwrite=True) as t:
        (t / "x").write_text("1")
    assert f.is_dir() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no hidden .old left


def test_file_outputs_use_the_ledger_and_notice_edits(tmp_path):
    g = tmp_path / "m.gguf"
    with atomic_path(g, KIND_GGUF) as t:
        t.write_bytes(b"GGUF first")
    with atomic_path(g, KIND_GGUF) as t:  # downsize wrote it: replaced
        t.write_bytes(b"GGUF second")
    g.write_bytes(b"GGUF edited by hand")
    with pytest.raises(DownsizeError, match="did not write it \\(or it changed since\\)"):
        check_output(g, KIND_GGUF)
    with pytest.raises(DownsizeError, match="is a folder"):
        check_output(tmp_path, KIND_GGUF, overwrite=True)  # a folder is never replaced by a file


def test_generate_jsonl_is_recognised_by_content(tmp_path):
    j = tmp_path / "t.jsonl"
    j.write_text('{"id": "a", "messages": []}\n{"id": "b"')  # a torn last line from a kill is allowed
    check_output(j, KIND_JSONL)
    j.write_text('{"prompt": "a user file"}\n')
    with pytest.raises(DownsizeError):
        check_output(j, KIND_JSONL)


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d", KIND_PRUNE) as t:
            from safetensors.torch import save_file

            save_file({"w": torch.zeros(2)}, str(t / "model.safetensors"))
            fd = os.open(t / "private", os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "private", MARKER):
        assert stat.S_IMODE((tmp_path / "d" / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_boundary_words_os_errors_and_never_parses_markup():
    buf = io.StringIO()
    assert report(OSError(errno.ENOSPC, "No space left on device", "/data/[/x]/m.gguf"), stream=buf) == 2
    assert "no space left on the device: /data/[/x]/m.gguf" in buf.getvalue()
    buf = io.StringIO()
    assert report(DownsizeError("no model at [red]mine[/red]", hint="use [bold]x"), stream=buf) == 2
    assert "no model at [red]mine[/red]" in buf.getvalue() and "use [bold]x" in buf.getvalue()
    buf = io.StringIO()
    assert report(ZeroDivisionError("boom"), stream=buf) == 1 and "bug in downsize" in buf.getvalue()
    assert "Traceback" not in buf.getvalue()


def test_debug_shows_the_traceback(monkeypatch):
    def fail():
        raise DownsizeError("bad input")

    buf = io.StringIO()
    assert run_guarded(fail, debug=True, stream=buf) == 2 and "Traceback" in buf.getvalue()
    monkeypatch.setenv("DOWNSIZE_DEBUG", "1")
    buf = io.StringIO()
    assert run_guarded(fail, stream=buf) == 2 and "Traceback" in buf.getvalue()
    monkeypatch.setenv("DOWNSIZE_DEBUG", "0")
    buf = io.StringIO()
    assert run_guarded(fail, stream=buf) == 2 and "Traceback" not in buf.getvalue()


def test_cli_debug_flag_anywhere(capsys, tmp_path):
    from downsize.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path / "none"), "--debug"])
    assert e.value.code == 2 and "Traceback" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and "does not exist" in err


class _Counting:
    def batch(self, step, batch_size, rank=0, world=1):
        g = torch.Generator().manual_seed(step)
        ids = torch.randint(0, 32, (batch_size, 9), generator=g)
        return {"input_ids": ids, "labels": ids}


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(32, 8), torch.nn.Linear(8, 32))


def _loss(model, batch):
    logits = model(batch["input_ids"])
    return torch.nn.functional.cross_entropy(logits.view(-1, 32), batch["labels"].view(-1)), {}


def test_resume_from_an_older_checkpoint_does_not_duplicate_log_lines(tmp_path):
    from downsize.train.loop import TrainConfig, train

    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, checkpoint_every=2, keep_checkpoints=5,
                      log_every=1, mixed_precision="no", progress=False)
    ref = _tiny()
    train(ref, _loss, _Counting(), cfg, tmp_path / "ref")
    out = tmp_path / "run"
    train(_tiny(), _loss, _Counting(), cfg, out)
    # as after a kill at step 5: the log has lines 1..5 (and 6), the newest checkpoint is step 4 -> make it step 2
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"step": 2, "path": "step-00000002"}))
    m = _tiny()
    train(m, _loss, _Counting(), cfg, out, resume=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)  # resuming is exact


def test_rerun_without_resume_refuses_to_drop_a_checkpoint(tmp_path):
    from downsize.train.loop import CHECKPOINTS, TrainConfig, check_fresh_start, train

    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, checkpoint_every=1, mixed_precision="no", progress=False)
    train(_tiny(), _loss, _Counting(), cfg, tmp_path)
    with pytest.raises(DownsizeError, match="holds a checkpoint at step 2") as e:
        check_fresh_start(tmp_path, resume=False)
    assert "--resume" in e.value.hint and "--overwrite" in e.value.hint
    check_fresh_start(tmp_path, resume=True)
    check_fresh_start(tmp_path, resume=False, overwrite=True)
    assert not (tmp_path / CHECKPOINTS).exists()


def test_generate_failing_before_its_first_request_leaves_no_file(tmp_path):
    from downsize.generate import GenerateConfig, GenParams, generate

    p = tmp_path / "p.txt"
    p.write_text("hi\n")
    for teacher in (str(tmp_path / "no-such-model"), "zoo:no-such-model"):
        cfg = GenerateConfig(teacher=teacher, out=str(tmp_path / "o.jsonl"), prompts=str(p))
        with pytest.raises(DownsizeError):
            generate(cfg)
    cfg = GenerateConfig(teacher="openai:http://127.0.0.1:9/v1#m", out=str(tmp_path / "o.jsonl"), prompts=str(tmp_path / "none"))
    with pytest.raises(DownsizeError):
        generate(cfg)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.txt"]
    cfg = GenerateConfig(teacher="openai:http://127.0.0.1:9/v1#m", out=str(tmp_path / "o.jsonl"), prompts=str(p),
                         params=GenParams(timeout_s=1, max_retries=0))
    assert generate(cfg)["stopped"]  # the request was sent: both files exist, empty
    assert (tmp_path / "o.jsonl").read_text() == (tmp_path / "o.rejected.jsonl").read_text() == ""
