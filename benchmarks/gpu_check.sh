#!/usr/bin/env bash
# The GPU check, for a machine with a GPU, Python ≥ 3.11 and torch/torchvision preinstalled but
# no package registry (and so no kornia): run from the repository root.
#
#   make gpu-bundle            # here, online: wheels for kornia (CPython 3.12, x86-64) into
#                              # .wheels/ and Fashion-MNIST into data/raw/fashion-mnist/
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # there: installs .wheels/ into /tmp, runs
#
#   bash benchmarks/gpu_check.sh OUT_DIR --budget-s 900 --command-s 600   # options go through
#
# It prints one line per stage (device, wall seconds, throughput, GPU peak, host peak, disk),
# appends it to OUT_DIR/gpu_check.json (default runs/gpu_check) as the stage ends, runs each
# part in its own process of at most 4 minutes, and ends with the extrapolation to the paper
# profile and a go / no-go line. A command cut short keeps what it measured: the same command
# continues. See benchmarks/README.md.
#
# Several GPUs: then the heavy stages also run as the `stage` commands, on one process and
# under torchrun on every visible GPU (OUT_DIR/scaling/scaling.json: seconds per stage and the
# throughput ratio). With fewer than two GPUs the same section runs 2 gloo processes on the
# CPU at tiny counts, labelled a plumbing smoke, and reports the multi-GPU figures as not
# measured. GPU_CHECK_SCALING=0 skips the section.
set -euo pipefail
out=${1:-runs/gpu_check}
if ! python3 -c "import kornia" 2>/dev/null; then
  ls .wheels/*.whl >/dev/null 2>&1 || { echo "kornia is missing and .wheels/ is empty: run 'make gpu-bundle' where pip works" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/ddcs-mi-site .wheels/*.whl
  export PYTHONPATH=/tmp/ddcs-mi-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1 DDCS_MI_HEADLESS=1
python3 benchmarks/gpu_check.py --out "$out" --counts "${GPU_CHECK_COUNTS:-check}" "${@:2}"
if [ "${GPU_CHECK_SCALING:-1}" != 0 ]; then
  gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -gt 1 ]; then
    python3 benchmarks/gpu_check.py --out "$out/scaling" --scaling "$gpus" --device cuda \
      --counts "${GPU_CHECK_COUNTS:-check}" --parts "${GPU_CHECK_SCALING_PARTS:-fashion,faces}"
  else
    python3 benchmarks/gpu_check.py --out "$out/scaling" --scaling 2 --device cpu --counts tiny \
      --parts fashion
  fi
fi
