#!/usr/bin/env bash
# The v3 recipe of `make default-model`, up to the trained candidate, with its slow steps
# overlapped for a shared 2-core machine and a run that spans several sessions: start it again
# after an interruption and every step continues where it stopped (each skips what is done).
#
#   scripts/default_model_v3.sh [all|label-valid-test|label-train|train]
#
#   label-valid-test  validation windows (all four teachers), the renders' too once rendered,
#                     choose-teachers, then every test window (all four teachers)
#   label-train       every training patch: with v2's teachers until the v3 choice exists, then
#                     with the chosen ones (adds any missing teacher, and the renders)
#   train             waits for the choice (validation fully labelled, renders included), then
#                     starts or resumes runs/v3-q2l-small; it takes up training tracks as they
#                     are labelled
#   all               the three at once, in the background (default)
#
# Fetching and rendering come first (`python -m training fetch-music`, `render`); this script
# waits for them when they run. Labelling runs one torch thread per process: on a shared
# 2-core machine two one-thread processes get more done than one two-thread process. Logs go to
# data/logs/. The gate and the promotion stay with `make default-model` (or the commands in
# docs/default-model.md), so nothing here touches model/weights/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD"
PY=(nice -n 15 "${PYTHON:-.venv/bin/python}")
RUN=runs/v3-q2l-small
mkdir -p data/logs runs

wait_for() {  # wait while a process whose command line matches $1 runs
    while pgrep -f "$1" >/dev/null; do sleep 30; done
}

label_valid_test() {
    wait_for "training fetch-music"
    "${PY[@]}" -m training label-patches --cache data/v3 --splits valid --threads 1
    wait_for "training render"
    "${PY[@]}" -m training label-patches --cache data/v3 --splits valid --threads 1
    test -f data/v3/teachers.json || "${PY[@]}" -m training choose-teachers --cache data/v3
    "${PY[@]}" -m training label-patches --cache data/v3 --splits test --threads 1
}

label_train() {
    wait_for "training fetch-music"
    if [ ! -f data/v3/teachers.json ]; then
        # v2's recorded choice (MTT: mean of MTT_musicnn and MTT_vgg; MSD: MSD_vgg), until the
        # v3 choice exists: then the renders (ground truth) join, labelled with the chosen ones.
        "${PY[@]}" -m training label-patches --cache data/v3 --splits train --threads 1 \
            --teachers mtt_musicnn mtt_vgg msd_vgg &
        local pid=$!
        while kill -0 "$pid" 2>/dev/null && [ ! -f data/v3/teachers.json ]; do sleep 60; done
        kill "$pid" 2>/dev/null || true  # a source in progress keeps its finished teachers
        wait "$pid" || true
    fi
    while [ ! -f data/v3/teachers.json ]; do sleep 60; done
    "${PY[@]}" -m training label-patches --cache data/v3 --splits train --threads 1 --chosen
}

train() {
    while [ ! -f data/v3/teachers.json ]; do sleep 60; done
    if [ -f "$RUN/last.pt" ]; then
        "${PY[@]}" -m training train-distill --resume "$RUN" --wait-for-data
    else
        "${PY[@]}" -m training train-distill --config training/experiments/default-model-v3.toml \
            --out "$RUN" --wait-for-data
    fi
}

case "${1:-all}" in
    label-valid-test) label_valid_test ;;
    label-train) label_train ;;
    train) train ;;
    all)
        nohup "$0" label-valid-test >>data/logs/label-valid-test.log 2>&1 &
        nohup "$0" label-train >>data/logs/label-train.log 2>&1 &
        nohup "$0" train >>data/logs/train-v3.log 2>&1 &
        echo "started; logs in data/logs/ (label-valid-test, label-train, train-v3)"
        ;;
    *) echo "usage: $0 [all|label-valid-test|label-train|train]" >&2; exit 2 ;;
esac
