"""Data references, resolved in one place for every command.

    >>> import json, pathlib
    >>> _ = pathlib.Path("notes.txt").write_text("one document")
    >>> list(resolve_data("notes.txt").texts())                        # one document
    ['one document']
    >>> _ = pathlib.Path("train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "")
    >>> [r["messages"][0]["content"] for r in resolve_data("train.jsonl").records()]   # {"text": ...} or {"messages": [...]}
    ['hi']
    >>> h = parse_hub_data("hf:Org/Name@v1.0:default:train#content")   # a Hub dataset: revision, config, split, column
    >>> h.repo_id, h.revision, h.config, h.split, h.column
    ('Org/Name', 'v1.0', 'default', 'train', 'content')

Splits of user data are taken by a hash of each document's id (path or line number), like the
stdlib corpus, so they are stable; ``split="all"`` (the default for user data) takes everything.

Hub datasets: ``[hf:]Org/Name[@revision][:split]`` or ``[hf:]Org/Name[@revision][:config:split]``, with an
optional ``#column``. A local path that exists wins over a Hub id of the same spelling (``hf:`` forces the Hub).
They load through ``datasets.load_dataset`` (online: downloaded; offline or without a network: the datasets
cache, else a ``hf download --repo-type dataset`` snapshot in the Hub cache) when the reference is resolved,
so a missing dataset or an unusable column fails before any model loads. Columns, first match wins (or the
one named by ``#column`` / ``resolve_data(ref, column=...)``): ``messages`` or ``conversations`` (chat, ShareGPT
``from``/``value`` mapped to ``role``/``content``), ``text`` or ``content`` (plain text), ``prompt``/``completion``
(strings: the text is prompt + completion, as TRL's standard format; message lists: one chat), ``prompt``/``response``
and ``instruction`` (+ ``input``)/``output`` (a user turn and an assistant turn). ``records(split)``: a dataset with one
split (or a pinned ``:split``) is cut into train/validation/test by a hash of ``split/row``, like user files, so
they never overlap; a dataset with several splits gives its own split of that name; ``"all"`` takes every row.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from downsize.data.stdlib import SPLITS, StdlibCorpus, split_of
from downsize.errors import DownsizeError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".json", ".yaml", ".yml", ".toml", ".c", ".h", ".cpp", ".js",
                 ".ts", ".go", ".rs", ".java", ".sh", ".html", ".css", ".csv", ".tex", ".ini", ".cfg"}
ALL = "all"


@dataclass(frozen=True)
class HubData:
    """What a Hub dataset reference names, and the column shape found when it was resolved."""
    repo_id: str
    revision: str | None = None
    config: str | None = None
    split: str | None = None  # pinned Hub split; None = every split
    column: str | None = None  # as asked for (#column); None = detected
    shape: str = ""  # "text", "messages", "sharegpt", "prompt_completion", "pair"
    columns: tuple[str, ...] = ()  # the dataset columns the shape reads
    dataset: Any = field(default=None, compare=False, hash=False, repr=False)  # the loaded DatasetDict

    def __str__(self) -> str:
        return (self.repo_id + (f"@{self.revision}" if self.revision else "") + (f":{self.config}" if self.config else "")
                + (f":{self.split}" if self.split else "") + (f"#{self.column}" if self.column else ""))


@dataclass(frozen=True)
class DataRef:
    ref: str
    kind: str  # "stdlib", "text", "dir", "jsonl", "hub"
    path: Path | None
    hub: HubData | None = None

    @property
    def default_split(self) -> str:
        return "validation" if self.kind == "stdlib" else ALL

    @property
    def fingerprint(self) -> str:
        """Changes when the data changes (path, size and mtime of a file; the datasets fingerprints of a Hub dataset)."""
        if self.kind == "hub":
            return f"{self.hub}|{self.hub.shape}|" + ",".join(
                f"{n}:{d._fingerprint}" for n, d in sorted(self.hub.dataset.items()))
        if self.path is None:
            return self.ref
        st = self.path.stat()
        return f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def records(self, split: str | None = None) -> Iterator[dict]:
        """Each document as a record: ``{"id", "text"}`` or ``{"id", "messages"}`` (chat JSONL, Hub chat data)."""
        split = split or self.default_split
        if self.kind == "hub":
            yield from _read_hub(self, split)
            return
        if split != ALL and split not in SPLITS:
            raise DownsizeError(f"unknown split {split!r}", hint=f"choose one of {', '.join((*SPLITS, ALL))}")
        for rec in _READERS[self.kind](self, split):
            if split == ALL or self.kind == "stdlib" or split_of(rec["id"]) == split:
                yield rec

    def texts(self, split: str | None = None, tokenizer=None) -> Iterator[str]:
        """Plain text of each document; chat records are rendered with ``tokenizer``'s chat template."""
        for rec in self.records(split):
            if "text" in rec:
                yield rec["text"]
            elif "fallback_text" in rec and (tokenizer is None or not getattr(tokenizer, "chat_template", None)):
                yield rec["fallback_text"]  # a prompt/answer pair reads as plain text without a chat template
            elif tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise DownsizeError(f"{self.ref} holds chat messages, which need a tokenizer with a chat template",
                                    hint="use a model whose tokenizer has a chat_template, or give {\"text\": ...} records")
            else:
                yield tokenizer.apply_chat_template(rec["messages"], tokenize=False)


def _read_stdlib(ref: DataRef, split: str) -> Iterator[dict]:
    corpus = StdlibCorpus.local()
    splits = SPLITS if split == ALL else (split,)
    for s in splits:
        for path, text in corpus.documents(s):
            yield {"id": path, "text": text}


def _read_text(ref: DataRef, split: str) -> Iterator[dict]:
    yield {"id": ref.path.name, "text": _read_utf8(ref.path)}


def _read_dir(ref: DataRef, split: str) -> Iterator[dict]:
    for p in sorted(ref.path.rglob("*")):
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(ref.path).parts):
            yield {"id": p.relative_to(ref.path).as_posix(), "text": _read_utf8(p)}


def jsonl_objects(path: Path, hint: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line of a JSONL file; a line that is not JSON is a
    DownsizeError naming the file and line (``hint`` says what the caller's records look like)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DownsizeError(f"{path}:{lineno}: not valid JSON ({e.msg})", hint=hint) from None


def _read_jsonl(ref: DataRef, split: str) -> Iterator[dict]:
    for lineno, obj in jsonl_objects(ref.path, "each line must be one JSON object: {\"text\": ...} or "
                                               "{\"messages\": [...]}"):
        rid = str(obj.get("id", lineno)) if isinstance(obj, dict) else str(lineno)
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            yield {"id": rid, "text": obj["text"]}
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            yield {"id": rid, "messages": obj["messages"]}
        else:
            raise DownsizeError(f"{ref.path}:{lineno}: a record needs a string 'text' or a list 'messages'",
                                hint="write {\"text\": \"...\"} for plain text or {\"messages\": [{\"role\": ..., \"content\": ...}]} for chat")


_READERS = {"stdlib": _read_stdlib, "text": _read_text, "dir": _read_dir, "jsonl": _read_jsonl}


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DownsizeError(f"{path} is not UTF-8 text (byte {e.start})", hint="convert it to UTF-8 or leave it out") from None


DATA_SCHEMES = {"zoo:stdlib": "stdlib"}


def resolve_data(ref: str, column: str | None = None) -> DataRef:
    """Any data reference -> DataRef; a Hub dataset is loaded (and its column checked) here, before any model.
    ``column`` picks the dataset column (same as ``#column`` in the reference; for Hub datasets only)."""
    ref = str(ref)
    if ref.startswith("zoo:"):
        if ref not in DATA_SCHEMES:
            raise DownsizeError(f"no zoo dataset called {ref[4:]!r}", hint=f"available: {', '.join(DATA_SCHEMES)}")
        return DataRef(ref, DATA_SCHEMES[ref], None)
    path = Path(ref).expanduser()
    hub = parse_hub_data(ref) if ref.startswith(HUB_DATA_PREFIX) or not path.exists() else None
    if hub is not None:
        if column is not None:
            hub = HubData(hub.repo_id, hub.revision, hub.config, hub.split, column)
        try:
            return DataRef(ref, "hub", None, _load_hub(hub))
        except DownsizeError as e:
            if ref.startswith(HUB_DATA_PREFIX):
                raise
            raise DownsizeError(f"no local file or folder {ref!r}, so it was read as a Hub dataset: {e.message}",
                                hint=e.hint) from None
    if column is not None:
        raise DownsizeError(f"a data column ({column!r}) only applies to Hub datasets, not to {ref}",
                            hint="JSONL records use 'text' or 'messages'; drop the column setting")
    if not path.exists():
        raise DownsizeError(f"no data at {ref!r}: the path does not exist",
                            hint="pass a text file, a directory of text files, a .jsonl file, a Hub dataset "
                                 "Org/Name[:split] or zoo:stdlib")
    if path.is_dir():
        if not any(p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in path.rglob("*")):
            raise DownsizeError(f"the directory {path} holds no text files ({', '.join(sorted(TEXT_SUFFIXES)[:6])}, ...)",
                                hint="point at a folder of .txt/.py/.md files, or at a .jsonl file")
        return DataRef(ref, "dir", path)
    if path.stat().st_size == 0:
        raise DownsizeError(f"the data file {path} is empty", hint="give a file with some text in it")
    return DataRef(ref, "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "text", path)


# ---- Hub datasets ----------------------------------------------------------------------------

HUB_DATA_PREFIX = "hf:"
# Column shapes, in the order they are tried when no column is named.
CHAT_COLUMNS = {"messages": "messages", "conversations": "sharegpt"}
TEXT_COLUMNS = ("text", "content")
PAIR_COLUMNS = ((("prompt", "completion"), "prompt_completion"), (("prompt", "response"), "pair"),
                (("instruction", "output"), "pair"))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "tool": "tool", "function_call": "assistant", "observation": "tool"}
_HUB_DATA = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
                       r"(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._/-]*?))?(?::(?P<a>[A-Za-z0-9._-]+))?(?::(?P<b>[A-Za-z0-9._-]+))?"
                       r"(?:#(?P<col>[A-Za-z0-9._-]+))?$")


def with_column(ref: str, column: str | None) -> str:
    """``ref`` with a ``data_column`` setting folded in (``Org/Name:train`` + ``body`` -> ``Org/Name:train#body``),
    so a recipe field or ``--data-column`` travels with the reference through every stage."""
    if not column:
        return ref
    if "#" in ref.rpartition("/")[2]:
        raise DownsizeError(f"{ref} already names a column; the data_column setting ({column!r}) would be a second",
                            hint="keep one: the #column in the reference or the setting")
    return f"{ref}#{column}"


def parse_hub_data(ref: str) -> HubData | None:
    """``[hf:]Org/Name[@rev][:split]`` / ``[...][:config:split]`` / ``[...]#column`` -> HubData; else None."""
    spec = ref[len(HUB_DATA_PREFIX):] if ref.startswith(HUB_DATA_PREFIX) else ref
    m = _HUB_DATA.match(spec)
    if m is None or ".." in m.group("repo") or "--" in m.group("repo"):
        return None
    a, b = m.group("a"), m.group("b")
    config, split = (a, b) if b is not None else (None, a)
    return HubData(m.group("repo"), m.group("rev"), config, split, m.group("col"))


def datasets_cache_dir() -> Path:
    """The datasets cache, from the environment now: HF_DATASETS_CACHE, else HF_HOME/datasets."""
    env = os.environ
    if env.get("HF_DATASETS_CACHE"):
        return Path(os.path.expanduser(env["HF_DATASETS_CACHE"]))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "datasets"


_LOADED: dict[tuple, Any] = {}  # one load per dataset and process: resolve, validate and read share it


def _load_hub(h: HubData) -> HubData:
    try:
        import datasets
    except ImportError:
        raise DownsizeError(f"reading the Hub dataset {h} needs the `datasets` package",
                            hint="pip install datasets (or `pip install downsize[hub]`)") from None
    key = (h.repo_id, h.revision, h.config, str(datasets_cache_dir()))
    if key not in _LOADED:
        _LOADED[key] = _load_dataset_dict(datasets, h)
    dd = _LOADED[key]
    if h.split is not None and h.split not in dd:
        raise DownsizeError(f"Hub dataset {h.repo_id} has no split {h.split!r}",
                            hint=f"its splits: {', '.join(dd)}; write {h.repo_id}:SPLIT")
    first = dd[h.split] if h.split is not None else next(iter(dd.values()))
    shape, columns = _detect_shape(h, list(first.column_names))
    if len(first):
        _row_record(shape, columns, first[0], "check", str(h))  # a wrong value type fails now, not mid-run
    return HubData(h.repo_id, h.revision, h.config, h.split, h.column, shape, columns, dd)


def _load_dataset_dict(datasets, h: HubData):
    """datasets.load_dataset (download, or its cache when offline); else a Hub-cache snapshot of the repo."""
    from downsize.models.hub import HubId, download_command, hub_snapshot

    cache = str(datasets_cache_dir())
    try:
        return datasets.load_dataset(h.repo_id, name=h.config, revision=h.revision, cache_dir=cache)
    except Exception as e:  # datasets raises ConnectionError/FileNotFoundError/ValueError/its own for "not here"
        first = e
    hub = HubId(h.repo_id, h.revision)
    try:
        snap = hub_snapshot(hub, None, repo_type="dataset")
    except DownsizeError as e:
        raise DownsizeError(
            f"Hub dataset {h.repo_id}{'@' + h.revision if h.revision else ''} could not be loaded: {type(first).__name__}: "
            f"{str(first).strip().splitlines()[0] if str(first).strip() else ''}; not in the datasets cache ({cache}) "
            f"nor the Hub cache",
            hint=f"download it where there is a network: `{download_command(hub, (), 'dataset')}` (Hub cache) or "
                 f"`python -c \"import datasets; datasets.load_dataset('{h.repo_id}')\"` (datasets cache); "
                 f"then set HF_HOME to that cache. ({e.message})") from None
    try:
        return datasets.load_dataset(str(snap), name=h.config, cache_dir=cache)
    except Exception as e:
        raise DownsizeError(f"the cached snapshot of Hub dataset {h.repo_id} at {snap} could not be read: "
                            f"{type(e).__name__}: {e}", hint="check the data files there (parquet, JSONL, CSV)") from None


def _detect_shape(h: HubData, names: list[str]) -> tuple[str, tuple[str, ...]]:
    if h.column is not None:
        if h.column not in names:
            raise DownsizeError(f"Hub dataset {h.repo_id} has no column {h.column!r}",
                                hint=f"its columns: {', '.join(names)}; write {h.repo_id}#COLUMN")
        shape = "sharegpt" if h.column == "conversations" else "column"
        return shape, (h.column,)
    for c, shape in CHAT_COLUMNS.items():
        if c in names:
            return shape, (c,)
    for c in TEXT_COLUMNS:
        if c in names:
            return "text", (c,)
    for cols, shape in PAIR_COLUMNS:
        if all(c in names for c in cols):
            extra = ("input",) if cols[0] == "instruction" and "input" in names else ()
            return shape, (*cols, *extra)
    raise DownsizeError(f"Hub dataset {h.repo_id} has no column downsize can read (columns: {', '.join(names)})",
                        hint="downsize reads text/content, messages/conversations, prompt+completion, prompt+response or "
                             f"instruction+output; name another text or chat column with {h.repo_id}#COLUMN")


def _chat(messages, where: str) -> list[dict]:
    if not (isinstance(messages, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in messages)):
        raise DownsizeError(f"{where}: the chat column does not hold [{{role, content}}, ...] messages",
                            hint="name a text column instead with #COLUMN")
    return messages


def _row_record(shape: str, columns: tuple[str, ...], row: dict, rid: str, where: str) -> dict:
    """One dataset row -> a downsize record (see the module docstring for the shapes)."""
    where = f"{where} row {rid}"
    if shape in ("text", "column"):
        v = row[columns[0]]
        if isinstance(v, str):
            return {"id": rid, "text": v}
        if shape == "column" and isinstance(v, list):
            return {"id": rid, "messages": _chat(v, where)}
        raise DownsizeError(f"{where}: column {columns[0]!r} holds {type(v).__name__}, not text",
                            hint="name a column of strings or of chat messages with #COLUMN")
    if shape == "messages":
        return {"id": rid, "messages": _chat(row[columns[0]], where)}
    if shape == "sharegpt":
        turns = row[columns[0]]
        if not (isinstance(turns, list) and all(isinstance(t, dict) and "from" in t and "value" in t for t in turns)):
            return {"id": rid, "messages": _chat(turns, where)}
        return {"id": rid, "messages": [{"role": SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]}
                                        for t in turns]}
    prompt, answer = row[columns[0]], row[columns[1]]
    if shape == "prompt_completion" and isinstance(prompt, list) and isinstance(answer, list):
        return {"id": rid, "messages": _chat(prompt + answer, where)}  # TRL's conversational prompt-completion
    if not (isinstance(prompt, str) and isinstance(answer, str)):
        raise DownsizeError(f"{where}: {columns[0]!r}/{columns[1]!r} are not both strings",
                            hint="name a text or chat column with #COLUMN")
    if shape == "prompt_completion":
        return {"id": rid, "text": prompt + answer}  # TRL's standard format: the completion continues the prompt
    if len(columns) > 2 and row[columns[2]]:
        prompt = f"{prompt}\n\n{row[columns[2]]}"  # Alpaca: the instruction's input follows it
    return {"id": rid, "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "fallback_text": f"{prompt}\n\n{answer}"}


def _read_hub(ref: DataRef, split: str) -> Iterator[dict]:
    h = ref.hub
    dd = h.dataset
    if h.split is not None:
        parts, hashed = [h.split], split != ALL
        if hashed and split not in SPLITS:
            raise DownsizeError(f"unknown split {split!r} for {ref.ref}, which pins the Hub split {h.split!r}",
                                hint=f"choose one of {', '.join((*SPLITS, ALL))}")
    elif split == ALL:
        parts, hashed = list(dd), False
    elif len(dd) == 1 and split in SPLITS:
        parts, hashed = list(dd), True  # one Hub split: cut it by a hash of the row id, like user files
    elif split in dd:
        parts, hashed = [split], False
    else:
        raise DownsizeError(f"Hub dataset {h.repo_id} has no split {split!r} (it has {', '.join(dd)})",
                            hint=f"pin one in the reference, e.g. {h.repo_id}:{next(iter(dd))}")
    for name in parts:
        for i, row in enumerate(dd[name]):
            rid = f"{name}/{i}"
            if hashed and split_of(rid) != split:
                continue
            yield _row_record(h.shape, h.columns, row, rid, ref.ref)
