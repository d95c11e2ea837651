"""The default model's report figures: agreement per vocabulary, ground truth per group,
threshold stability."""

from __future__ import annotations

import numpy as np

from model.zoo import build_model
from training.distill.data import Split
from training.distill.evaluation import (
    agreement,
    ground_truth,
    teacher_scores,
    threshold_stability,
    track_means,
    truth_groups,
    windows_per_second,
)
from training.distill.teachers import TAG_IDS

N_TAGS = 100
GUITAR, PIANO, CHOIR = (TAG_IDS.index(f"mtt/{t}") for t in ("guitar", "piano", "choir"))


def split(
    teacher: np.ndarray, labels: np.ndarray, kinds: list[str], sources: list[str] | None = None
) -> Split:
    n = len(teacher)
    return Split(
        windows=np.zeros((n, 8), dtype=np.int16),
        teacher=teacher.astype(np.float32),
        labels=labels.astype(np.int8),
        source_ids=np.array(sources or [f"s{i}" for i in range(n)]),
        kinds=np.array(kinds),
        teachers={
            "mtt_musicnn": teacher[:, :50].astype(np.float32),
            "mtt_vgg": np.zeros((n, 50), np.float32),
            "msd_musicnn": teacher[:, 50:].astype(np.float32),
            "msd_vgg": np.zeros((n, 50), np.float32),
        },
    )


def test_groups_split_the_vocabulary() -> None:
    groups = truth_groups()
    assert "mtt/drums" in groups["instruments"]
    assert "mtt/choir" in groups["voice"]
    assert "mtt/no vocals" in groups["voice"]
    assert "msd/instrumental" in groups["msd"]
    assert "msd/guitar" in groups["msd"]
    assert "mtt/beat" in groups["other"]
    assert sum(len(ids) for ids in groups.values()) == N_TAGS


def test_track_means_average_each_source() -> None:
    values = np.array([[1.0], [3.0], [10.0]])
    assert track_means(values, np.array(["b", "a", "a"])).tolist() == [[6.5], [1.0]]


def test_agreement_per_window_and_per_track_on_music_only() -> None:
    # 12 music windows of 6 tracks (2 each), then 2 render windows the agreement ignores.
    teacher = np.zeros((14, N_TAGS))
    teacher[:10, GUITAR] = 0.9  # 10 positive windows; tracks 0-4 positive
    scores = np.zeros((14, 50), dtype=np.float32)
    scores[:10, GUITAR] = 0.8
    scores[12:, GUITAR] = 0.99  # renders: would break a perfect ranking if counted
    sources = [f"t{i // 2}" for i in range(12)] + ["r0", "r1"]
    data = split(teacher, -np.ones((14, N_TAGS)), ["music"] * 12 + ["render"] * 2, sources)
    result = agreement(data, scores, "mtt")
    assert result["window"]["per_tag"] == {"mtt/guitar": 1.0}
    assert result["track"]["per_tag"] == {"mtt/guitar": 1.0}
    assert (result["windows"], result["tracks"]) == (12, 6)


def test_ground_truth_scores_each_model_where_it_has_columns() -> None:
    labels = -np.ones((20, N_TAGS))
    labels[:, CHOIR] = [1] * 10 + [0] * 10
    teacher = np.zeros((20, N_TAGS))
    teacher[:, CHOIR] = np.linspace(0, 1, 20)[::-1]  # MTT_musicnn ranks the choir perfectly
    data = split(teacher, labels, ["render"] * 20)
    student = np.zeros((20, N_TAGS), dtype=np.float32)
    student[:, CHOIR] = [0.6] * 5 + [0.1] * 5 + [0.2] * 10  # half the positives below negatives
    result = ground_truth(data, {"student": student, **teacher_scores(data)})
    assert result["voice"]["MTT_musicnn"]["per_tag"] == {"mtt/choir": 1.0}
    assert result["voice"]["student"]["per_tag"] == {"mtt/choir": 0.5}
    assert result["voice"]["MTT mean"]["per_tag"] == {"mtt/choir": 1.0}
    assert "MSD_musicnn" not in result["voice"]  # no MTT columns: not a candidate there
    assert result["msd"]["MSD_musicnn"]["per_tag"] == {}  # no MSD truth known


def test_threshold_stability_covers_only_calibrated_tags() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((200, N_TAGS), dtype=np.int8)
    labels[:100, GUITAR] = 1  # well-populated: calibrated
    labels[:5, PIANO] = 1  # 5 positives: below the minimum of 20
    scores = rng.random((200, N_TAGS))
    scores[:100, GUITAR] += 1.0  # separable: every resample finds a cut between the classes
    thresholds = [0.3] * N_TAGS
    result = threshold_stability(labels, scores, thresholds, TAG_IDS, min_positives=20)
    assert list(result["per_tag"]) == ["mtt/guitar"]
    guitar = result["per_tag"]["mtt/guitar"]
    assert guitar["positives"] == 100
    assert 1.0 <= guitar["p05"] <= guitar["p95"] <= 2.0


def test_throughput_is_positive_windows_per_second() -> None:
    assert windows_per_second(build_model("q2l-small").eval(), batch_size=1, repeats=1) > 0
