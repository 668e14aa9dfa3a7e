#!/usr/bin/env bash
# GPU check for a session with a lent CUDA machine (kind nvidia-h200): one job, under 10 minutes.
# What it measures and why: benchmarks/gpu_check.py's docstring; how to run it and read it: docs/gpu.md.
#
# ---- once, HERE (the CPU machine), in the repo root: the packages the H200 image lacks, as wheels --------
#   echo /.whl/ >> .git/info/exclude
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl"
#   python3 -m pip download $P gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#       typing-inspection==0.4.5 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 bitsandbytes==0.50.2
#   # bitsandbytes ships one 21-26 MB library per CUDA version; the image has CUDA 13 (torch 2.11+cu130), and the
#   # repo + wheels must stay under the tool's 64 MiB, so keep only the CUDA 13 and CPU libraries:
#   zip -qd .whl/bitsandbytes-*.whl 'bitsandbytes/libbitsandbytes_cuda1[12]*' 'bitsandbytes/libbitsandbytes_rocm*'
#   du -sh .whl     # about 9 MB
#
# ---- then ONE device call (carry .whl), e.g. run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=590)
#   results: $OUT/gpu_check.json and $OUT/gpu_check.log; record them in benchmarks/RESULTS.md (docs/gpu.md says how).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:$PWD/tests:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu_check.log"
# each check is bounded inside the script too; 560 s leaves the call time to copy $OUT back
timeout 560 python3 benchmarks/gpu_check.py "$@" 2>&1 | tee -a "$OUT/gpu_check.log"
echo "gpu_check rc ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_check.log"
