"""The ``generate`` stage: the teacher writes training data (chat JSONL), prompts filled from a codebase,
tool-calling traces run in a sandbox, from any OpenAI-compatible server or a local model.

    $ downsize generate --teacher openai:http://127.0.0.1:8080/v1#coder --codebase ./repo --out traces.jsonl
    >>> GenerateStage(codebase="./repo").n_codebase
    100

Resumable: a rerun skips the ids already written.
"""

from __future__ import annotations

from typing import Optional

from downsize.stages.base import Artifact, Field, StageConfig, StageContext, stage

OUTPUT = "data.jsonl"


class GenerateStage(StageConfig):
    teacher: Optional[str] = Field(None, description="openai:URL#MODEL (Ollama, vLLM, llama.cpp server) or a model "
                                                     "reference; default: the recipe's teacher")
    prompts: Optional[str] = Field(None, description="prompt file: JSONL ({prompt|messages, expected?, "
                                                     "needs_tools?}) or text, one per line")
    codebase: Optional[str] = Field(None, description="repository: questions filled from it, and the tool sandbox root")
    n_codebase: int = Field(100, ge=0, description="codebase questions to draw from the templates")
    n_negative: int = Field(20, ge=0, description="negative examples that need no tools (arithmetic, general knowledge)")
    templates: Optional[list[str]] = Field(None, description="only these question templates")
    limit: Optional[int] = Field(None, ge=1, description="at most N prompts")
    tools: bool = Field(True, description="agent loop with list_files/read_file/grep when a codebase is given")
    max_turns: int = Field(4, ge=1, description="model turns per trace")
    max_new_tokens: int = Field(256, ge=1, description="tokens per model turn")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    concurrency: int = Field(4, ge=1, description="requests in flight (server) or the batch size (local model)")
    top_logprobs: int = Field(0, ge=0, le=20, description="store the teacher's top-k logprobs per token "
                                                          "(sft logprob_kd can then use them)")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    retries: int = Field(6, ge=0, description="retries on 429/5xx/connection loss/malformed JSON")

    def problems(self) -> list[str]:
        if self.prompts is None and self.codebase is None:
            return ["prompts/codebase: give a prompt file or a codebase to draw questions from"]
        return []

    def engine_config(self, teacher: str, out: str, seed: int, prompts: str | None, codebase: str | None):
        from downsize.generate import AgentConfig, GenerateConfig, GenParams

        params = GenParams(max_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, seed=seed,
                           top_logprobs=self.top_logprobs, timeout_s=self.timeout, max_retries=self.retries,
                           batch_size=self.concurrency)
        return GenerateConfig(teacher=teacher, out=out, prompts=prompts, codebase=codebase, n_codebase=self.n_codebase,
                              n_negative=self.n_negative, templates=tuple(self.templates) if self.templates else None,
                              seed=seed, in_flight=self.concurrency, limit=self.limit, tools=self.tools,
                              params=params, agent=AgentConfig(max_turns=self.max_turns))


def _estimate(cfg: GenerateStage, params: int) -> str:
    n = cfg.limit or (cfg.n_codebase + cfg.n_negative if cfg.codebase else "the prompt file's")
    return f"{n} prompts × ≤{cfg.max_turns} turns × ≤{cfg.max_new_tokens} tokens, {cfg.concurrency} in flight"


@stage("generate", GenerateStage, produces="data", estimate=_estimate)
def run_generate(ctx: StageContext, cfg: GenerateStage) -> Artifact:
    """The teacher writes training data (chat JSONL); a rerun resumes."""
    from downsize.generate.run import generate

    teacher = ctx.resolve(cfg.teacher) or ctx.teacher
    summary = generate(cfg.engine_config(teacher, str(ctx.out), ctx.seed, ctx.resolve(cfg.prompts),
                                         ctx.resolve(cfg.codebase)), overwrite=ctx.overwrite)
    return Artifact("data", ctx.out, "", {k: v for k, v in summary.items() if isinstance(v, (int, float, str, dict))})
