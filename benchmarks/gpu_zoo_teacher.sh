#!/usr/bin/env bash
# Issue #17 on a lent CUDA machine: continue zoo:coder-teacher from its shipped weights with a fresh warmup +
# cosine for 3 more passes of the zoo:stdlib train split (7.29M tokens; v1 saw 1.1 passes, so >= 4 in total),
# bf16 autocast, validation curve every 100 steps; weights, card and curve come back through $OUT.
#
# ---- once, HERE (the CPU machine), in the repo root ---------------------------------------------------
#   echo /.whl/ >> .git/info/exclude; mkdir -p .whl
#   # the corpus must be THIS machine's stdlib (Python 3.11.7, fingerprint 702c7ef4e932...), the one v1 was
#   # trained and evaluated on; the H200 image runs Python 3.12, whose stdlib is another corpus:
#   R=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
#   (cd "$R" && find . \( -name site-packages -o -name dist-packages -o -name __pycache__ \) -prune -o -name '*.py' -print0 \
#       | tar --null -T - -cJf "$OLDPWD/.whl/stdlib.tar.xz")        # about 4.8 MB
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 gguf==0.19.0
#
# ---- ONE device call: run(command="bash benchmarks/gpu_zoo_teacher.sh", carry=[".whl"], timeout_s=590)
# ---- back HERE: the files lie under the reply's files_at; reassemble and check, then commit (docs/gpu.md):
#   cat FILES_AT/coder-teacher-v2.tar.part-* | tar -xf - -C /tmp && ls /tmp/coder-teacher-v2
#   downsize eval /tmp/coder-teacher-v2 --data zoo:stdlib      # must agree with its zoo_card.json
#   rsync -a --delete /tmp/coder-teacher-v2/ src/downsize/zoo/models/coder-teacher/    # replaces v1 (bf16, ~31 MB)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_zoo_teacher}"
mkdir -p "$OUT"
[ -f .whl/stdlib.tar.xz ] || { echo "no .whl/stdlib.tar.xz: make it as the header says" >&2; exit 2; }
mkdir -p /tmp/stdlib && tar -xJf .whl/stdlib.tar.xz -C /tmp/stdlib
export DOWNSIZE_STDLIB=/tmp/stdlib DOWNSIZE_CACHE=/tmp/downsize-cache
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
LOG="$OUT/zoo_teacher.log"
python3 - <<'EOF' 2>&1 | tee "$LOG"
from downsize.data.stdlib import StdlibCorpus
fp = StdlibCorpus.local().fingerprint
print("corpus fingerprint", fp)
assert fp.startswith("702c7ef4e932"), "not the corpus v1 was trained on: rebuild .whl/stdlib.tar.xz on the CPU machine"
EOF
[ "${PIPESTATUS[0]}" = 0 ] || exit 3
# batch 64 x 256 = 16k tokens/step: 3 passes of 7.29M tokens = 1,335 steps; lr 1e-3 (v1 peaked at 2e-3 at batch 16
# and ended at 2e-4), warmup 100 steps, cosine to 0.1 x lr.
timeout 540 python3 -m downsize.cli zoo train coder-teacher --init-from zoo:coder-teacher --passes 3 --batch-size 64 \
    --lr 1e-3 --warmup-steps 100 --mixed-precision bf16 --seed 1 --eval-every 100 --eval-tokens 65536 \
    --out /tmp/coder-teacher-v2 2>&1 | tail -n 40 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
cp /tmp/coder-teacher-v2.work/metrics.jsonl "$OUT/metrics.jsonl" 2>/dev/null
if [ -d /tmp/coder-teacher-v2 ]; then
  cp /tmp/coder-teacher-v2/zoo_card.json /tmp/coder-teacher-v2/training_curve.json "$OUT/" 2>/dev/null
  # the tool brings back files of at most 16 MiB: the ~31 MB folder travels as a split tar
  tar -cf - -C /tmp coder-teacher-v2 | split -b 15m - "$OUT/coder-teacher-v2.tar.part-"
fi
ls -la "$OUT" | tee -a "$LOG"
echo "zoo train rc $rc" | tee -a "$LOG"
exit $rc
