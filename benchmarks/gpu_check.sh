#!/usr/bin/env bash
# The GPU checks of issue 9 part 3, prepared to run in one go on a machine with an NVIDIA GPU
# (about 10 minutes on one H100; it ran once, on one H200: README says what it found). From the repository root:
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default: gpu_check_out/)
#
# 1. the card (nvidia-smi), torch and CUDA versions;
# 2. the CUDA test of tests/test_train.py (train_fold on the device);
# 3. training throughput, resnet18 at 224 px from 32 px stored images: labelbench's fit vs a bare
#    timm + torch loop (goal >= 0.9x), benchmarks/gpu_train_throughput.py;
# 4. one fold process of resnet18 at 224 px on generated CIFAR-shaped PNGs (50,000 images, fold 0 =
#    10,000 held out), one whole epoch: peak RSS, images/s, process start to fold folder written,
#    benchmarks/bench_train_memory.py;
# 5. the digits crossval stage (fold 0, params.yaml's train block) with train.device cuda, twice (are two runs on
#    one card the same bytes?), and once on the CPU: process start to fold folder written, md5 of each output.
#    Needs data/raw/digits, data/noisy/digits and data/folds/digits.csv (dvc pull, or carried).
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
# Everything of requirements.lock must import (dvclive imports dvc.repo, which needs dvc's whole dependency set):
# run it in the project's venv, or carry the lock's wheels.
step device 60 bash -c 'nvidia-smi; python -c "import torch, timm, pydantic, sklearn, dvclive, dvc.repo; print(torch.__version__, torch.version.cuda, timm.__version__, torch.cuda.get_device_name(0))"'
[ $status -eq 0 ] || { echo "gpu_check: the project's packages do not all import (device.log); nothing else was run"; exit 1; }
step cuda_test 180 python -m pytest -q tests/test_train.py -k cuda -p no:cacheprovider
step throughput 240 python benchmarks/gpu_train_throughput.py --model resnet18 --n 40000 --image-size 224 \
  --batch-size 256 --epochs 3 --repeats 1 --json "$out/throughput.json"
step epoch_224 300 python benchmarks/bench_train_memory.py --device cuda --model resnet18 --sizes 50000 \
  --old-sizes --files-sizes --heldout 10000 --batch-size 256 --max-steps 0 --json "$out/epoch_224.json"
digits_fold() {  # digits_fold DEVICE OUT: the crossval stage's own command with train.device DEVICE
  sed "s/^  device: cpu /  device: $1 /" params.yaml.orig >params.yaml
  local start=$(date +%s%N)
  python stages/crossval.py --dataset digits --model test_resnet --fold 0 --images data/raw/digits/images \
    --labels data/noisy/digits/labels.csv --folds data/folds/digits.csv --out "$2" || return 1
  echo "$1: process start to fold folder written $(( ($(date +%s%N) - start) / 1000000 )) ms"
  (cd "$2" && md5sum model.safetensors heldout_indices.npy heldout_pred_probs.npy records/*.npy && grep device "config.yaml")
}
cp params.yaml params.yaml.orig
step digits_cuda 300 bash -c "$(declare -f digits_fold); digits_fold cuda /tmp/fold_cuda_a && digits_fold cuda /tmp/fold_cuda_b \
  && digits_fold cpu /tmp/fold_cpu && cmp /tmp/fold_cuda_a/heldout_pred_probs.npy /tmp/fold_cuda_b/heldout_pred_probs.npy \
  && echo 'two CUDA runs: same held-out pred_probs bytes'"
mv params.yaml.orig params.yaml
exit $status
