#!/usr/bin/env bash
# Issue 5 acceptance: train on simulator sessions from some seeds, evaluate on sessions from OTHER
# seeds and conditions, with the protocol and recipes of training/RESULTS.md (the CPU chain's figures
# are directly comparable). Stages (run in order; each is idempotent):
#   training/acceptance.sh data        train seeds 1-40 (day clear, dusk clear, day rain, night clear,
#                                      day fog, dusk rain in turn; 300 frames, --perturb 0.4); validation
#                                      seeds 101 dusk/fog + 102 night/rain (300, --perturb 0.4); test seeds
#                                      101 day/fog, 102 night/clear, 103 dusk/rain, 104 day/clear (500, unperturbed)
#   training/acceptance.sh bench       img/s and data-wait share of both networks (--benchmark-steps)
#   training/acceptance.sh direction   train the direction classifier, evaluate it on the test sessions
#   training/acceptance.sh detector    the detector's progressive chain (192x144 -> 320x240 -> 480x360 ->
#                                      640x480, stride-4 anchors), evaluate the last step's best on the test;
#                                      with SIM_SIZE=640x480 the chain of those sessions instead (192x144 ->
#                                      320x240 -> 640x480 trained on 320x240 crops, --crop-on-boxes 0.5)
# Targets: direction accuracy >= 0.95; detector mAP@0.5 >= 0.80 (test sessions).
# Settings (environment): PY (python with TruckPilot importable; default python3), ROOT (runs/acceptance),
# TRUNK (imagenet | none | PATH; imagenet falls back to random init with a warning where it cannot be had),
# SCALE (frames per epoch relative to the CPU chain's, default 1; a GPU can afford 4 or more; 0.002 smoke-tests),
# DIR_BATCH (256), DET_BATCH (32), AMP (auto: bf16 on CUDA, float32 on CPUs), EXTRA (more train options),
# SIM_SIZE (the sessions' frame size, default 320x240) and MIN_BOX (boxes shorter than this many frame pixels
# are not labelled, default 4; scale it with SIM_SIZE, e.g. SIM_SIZE=640x480 MIN_BOX=8, to label the same objects).
# On the lent GPU machine (no pygame there): carry a pygame wheel (pip download pygame --only-binary=:all:
# --python-version 3.12 ... -d .whl, see the device README) and install it to a --target on PYTHONPATH first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
ROOT=${ROOT:-runs/acceptance}
TRUNK=${TRUNK:-imagenet}
SCALE=${SCALE:-1}
SIM_SIZE=${SIM_SIZE:-320x240}
MIN_BOX=${MIN_BOX:-4}
AMP=${AMP:-auto}
EXTRA=${EXTRA:-}
export SDL_VIDEODRIVER=${SDL_VIDEODRIVER:-dummy}
tp() { "$PY" -m agent.apps.cli "$@"; }
frames() { awk -v n="$1" -v s="$SCALE" 'BEGIN { f = int(n * s); print (f < 1 ? 1 : f) }'; }  # n x SCALE, at least 1

CONDITIONS=("day clear" "dusk clear" "day rain" "night clear" "day fog" "dusk rain")
record() {  # out seed time_of_day weather frames [perturb]
    # the writer puts the manifest in place first, so a recording killed mid-way has one: a session is
    # done when frames.jsonl holds every frame asked for, else it is recorded again
    if [ -f "$1/manifest.json" ] && [ "$(wc -l < "$1/frames.jsonl" 2>/dev/null || echo 0)" -ge "$5" ]; then
        return 0
    fi
    rm -rf "$1"
    tp record --out "$1" --autopilot --headless --frames "$5" --seed "$2" --time-of-day "$3" --weather "$4" \
        --sim-size "$SIM_SIZE" --min-box-height "$MIN_BOX" ${6:+--perturb "$6"} --no-progress >/dev/null
}

stage_data() {
    local jobs=$(( $(nproc) > 1 ? $(nproc) : 1 ))
    {
        for s in $(seq 1 40); do
            set -- ${CONDITIONS[$(( (s - 1) % 6 ))]}
            echo "$ROOT/data/train/seed$(printf %03d "$s")-$1-$2 $s $1 $2 300 0.4"
        done
        echo "$ROOT/data/val/seed101-dusk-fog 101 dusk fog 300 0.4"
        echo "$ROOT/data/val/seed102-night-rain 102 night rain 300 0.4"
        echo "$ROOT/data/test/s101 101 day fog 500"
        echo "$ROOT/data/test/s102 102 night clear 500"
        echo "$ROOT/data/test/s103 103 dusk rain 500"
        echo "$ROOT/data/test/s104 104 day clear 500"
    } | {
        while read -r line; do
            while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
            record $line &
        done
        wait
    }
}

VAL=("$ROOT/data/val/seed101-dusk-fog" "$ROOT/data/val/seed102-night-rain")
COMMON=(--freeze-epochs 0 --trunk-lr-div 1 --amp "$AMP")

stage_bench() {
    tp train direction --data "$ROOT"/data/train/* --val-data "${VAL[@]}" --out "$ROOT/bench_direction" \
        --trunk-weights "$TRUNK" --input-height 224 --input-width 224 --batch-size "${DIR_BATCH:-256}" \
        --benchmark-steps 60 $EXTRA
    tp train detector --data "$ROOT"/data/train/* --val-data "${VAL[@]}" --out "$ROOT/bench_detector" \
        --trunk-weights "$TRUNK" --input-height 240 --input-width 320 --anchor-strides 4 8 16 32 64 128 \
        --anchor-sizes 0.02 0.04 0.08 0.2 0.4 0.7 --batch-size "${DET_BATCH:-32}" --benchmark-steps 40 $EXTRA
}

stage_direction() {  # training/RESULTS.md "Direction, 15 CPU minutes" recipe
    rm -rf "$ROOT/direction"
    tp train direction --data "$ROOT"/data/train/* --val-data "${VAL[@]}" --out "$ROOT/direction" \
        --trunk-weights "$TRUNK" --input-height 96 --input-width 128 --epochs 4 --epoch-frames "$(frames 10800)" \
        --batch-size "${DIR_BATCH:-32}" --lr 2e-3 "${COMMON[@]}" $EXTRA
    tp evaluate "$ROOT/direction/best.safetensors" --data "$ROOT"/data/test/* --out "$ROOT/direction/test"
}

stage_detector() {
    if [ "$SIM_SIZE" = 640x480 ]; then detector_chain_640; else detector_chain_upscaled; fi
}

CHAIN_ANCHORS=(--anchor-strides 4 8 16 32 64 128 --anchor-sizes 0.02 0.04 0.08 0.2 0.4 0.7 --anchor-ratios 1 2 0.5 0.3)
detector_step() {  # out lr options...: one `train detector` step of a chain with the options every step shares
    local out=$1 lr=$2
    shift 2
    tp train detector --data "$ROOT"/data/train/* --val-data "${VAL[@]}" --out "$out" "$@" \
        --batch-size "${DET_BATCH:-32}" --lr "$lr" "${COMMON[@]}" $EXTRA
}

detector_chain_640() {  # training/RESULTS.md "Sessions recorded at 640x480": three steps, the last on 320x240 crops
    local d="$ROOT/detector"
    rm -rf "$d"
    detector_step "$d/1_192x144" 2e-3 --trunk-weights "$TRUNK" --input-height 144 --input-width 192 "${CHAIN_ANCHORS[@]}" \
        --epochs 4 --epoch-frames "$(frames 12000)"
    detector_step "$d/2_320x240" 1e-3 --init "$d/1_192x144/best.safetensors" --input-height 240 --input-width 320 \
        --epochs 2 --epoch-frames "$(frames 6000)"
    detector_step "$d/3_640x480c" 5e-4 --init "$d/2_320x240/best.safetensors" --input-height 480 --input-width 640 \
        --train-crop-height 240 --train-crop-width 320 --crop-on-boxes 0.5 --epochs 4 --epoch-frames "$(frames 6000)"
    tp evaluate "$d/3_640x480c/best.safetensors" --data "$ROOT"/data/test/* --out "$d/test"
}

detector_chain_upscaled() {  # training/RESULTS.md "Progressive resizing" + "Two more steps up the chain"
    local d="$ROOT/detector"
    rm -rf "$d"
    detector_step "$d/1_192x144" 2e-3 --trunk-weights "$TRUNK" --input-height 144 --input-width 192 "${CHAIN_ANCHORS[@]}" \
        --epochs 5 --epoch-frames "$(frames 12000)"
    detector_step "$d/2_320x240" 1e-3 --init "$d/1_192x144/best.safetensors" --input-height 240 --input-width 320 \
        --epochs 3 --epoch-frames "$(frames 6000)"
    detector_step "$d/3_480x360" 5e-4 --init "$d/2_320x240/best.safetensors" --input-height 360 --input-width 480 \
        --epochs 1 --epoch-frames "$(frames 6000)"
    detector_step "$d/4_640x480" 5e-4 --init "$d/3_480x360/best.safetensors" --input-height 480 --input-width 640 \
        --epochs 3 --epoch-frames "$(frames 2400)"
    tp evaluate "$d/4_640x480/best.safetensors" --data "$ROOT"/data/test/* --out "$d/test"
}

for stage in "$@"; do
    declare -F "stage_$stage" >/dev/null || { echo "acceptance.sh: unknown stage '$stage' (data bench direction detector)" >&2; exit 2; }
    echo "=== acceptance stage: $stage ($(date -u +%H:%M:%S))" >&2
    "stage_$stage"
done
