"""Generation speed and peak memory of a model, measured in a fresh process so RSS is its own.

    $ python -m downsize.eval.speed zoo:coder-teacher --prompt-tokens 128 --gen-tokens 64
    {"prompt_tok_s": ..., "gen_tok_s": ..., "peak_rss_mb": ..., "load_s": ..., "backend": "transformers"}
    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "m-q8_0.gguf", quant="Q8_0")
    >>> r = measure_speed("m-q8_0.gguf", prompt_tokens=32, gen_tokens=8, threads=1)   # llama.cpp, in a fresh process
    >>> sorted(r)
    ['backend', 'base_rss_mb', 'gen_tok_s', 'load_s', 'peak_rss_mb', 'prompt_tok_s', 'threads']

Peak RSS is the whole process's high-water mark (interpreter and libraries included), the number
a user sees in `top`; the baseline of an empty process is reported beside it as ``base_rss_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

PROMPT = "import os\nimport sys\n\n\ndef main(argv):\n    \"\"\"Parse the arguments and run.\"\"\"\n"


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space, which exec replaces; ru_maxrss is kept
    across exec on Linux, so a child would report its parent's peak at fork time."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_threads() -> int:
    """Threads for both backends alike: OMP_NUM_THREADS when set, else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0))


def _prompt_ids(tokenize, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenize(PROMPT)
    return ids[:n]


def _hf(ref: str, n_prompt: int, n_gen: int, threads: int | None) -> dict:
    import torch

    from downsize.models.compat import CACHE_ARG, kv_cache
    from downsize.models.refs import load_model

    torch.set_num_threads(threads or default_threads())
    base = peak_rss_mb()
    t0 = time.perf_counter()
    model, tok = load_model(ref)
    model.eval()
    load_s = time.perf_counter() - t0
    ids = torch.tensor([_prompt_ids(lambda s: tok(s, add_special_tokens=False)["input_ids"], n_prompt)])
    with torch.no_grad():
        model(ids[:, :8])  # warm up
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        prompt_s = time.perf_counter() - t0
        past, nxt = kv_cache(out), out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(n_gen):
            out = model(nxt, **{CACHE_ARG: past}, use_cache=True)
            past, nxt = kv_cache(out), out.logits[:, -1:].argmax(-1)
        gen_s = time.perf_counter() - t0
    return {"backend": "transformers", "prompt_tok_s": n_prompt / prompt_s, "gen_tok_s": n_gen / gen_s,
            "load_s": load_s, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base, "threads": torch.get_num_threads()}


def _gguf(path: str, n_prompt: int, n_gen: int, threads: int | None) -> dict:
    from downsize.models.llamacpp import open_gguf

    base = peak_rss_mb()
    t0 = time.perf_counter()
    llm = open_gguf(path, n_prompt + n_gen + 8, threads=threads or default_threads(), logits_all=False)
    load_s = time.perf_counter() - t0
    ids = _prompt_ids(lambda s: llm.tokenize(s.encode(), add_bos=False, special=False), n_prompt)
    llm.eval(ids)  # warm up with the same batch shape: llama.cpp sizes its compute buffers on the first big batch
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    prompt_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_gen):
        tok = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy; llama.cpp keeps the last row's logits
        llm.eval([tok])
    gen_s = time.perf_counter() - t0
    return {"backend": "llama.cpp", "prompt_tok_s": n_prompt / prompt_s, "gen_tok_s": n_gen / gen_s, "load_s": load_s,
            "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base, "threads": threads}


def measure_speed(ref: str, prompt_tokens: int = 128, gen_tokens: int = 64, threads: int | None = None,
                  timeout: float = 600) -> dict:
    """Run the measurement in a child process and return its JSON."""
    cmd = [sys.executable, "-m", "downsize.eval.speed", str(ref), "--prompt-tokens", str(prompt_tokens),
           "--gen-tokens", str(gen_tokens)] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"speed measurement of {ref} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    fn = _gguf if str(a.model).endswith(".gguf") else _hf
    print(json.dumps(fn(a.model, a.prompt_tokens, a.gen_tokens, a.threads)))


if __name__ == "__main__":
    main()
