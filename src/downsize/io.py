"""Atomic file and directory writes, and the one rule for what an output may replace.

    with atomic_path("out/model.gguf", kind=KIND_GGUF) as tmp:   # refuses a file downsize did not write
        write_gguf(tmp)                   # written to out/.model.gguf.tmp-XXXX, then renamed
    with atomic_dir("runs/pruned", kind=KIND_PRUNE) as tmp:      # refuses a folder downsize did not write
        model.save_pretrained(tmp)        # swapped in whole; a marker file names its kind
    check_output("runs/student", KIND_DISTILL, overwrite=False)  # the same check, before hours of work

The rule (``check_output``): an output path may be written when it does not exist, is an empty
folder (or an empty file), or holds a previous downsize output of the same kind. Anything else is
refused with a ``DownsizeError`` naming what is there, unless ``overwrite=True`` (``--overwrite``).
How downsize knows it wrote something:

- a folder output carries ``.downsize.json`` with ``{"kind": KIND}`` (older outputs are recognised by
  the card each kind writes: ``prune_report.json``, ``distill_card.json``, ``zoo_card.json``, ``manifest.json``);
- a file output is recorded in the ledger ``.downsize.json`` of its folder with its size and mtime; it
  counts as downsize's only while both still match, so a file the user edited afterwards is protected too;
- an appendable JSONL output (``generate``) is recognised by its content: every line a record with an id;
- a folder directly inside a run folder (a stage folder) belongs to the run, which was checked itself.

A directory is never replaced by a file, and a replaced file or folder is removed only after its
successor is complete (a reader sees the old content or the new, never half of one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from downsize.errors import DownsizeError

MARKER = ".downsize.json"  # in an output folder: its kind; beside output files: the ledger of those files
MARKER_KIND = "kind"
MARKER_FILES = "files"

# Output kinds (folder outputs unless noted)
KIND_PRUNE = "prune"
KIND_DISTILL = "distill"
KIND_SFT = "sft"
KIND_TRAIN = "train"
KIND_ZOO = "zoo"
KIND_RUN = "run"
KIND_CACHE = "teacher-cache"
KIND_CHECKPOINT = "checkpoint"
KIND_OLLAMA = "ollama"
KIND_GGUF = "gguf"  # file
KIND_MODELFILE = "modelfile"  # file
KIND_JSONL = "jsonl"  # file, appended to (generate)
KIND_TEXT = "text"  # file: reports, task suites

FILE_KINDS = frozenset({KIND_GGUF, KIND_MODELFILE, KIND_JSONL, KIND_TEXT})

# Outputs written before the marker existed: the card file each kind always wrote.
LEGACY_CARDS = {KIND_PRUNE: "prune_report.json", KIND_DISTILL: "distill_card.json", KIND_SFT: "distill_card.json",
                KIND_ZOO: "zoo_card.json", KIND_RUN: "manifest.json", KIND_CACHE: "manifest.json",
                KIND_CHECKPOINT: "state.json"}

OVERWRITE_HINT = "choose another --out, empty it, or pass --overwrite to replace it"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~_umask()


# ---- what is at an output path --------------------------------------------------------------

def _read_marker(folder: Path) -> dict:
    try:
        obj = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind of the downsize output folder at ``path`` (marker or legacy card), or None."""
    path = Path(path)
    kind = _read_marker(path).get(MARKER_KIND)
    if isinstance(kind, str):
        return kind
    for k, card in LEGACY_CARDS.items():
        if (path / card).is_file():
            return k
    return None


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def record_file(path: str | os.PathLike, kind: str) -> None:
    """Enter ``path`` in its folder's ledger as a downsize output of ``kind`` (best effort: never fails a write)."""
    path = Path(path)
    folder = path.parent
    marker = _read_marker(folder)
    files = marker.get(MARKER_FILES) if isinstance(marker.get(MARKER_FILES), dict) else {}
    files = {n: v for n, v in files.items() if (folder / n).exists()}  # forget files that are gone
    try:
        files[path.name] = {MARKER_KIND: kind, **_stamp(path)}
        marker[MARKER_FILES] = files
        _write_marker(folder, marker)
    except OSError:
        pass


def _write_marker(folder: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, _file_mode())
        os.replace(tmp, folder / MARKER)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _recorded_kind(path: Path) -> str | None:
    entry = (_read_marker(path.parent).get(MARKER_FILES) or {}).get(path.name)
    if not isinstance(entry, dict):
        return None
    try:
        return entry.get(MARKER_KIND) if {k: entry.get(k) for k in ("size", "mtime_ns")} == _stamp(path) else None
    except OSError:
        return None


def _looks_like_jsonl_records(path: Path) -> bool:
    """Every non-empty line is a JSON object with an "id" (what ``generate`` appends); the torn last line
    a killed run can leave is allowed."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return False
    complete = lines[:-1]  # the part after the last newline is a torn line, repaired on resume
    for line in complete:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            return False
        if not isinstance(rec, dict) or "id" not in rec:
            return False
    return True


# kind -> does the existing file at path count as a downsize output of that kind (besides the ledger)
_FILE_RECOGNISERS: dict[str, Callable[[Path], bool]] = {KIND_JSONL: _looks_like_jsonl_records}


def _describe(path: Path) -> str:
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError:
        return "entries that cannot be listed"
    shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown})"


def check_parent(path: str | os.PathLike) -> None:
    """Refuse an output whose folder cannot exist because a component of it is a file."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise DownsizeError(f"cannot write {path}: {parent} is a file, not a folder",
                                    hint="choose an --out whose parent folders are folders")
            return


def check_writable(path: str | os.PathLike) -> None:
    """Create the folder of output ``path`` and prove a file can be made in it (read-only file system, permission),
    before any work: the OSError it raises is what the error boundary words."""
    folder = Path(path).parent
    check_parent(path)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".downsize-probe-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | os.PathLike, kind: str, overwrite: bool = False) -> None:
    """Raise ``DownsizeError`` unless ``path`` may receive a downsize output of ``kind`` (see the module doc).

    ``overwrite`` allows replacing anything except a folder by a file.
    """
    path = Path(path)
    check_parent(path)
    if not (path.exists() or path.is_symlink()):
        return
    if kind in FILE_KINDS:
        if path.is_dir():
            raise DownsizeError(f"--out {path} is a folder; this command writes a file there",
                                hint=f"give a file path, e.g. {path / ('model.gguf' if kind == KIND_GGUF else 'out')}")
        if overwrite or path.stat().st_size == 0 or _recorded_kind(path) == kind:
            return
        recognise = _FILE_RECOGNISERS.get(kind)
        if recognise is not None and recognise(path):
            return
        raise DownsizeError(f"--out {path} already exists and downsize did not write it (or it changed since)",
                            hint=f"nothing was written; {OVERWRITE_HINT}")
    if not path.is_dir():
        if overwrite:
            return
        raise DownsizeError(f"--out {path} is a file; this command writes a folder there",
                            hint=f"nothing was written; {OVERWRITE_HINT} (the file is then replaced by the folder)")
    if overwrite or not any(path.iterdir()):
        return
    if output_kind(path.parent) == KIND_RUN:
        return  # a stage folder of a run: the run folder was checked, and everything in it is the run's
    found = output_kind(path)
    if found == kind:
        return
    what = (f"a downsize {found} output, not a {kind} output" if found
            else f"a folder downsize did not write: {_describe(path)}")
    raise DownsizeError(f"--out {path} already exists and is {what}", hint=f"nothing was written; {OVERWRITE_HINT}")


# ---- atomic writes ---------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, kind: str | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` when the block succeeds.

    With ``kind``, ``dest`` is checked first (``check_output``) and recorded in its folder's ledger after.
    """
    dest = Path(dest)
    if kind is not None:
        check_output(dest, kind, overwrite)
    elif dest.is_dir():
        raise DownsizeError(f"cannot write the file {dest}: a folder is there", hint="choose another path")
    check_parent(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    if kind is not None:
        record_file(dest, kind)


def _normalise_modes(root: Path) -> None:
    """Files get 0666 & ~umask and folders 0777 & ~umask, like any file the user creates (some writers,
    tempfile among them, create 0600 files)."""
    fmode, dmode = _file_mode(), 0o777 & ~_umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dmode)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, fmode)
    os.chmod(root, dmode)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, kind: str | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``dest``; swap it in place of ``dest`` on success.

    With ``kind``, ``dest`` is checked before the block runs and again before the swap (``check_output``),
    and the new folder carries the marker naming its kind. An existing ``dest`` is kept until the new one
    is complete, then removed.
    """
    dest = Path(dest)
    if kind is not None:
        check_output(dest, kind, overwrite)
    check_parent(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        if kind is not None:
            (tmp / MARKER).write_text(json.dumps({MARKER_KIND: kind}) + "\n", encoding="utf-8")
            check_output(dest, kind, overwrite)  # nothing appeared there while the block ran
        _normalise_modes(tmp)
        old = None
        if dest.exists() or dest.is_symlink():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            _remove(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def mark_dir(path: str | os.PathLike, kind: str) -> None:
    """Write the marker of a folder output that is filled in place (a run folder, an Ollama export folder)."""
    path = Path(path)
    marker = _read_marker(path)
    if marker.get(MARKER_KIND) != kind:
        marker[MARKER_KIND] = kind
        _write_marker(path, marker)


def write_text_atomic(dest: str | os.PathLike, text: str, kind: str | None = None, overwrite: bool = False) -> None:
    with atomic_path(dest, kind, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(dest: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
