"""Record what Ollama's built-in renderers (its Go source, ``model/renderers``) write for downsize's probe
conversations, into ``src/downsize/export/ollama_renderers.json``.

The export chooses ``RENDERER x`` for a model only when x's recorded prompts equal the model's Jinja rendering
byte for byte on every probe (``downsize.export.renderers``); this script is how those prompts are made. It
builds Ollama's renderers from a checkout of its source (read from git, nothing copied into this repository)
with two stand-ins of ours for third-party modules the renderers do not use for text (an ordered map, the UUID
type), runs them on ``downsize.export.gocheck.PROBES`` and writes the prompts with the Ollama commit and a hash
of the probes. Run it again when the probes change (the tests check the hash) or to follow a newer Ollama:

    python tools/record_ollama_renderers.py --ollama /path/to/ollama/.git
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from downsize.export import gocheck  # noqa: E402
from downsize.export.renderers import RECORD, probes_digest  # noqa: E402

# The Ollama files the renderers need (the api package's client, which pulls in auth and crypto, is left out).
FILES = ("api/types.go", "envconfig/config.go", "types/model/*.go", "model/renderers/*.go")


def git(gitdir: str, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={gitdir}", *args], capture_output=True, text=True, check=True).stdout


def assemble(gitdir: str, into: Path) -> str:
    commit = git(gitdir, "rev-parse", "HEAD").strip()
    names = git(gitdir, "ls-tree", "-r", "--name-only", "HEAD").split()
    for pat in FILES:
        rx = re.compile("^" + re.escape(pat).replace(r"\*", "[^/]*") + "$")
        for n in names:
            if rx.match(n) and not n.endswith("_test.go"):
                (into / n).parent.mkdir(parents=True, exist_ok=True)
                (into / n).write_text(git(gitdir, "show", f"HEAD:{n}"))
    (into / "internal/orderedmap").mkdir(parents=True)
    shutil.copy(HERE / "ollama_renderers/shim/orderedmap/orderedmap.go", into / "internal/orderedmap/orderedmap.go")
    shutil.copytree(HERE / "ollama_renderers/shim/uuid", into / "_shim/uuid")
    (into / "cmd/probe").mkdir(parents=True)
    shutil.copy(HERE / "ollama_renderers/probe/main.go", into / "cmd/probe/main.go")
    (into / "go.mod").write_text("module github.com/ollama/ollama\n\ngo 1.24\n\nrequire github.com/google/uuid v0.0.0\n\n"
                                 "replace github.com/google/uuid => ./_shim/uuid\n")
    return commit


def renderer_names(into: Path) -> list[str]:
    """The names rendererForName accepts (its switch's case labels)."""
    src = (into / "model/renderers/renderer.go").read_text()
    body = src[src.index("func rendererForName"):]
    return sorted({n for case in re.findall(r'^\s*case ([^:]+):', body, re.M) for n in re.findall(r'"([^"]+)"', case)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ollama", required=True, help="Ollama's git directory (a clone's .git, or a bare mirror)")
    ap.add_argument("--out", default=str(RECORD))
    args = ap.parse_args()
    go = gocheck.go_binary()
    if go is None:
        sys.exit(gocheck.GO_MISSING)
    with tempfile.TemporaryDirectory() as tmp:
        mod = Path(tmp)
        commit = assemble(args.ollama, mod)
        names = renderer_names(mod)
        env = {**gocheck._go_env(), "GO111MODULE": "on", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOSUMDB": "off"}
        p = subprocess.run([go, "build", "-o", str(mod / "probe"), "./cmd/probe"], cwd=mod, capture_output=True,
                           text=True, env=env)
        if p.returncode:
            sys.exit(f"building Ollama's renderers failed:\n{p.stderr[-3000:]}")
        cases = [{"messages": gocheck.ollama_messages(pr.messages), "tools": pr.tools} for pr in gocheck.PROBES]
        r = subprocess.run([str(mod / "probe")], input=json.dumps({"renderers": names, "cases": cases}),
                           capture_output=True, text=True, check=True)
        out = json.loads(r.stdout)
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=gocheck._go_env()).stdout.strip()
    record = {"ollama_commit": commit, "go": version, "probes": probes_digest(),
              "renderers": {n: {"bos": out[n]["bos"],
                                "prompts": {pr.name: (None if x.get("error") else x["text"])
                                            for pr, x in zip(gocheck.PROBES, out[n]["results"])},
                                "errors": {pr.name: x["error"] for pr, x in zip(gocheck.PROBES, out[n]["results"])
                                           if x.get("error")}}
                            for n in names}}
    text = json.dumps(record, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    tmp_out = Path(args.out).with_suffix(".tmp")
    tmp_out.write_text(text)
    tmp_out.replace(args.out)
    print(f"{len(names)} renderers of Ollama {commit[:12]} on {len(cases)} probes -> {args.out} "
          f"({hashlib.sha256(text.encode()).hexdigest()[:12]})")


if __name__ == "__main__":
    main()
