#!/usr/bin/env bash
# The benchmarks that time the device, on CUDA, in one short run (about 10 minutes on one H200). Each step runs
# under its own time limit, so that a failure costs only its own table; results are *-cuda* files.
#
#   bash benchmarks/gpu_suite.sh                         # every step; python3, data in ../shared/data
#   bash benchmarks/gpu_suite.sh inference models        # some steps: inference models overhead mnist cifar timm
#   PYTHON=.venv/bin/python DATA=DIR OUT=DIR TIMM_TRAIN_PY=.../train.py bash benchmarks/gpu_suite.sh
#
# DATA holds MNIST/raw and CIFAR10/cifar10-jpg.tar.gz as in ../shared/data; the timm step needs timm's
# train.py (TIMM_TRAIN_PY) and is skipped without it. The exit status is the number of steps that failed.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
DATA=${DATA:-../shared/data}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(inference models overhead mnist cifar timm)
failed=0

run() {  # run SECONDS COMMAND...: one benchmark under a time limit; on failure say so and go on
    local limit=$1 t0=$SECONDS
    shift
    echo "== $(date +%T) $*"
    timeout "$limit" "$@" || { echo "!! exit $? after $((SECONDS - t0)) s"; failed=$((failed + 1)); }
    echo "== $((SECONDS - t0)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
for step in "${steps[@]}"; do
    case $step in
    inference)  # zoo vs torchvision, fp32 then autocast bf16 and fp16; batch 256 is where a GPU is busy
        for dtype in fp32 bf16 fp16; do
            run 100 "$PY" benchmarks/inference.py --device cuda --dtype $dtype --batch-sizes 1 32 256 \
                --rounds 4 --steps 5 --out "$OUT"
        done ;;
    models)  # zoo bench: inference and AMP training throughput, memory; resnet50 also under torch.compile
        run 200 "$PY" benchmarks/models.py --device cuda --models resnet18 resnet50 vgg16 resnet20 mnist_cnn \
            --dtypes fp32 fp16 bf16 --batch-size 256 --small-batch-size 512 --compile resnet50 --out "$OUT" ;;
    overhead)  # zoo's trainer vs a plain loop: fp16 AMP, channels_last, 64k images an epoch
        run 120 "$PY" benchmarks/train_overhead.py --device cuda --images 65536 --rounds 3 --out "$OUT" ;;
    mnist)  # time to 99.2 % on the real MNIST, fast recipe
        run 100 "$PY" benchmarks/train_mnist.py --device cuda --runs 3 --data-dir "$DATA" --out "$OUT" ;;
    cifar)  # time to accuracy on the real CIFAR-10 JPEGs: resnet20, 20 epochs without RandAugment
        run 240 "$PY" benchmarks/train_cifar.py --device cuda --data-dir "$DATA" --targets 80 85 90 91 \
            --out "$OUT" --epochs 20 --batch-size 128 --lr 0.1 --rand-augment '' --workers 8 ;;
    timm)  # zoo train vs timm's train.py on the same model and image folder
        if [ -n "${TIMM_TRAIN_PY:-}" ]; then
            run 180 "$PY" benchmarks/train_timm.py --device cuda --timm-train "$TIMM_TRAIN_PY" --data-dir "$DATA" \
                --rounds 1 --per-class 500 --epochs 3 --out "$OUT"
        else
            echo "== timm: skipped (set TIMM_TRAIN_PY to timm's train.py)"
        fi ;;
    *) echo "unknown step $step (inference models overhead mnist cifar timm)"; failed=$((failed + 1)) ;;
    esac
done
exit $failed
