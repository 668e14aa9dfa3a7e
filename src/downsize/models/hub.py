"""Hugging Face Hub references (``Org/Name`` or ``Org/Name@revision``), resolved to a local snapshot folder.

    >>> from downsize.models.hub import parse_hub_id, hub_snapshot, HUB_MODEL_FILES
    >>> hub = parse_hub_id("Qwen/Qwen2.5-0.5B-Instruct@main")
    >>> hub.repo_id, hub.revision
    ('Qwen/Qwen2.5-0.5B-Instruct', 'main')
    >>> path = hub_snapshot(hub, HUB_MODEL_FILES)  # the cache, or the network: not run here  # doctest: +SKIP

Online, only the files a causal LM needs are downloaded (safetensors weights and their index, config,
generation config, tokenizer and chat template files; never ``*.py``, so remote code cannot arrive with a
model). Offline (``HF_HUB_OFFLINE=1``) or without a network, the snapshot comes from the local Hugging Face
cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read at call time so a
changed environment takes effect. ``HF_TOKEN`` (or a ``hf auth login`` token) is used for gated repos.
When a snapshot is neither cached nor downloadable, ``DownsizeError`` gives the exact ``hf download`` command.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from downsize.errors import DownsizeError

# What a model snapshot needs; patterns are fnmatch globs as huggingface_hub applies them.
HUB_WEIGHT_FILES = ("model*.safetensors", "*.safetensors.index.json")
HUB_CONFIG_FILES = ("config.json", "generation_config.json")
HUB_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                       "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                       "additional_chat_templates/*")
HUB_MODEL_FILES = (*HUB_CONFIG_FILES, *HUB_WEIGHT_FILES, *HUB_TOKENIZER_FILES)
HUB_CONFIG_ONLY = ("config.json",)

# Org/Name with Hub naming rules (letters, digits, '-', '_', '.'), optional @revision (branch, tag or commit).
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
                     r"(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._/-]*))?$")
_TRUE = {"1", "true", "yes", "on"}
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class HubId:
    repo_id: str  # Org/Name
    revision: str | None = None  # None = the default branch (main)

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(ref: str) -> HubId | None:
    """``Org/Name[@revision]`` -> HubId; anything else (paths like ``./x/y``, ``a/b/c``, ``m.gguf``) -> None."""
    ref = ref[len(HUB_PREFIX):] if ref.startswith(HUB_PREFIX) else ref
    m = _HUB_ID.match(ref)
    if m is None:
        return None
    repo = m.group("repo")
    if ".." in repo or "--" in repo or repo.lower().endswith(".gguf"):  # the Hub forbids these; a file name is a path
        return None
    return HubId(repo, m.group("rev"))


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache, resolved from the environment now (same precedence as huggingface_hub)."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def hub_offline() -> bool:
    """True when downloads are switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), now or at import."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().lower()
    return env in _TRUE or bool(constants.HF_HUB_OFFLINE)


def download_command(hub: HubId, patterns: tuple[str, ...], repo_type: str = "model") -> str:
    """The shell command that puts exactly these files of ``hub`` into the cache."""
    parts = ["hf", "download", hub.repo_id]
    if repo_type != "model":
        parts += ["--repo-type", repo_type]
    if hub.revision:
        parts += ["--revision", hub.revision]
    if patterns:
        parts += ["--include", *patterns]
    return shlex.join(parts)


def _repo_url(hub: HubId, repo_type: str) -> str:
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{hub.repo_id}"


_SNAPSHOTS: dict[tuple, Path] = {}  # one Hub round trip per snapshot and process (a command resolves a ref often)


def hub_snapshot(hub: HubId, patterns: tuple[str, ...] | None, repo_type: str = "model") -> Path:
    """The local snapshot folder of ``hub`` holding ``patterns`` (None = every file): cache first when
    offline, else downloaded (missing files only). Raises DownsizeError with the fix for every failure."""
    offline = hub_offline()
    cache = hub_cache_dir()
    key = (hub, tuple(patterns or ()), repo_type, str(cache), offline)
    if key not in _SNAPSHOTS or not _SNAPSHOTS[key].is_dir():
        _SNAPSHOTS[key] = _snapshot(hub, patterns, repo_type, offline, cache)
    return _SNAPSHOTS[key]


def _snapshot(hub: HubId, patterns: tuple[str, ...] | None, repo_type: str, offline: bool, cache: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    what = "dataset" if repo_type == "dataset" else "model"
    cmd = download_command(hub, patterns or (), repo_type)
    try:
        path = snapshot_download(hub.repo_id, revision=hub.revision, repo_type=repo_type,
                                 allow_patterns=list(patterns) if patterns else None, cache_dir=str(cache),
                                 local_files_only=offline)
    except LocalEntryNotFoundError as e:  # includes IncompleteSnapshotError
        why = "downloads are off (HF_HUB_OFFLINE=1)" if offline else f"the Hub could not be reached ({_first_line(e)})"
        raise DownsizeError(
            f"Hub {what} {hub} is not in the local Hugging Face cache ({cache}) and {why}",
            hint=f"download it where there is a network: `{cmd}` (then copy the cache, or set HF_HOME/HF_HUB_CACHE to it)"
                 + ("; or unset HF_HUB_OFFLINE to download it now" if offline else ""),
        ) from None
    except GatedRepoError:
        raise DownsizeError(f"Hub {what} {hub.repo_id} is gated: this account has no access",
                            hint=f"accept its terms at {_repo_url(hub, repo_type)} and set HF_TOKEN (or run `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise DownsizeError(f"no Hub {what} {hub.repo_id} (or it is private)",
                            hint=f"check the spelling at {_repo_url(hub, repo_type)}; for a private repo set HF_TOKEN; "
                                 f"for a local folder, pass a path that exists (e.g. ./{hub.repo_id})") from None
    except RevisionNotFoundError:
        raise DownsizeError(f"Hub {what} {hub.repo_id} has no revision {hub.revision!r}",
                            hint=f"use a branch, tag or commit listed at {_repo_url(hub, repo_type)}/tree/main") from None
    except HfHubHTTPError as e:
        raise DownsizeError(f"the Hub refused {hub} ({_first_line(e)})",
                            hint=f"retry later, or fetch it with `{cmd}` and set HF_HUB_OFFLINE=1") from None
    return Path(path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
