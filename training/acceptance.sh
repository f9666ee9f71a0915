#!/usr/bin/env bash
# Issue 5 acceptance: train on simulator sessions from some seeds, evaluate on sessions
# from OTHER seeds and conditions. Stages (run in order; each is idempotent):
#   training/acceptance.sh data        record train seeds 1..N_TRAIN (conditions picked by seed)
#                                      and test seeds 101..104 (day/fog, night/clear, dusk/rain, day/clear)
#   training/acceptance.sh bench       img/s and data-wait share of both networks (--benchmark-steps)
#   training/acceptance.sh direction   train the direction classifier, evaluate it on the test sessions
#   training/acceptance.sh detector    train the SSD detector, evaluate it on the test sessions
# Targets: direction accuracy >= 0.95; detector mAP@0.5 >= 0.80 per class (test sessions).
# Settings (environment): PY (python with TruckPilot importable; default python3), ROOT (runs/acceptance),
# FRAMES per session (2000), N_TRAIN sessions (12), TRUNK (imagenet | none | PATH), DIR_EPOCHS (12),
# DET_EPOCHS (16), DIR_BATCH (256), DET_BATCH (64), DIR_LR (2e-3), DET_LR (2e-3), EXTRA (more train options).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
ROOT=${ROOT:-runs/acceptance}
FRAMES=${FRAMES:-2000}
N_TRAIN=${N_TRAIN:-12}
TRUNK=${TRUNK:-imagenet}
EXTRA=${EXTRA:-}
tp() { "$PY" -m agent.cli "$@"; }

record() {  # out seed [time_of_day weather]
    [ -f "$1/manifest.json" ] && return 0
    tp record --out "$1" --autopilot --headless --frames "$FRAMES" --seed "$2" \
        ${3:+--time-of-day "$3"} ${4:+--weather "$4"} --no-progress
}

stage_data() {
    for s in $(seq 1 "$N_TRAIN"); do record "$ROOT/data/train/s$s" "$s" & done
    record "$ROOT/data/test/s101" 101 day fog &
    record "$ROOT/data/test/s102" 102 night clear &
    record "$ROOT/data/test/s103" 103 dusk rain &
    record "$ROOT/data/test/s104" 104 day clear &
    wait
}

stage_bench() {
    tp train direction --data "$ROOT"/data/train/* --out "$ROOT/bench_direction" --trunk-weights "$TRUNK" \
        --input-height 224 --input-width 224 --batch-size "${DIR_BATCH:-256}" --benchmark-steps 60 $EXTRA
    tp train detector --data "$ROOT"/data/train/* --out "$ROOT/bench_detector" --trunk-weights "$TRUNK" \
        --batch-size "${DET_BATCH:-64}" --benchmark-steps 40 $EXTRA
}

stage_direction() {
    rm -rf "$ROOT/direction"
    tp train direction --data "$ROOT"/data/train/* --out "$ROOT/direction" --trunk-weights "$TRUNK" \
        --epochs "${DIR_EPOCHS:-12}" --freeze-epochs 1 --batch-size "${DIR_BATCH:-256}" --lr "${DIR_LR:-2e-3}" $EXTRA
    tp evaluate "$ROOT/direction/best.safetensors" --data "$ROOT"/data/test/* --out "$ROOT/direction/test"
}

stage_detector() {
    rm -rf "$ROOT/detector"
    tp train detector --data "$ROOT"/data/train/* --out "$ROOT/detector" --trunk-weights "$TRUNK" \
        --epochs "${DET_EPOCHS:-16}" --freeze-epochs 1 --batch-size "${DET_BATCH:-64}" --lr "${DET_LR:-2e-3}" $EXTRA
    tp evaluate "$ROOT/detector/best.safetensors" --data "$ROOT"/data/test/* --out "$ROOT/detector/test"
}

for stage in "$@"; do
    echo "=== acceptance stage: $stage ($(date -u +%H:%M:%S))" >&2
    "stage_$stage"
done
