#!/usr/bin/env bash
# The v3 recipe of `make default-model`, up to the trained candidate, with its slow steps
# overlapped for a shared 2-core machine and a run that spans several sessions: start it again
# after an interruption and every step continues where it stopped (each skips what is done).
#
#   scripts/default_model_v3.sh [all|label-valid|label K|train]
#
#   label-valid  validation windows (all four teachers), the renders' too once rendered, then
#                choose-teachers
#   label K      every test window (all four teachers), then a window every half window of
#                every training track (the chosen teachers), compiled teachers, the K-th of
#                two shards (K = 0 or 1): one process per core
#   train        waits for the choice and for labelling to end, then starts or resumes
#                runs/v3-q2l-small
#   all          label-valid, then the two label shards, then train, in the background
#                (default)
#
# Fetching and rendering come first (`python -m training fetch-music`, `render`); this script
# waits for them when they run. Labelling runs one torch thread per process: on a 2-core
# machine two one-thread processes get more done than one two-thread process. Logs go to
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

label_valid() {
    wait_for "training fetch-music"
    "${PY[@]}" -m training label-patches --cache data/v3 --splits valid --threads 1
    wait_for "training render"
    "${PY[@]}" -m training label-patches --cache data/v3 --splits valid --threads 1
    test -f data/v3/teachers.json || "${PY[@]}" -m training choose-teachers --cache data/v3
}

label() {  # the test split with all four teachers (the report compares them), then training
    "${PY[@]}" -m training label-patches --cache data/v3 --splits test --threads 1 \
        --compile --shard "$1/2"
    "${PY[@]}" -m training label-patches --cache data/v3 --splits train --threads 1 \
        --chosen --compile --shard "$1/2"
}

train() {
    while [ ! -f data/v3/teachers.json ]; do sleep 60; done
    wait_for "training label-patches"
    if [ -f "$RUN/last.pt" ]; then
        "${PY[@]}" -m training train-distill --resume "$RUN" --wait-for-data
    else
        "${PY[@]}" -m training train-distill --config training/experiments/default-model-v3.toml \
            --out "$RUN" --wait-for-data
    fi
}

case "${1:-all}" in
    label-valid) label_valid ;;
    label) label "${2:?label needs a shard: 0 or 1}" ;;
    train) train ;;
    all)
        # One chain: the shards start once the choice exists, training once they are done.
        nohup bash -c "'$0' label-valid && { '$0' label 0 & '$0' label 1 & wait; } && '$0' train" \
            >>data/logs/v3.log 2>&1 &
        echo "started; log in data/logs/v3.log"
        ;;
    *) echo "usage: $0 [all|label-valid|label K|train]" >&2; exit 2 ;;
esac
