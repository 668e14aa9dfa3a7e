"""Record what Ollama's built-in renderers (its Go source, ``model/renderers``) write for downsize's probe
conversations, and what its built-in output parsers (``model/parsers``) make of the tool calls real models write,
into ``src/downsize/export/ollama_renderers.json``.

The export chooses ``RENDERER x`` for a model only when x's recorded prompts equal the model's Jinja rendering
byte for byte on every probe, and ``PARSER y`` only when y returns the probe's tool call from the text the
model writes for it (``downsize.export.renderers``); this script is how those records are made. The texts are
the tool calls of the chat templates in the llama-cpp-python sdist (``tests/sdist.py``), one per distinct text. It
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
FILES = ("api/types.go", "envconfig/config.go", "types/model/*.go", "model/renderers/*.go", "model/parsers/*.go",
         "harmony/*.go", "logutil/*.go")


RUNS = 6  # probe processes compared (see main)


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


def case_names(path: Path, func: str) -> list[str]:
    """The names ``func`` accepts (its switch's case labels): rendererForName, ParserForName."""
    src = path.read_text()
    body = src[src.index(f"func {func}"):]
    body = body[: body.find("\n}\n") + 1]
    return sorted({n for case in re.findall(r'^\s*case ([^:]+):', body, re.M) for n in re.findall(r'"([^"]+)"', case)})


def tool_call_outputs() -> dict[str, list[str]]:
    """text the model writes for the probe's tool call -> the sdist templates that write it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sdist import llama_cpp_dir

    from downsize.export.toolcalls import tool_call_output

    out: dict[str, list[str]] = {}
    for f in sorted((llama_cpp_dir() / "models" / "templates").glob("*.jinja")):
        try:
            text = tool_call_output(f.read_text(), "<s>", "</s>")
        except Exception:  # noqa: BLE001 — a template that cannot render the probe
            continue
        if not text:
            continue
        # The sdist's templates come without their model's EOS (the recording uses "</s>"), so a call may still end
        # with the end-of-turn token the real EOS strips at export: the text without it is recorded as well.
        for t in dict.fromkeys([text, END_MARK.sub("", text)]):
            out.setdefault(t, []).append(f.name.removesuffix(".jinja"))
    return out


END_MARK = re.compile(r"(<\|[^<>\s|]+\|>|<｜[^<>\s｜]+｜>|<eos>|<end_of_turn>)\s*$")


def parses_the_probe_call(r: dict) -> bool:
    """Exactly the probe's call (name and arguments), no other text, no reasoning."""
    call = gocheck.TOOL_PROBES[1].messages[1]["tool_calls"][0]["function"]
    calls = r.get("calls") or []
    return (not r.get("error") and not r.get("content", "").strip() and not r.get("thinking", "").strip()
            and len(calls) == 1 and calls[0]["function"]["name"] == call["name"]
            and calls[0]["function"]["arguments"] == call["arguments"])


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
        names = case_names(mod / "model/renderers/renderer.go", "rendererForName")
        parser_names = case_names(mod / "model/parsers/parsers.go", "ParserForName")
        outputs = tool_call_outputs()
        env = {**gocheck._go_env(), "GO111MODULE": "on", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOSUMDB": "off"}
        p = subprocess.run([go, "build", "-o", str(mod / "probe"), "./cmd/probe"], cwd=mod, capture_output=True,
                           text=True, env=env)
        if p.returncode:
            sys.exit(f"building Ollama's renderers failed:\n{p.stderr[-3000:]}")
        cases = [{"messages": gocheck.ollama_messages(pr.messages), "tools": pr.tools} for pr in gocheck.PROBES]
        texts = sorted(outputs)
        payload = {"renderers": names, "cases": cases, "parsers": parser_names,
                   "outputs": [{"text": t, "tools": gocheck.TOOL_PROBES[1].tools} for t in texts]}
        # Several processes: a renderer that ranges over a Go map writes its prompt in another order in another
        # process (Go seeds map iteration per map); such a prompt is not a fact about the renderer, so not recorded.
        runs = [json.loads(subprocess.run([str(mod / "probe")], input=json.dumps(payload), capture_output=True,
                                          text=True, check=True).stdout) for _ in range(RUNS)]
        out = runs[0]
        for n in names:
            for k, x in enumerate(out[n]["results"]):
                if any(r[n]["results"][k] != x for r in runs[1:]):
                    out[n]["results"][k] = {"text": "", "error": "renders differently from run to run (ranges over a Go map)"}
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=gocheck._go_env()).stdout.strip()
    record = {"ollama_commit": commit, "go": version, "probes": probes_digest(),
              "renderers": {n: {"bos": out[n]["bos"],
                                "prompts": {pr.name: (None if x.get("error") else x["text"])
                                            for pr, x in zip(gocheck.PROBES, out[n]["results"])},
                                "errors": {pr.name: x["error"] for pr, x in zip(gocheck.PROBES, out[n]["results"])
                                           if x.get("error")}}
                            for n in names},
              "parsers": {"names": parser_names,
                          "outputs": [{"text": t, "templates": outputs[t],
                                       "parsed_by": [p for p in parser_names
                                                     if parses_the_probe_call(out["__parsers__"][p][i])]}
                                      for i, t in enumerate(texts)]}}
    text = json.dumps(record, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    tmp_out = Path(args.out).with_suffix(".tmp")
    tmp_out.write_text(text)
    tmp_out.replace(args.out)
    print(f"{len(names)} renderers of Ollama {commit[:12]} on {len(cases)} probes, {len(parser_names)} parsers on "
          f"{len(texts)} tool-call texts -> {args.out} "
          f"({hashlib.sha256(text.encode()).hexdigest()[:12]})")


if __name__ == "__main__":
    main()
