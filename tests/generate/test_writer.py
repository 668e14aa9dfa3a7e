"""Resumable JSONL: whole lines, torn-tail repair, ids, and a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from downsize.generate.writer import JsonlAppender, read_jsonl


def test_ids_survive_reopen_and_torn_tail_is_cut(tmp_path):
    p = tmp_path / "out.jsonl"
    with JsonlAppender(p) as w:
        w.append({"id": "a", "x": 1})
        w.append({"id": "b", "x": "é"})
    with open(p, "ab") as f:
        f.write(b'{"id": "c", "x": [1, 2')  # what a kill inside a write could leave
    w = JsonlAppender(p)
    assert w.ids == {"a", "b"} and w.repaired_bytes == len(b'{"id": "c", "x": [1, 2')
    w.append({"id": "c", "x": 3})
    w.close()
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "c"]


def test_threads_never_interleave_lines(tmp_path):
    p = tmp_path / "out.jsonl"
    w = JsonlAppender(p, fsync=False)
    big = "y" * 70000  # larger than a pipe buffer, so a torn write would show

    def worker(k):
        for i in range(25):
            w.append({"id": f"{k}-{i}", "pad": big})

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    w.close()
    recs = read_jsonl(p)
    assert len(recs) == 100 and len({r["id"] for r in recs}) == 100 and all(r["pad"] == big for r in recs)


CHILD = """
import sys
from downsize.generate.writer import JsonlAppender
w = JsonlAppender(sys.argv[1])
i = 0
while True:
    if str(i) not in w.ids:
        w.append({"id": str(i), "pad": "z" * 20000})
        print(i, flush=True)
    i += 1
    if i >= 400:
        break
"""


def test_killed_writer_loses_and_duplicates_nothing(tmp_path):
    p = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(p)], stdout=subprocess.PIPE, text=True)
    for _ in range(30):  # let it write some lines, then kill it without warning
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = JsonlAppender(p)
    n_before = len(first.ids)
    first.close()
    assert 30 <= n_before < 400
    subprocess.run([sys.executable, "-c", CHILD, str(p)], check=True, stdout=subprocess.DEVNULL)
    ids = [r["id"] for r in read_jsonl(p)]
    assert sorted(ids, key=int) == [str(i) for i in range(400)]  # every id exactly once
