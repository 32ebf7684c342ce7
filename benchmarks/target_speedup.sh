#!/usr/bin/env bash
# `compressor prune --target-speedup` end to end on a real model, then `compressor bench` on the result: does the
# model the search picked measure the target speedup in an independent bench run (interleaved rounds, interval)?
#
#   bash benchmarks/target_speedup.sh [SPEEDUP] [BATCH_SIZES]      # defaults: 2 and 64, ResNet-4B (eps 2/255)
#
# Run it on an otherwise idle machine: it times latency twice (in the search, then in bench), both with one
# intra-op thread. Writes benchmarks/results/target_speedup-resnet4b-<date>-x<SPEEDUP>-b<BATCHES>/: the pruned
# checkpoint, the ONNX files, bench/bench.{json,md,csv,png} (machine and versions inside), command.txt (the exact
# commands) and log.txt. Only the speed is judged here: the pruned model is fine-tuned for one short epoch; robust
# accuracy at these ratios is speed_targets.py's table.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEEDUP=${1:-2}
BATCHES=${2:-64}
C=${COMPRESSOR:-compressor}
DENSE=../shared/checkpoints/abcrown_resnet4b_adv2px.pth
DATA=npz:../shared/data/cifar10_train.npz,../shared/data/cifar10_test.npz
MODEL=(--arch benchmarks.models.abcrown:resnet4b --mean 0.4914,0.4822,0.4465 --std 0.2471,0.2435,0.2616)
OUT=benchmarks/results/target_speedup-resnet4b-$(date -u +%F)-x${SPEEDUP}-b${BATCHES//,/-}
[ -f "$DENSE" ] || { echo "error: $DENSE is missing: this benchmark needs the shared ResNet-4B checkpoint" >&2; exit 2; }
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { echo "$*" >> "$OUT/command.txt"; "$@"; }
: > "$OUT/command.txt"
run "$C" prune "$DENSE" "${MODEL[@]}" -d "$DATA" --method none --transform channels,round_to=4 \
    --target-speedup "$SPEEDUP" --runtime onnxruntime --target-batch-sizes "$BATCHES" \
    --eps 2/255 --epochs-prune 0 --epochs-finetune 1 --steps 2 --val-n 500 --eval-n 500 --eval-attack pgd20 \
    -o "$OUT/pruned.pt" --force
run "$C" export "$DENSE" "${MODEL[@]}" -d "$DATA" -f onnx -o "$OUT/dense.onnx" --force -q
run "$C" export "$OUT/pruned.pt" --arch "${MODEL[1]}" -f onnx -o "$OUT/pruned.onnx" --force -q
run "$C" bench "$DENSE=$OUT/dense.onnx" "$OUT/pruned.pt=$OUT/pruned.onnx" "${MODEL[@]}" -d "$DATA" \
    --batch-sizes 1,64 --rounds 20 --runs 200 --attacks '' --square-queries 0 --n 500 \
    --out "$OUT/bench" --force
