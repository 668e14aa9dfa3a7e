"""Run the reliability catalogue of issue #14 and print it as a Markdown table with a verdict per case.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reliability_catalogue.py            # this checkout
    OMP_NUM_THREADS=1 python benchmarks/reliability_catalogue.py --src /path/to/other/src  # another version

The cases are tests/reliability/catalogue.py (the same ones tests/reliability/test_catalogue.py asserts).
A case is *handled* when the command exits with the expected code (2 for bad input or a failing
environment), prints a message that names the problem and no traceback, and changes nothing that existed
(every file under the case folder and the shared inputs is hashed before and after). ``--src`` runs
another source tree (e.g. a checkout from before #14) against the same cases, for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the downsize source tree to test")
    ap.add_argument("-k", default=None, help="only cases whose id contains this")
    a = ap.parse_args()
    sys.path.insert(0, str(a.src.resolve()))
    os.environ["DOWNSIZE_CATALOGUE_SRC"] = str(a.src.resolve())
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from catalogue import CASES, build_env, run_case, verdict

    import downsize

    with tempfile.TemporaryDirectory(prefix="downsize-catalogue-") as d:
        env = build_env(Path(d) / "env")
        rows, tally, by_group = [], Counter(), Counter()
        t0 = time.perf_counter()
        for i, case in enumerate(c for c in CASES if a.k is None or a.k in c.id):
            r = run_case(case, env, Path(d) / "cases" / case.id)
            ok, why = verdict(case, r)
            tally[ok] += 1
            by_group[(case.group, ok)] += 1
            msg = next((x.strip() for x in r.output.splitlines() if x.startswith(("error:", "stopped early:", "Usage"))),
                       r.output.strip().splitlines()[-1] if r.output.strip() else "")
            msg = msg.replace(str(Path(d)), "…").replace("|", "\\|")[:150]
            rows.append(f"| {i + 1} | {case.group} | `{case.id}` | {case.command} | "
                        f"{'handled' if ok else 'NOT handled: ' + why.replace('|', '/')[:80]} | {r.code} | {msg} |")
        wall = time.perf_counter() - t0
    print(f"source: {Path(downsize.__file__).parent}; {sum(tally.values())} cases, {tally[True]} handled, "
          f"{tally[False]} not; {wall:.0f} s\n")
    groups = sorted({g for g, _ in by_group})
    print("| group | handled | not handled |\n|---|---|---|")
    for g in groups:
        print(f"| {g} | {by_group[(g, True)]} | {by_group[(g, False)]} |")
    print("\n| # | group | case | command | verdict | exit | message (first line) |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
