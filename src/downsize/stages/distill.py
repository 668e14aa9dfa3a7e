"""The ``distill`` stage: logit KD from a teacher into a student (online, offline top-k cache, on-policy GKD,
cross-tokenizer ULD), full weights or LoRA.

    $ downsize distill --teacher zoo:coder-teacher --student teacher:num_hidden_layers=4,hidden_size=192 \\
          --steps 200 --loss fkl --out runs/student
    >>> cfg = DistillStage(loss="jsd", beta=0.5, steps=200)
    >>> cfg.loss_spec().beta
    0.5

The loss's hyperparameters are not listed here: they are generated from
``downsize.distill.losses.LossSpec`` (one field there is one field here, on the command line and in
recipes), so a new loss with a hyperparameter is added in ``losses.py`` alone.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, create_model

from downsize.distill.losses import DIVERGENCES, LossSpec
from downsize.errors import DownsizeError
from downsize.stages.base import Artifact, Field, StageContext, stage
from downsize.stages.train import TrainFields, estimate_training


class LoraFields(BaseModel):
    """A nested group of settings (``lora: {r: 16}`` in a recipe, ``--lora-r 16`` on the command line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: Optional[list[str]] = Field(None, description="linear layers to adapt (default: every q/k/v/o and "
                                                                  "MLP projection)")
    quantize_base: Literal["none", "nf4", "4bit"] = Field("none", description="QLoRA: 4-bit NF4 base weights "
                                                                              "(CUDA + bitsandbytes); 4bit = nf4")

    def spec(self):
        from downsize.train.loop import LoraSpec

        targets = {"target_modules": tuple(self.target_modules)} if self.target_modules else {}
        return LoraSpec(r=self.r, alpha=self.alpha, dropout=self.dropout,
                        quantize_base=None if self.quantize_base == "none" else "nf4", **targets)


class _DistillFields(TrainFields):
    teacher: Optional[str] = Field(None, description="teacher model reference; default: the recipe's teacher")
    student: Optional[Union[str, dict[str, Any]]] = Field(
        None, description="the model to train: a reference or stage name, or teacher:FIELD=V,... (the teacher's "
                          "config with changes, random init); default: the input model")
    loss: Literal[tuple(DIVERGENCES)] = Field("fkl", description="divergence: " + ", ".join(DIVERGENCES))  # type: ignore[valid-type]
    teacher_mode: Literal["online", "offline"] = Field(
        "online", description="online: the teacher runs beside the student; offline: a top-k cache of the teacher "
                              "is written first (or read from `cache`)")
    cache: Optional[str] = Field(None, description="train from this existing offline top-k teacher cache")
    top_k: int = Field(32, ge=1, description="teacher ids per position: kept in an offline cache, or asked of a "
                                              "server teacher (openai:URL#MODEL)")
    teacher_dtype: Literal["auto", "bf16", "fp32"] = Field("auto", description="weights of an online teacher: auto "
                                                                             "(as mixed_precision resolves), bf16 or fp32")
    windows: Optional[int] = Field(None, ge=1, description="train on the first N windows of the data only")
    split: Optional[str] = Field(None, description="data split (default: train for zoo:stdlib, all for your data)")
    lmbda: float = Field(0.0, ge=0, le=1, description="on-policy (GKD): probability that a batch is sampled by "
                                                      "the student and scored by the teacher")
    on_policy: bool = Field(False, description="every batch sampled from the student and scored by the teacher "
                                               "(lmbda 1 unless given); with a server teacher, on-policy distillation")
    sampled_kl: Literal["none", "k1", "k2", "k3"] = Field("none", description="server teacher: reverse-KL estimator on "
                                                                               "the sampled token (none, k1, k2, k3)")
    sampled_kl_weight: float = Field(0.0, ge=0, le=1, description="server teacher: weight of sampled_kl against the "
                                                                  "top-k divergence")
    sampled_kl_reward: bool = Field(False, description="server teacher: use the estimator as a reward (REINFORCE), "
                                                       "not a loss")
    in_flight: int = Field(4, ge=1, description="server teacher: concurrent scoring requests")
    seq_kd: bool = Field(False, description="off-policy batches use teacher-sampled continuations (sequence KD)")
    prompt_len: int = Field(32, ge=1, description="on-policy/seq-KD: prompt tokens taken from the data")
    new_tokens: int = Field(64, ge=1, description="on-policy/seq-KD: tokens sampled after the prompt")
    vocab_align: Literal["auto", "off"] = Field("auto", description="auto: compare shared ids when the embedding "
                                                                     "sizes differ; off: refuse")
    cross_tokenizer: Literal["error", "uld"] = Field("error", description="uld: ULD loss for teacher and student "
                                                                          "with different tokenizers")
    head: Literal["chunked", "logits"] = Field("chunked", description="chunked: LM head applied inside the chunked "
                                                                       "loss; logits: the model's own logits (FSDP)")
    lora: Optional[LoraFields] = Field(None, description="train LoRA adapters instead of all weights (merged at the end)")
    teacher_ahead: Literal["auto", "on", "off"] = Field(
        "auto", description="online teacher: its forward of the next batch runs on threads of its own while the "
                            "student trains on this one (auto: on for a teacher on the CPU, batches from the data)")
    teacher_device: str = Field("auto", description="where the teacher runs: auto (the student's GPU, else the CPU), "
                                                    "cpu, cuda, cuda:N, other-gpu, shard, offload")
    val_tokens: int = Field(32768, ge=0, description="closing validation pass: tokens of zoo:stdlib's validation split "
                                                     "(0 = off)")
    keep_work: bool = Field(False, description="keep OUT.work/checkpoints after a successful save (default: removed; "
                                               "metrics.jsonl stays)")


def _loss_fields() -> dict:
    out = {}
    for name, f in LossSpec.hyperparameters().items():
        out[name] = (type(f.default), Field(f.default, description=f.metadata["help"]))
    return out


class DistillStage(create_model("_DistillLoss", __base__=_DistillFields, **_loss_fields())):
    def loss_spec(self) -> LossSpec:
        return LossSpec(self.loss, **{k: getattr(self, k) for k in LossSpec.hyperparameters()})

    def engine_config(self, seed: int, progress: bool = True, cache: str | None = None, teacher: str | None = None):
        """The distillation engine's record (downsize.distill.train.DistillConfig), built here only."""
        from downsize.distill.onpolicy import ServerSpec, is_server
        from downsize.distill.train import DistillConfig, OnPolicy

        lmbda = self.lmbda or (1.0 if self.on_policy else 0.0)
        on_policy = (OnPolicy(lmbda=lmbda, seq_kd=self.seq_kd, prompt_len=self.prompt_len,
                              new_tokens=self.new_tokens) if (lmbda or self.seq_kd) else None)
        teacher = teacher or self.teacher
        server = (ServerSpec(top_k=self.top_k, in_flight=self.in_flight, sampled_kl=self.sampled_kl,
                             sampled_kl_weight=self.sampled_kl_weight, sampled_kl_reward=self.sampled_kl_reward)
                  if teacher and is_server(teacher) else ServerSpec())
        return DistillConfig(train=self.train_config(seed, progress), loss=self.loss_spec(), seq_len=self.seq_len,
                             windows=self.windows, split=self.split, teacher_dtype=self.teacher_dtype,
                             cache=cache or self.cache, on_policy=on_policy, vocab_align=self.vocab_align,
                             cross_tokenizer=self.cross_tokenizer, lora=self.lora.spec() if self.lora else None,
                             head=self.head, server=server, teacher_device=self.teacher_device,
                             val_tokens=self.val_tokens, keep_work=self.keep_work, teacher_ahead=self.teacher_ahead)

    def problems(self) -> list[str]:
        found = []
        try:  # the engine's own checks (loss hyperparameters, incompatible modes), not a copy of them
            self.engine_config(seed=0, cache=self.cache or ("<offline>" if self.teacher_mode == "offline" else None))
        except DownsizeError as e:
            found.append(e.message + (f" ({e.hint})" if e.hint else ""))
        return found


def _student(ctx: StageContext, cfg: DistillStage):
    from downsize.distill import StudentSpec

    s = cfg.student
    if s is None:
        return ctx.input_ref()
    if isinstance(s, dict):
        return StudentSpec(overrides={k: v for k, v in s.items() if k != "init"}, seed=ctx.seed)
    return ctx.resolve(s)


def _estimate(cfg: DistillStage, params: int) -> str:
    return estimate_training(cfg, params, teacher_forward=cfg.teacher_mode == "online" and not cfg.cache)


@stage("distill", DistillStage, produces="model", estimate=_estimate)
def run_distill(ctx: StageContext, cfg: DistillStage) -> Artifact:
    """Logit KD from the teacher into the input model (or `student`)."""
    from downsize.distill import cache_teacher, distill
    from downsize.distill.save import read_card

    teacher = ctx.resolve(cfg.teacher) or ctx.teacher
    data = ctx.data_ref(cfg.data)
    cache = ctx.resolve(cfg.cache)
    if cfg.teacher_mode == "offline" and cache is None:
        cache = str(ctx.out.with_name(ctx.out.name + ".teacher-cache"))
        cache_teacher(teacher, data, cache, k=cfg.top_k, seq_len=cfg.seq_len,
                      windows=cfg.windows or cfg.steps * cfg.batch_size * cfg.grad_accum,
                      temperature=cfg.temperature, dtype=cfg.teacher_dtype, device=cfg.teacher_device,
                      overwrite=ctx.overwrite)
    out = distill(teacher, _student(ctx, cfg), data, cfg.engine_config(ctx.seed, ctx.progress, cache, teacher), ctx.out,
                  resume=ctx.resume, overwrite=ctx.overwrite)
    return Artifact("model", out, "", read_card(out).get("final_metrics", {}))
