"""The regression gate: weighted ROC-AUC, paired track bootstrap, the report's gate, promotion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.distill import gate
from training.distill.data import Split
from training.distill.promote import FORCED_HEADING, PromotionRefusedError, promote
from training.distill.promote import main as promote_main
from training.distill.report import file_sha256, regression_gate
from training.distill.teachers import TAG_IDS

N_TAGS = 100


def test_weighted_auc_counts_rows_by_weight_and_ties_half() -> None:
    assert (
        gate.weighted_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2]), np.ones(4)) == 1.0
    )
    assert gate.weighted_auc(np.array([1, 0]), np.array([0.1, 0.9]), np.ones(2)) == 0.0
    assert gate.weighted_auc(np.array([1, 0]), np.array([0.5, 0.5]), np.ones(2)) == 0.5
    labels, scores = np.array([1, 0, 0]), np.array([0.5, 0.6, 0.4])
    assert gate.weighted_auc(labels, scores, np.array([1, 1, 1])) == 0.5
    assert gate.weighted_auc(labels, scores, np.array([1, 0, 3])) == 1.0  # 0.6 never drawn
    assert gate.weighted_auc(labels, scores, np.array([1, 2, 1])) == pytest.approx(1 / 3)
    assert gate.weighted_auc(np.array([1, 1]), np.array([0.1, 0.2]), np.ones(2)) is None


def test_weighted_auc_matches_scikit_learn_with_sample_weights() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    weights = rng.integers(0, 4, 200).astype(float)
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert gate.weighted_auc(labels, scores, weights) == pytest.approx(expected)


def _tracks(n: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per track, two tags: tag 0 positive on the first half, tag 1 on every third."""
    labels = np.zeros((n, 2), dtype=np.int8)
    labels[: n // 2, 0] = 1
    labels[::3, 1] = 1
    return labels, np.array([f"t{k}" for k in range(n)])


def test_the_same_scores_are_no_regression() -> None:
    labels, tracks = _tracks(40)
    scores = labels + np.random.default_rng(0).random(labels.shape) * 0.5
    result = gate.compare("agreement", "v2", labels, scores, scores, tracks, rounds=200)
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.regression


def test_a_clearly_worse_candidate_regresses_and_a_better_one_does_not() -> None:
    labels, tracks = _tracks(40)
    perfect = labels.astype(float)  # ranks every tag perfectly: AUC 1
    noise = np.random.default_rng(1).random(labels.shape)  # AUC about 0.5
    worse = gate.compare("agreement", "v2", labels, noise, perfect, tracks, rounds=200)
    assert worse.reference_value == 1.0
    assert worse.difference < -0.2
    assert worse.high < 0
    assert worse.regression
    better = gate.compare("agreement", "v2", labels, perfect, noise, tracks, rounds=200)
    assert better.low > 0
    assert not better.regression


def test_one_misordered_track_out_of_forty_is_within_noise() -> None:
    labels, tracks = _tracks(40)
    reference = labels.astype(float)
    candidate = reference.copy()
    candidate[0, 0] = -1.0  # one positive track now ranks below every negative one
    result = gate.compare("agreement", "v2", labels, candidate, reference, tracks, rounds=500)
    assert result.difference < 0  # worse on the full data...
    assert result.high == 0.0  # ...but resamples without that track show no difference
    assert not result.regression


def test_windows_of_one_track_are_resampled_together() -> None:
    # Two windows per track; a window-level measure still resamples 10 tracks, not 20 windows.
    labels = np.repeat(np.array([[1], [0]] * 5, dtype=np.int8), 2, axis=0)
    tracks = np.repeat([f"t{k}" for k in range(10)], 2)
    scores = labels.astype(float)
    result = gate.compare("instruments", "v1", labels, scores, scores, tracks, rounds=50)
    assert result.tracks == 10


def test_the_gate_fails_when_any_comparison_regresses() -> None:
    def comparison(high: float) -> gate.Comparison:
        return gate.Comparison("m", "v2", 0.9, 0.9, 0.0, -0.1, high, 3, 40)

    assert gate.GateResult((comparison(0.01), comparison(0.0))).passed
    failed = gate.GateResult((comparison(0.01), comparison(-0.001)))
    assert not failed.passed
    assert len(failed.regressions) == 1
    assert failed.to_json()["passed"] is False
    assert "**worse**" in "\n".join(gate.markdown(failed))


TRUTH_TAGS = ("mtt/piano", "mtt/choir", "msd/instrumental", "mtt/fast")  # one per group


def _split(n_tracks: int, truth_tags: tuple[str, ...] = TRUTH_TAGS) -> Split:
    """Real-music tracks (2 windows each) whose chosen teacher finds guitar on the first half
    and rock on every third; then 20 render windows of 10 pieces with known `truth_tags`."""
    rng = np.random.default_rng(0)
    guitar, rock = TAG_IDS.index("mtt/guitar"), TAG_IDS.index("msd/rock")
    windows = 2 * n_tracks
    teacher = np.full((windows + 20, N_TAGS), 0.05, dtype=np.float32)
    teacher[:n_tracks, guitar] = 0.9
    teacher[:windows:3, rock] = 0.9
    labels = -np.ones((windows + 20, N_TAGS), dtype=np.int8)
    for tag in truth_tags:
        labels[windows:, TAG_IDS.index(tag)] = np.tile([1, 0], 10)
        teacher[windows:, TAG_IDS.index(tag)] = rng.random(20)
    sources = [f"m{k // 2}" for k in range(windows)] + [f"r{k // 2}" for k in range(20)]
    return Split(
        windows=np.zeros((windows + 20, 4), np.int16),
        teacher=teacher,
        labels=labels,
        source_ids=np.array(sources),
        kinds=np.array(["music"] * windows + ["render"] * 20),
        teachers={},
    )


def _models(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model that reproduces the teacher and the truth, a random one, and v1 (random, no MSD)."""
    good = np.where(split.labels >= 0, split.labels, split.teacher).astype(np.float32)
    noise = np.random.default_rng(2).random(good.shape).astype(np.float32)
    v1 = noise.copy()
    v1[:, 50:] = np.nan  # v1 has no MSD tags
    return good, noise, v1


def test_the_report_gate_compares_every_measure_with_the_default_and_the_mtt_ones_with_v1() -> None:
    split = _split(30)
    good, noise, v1 = _models(split)
    result = regression_gate(split, good, {"default": noise, "v1": v1}, rounds=100)
    measures = {(c.measure, c.reference) for c in result.comparisons}
    assert measures == {
        ("mtt track agreement", "default"),
        ("mtt track agreement", "v1"),
        ("msd track agreement", "default"),
        ("instruments ground truth", "default"),
        ("instruments ground truth", "v1"),
        ("voice ground truth", "default"),
        ("voice ground truth", "v1"),
        ("msd ground truth", "default"),
        ("other ground truth", "default"),
        ("other ground truth", "v1"),
    }
    assert result.unmeasured == ()
    assert result.passed
    worse = regression_gate(split, noise, {"default": good, "v1": v1}, rounds=100)
    assert not worse.passed
    assert ("mtt track agreement", "default") in {
        (c.measure, c.reference) for c in worse.regressions
    }


def test_a_measure_the_test_split_cannot_make_fails_the_gate() -> None:
    split = _split(30, truth_tags=("mtt/piano", "mtt/choir", "mtt/fast"))  # no MSD truth
    good, noise, v1 = _models(split)
    result = regression_gate(split, good, {"default": noise, "v1": v1}, rounds=50)
    assert result.regressions == []
    assert result.unmeasured == ("msd ground truth vs default",)
    assert not result.passed
    assert not gate.GateResult(()).passed  # nothing compared proves nothing


def _gate_file(tmp_path: Path, candidate: Path, passed: bool) -> Path:
    comparison = {
        "measure": "mtt track agreement",
        "reference": "v1",
        "difference": -0.05 if not passed else 0.01,
        "low": -0.08 if not passed else -0.01,
        "high": -0.02 if not passed else 0.03,
        "regression": not passed,
    }
    path = tmp_path / "gate.json"
    document = {
        "passed": passed,
        "candidate_sha256": file_sha256(candidate),
        "comparisons": [comparison],
    }
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    candidate, default, card = (
        tmp_path / "cand.safetensors",
        tmp_path / "default.st",
        tmp_path / "card.md",
    )
    candidate.write_bytes(b"candidate weights")
    default.write_bytes(b"v2 weights")
    card.write_text("# Model card\n")
    return candidate, default, card


def test_a_failed_gate_keeps_the_default(tmp_path: Path, files: tuple[Path, Path, Path]) -> None:
    candidate, default, card = files
    gate_file = _gate_file(tmp_path, candidate, passed=False)
    with pytest.raises(PromotionRefusedError, match="mtt track agreement vs v1"):
        promote(candidate, gate_file, default=default, card=card)
    assert default.read_bytes() == b"v2 weights"
    args = ["--candidate", str(candidate), "--gate", str(gate_file), "--default", str(default)]
    assert promote_main([*args, "--model-card", str(card)]) == 1
    assert default.read_bytes() == b"v2 weights"
    assert card.read_text() == "# Model card\n"


def test_forcing_past_a_failed_gate_is_written_into_the_model_card(
    tmp_path: Path, files: tuple[Path, Path, Path]
) -> None:
    candidate, default, card = files
    gate_file = _gate_file(tmp_path, candidate, passed=False)
    assert promote(candidate, gate_file, force=True, default=default, card=card) is True
    assert default.read_bytes() == b"candidate weights"
    text = card.read_text()
    assert FORCED_HEADING in text
    assert "mtt track agreement vs v1: -0.0500 [-0.0800, -0.0200]" in text


def test_a_passed_gate_replaces_the_default_without_a_note(
    tmp_path: Path, files: tuple[Path, Path, Path]
) -> None:
    candidate, default, card = files
    assert (
        promote(candidate, _gate_file(tmp_path, candidate, passed=True), default=default, card=card)
        is False
    )
    assert default.read_bytes() == b"candidate weights"
    assert card.read_text() == "# Model card\n"


def test_a_gate_measured_on_another_file_or_none_is_refused(
    tmp_path: Path, files: tuple[Path, Path, Path]
) -> None:
    candidate, default, card = files
    gate_file = _gate_file(tmp_path, candidate, passed=True)
    candidate.write_bytes(b"retrained since the gate ran")
    with pytest.raises(PromotionRefusedError, match="another file"):
        promote(candidate, gate_file, default=default, card=card)
    with pytest.raises(PromotionRefusedError, match="not found"):
        promote(candidate, tmp_path / "missing.json", force=True, default=default, card=card)
    assert default.read_bytes() == b"v2 weights"


def test_a_gate_with_an_unmeasured_measure_is_refused(
    tmp_path: Path, files: tuple[Path, Path, Path]
) -> None:
    candidate, default, card = files
    gate_file = _gate_file(tmp_path, candidate, passed=True)
    document = json.loads(gate_file.read_text())
    gate_file.write_text(
        json.dumps({**document, "passed": False, "unmeasured": ["voice ground truth vs default"]})
    )
    with pytest.raises(
        PromotionRefusedError, match="voice ground truth vs default: not measurable"
    ):
        promote(candidate, gate_file, default=default, card=card)
    assert default.read_bytes() == b"v2 weights"
