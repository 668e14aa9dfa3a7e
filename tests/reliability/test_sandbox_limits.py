"""The tool sandbox keeps its limits within one file: a huge file, a catastrophic regex, a hard link out,
a FIFO and a device (issue #14).

    python -m pytest -q tests/reliability/test_sandbox_limits.py
"""

from __future__ import annotations

import os
import resource
import threading
import time

import pytest

from downsize.generate.sandbox import Sandbox, SandboxLimits


@pytest.fixture()
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "pkg").mkdir(parents=True)
    (r / "pkg" / "a.py").write_text("def f():\n    return 1\n")
    return r


def test_grep_over_a_huge_file_stops_at_the_deadline_in_bounded_memory(repo):
    line = "x = 1  # " + "filler " * 20 + "\n"
    with open(repo / "big.py", "w") as f:  # ~150 MB of short lines, none matching
        for _ in range(1000):
            f.write(line * 1000)
    limits = SandboxLimits(max_seconds=0.5)
    box = Sandbox(repo, limits)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    out = box.call("grep", {"pattern": "never-there-zzz"})
    wall = time.monotonic() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "[stopped after 0.5 s]" in out
    assert wall < 0.5 + 0.5, wall  # the deadline holds inside the file
    assert (rss1 - rss0) / 1024 < 50, f"grew by {(rss1 - rss0) / 1024:.0f} MiB"  # streamed, not read whole


def test_one_enormous_line_is_skipped_without_reading_it_into_memory(repo):
    with open(repo / "one.py", "w") as f:
        f.write("needle " * 2_000_000 + "\nneedle short\n")
    out = Sandbox(repo).call("grep", {"pattern": "needle"})
    assert "one.py:2: needle short" in out and "one.py:1:" not in out


def test_a_catastrophic_regex_is_cut_at_the_deadline(repo):
    # (a|aa)+$ on 40 a's and a "!" backtracks through ~1.6e8 splits: minutes unbounded (17.7 s was measured in #14)
    (repo / "evil.py").write_text("a" * 40 + "!\n")
    box = Sandbox(repo, SandboxLimits(max_seconds=0.5))
    c0 = time.process_time()
    out = box.call("grep", {"pattern": "(a|aa)+$"})
    cpu = time.process_time() - c0
    assert "stopped after 0.5 s" in out
    # the regex package's timeout counts this process's CPU time: the CPU burnt is bounded whatever the load
    assert cpu < 0.5 + 0.3, cpu


def test_a_hard_link_to_a_file_outside_is_refused(repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    os.link(secret, repo / "innocent.py")
    box = Sandbox(repo)
    assert box.call("read_file", {"path": "innocent.py"}).startswith("error:") and "hard link" in box.call(
        "read_file", {"path": "innocent.py"})
    assert "hunter2" not in box.call("grep", {"pattern": "password"})


def test_hard_links_that_stay_inside_are_read(repo):
    os.link(repo / "pkg" / "a.py", repo / "pkg" / "b.py")
    assert "return 1" in Sandbox(repo).call("read_file", {"path": "pkg/b.py"})


def test_a_fifo_is_reported_not_read(repo):
    os.mkfifo(repo / "pipe.py")
    box = Sandbox(repo)
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(box.call("read_file", {"path": "pipe.py"})), daemon=True)
    t.start()
    t.join(5)
    assert result and "named pipe (FIFO)" in result[0]  # answered at once: it never blocked on the pipe
    t = threading.Thread(target=lambda: result.append(box.call("grep", {"pattern": "return"})), daemon=True)
    t.start()
    t.join(5)
    assert len(result) == 2 and "pkg/a.py:2" in result[1]  # grep passes the FIFO by


def test_a_device_is_reported_not_read(repo):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    try:
        os.mknod(repo / "zero.py", 0o644 | __import__("stat").S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("mknod needs root")
    out = Sandbox(repo).call("read_file", {"path": "zero.py"})
    assert "character device" in out
