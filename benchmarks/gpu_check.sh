#!/usr/bin/env bash
# The GPU checks of issue 9 part 3, prepared to run in one go on a machine with an NVIDIA GPU
# (about 10 minutes on one H100; nothing here has run on a GPU yet). From the repository root:
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default: gpu_check_out/)
#
# 1. the card (nvidia-smi), torch and CUDA versions;
# 2. the CUDA test of tests/test_train.py (train_fold on the device);
# 3. training throughput, resnet18 at 224 px from 32 px stored images: labelbench's fit vs a bare
#    timm + torch loop (goal >= 0.9x), benchmarks/gpu_train_throughput.py;
# 4. one fold process of resnet18 at 224 px on generated CIFAR-shaped PNGs (50,000 images, fold 0 =
#    10,000 held out), one whole epoch: peak RSS, images/s, process start to fold folder written,
#    benchmarks/bench_train_memory.py.
# Every step writes its output under OUT_DIR; record the card and the figures in README.
set -uo pipefail
out=${1:-gpu_check_out}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() {  # step NAME TIMEOUT_S COMMAND...: run, tee the log, remember a failure, go on
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee "$out/$name.log"
  timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc" | tee -a "$out/$name.log"
  [ "$rc" -eq 0 ] || status=1
}
step device 60 bash -c 'nvidia-smi; python -c "import torch, timm; print(torch.__version__, torch.version.cuda, timm.__version__, torch.cuda.get_device_name(0))"'
step cuda_test 180 python -m pytest -q tests/test_train.py -k cuda -p no:cacheprovider
step throughput 240 python benchmarks/gpu_train_throughput.py --model resnet18 --n 40000 --image-size 224 \
  --batch-size 256 --epochs 3 --repeats 1 --json "$out/throughput.json"
step epoch_224 300 python benchmarks/bench_train_memory.py --device cuda --model resnet18 --sizes 50000 \
  --old-sizes --files-sizes --heldout 10000 --batch-size 256 --max-steps 0 --json "$out/epoch_224.json"
exit $status
