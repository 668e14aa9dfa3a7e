"""On-policy distillation with the teacher behind a server: the student samples, the server scores its tokens.

    $ python -m llama_cpp.server --model teacher.gguf --model_alias teacher --port 8080      # or vLLM
    $ downsize distill --teacher openai:http://127.0.0.1:8080/v1#teacher --student runs/pruned --on-policy \\
          --top-k 20 --sampled-kl k3 --sampled-kl-weight 0.5 --checkpoint-every 20 --out runs/opd
    >>> from downsize.distill import distill, DistillConfig, OnPolicy
    >>> from downsize.train.loop import TrainConfig
    >>> cfg = DistillConfig(train=TrainConfig(steps=2, batch_size=2), seq_len=48, val_tokens=0,
    ...                     on_policy=OnPolicy(lmbda=1.0, prompt_len=16, new_tokens=32), server=ServerSpec(top_k=20))
    >>> out = distill("openai:http://127.0.0.1:8080/v1#teacher", "runs/pruned", "zoo:stdlib", cfg, "runs/opd")
    >>> sorted(p.name for p in out.glob("*.safetensors"))
    ['model.safetensors']

Each step, with probability ``lmbda`` (GKD's λ) the student continues the batch's prompts by sampling
(seeded by the step, so a resumed run samples the same), otherwise the data's own tokens are used. The
text goes to the server's legacy completions endpoint with ``echo`` and ``logprobs=k`` (llama.cpp's
llama-cpp-python server, vLLM), one request per row, ``in_flight`` at a time; the teacher's top-k
log-probabilities at every position come back, and the student is trained with

- the divergence of ``LossSpec`` (forward KL by default) between the two distributions coarse-grained to
  the teacher's k ids plus one tail bucket (losses.TopK, as for the offline cache), and/or
- a reverse-KL estimator on the sampled token (``sampled_kl``: k1/k2/k3 of Schulman's note, as in verl),
  as a per-token loss, or as a reward weighting the student's log-probabilities (``sampled_kl_reward``;
  REINFORCE on r = log p_T - log q, whose gradient is that of KL(q || p_T)).

What the servers offer (read in their sources): llama-cpp-python's ``/v1/completions`` takes text only
and, with ``echo`` and ``logprobs``, returns for every prompt token its text, the log-probability and a
top-k dict keyed by token *text*. When its model adds no BOS token the list is shifted by one: entry i
holds the distribution *after* token i, and ``token_logprobs[i]`` is read from that shifted row (so it is
not the token's log-probability); downsize reads the top-k one row earlier and looks the sampled token up
in them, using the tail (spread evenly over the ids outside the top-k) when it is not among them. vLLM
follows OpenAI's semantics (entry i predicts token i). llama.cpp's own ``llama-server`` returns
probabilities (``n_probs``, ``post_sampling_probs``) only for tokens it generates, not for given ones, so it
cannot score a student's tokens; use llama-cpp-python's server or vLLM for a GGUF or HF teacher.

Tokenizers must match: the server's tokenize endpoint (``/extras/tokenize`` of llama-cpp-python,
``/tokenize`` of llama.cpp and vLLM) must give the student's ids on probe strings, else the run stops
before training; each scored row is checked again (the echoed token texts against the student's).
Rows are re-tokenized from their text, as the server sees them. A server that stays down past the
retries stops the run with a checkpoint at the current step; ``--resume`` continues from it.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from downsize.distill.losses import IGNORE_INDEX, LOG_FLOOR, TopK, kl_estimator, sampled_kl_loss, tail_logp
from downsize.errors import DownsizeError

log = logging.getLogger(__name__)

SERVER_SCHEME = "openai:"
SAMPLED_KL = ("none", "k1", "k2", "k3")
TEXT_KEYED_MARGIN = 8
# Strings the student's and the server's tokenizers must split alike before any training.
PROBES = ("def f(x):\n    return x + 1\n", "import os.path\n\nclass A(object):\n    pass", "  \t# comment ünïcode ✓ 😀",
          "1234567890 -> [a, b]; {'k': \"v\"}")


class ServerDown(DownsizeError):
    """The teacher server stayed unreachable past the retries: the loop checkpoints and the run can resume."""

    resumable = True


@dataclass(frozen=True)
class ServerSpec:
    """How to use a teacher behind an OpenAI-compatible completions endpoint."""

    top_k: int = 20  # teacher log-probabilities per position (llama-cpp-python has no cap; vLLM's default is 20)
    in_flight: int = 4  # concurrent requests (one row each)
    sampled_kl: str = "none"  # reverse-KL estimator on the sampled token: none, k1, k2, k3
    sampled_kl_weight: float = 0.0  # its weight; the top-k divergence keeps weight 1 - this
    sampled_kl_reward: bool = False  # use -k1 as a reward weighting the student's log-probs (REINFORCE)
    timeout_s: float = 120.0
    max_retries: int = 6

    def __post_init__(self):
        if self.top_k < 1:
            raise DownsizeError(f"top_k must be >= 1, got {self.top_k}", hint="20 is what vLLM allows by default")
        if self.in_flight < 1:
            raise DownsizeError(f"in_flight must be >= 1, got {self.in_flight}")
        if self.sampled_kl not in SAMPLED_KL:
            raise DownsizeError(f"sampled_kl {self.sampled_kl!r} is not an estimator", hint=f"choose one of {', '.join(SAMPLED_KL)}")
        if not 0.0 <= self.sampled_kl_weight <= 1.0:
            raise DownsizeError(f"sampled_kl_weight must be in [0, 1], got {self.sampled_kl_weight}",
                                hint="0: only the top-k divergence; 1: only the sampled-token estimator")
        if self.sampled_kl_weight > 0 and self.sampled_kl == "none":
            raise DownsizeError("sampled_kl_weight > 0 needs an estimator", hint="set sampled_kl to k1, k2 or k3")


def is_server(ref) -> bool:
    return isinstance(ref, str) and ref.startswith(SERVER_SCHEME)


# ---- talking to the server -----------------------------------------------------------------------

def _post_json(url: str, payload: dict, timeout: float) -> dict | None:
    """POST JSON; the decoded answer, or None when the endpoint does not exist (404/405) or is not JSON."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code in (404, 405, 422):
            return None
        raise
    except ValueError:
        return None


# Tokenize endpoints, tried in order: (path relative to the server root, body, key of the ids).
TOKENIZE_DIALECTS = (
    ("llama-cpp-python", "/extras/tokenize", lambda text, model: {"input": text, "model": model}),
    ("llama.cpp", "/tokenize", lambda text, model: {"content": text, "add_special": False}),
    ("vllm", "/tokenize", lambda text, model: {"prompt": text, "model": model, "add_special_tokens": False}),
)


class ServerTeacher:
    """Scores token rows with the teacher behind ``openai:URL#MODEL``: top-k per position, concurrently."""

    def __init__(self, ref: str, tokenizer, spec: ServerSpec = ServerSpec()):
        from downsize.distill.logprobs import token_table
        from downsize.generate.backends import GenParams, OpenAIBackend

        self.ref, self.tok, self.spec = ref, tokenizer, spec
        self.client = OpenAIBackend(ref, GenParams(timeout_s=spec.timeout_s, max_retries=spec.max_retries))
        self.root = self.client.url[: -len("/v1")] if self.client.url.endswith("/v1") else self.client.url
        self.table = token_table(tokenizer)
        self.vocab = len(tokenizer)
        self.dialect, self.bos = self.check_tokenizer()
        # llama-cpp-python's echo logprobs are shifted by one when its model adds no BOS (see module docstring)
        self.shift = 1 if self.dialect == "llama-cpp-python" and not self.bos else 0
        self.pool = ThreadPoolExecutor(spec.in_flight, thread_name_prefix="teacher-server")

    def check_tokenizer(self) -> tuple[str, bool]:
        """(dialect, whether the server adds a BOS id); refuses a server whose tokenizer splits a probe differently."""
        for name, path, body in TOKENIZE_DIALECTS:
            try:
                got = _post_json(self.root + path, body(PROBES[0], self.client.model), self.spec.timeout_s)
            except (urllib.error.URLError, OSError) as e:
                raise ServerDown(f"the teacher server at {self.root} does not answer ({e})",
                                 hint="start it (e.g. python -m llama_cpp.server --model teacher.gguf) and rerun") from None
            if not got or "tokens" not in got:
                continue
            bos = False
            for text in PROBES:
                ids = [t if isinstance(t, int) else t.get("id") for t in _post_json(
                    self.root + path, body(text, self.client.model), self.spec.timeout_s)["tokens"]]
                mine = self.tok(text, add_special_tokens=False)["input_ids"]
                if len(ids) == len(mine) + 1 and ids[1:] == mine:
                    bos, ids = True, ids[1:]
                if ids != mine:
                    raise DownsizeError(
                        f"the teacher server's tokenizer differs from the student's: {text!r} -> server {ids[:12]}, "
                        f"student {mine[:12]}",
                        hint="on-policy distillation from a server scores the student's own token ids, so both must use "
                             "the same tokenizer: serve a teacher of the student's family, or distil locally with "
                             "--cross-tokenizer uld")
            log.info("teacher server %s (%s): tokenizer matches the student's on %d probes%s", self.root, name,
                     len(PROBES), ", adds BOS" if bos else "")
            return name, bos
        log.warning("the teacher server at %s has no tokenize endpoint; each row's echoed tokens are checked instead",
                    self.root)
        return "openai", False

    def _request(self, ids: list[int]) -> dict:
        from downsize.generate.backends import UnavailableError

        # llama-cpp-python keys its top-k by token text, and pieces of a UTF-8 character all come back as "", which
        # names no id: ask for a few more, so k nameable ids remain (vLLM caps logprobs, 20 by default: no margin)
        ask = self.spec.top_k + (TEXT_KEYED_MARGIN if self.dialect == "llama-cpp-python" else 0)
        body = {"prompt": self.tok.decode(ids), "echo": True, "logprobs": ask, "max_tokens": 1,
                "temperature": 0.0, "repeat_penalty": 1.0}
        if self.client.model:
            body["model"] = self.client.model
        try:
            data = self.client._post(json.dumps(body).encode(), self.client.url + "/completions")
        except UnavailableError as e:
            raise ServerDown(str(e), hint="start the teacher server again and rerun with --resume: the run continues "
                                          "from the checkpoint written at this step") from None
        lp = data["choices"][0].get("logprobs") or {}
        if not lp.get("top_logprobs"):
            raise DownsizeError(f"{self.ref} returned no prompt log-probabilities for an echoed prompt",
                                hint="the server must support /v1/completions with echo and logprobs "
                                     "(llama-cpp-python's server with logits_all, vLLM)")
        return lp

    def _same(self, text: str, i: int) -> bool:
        """Whether the server's token text is our id ``i`` (a piece of a UTF-8 character comes back as "")."""
        mine = self.tok.decode([i])
        return self.table.get(text) == i or text == mine or (text == "" and "\ufffd" in mine)

    def row(self, ids: list[int]) -> tuple[TopK, torch.Tensor, torch.Tensor]:
        """Teacher top-k for positions 0..T-2 of ``ids`` (row i predicts token i + 1), the log-probability of each
        next token, and a mask of the rows the server scored on exactly these tokens."""
        T, k = len(ids), self.spec.top_k
        lp = self._request(ids)
        toks, tops = lp["tokens"], lp["top_logprobs"]
        logp = torch.full((T - 1, k), LOG_FLOOR)
        top_ids = torch.zeros((T - 1, k), dtype=torch.long)
        tok_lp = torch.full((T - 1,), LOG_FLOOR)
        ok = torch.zeros(T - 1, dtype=torch.bool)
        n = min(len(toks), T)
        same = 0  # the server's tokens agree with ours up to here; later distributions saw another prefix
        while same < n and self._same(toks[same], ids[same]):
            same += 1
        for i in range(T - 1):  # row i: the distribution over token i + 1
            entry = i + 1 - self.shift
            if entry >= len(tops) or tops[entry] is None or i + 1 >= same:
                continue
            top: dict[int, float] = {}
            for text, v in sorted(tops[entry].items(), key=lambda kv: -kv[1]):
                j = self.table.get(text)
                if j is not None and j not in top:  # top-k keyed by text; the first id of a text wins
                    top[j] = float(v)
            if not top:
                continue
            vals = list(top.values())[:k]
            logp[i, : len(vals)], top_ids[i, : len(vals)] = torch.tensor(vals), torch.tensor(list(top)[:k])
            nxt = ids[i + 1]
            if nxt in top:
                tok_lp[i] = top[nxt]
            elif self.shift == 0 and lp.get("token_logprobs") and lp["token_logprobs"][entry] is not None:
                tok_lp[i] = float(lp["token_logprobs"][entry])
            else:  # outside the top-k: the tail mass spread evenly over the ids outside it
                tail = float(tail_logp(torch.tensor(vals)))
                tok_lp[i] = tail - math.log(max(1, self.vocab - len(vals)))
            ok[i] = True
        return TopK(logp, top_ids, tail_logp(logp)), tok_lp, ok

    def score(self, batch_ids: torch.Tensor) -> tuple[TopK, torch.Tensor, torch.Tensor]:
        """(TopK (B·(T-1), k), next-token log-probs (B·(T-1),), scored mask (B·(T-1),)) for a batch (B, T)."""
        rows = list(self.pool.map(self.row, batch_ids.tolist()))
        return (TopK(torch.cat([r[0].logp for r in rows]), torch.cat([r[0].ids for r in rows]),
                     torch.cat([r[0].tail_logp for r in rows])),
                torch.cat([r[1] for r in rows]), torch.cat([r[2] for r in rows]))

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def retokenize(tok, ids: torch.Tensor, prompt_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (B, T) re-tokenized from their text, as the server will see them (a sample may hold a non-canonical
    split), cut or padded to T; and labels with the prompt, the padding and what follows an EOS ignored."""
    B, T = ids.shape
    out = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    for b in range(B):
        prompt = ids[b, :prompt_len].tolist()
        whole = tok(tok.decode(ids[b].tolist()), add_special_tokens=False)["input_ids"]
        if whole[:prompt_len] == prompt:  # the server tokenizes the whole text; where it keeps the prompt, so do we
            row = whole[:T]
        else:  # a merge across the prompt's end: keep the prompt, the rows after the merge go unscored
            row = (prompt + tok(tok.decode(ids[b, prompt_len:].tolist()), add_special_tokens=False)["input_ids"])[:T]
        out[b, : len(row)] = torch.tensor(row)
        labels[b, prompt_len: len(row)] = out[b, prompt_len: len(row)]
    return out, labels


def server_setup(teacher_ref: str, student, data_ref: str, cfg):
    """(student model, tokenizer, description, loss_fn, data) for ``distill`` with a teacher behind a server."""
    from downsize.distill.student import StudentSpec, build_student
    from downsize.distill.train import WindowData, _Tagged, load_stream

    spec = StudentSpec.parse(student) if isinstance(student, str) else student
    if isinstance(spec, StudentSpec) and spec.ref is None:
        raise DownsizeError("a teacher behind a server has no config to derive a student from",
                            hint="give --student as a model reference (e.g. a pruned teacher, or the zoo model)")
    if cfg.cache:
        raise DownsizeError("a server teacher scores batches as they come; it takes no --cache", hint="drop --cache")
    if cfg.cross_tokenizer == "uld":
        raise DownsizeError("cross-tokenizer ULD needs the teacher's logits over its whole vocabulary, which a server "
                            "does not return", hint="serve a teacher with the student's tokenizer, or distil locally")
    model, tok, desc = build_student(spec, None, None, cfg.lora)
    server = ServerTeacher(teacher_ref, tok, cfg.server)
    data = WindowData(load_stream(tok, data_ref, cfg.split), cfg.seq_len, cfg.train.seed, cfg.windows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if cfg.on_policy is not None:
        data = _Tagged(data)
    return model, tok, desc, make_server_loss(cfg, server, pad), data


# ---- the loss ------------------------------------------------------------------------------------

def make_server_loss(cfg, server: ServerTeacher, pad_id: int):
    """``loss_fn(model, batch)`` for the loop: GKD mixing, student sampling, server scoring, top-k KD + sampled KL."""
    from downsize.distill.losses import kd_loss
    from downsize.distill.teacher import sample
    from downsize.distill.losses import token_logprobs
    from downsize.distill.train import _student_rows

    op, sv, spec = cfg.on_policy, cfg.server, cfg.loss

    def loss_fn(model, batch):
        ids, labels = batch["input_ids"], batch["labels"].clone()
        metrics: dict[str, float] = {}
        if op is not None:
            step, rank = (int(x) for x in batch["step"].tolist())
            g = torch.Generator().manual_seed(hash((cfg.train.seed, step, rank)) % (2 ** 63))
            if torch.rand((), generator=g).item() < op.lmbda:
                sampled = sample(model, ids[:, : op.prompt_len], op.new_tokens, g, temperature=op.temperature)
                ids, labels = retokenize(server.tok, sampled, op.prompt_len, pad_id)
                metrics["on_policy"] = 1.0
        teacher, t_tok, scored = server.score(ids)
        tgt = labels[:, 1:].reshape(-1)
        tgt = torch.where(scored, tgt, IGNORE_INDEX)
        metrics["scored_frac"] = float(scored.float().mean())
        student = _student_rows(model, ids, cfg)
        w = sv.sampled_kl_weight
        loss, parts = kd_loss(student, teacher, tgt, spec)
        metrics.update(kd=parts["kd"], ce=parts["ce"])
        if w > 0:
            s_tok = token_logprobs(student, tgt, spec.chunk_size)  # (N,) differentiable, 0 where ignored
            mask = tgt != IGNORE_INDEX
            sk, sk_parts = sampled_kl_loss(s_tok, t_tok, mask, sv.sampled_kl, sv.sampled_kl_reward)
            metrics.update(sampled_kl=sk_parts["estimate"], rkl_k1=sk_parts["k1"])
            loss = (1 - w) * loss + w * sk
        return loss, metrics

    return loss_fn


__all__ = ["ServerSpec", "ServerTeacher", "ServerDown", "is_server", "make_server_loss", "retokenize", "kl_estimator"]
