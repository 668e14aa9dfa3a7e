"""Teacher data generation: prompts from a codebase, tool-calling traces, any OpenAI-compatible server.

    $ downsize generate --teacher openai:http://127.0.0.1:8080/v1#coder --codebase ./repo --out traces.jsonl

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> from downsize.generate import GenerateConfig, generate
    >>> summary = generate(GenerateConfig(teacher="zoo:coder-teacher-qwen", out="t.jsonl", codebase="repo",
    ...                                   n_codebase=1, n_negative=1))
    >>> summary["written"] + summary["rejected"]
    2

Modules: backends (endpoint + local, retries, batching), prompts (templates, negatives, prompt files),
codebase (ast facts), sandbox (tools), agent (the loop), validate (rejection reasons), writer
(resumable whole-line JSONL), run (the stage). See docs/generate.md.
"""

from downsize.generate.agent import AgentConfig, Trace, run_agent
from downsize.generate.backends import GenParams, open_backend
from downsize.generate.run import GenerateConfig, generate

__all__ = ["AgentConfig", "GenParams", "GenerateConfig", "Trace", "generate", "open_backend", "run_agent"]
