"""Push a result to the Hugging Face Hub: the HF model directory, GGUF files and the Modelfile, with a model card.

    $ HF_TOKEN=hf_... downsize export ollama runs/q/01-distill/output --name coder-small --out out/ \\
          --push-to-hub me/coder-small

    >>> info = card_from_model(None, "coder-small")
    >>> card = render_card("me/coder-small", info, {"coder-small-q4_k_m.gguf": 2_600_000},
    ...                    {"coder-small-q4_k_m.gguf": "Q4_K_M"})
    >>> card.splitlines()[0], "ollama" in card
    ('---', True)
    >>> # pushing needs a Hub endpoint (the tests point HF_ENDPOINT at a local stand-in), so these lines are not run:
    >>> push_to_hub("me/coder-small", model_dir="runs/q/01-distill/output",  # doctest: +SKIP
    ...             ggufs=["runs/q/04-export/coder-small.gguf"], modelfile="runs/q/04-export/Modelfile")
    {'url': 'https://huggingface.co/me/coder-small', 'commit': '…', 'files': {'README.md': 2210, ...}}
    >>> push_run("runs/quickstart", "me/coder-small")  # doctest: +SKIP

Everything goes up in one commit through ``huggingface_hub`` (``create_repo`` then ``create_commit``, the
calls ``upload_folder`` makes), so a failed push leaves the repository as it was. The model card
(``README.md``) is generated: teacher, data, method (the stages of the run), the waterfall table
from the run's manifest, the files, and how to run the model in llama.cpp, Ollama and transformers.
The Modelfile's ``FROM`` is rewritten to the GGUF's name in the repository.

The token is ``token=``, else ``HF_TOKEN`` / the one saved by ``hf auth login``; the endpoint is
``endpoint=``, else ``HF_ENDPOINT`` (the tests point it at a local stand-in of the Hub API).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from downsize.errors import DownsizeError

README = "README.md"
MODELFILE = "Modelfile"
# Files of a model directory that are not part of the model (training state, our own cards stay: they are small).
SKIP_SUFFIXES = (".work", ".tmp")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TOKEN_HINT = "create a write token at https://huggingface.co/settings/tokens, then `export HF_TOKEN=hf_...` " \
             "(or run `hf auth login`)"


@dataclass
class CardInfo:
    """What the model card says: where the model came from and how it measures up."""

    name: str
    teacher: str | None = None
    data: str | None = None
    stages: list[str] = field(default_factory=list)  # one line per stage: "distilled: distill (fkl, 300 steps)"
    rows: dict[str, dict] = field(default_factory=dict)  # the waterfall rows of the run's eval stage


def _stage_line(st: dict, cfg: dict) -> str:
    keys = ("method", "targets", "loss", "steps", "quant", "format", "lr", "seq_len", "sparsity", "pattern")
    details = ", ".join(f"{k}={cfg[k]}" for k in keys if cfg.get(k) not in (None, {}, []))
    return f"{st['name']}: {st['kind']}" + (f" ({details})" if details else "")


def card_from_run(run_dir: str | os.PathLike) -> CardInfo:
    """Card facts from a finished run: the manifest (teacher, data, stages, the last eval's waterfall)."""
    from downsize.pipeline import MANIFEST

    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.exists():
        raise DownsizeError(f"{run_dir} has no {MANIFEST}", hint="push a run directory written by `downsize run`")
    m = json.loads(path.read_text())
    lines = []
    for st in m.get("stages", []):
        cfg_file = run_dir / st.get("dir", "") / "config.json"
        lines.append(_stage_line(st, json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}))
    evals = [st for st in m.get("stages", []) if st.get("kind") == "eval" and (st.get("metrics") or {}).get("models")]
    return CardInfo(name=m.get("recipe", run_dir.name), teacher=m.get("teacher"), data=m.get("data"), stages=lines,
                    rows=evals[-1]["metrics"]["models"] if evals else {})


def card_from_model(model_dir: str | os.PathLike | None, name: str) -> CardInfo:
    """Card facts from a model directory's downsize card (distill_card.json / downsize_card.json), if any."""
    info = CardInfo(name=name)
    if model_dir is None:
        return info
    for card_name in ("distill_card.json", "downsize_card.json", "prune_report.json"):
        f = Path(model_dir) / card_name
        if f.is_file():
            c = json.loads(f.read_text())
            info.teacher = info.teacher or c.get("teacher") or c.get("input") or c.get("model")
            data = c.get("data")
            info.data = info.data or (data if isinstance(data, str) else None)
            what = c.get("stage") or c.get("method") or card_name.split("_")[0]
            detail = ", ".join(f"{k}={c[k]}" for k in ("loss", "steps", "method") if isinstance(c.get(k), (str, int)))
            info.stages.append(f"{what}" + (f" ({detail})" if detail else ""))
    return info


def _fmt_size(n: int) -> str:
    from downsize.console import fmt_bytes

    return fmt_bytes(n)


def render_card(repo_id: str, info: CardInfo, files: dict[str, int], quant_of: dict[str, str]) -> str:
    """The README.md of the repository (YAML front matter the Hub validates, then Markdown)."""
    from downsize.eval.report import _md_waterfall

    tags = ["downsize", "distillation"] + (["gguf", "llama.cpp", "ollama"] if quant_of else [])
    front = ["---", "tags:", *[f"- {t}" for t in tags]]
    if info.teacher and HUB_ID.match(info.teacher) and not Path(info.teacher).exists():
        front += ["base_model:", f"- {info.teacher}"]  # only real Hub ids: a local path would fail validation
    front.append("---")
    name = repo_id.split("/")[-1]
    out = [*front, "", f"# {name}", ""]
    made = f"made with downsize from `{info.teacher}`" if info.teacher else "made with downsize"
    out += [f"A smaller model {made}" + (f", on `{info.data}`." if info.data else "."), ""]
    out += ["## How it was made", "", f"- Teacher: `{info.teacher or 'unknown'}`", f"- Data: `{info.data or 'unknown'}`"]
    if info.stages:
        out += ["- Method:", *[f"  {i}. {s}" for i, s in enumerate(info.stages, 1)]]
    if info.rows:
        out += _md_waterfall(info.rows)  # "## Waterfall" and the table with ratios against the teacher
        out += ["", "Perplexity, KL(teacher ‖ model) and top-1 agreement on the same token windows; speed and peak "
                "RSS in the backend named, in a fresh process."]
    out += ["", "## Files", "", "| file | size |", "|---|---:|"]
    out += [f"| `{p}` | {_fmt_size(n)} |" for p, n in sorted(files.items())]
    out += ["", "## Use it", ""]
    for g, quant in quant_of.items():
        out += [f"### llama.cpp (`{g}`)", "", "```bash", f"hf download {repo_id} {g} --local-dir .",
                f"python -m llama_cpp.server --model {g}      # llama-cpp-python; or llama.cpp's llama-server -m {g}",
                "```", "", "### Ollama", "", "```bash", f"ollama run hf.co/{repo_id}:{quant}"]
        if MODELFILE in files:
            out += [f"# or with the converted chat template: hf download {repo_id} {g} {MODELFILE} --local-dir {name}",
                    f"ollama create {name} -f {name}/{MODELFILE}"]
        out += ["```", ""]
        break  # one example; every GGUF is listed under Files
    if "config.json" in files:
        out += ["### transformers", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", ""]
    return "\n".join(out) + "\n"


def _quant_of(path: Path) -> str:
    """The GGUF's tensor type as Ollama's hf.co/REPO:TAG names it (Q4_K_M, Q8_0, F16)."""
    try:
        import gguf

        r = gguf.GGUFReader(str(path))
        ftype = r.fields.get("general.file_type")
        if ftype is not None:
            return gguf.LlamaFileType(int(ftype.parts[ftype.data[0]][0])).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except Exception:  # a name-based guess is good enough for a card
        pass
    m = re.search(r"(?i)(i?q\d_[a-z0-9_]+|f16|bf16|f32|q8_0)", path.name)
    return m.group(1).upper() if m else "latest"


def _model_files(model_dir: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(model_dir.rglob("*")):
        rel = p.relative_to(model_dir)
        if p.is_file() and not any(part.startswith(".") or part.endswith(SKIP_SUFFIXES) for part in rel.parts) \
                and str(rel) != README:
            files[rel.as_posix()] = p
    return files


def _modelfile_for_repo(modelfile: Path, gguf_names: set[str]) -> bytes:
    """The Modelfile with FROM pointing at the GGUF beside it in the repository."""
    lines = modelfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("FROM "):
            target = Path(line[5:].strip()).name
            if target in gguf_names:
                lines[i] = f"FROM ./{target}"
            elif len(gguf_names) == 1:
                lines[i] = f"FROM ./{next(iter(gguf_names))}"
            break
    return ("\n".join(lines) + "\n").encode()


def _token(token: str | None) -> str:
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise DownsizeError("cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE)",
                            hint="unset HF_HUB_OFFLINE to push, or copy the files yourself later")
    tok = token or get_token()
    if not tok:
        raise DownsizeError("pushing to the Hub needs a token with write access, and none was found", hint=TOKEN_HINT)
    return tok


def push_to_hub(repo_id: str, *, model_dir: str | os.PathLike | None = None, ggufs=(),
                modelfile: str | os.PathLike | None = None, card: CardInfo | None = None, token: str | None = None,
                endpoint: str | None = None, private: bool | None = None,
                commit_message: str = "Upload model made with downsize") -> dict:
    """Create ``repo_id`` (if needed) and commit the files with a generated README.md in one commit.

    Returns ``{"url", "commit", "files": {path_in_repo: bytes}}``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if not HUB_ID.match(repo_id or ""):
        raise DownsizeError(f"{repo_id!r} is not a Hub repository id", hint="use NAMESPACE/NAME, e.g. me/coder-small")
    ggufs = [Path(g) for g in ggufs]
    for p in [*ggufs, *([Path(modelfile)] if modelfile else [])]:
        if not p.is_file():
            raise DownsizeError(f"nothing to push at {p}", hint="export it first (downsize export gguf / ollama)")
    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        raise DownsizeError(f"{model_dir} is not a Hugging Face model directory (no config.json)",
                            hint="pass the output folder of a prune/distill/train stage")
    if not ggufs and model_dir is None:
        raise DownsizeError("nothing to push", hint="give a model directory and/or GGUF files")
    tok = _token(token)

    payload: dict[str, bytes | Path] = {}
    if model_dir is not None:
        payload.update(_model_files(Path(model_dir)))
    for g in ggufs:
        payload[g.name] = g
    if modelfile:
        payload[MODELFILE] = _modelfile_for_repo(Path(modelfile), {g.name for g in ggufs})
    sizes = {p: (len(v) if isinstance(v, bytes) else v.stat().st_size) for p, v in payload.items()}
    info = card or card_from_model(model_dir, repo_id.split("/")[-1])
    payload[README] = render_card(repo_id, info, sizes, {g.name: _quant_of(g) for g in ggufs}).encode()
    sizes[README] = len(payload[README])

    api = HfApi(endpoint=endpoint, token=tok)
    where = api.endpoint
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=v if isinstance(v, bytes) else str(v))
               for p, v in payload.items()]
        commit = api.create_commit(repo_id, ops, commit_message=commit_message)
    except OfflineModeIsEnabled:
        raise DownsizeError("cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE)",
                            hint="unset HF_HUB_OFFLINE to push") from None
    except HfHubHTTPError as e:
        code = e.response.status_code if e.response is not None else None
        if code in (401, 403):
            raise DownsizeError(f"the Hub at {where} refused the token ({code}) for {repo_id}",
                                hint="use a token with write access to that namespace; " + TOKEN_HINT) from None
        raise DownsizeError(f"the Hub at {where} answered {code} while pushing {repo_id}: {str(e).splitlines()[0]}",
                            hint="check the repository id and try again; nothing was committed") from None
    except (OSError, ConnectionError) as e:  # httpx connection errors subclass neither, see below
        raise DownsizeError(f"cannot reach the Hub at {where}: {e}",
                            hint="check the network (or HF_ENDPOINT); nothing was committed") from None
    except Exception as e:
        if _is_transport_error(e):
            raise DownsizeError(f"cannot reach the Hub at {where}: {e}",
                                hint="check the network (or HF_ENDPOINT); nothing was committed") from None
        raise
    return {"url": str(url), "commit": commit.oid, "files": dict(sorted(sizes.items()))}


def _is_transport_error(e: BaseException) -> bool:
    """A connection-level failure of the HTTP client huggingface_hub uses (httpx, or its fork httpx2)."""
    return any(c.__name__ in ("TransportError", "ConnectError", "TimeoutException") and
               c.__module__.split(".")[0] in ("httpx", "httpx2") for c in type(e).__mro__)


def push_run(run_dir: str | os.PathLike, repo_id: str, **kw) -> dict:
    """Push a finished run: its latest HF model directory, its GGUF files and its Modelfile, with the run's card."""
    from downsize.pipeline import MANIFEST

    run_dir = Path(run_dir)
    m = json.loads((run_dir / MANIFEST).read_text()) if (run_dir / MANIFEST).exists() else None
    if m is None:
        raise DownsizeError(f"{run_dir} has no {MANIFEST}", hint="push a run directory written by `downsize run`")
    model_dir, ggufs, modelfile = None, {}, None
    for st in m["stages"]:
        met = st.get("metrics") or {}
        if st.get("output_kind") == "model" and st.get("output"):
            model_dir = run_dir / st["output"]
        if met.get("gguf"):
            g = (run_dir / met["gguf"]).resolve()
            ggufs[(g.stat().st_dev, g.stat().st_ino)] = g  # an export stage hard-links the quantize stage's GGUF
        if met.get("modelfile"):
            modelfile = run_dir / met["modelfile"]
    return push_to_hub(repo_id, model_dir=model_dir, ggufs=list(ggufs.values()), modelfile=modelfile,
                       card=card_from_run(run_dir), **kw)
