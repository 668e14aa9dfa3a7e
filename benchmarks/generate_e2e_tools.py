"""End to end, text KD for tool use: teacher traces over a real codebase -> SFT of a student -> eval-tools.

    $ .venv/bin/python benchmarks/generate_e2e_tools.py --student zoo:coder-teacher --steps 150

Two teachers, both over the real codebase src/downsize (questions and answers from its `ast`):
1. the zoo teacher itself, exported to GGUF and served by llama.cpp: a 15.7M code LM that was never
   trained on chat or tools, so this measures what the validators make of a teacher that cannot do the
   task (the acceptance rate and the rejection reasons);
2. a rule-based tool agent behind a real HTTP server (tests/generate/conftest.py: grep / read_file /
   list_files chosen by the question, answers quoted from the tool output). It stands in for a
   tool-using 30B teacher: it is not a language model, so its row is an upper bound, not a peer model.
The student is fine-tuned (full SFT, assistant tokens only, downsize.distill.supervised) on the accepted traces
of teacher 2, then evaluated with the student before SFT on a held-out suite (ids disjoint from training).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "generate"))

from conftest import TeacherServer  # noqa: E402
from llamacpp import LlamaServer  # noqa: E402

from downsize.distill.supervised import SFTConfig, sft  # noqa: E402
from downsize.eval.tools import compare, make_task_suite  # noqa: E402
from downsize.export.gguf import export_gguf  # noqa: E402
from downsize.generate import AgentConfig, GenerateConfig, GenParams, generate  # noqa: E402
from downsize.generate.sandbox import SandboxLimits  # noqa: E402
from downsize.train.loop import TrainConfig  # noqa: E402

MAX_OUTPUT = 400  # characters per tool result: keeps traces inside the student's trained context


def zoo_teacher_step(a, work: Path, agent: AgentConfig, limits: SandboxLimits) -> None:
    gguf = work / "teacher-f16.gguf"
    if not gguf.exists():
        export_gguf(a.student, gguf, quant="F16")
    srv = LlamaServer(gguf, n_ctx=2048, threads=2, log=work / "server.log").start()
    try:
        t0 = time.perf_counter()
        s1 = generate(GenerateConfig(teacher=srv.ref, out=str(work / "zoo-traces.jsonl"), codebase=a.codebase,
                                     n_codebase=a.n_zoo, n_negative=max(1, a.n_zoo // 4), in_flight=1, agent=agent, sandbox=limits,
                                     params=GenParams(max_tokens=a.max_tokens)))
        print(f"[1] zoo teacher via llama.cpp: {s1['tasks']} prompts, accepted {s1['written']}, rejected {s1['rejected']}, "
              f"reasons {s1['reasons']}, {time.perf_counter() - t0:.1f} s")
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default="zoo:coder-teacher")
    ap.add_argument("--codebase", default=str(ROOT / "src" / "downsize"))
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-neg", type=int, default=40)
    ap.add_argument("--n-eval", type=int, default=24)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=768)
    ap.add_argument("--n-zoo", type=int, default=40, help="prompts for the zoo teacher through llama.cpp (+1/4 negatives)")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gen-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    limits = SandboxLimits(max_output=MAX_OUTPUT)
    agent = AgentConfig(max_turns=3)

    # 1. the zoo teacher through llama.cpp (--n-zoo 0 skips it)
    if a.n_zoo:
        zoo_teacher_step(a, work, agent, limits)
    else:
        print("[1] zoo teacher via llama.cpp: skipped (--n-zoo 0)")

    # 2. the rule-based tool agent -> traces -> SFT -> eval
    bot = TeacherServer().start()
    try:
        ref = f"openai:{bot.url}#rule-agent"
        traces = work / "agent-traces.jsonl"
        s2 = generate(GenerateConfig(teacher=ref, out=str(traces), codebase=a.codebase, n_codebase=a.n_train,
                                     n_negative=a.n_neg, in_flight=4, agent=agent, sandbox=limits))
        print(f"[2] rule agent: {s2['tasks']} prompts, accepted {s2['written']}, rejected {s2['rejected']}, reasons {s2['reasons']}")
        suite = work / "suite.jsonl"
        n = make_task_suite(a.codebase, suite, n=a.n_eval, n_negative=max(2, a.n_eval // 4), exclude=traces)
        student = work / "student-sft"
        if not (student / "config.json").exists():
            t0 = time.perf_counter()
            sft(a.student, str(traces), SFTConfig(train=TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=5e-4, warmup_steps=10,
                                                                    log_every=25, progress=False), max_seq_len=a.max_seq_len,
                                                  save_dtype="float32"), student)
            print(f"SFT: {a.steps} steps in {time.perf_counter() - t0:.1f} s")
        rows = compare([ref, a.student, str(student)], suite, a.codebase, max_turns=3, max_tokens=a.max_tokens,
                       max_output=MAX_OUTPUT)
    finally:
        bot.stop()
    print(f"\nheld-out suite: {n} tasks over {a.codebase} (work dir {work})")
    print(f"{'model':44s} {'tool use %':>10s} {'no tools on neg %':>17s} {'accuracy %':>10s} {'s/query':>8s} {'peak RSS MiB':>12s}")
    names = ["rule agent (teacher stand-in)", f"{a.student} (before SFT)", f"{a.student} + SFT on traces"]
    for name, r in zip(names, rows):
        f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        print(f"{name:44s} {f(r['tool_use_pct']):>10s} {f(r['no_tool_on_negative_pct']):>17s} {f(r['accuracy_pct']):>10s} "
              f"{f(r['median_s'], 2):>8s} {f(r['peak_rss_mb'], 0):>12s}")
    (work / "eval.json").write_text(json.dumps([{k: v for k, v in r.items()} for r in rows], indent=1))


if __name__ == "__main__":
    main()
