"""The default model v3's data and trainer: the patch cache, crop targets, a resumed run."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from model.checkpoint import load_checkpoint
from model.q2l import Query2Label
from model.tags import MSD_TAGS
from model.zoo import build_model, config_for
from training.cli import main
from training.distill.cache import WINDOW
from training.distill.crops import crop_target, load_tracks, plan_epoch
from training.distill.patches import (
    EVAL_STRIDE,
    HOP_FRAMES,
    HOP_SAMPLES,
    WINDOW_FRAMES,
    eval_rows,
    label_patches,
    patch_starts,
    plan,
    teacher_scores,
    train_rows,
)
from training.distill.trainer import (
    LABEL_ROWS,
    DistillConfig,
    Run,
    build_student,
    selection_measure,
    warm_start,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHOICES = {"mtt": "mtt_vgg", "msd": "msd_vgg"}  # the two cheaper teachers


def test_patches_start_every_quarter_window_fit_in_the_track_and_training_takes_every_2nd() -> None:
    assert (HOP_FRAMES, HOP_SAMPLES, WINDOW_FRAMES) == (58, 14848, 231)
    assert patch_starts(10_000) == [0]  # shorter than a window: one padded patch
    assert patch_starts(59_049) == [0]
    assert patch_starts(59_049 + 14_848) == [0, 14_848]
    assert patch_starts(144_000) == [0, 14_848, 29_696, 44_544, 59_392, 74_240]
    assert train_rows(6) == [0, 2, 4]  # a window every half window
    assert eval_rows(6, None) == [0, 4]  # back-to-back windows
    assert eval_rows(100, 3) == [0, 48, 96]  # evenly spaced when capped


def test_a_crop_target_weighs_the_patches_it_covers() -> None:
    targets = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    assert crop_target(targets, 0).tolist() == [0.0, 1.0]  # exactly patch 0
    assert crop_target(targets, HOP_FRAMES).tolist() == [1.0, 0.0]  # exactly patch 1
    # 14 of 58 frames past patch 0: 44/58 of patch 0 and 14/58 of patch 1.
    np.testing.assert_allclose(crop_target(targets, 14), [14 / 58, 44 / 58], rtol=1e-6)
    np.testing.assert_allclose(crop_target(targets, HOP_FRAMES + HOP_FRAMES // 2), [0.75, 0.25])
    assert crop_target(targets, 2 * HOP_FRAMES).tolist() == [0.5, 0.5]  # the last patch
    # Rows every half window (116 frames): 29 frames past row 0 is a quarter of the way to row 1.
    np.testing.assert_allclose(crop_target(targets, 29, hop=116), [0.25, 0.75])
    assert crop_target(targets, 116, hop=116).tolist() == [1.0, 0.0]


def _tone(path: Path, seconds: float, freq: float) -> None:
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(int(freq)).standard_normal(len(t))
    soundfile.write(
        path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32), rate
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training tracks (9 s, 20 s), one validation and one test track (9 s each), labelled
    by both vgg teachers; the recorded choice is theirs."""
    root = tmp_path_factory.mktemp("v3")
    music = root / "music"
    rows = []
    for package, seconds, freq in [
        ("wesnoth-1.16-music", 9.0, 440.0),
        ("naev-data", 20.0, 220.0),
        ("xmoto-data", 9.0, 330.0),
        ("singularity-music", 9.0, 550.0),
    ]:
        (music / package).mkdir(parents=True)
        _tone(music / package / "track.flac", seconds, freq)
        local = f"{package}/track.flac"
        rows.append(
            {"package": package, "local_path": local, "licence": "GPL", "duration_s": seconds}
        )
    (music / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = root / "cache"
    teachers = ["mtt_vgg", "msd_vgg"]
    splits = ["valid", "train", "test"]
    assert label_patches(music, root / "none", cache, splits, teachers, 1) == 4
    assert label_patches(music, root / "none", cache, splits, teachers, 1) == 0
    (cache / "teachers.json").write_text(json.dumps({"choices": CHOICES}))
    return cache


def test_the_cache_keeps_every_half_window_of_training_tracks_and_the_windows_of_validation(
    cache: Path,
) -> None:
    train = load_tracks(cache, "train", CHOICES)
    # 9 s: 1 + (144,000 - 59,049) // 14,848 = 6 patches, every 2nd labelled; 20 s: 18 patches
    assert sorted(len(t.targets) for t in train) == [3, 9]
    assert [t.hop for t in train] == [2 * HOP_FRAMES] * 2
    assert min(train, key=lambda t: len(t.frames)).frames.tolist() == [0, 116, 232]
    assert sorted(t.mel.shape for t in train) == [(563, 128), (1251, 128)]
    assert all(t.mel.dtype == np.float16 for t in train)
    [valid] = load_tracks(cache, "valid", CHOICES)
    assert valid.frames.tolist() == [0, EVAL_STRIDE * HOP_FRAMES]
    folder = cache / valid.source_id
    assert np.load(folder / "windows.npy").shape == (2, 59049)  # what `report` scores
    assert np.load(folder / "teacher-mtt_vgg.npy").shape == (2, 50)


def test_the_plan_counts_what_is_left_from_the_manifests(cache: Path) -> None:
    music = cache.parent / "music"
    train, valid = plan(music, cache.parent / "none", cache, ["train", "valid"])
    # Both vgg teachers are done; both musicnn ones are left: 3 + 9 rows, 2 windows.
    assert train.startswith("train: 2 sources, 0.01 h, 12 labelled rows, 24 teacher passes")
    assert valid.startswith("valid: 1 sources, 0.00 h, 2 labelled rows, 4 teacher passes")
    [done] = plan(music, cache.parent / "none", cache, ["train"], ["mtt_vgg", "msd_vgg"])
    assert "12 labelled rows, 0 teacher passes" in done


def test_two_shards_label_every_source_once(cache: Path) -> None:
    music, fresh = cache.parent / "music", cache.parent / "sharded"
    first = label_patches(music, cache.parent / "none", fresh, ["train"], ["msd_vgg"], 1, (0, 2))
    second = label_patches(music, cache.parent / "none", fresh, ["train"], ["msd_vgg"], 1, (1, 2))
    assert (first, second) == (1, 1)
    assert len((fresh / "index.jsonl").read_text().splitlines()) == 2
    assert label_patches(music, cache.parent / "none", fresh, ["train"], ["msd_vgg"], 1) == 0


def test_a_source_begun_with_every_patch_keeps_every_patch(cache: Path) -> None:
    music, fresh = cache.parent / "music", cache.parent / "begun"
    assert label_patches(music, cache.parent / "none", fresh, ["train"], ["msd_vgg"], 1) == 2
    short = min(fresh.glob("*/starts.npy"), key=lambda path: len(np.load(path))).parent
    # As the sources labelled before the stride was 2: every patch, a teacher still missing.
    np.save(short / "starts.npy", np.asarray(patch_starts(144_000), dtype=np.int64))
    for name in ("patch-labels.npy", "patch-teacher-msd_vgg.npy"):
        (short / name).unlink()
    assert label_patches(music, cache.parent / "none", fresh, ["train"], ["msd_vgg"], 1) == 1
    assert np.load(short / "patch-teacher-msd_vgg.npy").shape == (6, 50)
    assert np.load(short / "patch-labels.npy").shape == (6, 100)


def test_a_bad_shard_is_refused_with_its_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["label-patches", "--shard", "2/2", "--plan"])
    assert exit_info.value.code == 2
    assert "K/N needs 0 <= K < N, got '2/2'" in capsys.readouterr().err


def test_teacher_batches_are_padded_to_one_shape_and_cut_back() -> None:
    teacher = load_checkpoint(Path("model/weights/musicnn-msd-vgg.safetensors")).model.eval()
    windows = 0.1 * torch.randn(3, WINDOW, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        scores = teacher_scores(teacher, windows)
        alone = torch.sigmoid(teacher(windows[1:2]))
    assert scores.shape == (3, 50)
    torch.testing.assert_close(scores[1:2], alone, atol=1e-5, rtol=0)


def test_patch_scores_are_the_teachers_own_on_that_window(cache: Path) -> None:
    [valid] = load_tracks(cache, "valid", CHOICES)
    windows = torch.from_numpy(np.load(cache / valid.source_id / "windows.npy") / 32767.0).float()
    teacher = load_checkpoint(Path("model/weights/musicnn-mtt-vgg.safetensors")).model.eval()
    with torch.inference_mode():
        expected = torch.sigmoid(teacher(windows)).numpy()
    np.testing.assert_allclose(valid.teacher[:, :50], expected, atol=1e-3)


def test_the_student_reads_the_cached_log_mel_as_it_reads_the_waveform(cache: Path) -> None:
    [valid] = load_tracks(cache, "valid", CHOICES)
    waveform = torch.from_numpy(np.load(cache / valid.source_id / "windows.npy")[:1] / 32767.0)
    model = build_model("q2l-small", config_for("q2l-small", {"n_classes": 100})).eval()
    assert isinstance(model, Query2Label)
    crop = torch.from_numpy(np.asarray(valid.mel[:WINDOW_FRAMES], dtype=np.float32).T)
    with torch.inference_mode():
        direct = model(waveform.float())
        cached = model.forward_log_mel(crop.unsqueeze(0))
    # The cache's float16 and the STFT padding of the crop's two edge frames differ slightly.
    np.testing.assert_allclose(torch.sigmoid(cached), torch.sigmoid(direct), atol=0.02)


def test_every_epoch_draws_new_crops_and_a_seed_repeats_them(cache: Path) -> None:
    tracks = load_tracks(cache, "train", CHOICES)
    first, again, second = plan_epoch(tracks, 0), plan_epoch(tracks, 0), plan_epoch(tracks, 1)
    assert first.offset.tolist() == again.offset.tolist()
    assert first.offset.tolist() != second.offset.tolist()
    # About one crop per window of audio: 563 and 1251 frames are 2.4 and 5.4 windows.
    assert 6 <= len(first) <= 9
    for k, track in enumerate(tracks):
        offsets = first.offset[first.track == k]
        assert offsets.max(initial=0) <= track.hop * (len(track.targets) - 1)


def test_a_run_resumes_where_it_stopped_and_exports_its_best_epoch(
    cache: Path, tmp_path: Path
) -> None:
    config = DistillConfig(
        cache=str(cache), batch_size=2, warmup_steps=1, max_epochs=2, patience=5,
        checkpoint_every=1, threads=1, bf16=False,
    )  # fmt: skip
    run = Run.create(tmp_path / "run", config)
    run.train(max_seconds=0.0)  # stops after its first checkpoint, as a session's end would
    assert not (tmp_path / "run" / "epochs.csv").exists()
    resumed = Run.resume(tmp_path / "run")
    assert (resumed.state.epoch, resumed.state.step_in_epoch) == (0, 1)
    resumed.train()
    with (tmp_path / "run" / "epochs.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    assert [row["epoch"] for row in curve] == ["1", "2"]
    assert curve[0]["train_tracks"] == "2"
    assert float(curve[0]["valid_bce"]) > 0.0
    exported = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert exported.model.n_classes == 100
    assert exported.metadata.provenance["complete"] is True
    assert exported.metadata.provenance["training_data"]["teachers"]["mtt"] == "MTT_vgg"
    with pytest.raises(SystemExit, match="--resume"):
        Run.create(tmp_path / "run", config)


V1 = Path("model/weights/default-v1.safetensors")


def test_a_warm_start_takes_v1s_network_and_its_mtt_rows_and_leaves_msd_untrained() -> None:
    v1 = load_checkpoint(V1).model.state_dict()
    torch.manual_seed(0)
    student = build_student(DistillConfig())
    fresh_msd_query = student.query_embed.weight[50:].detach().clone()
    untrained = warm_start(student, V1, "mtt")
    assert untrained == [f"msd/{tag.name}" for tag in MSD_TAGS]
    after = student.state_dict()
    torch.testing.assert_close(after["query_embed.weight"][:50], v1["query_embed.weight"])
    torch.testing.assert_close(after["classifier.bias"][0, :50], v1["classifier.bias"][0])
    torch.testing.assert_close(after["query_embed.weight"][50:], fresh_msd_query)
    backbone = [name for name in v1 if name not in LABEL_ROWS]
    assert len(backbone) > 50
    for name in backbone:
        torch.testing.assert_close(after[name], v1[name], msg=name)


def test_a_warm_start_from_another_architecture_is_refused() -> None:
    student = build_student(DistillConfig())
    with pytest.raises(SystemExit, match="not the student's architecture"):
        warm_start(student, Path("model/weights/musicnn-msd-vgg.safetensors"))


def test_a_warm_started_run_begins_its_curve_with_the_start(cache: Path, tmp_path: Path) -> None:
    config = DistillConfig(
        cache=str(cache), batch_size=2, warmup_steps=1, max_epochs=1, patience=5,
        threads=1, bf16=False, init=str(V1),
    )  # fmt: skip
    Run.create(tmp_path / "run", config).train()
    with (tmp_path / "run" / "epochs.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    assert (curve[0]["epoch"], curve[0]["crops"], curve[0]["best"]) == ("0", "0", "1")
    assert [row["epoch"] for row in curve] == ["0", "1"]
    provenance = load_checkpoint(tmp_path / "run" / "model.safetensors").metadata.provenance
    assert provenance["recipe"]["init"] == str(V1)


def test_a_test_split_too_small_to_measure_fails_the_gate_and_keeps_the_default(
    cache: Path, tmp_path: Path
) -> None:
    weights = Path("model/weights")
    default = tmp_path / "default.safetensors"
    shutil.copyfile(weights / "default.safetensors", default)
    candidate = weights / "default-v1.safetensors"
    gate_json = tmp_path / "gate.json"
    args = ["--cache", str(cache), "--candidate", str(candidate), "--student", str(default)]
    status = main(["report", *args, "--v1", str(candidate), "--gate-json", str(gate_json)])
    assert status == 1
    document = json.loads(gate_json.read_text())
    assert document["passed"] is False
    assert document["candidate_sha256"] == hashlib.sha256(candidate.read_bytes()).hexdigest()
    # One 9 s test track: no tag has 5 positive tracks, and no render brings ground truth.
    assert "mtt track agreement vs default" in document["unmeasured"]
    assert "voice ground truth vs default" in document["unmeasured"]
    before = default.read_bytes()
    promote = ["promote", "--candidate", str(candidate), "--gate", str(gate_json)]
    assert (
        main([*promote, "--default", str(default), "--model-card", str(tmp_path / "card.md")]) == 1
    )
    assert default.read_bytes() == before


EXPERIMENTS = Path(__file__).resolve().parents[2] / "training" / "experiments"


@pytest.mark.parametrize(
    "name",
    [
        "default-model-v3.toml",
        "default-model-v3-wide.toml",
        "capacity-small.toml",
        "capacity-wide.toml",
    ],
)
def test_the_v3_configs_build_their_students(name: str) -> None:
    config = DistillConfig.from_toml(EXPERIMENTS / name)
    student = build_student(config)
    # q2l-small holds 4.69 M parameters; the 1.5x-wide variant 10.50 M.
    wide = "wide" in name
    assert student.num_parameters() == pytest.approx(10.50e6 if wide else 4.69e6, rel=0.01)


def test_the_capacity_pair_differs_only_in_the_students_widths() -> None:
    small = DistillConfig.from_toml(EXPERIMENTS / "capacity-small.toml")
    wide = DistillConfig.from_toml(EXPERIMENTS / "capacity-wide.toml")
    assert small.model == {}
    assert wide.model["d_model"] == 384
    assert small.init == wide.init == ""
    assert dataclasses.replace(wide, model={}) == small


def test_the_track_selection_ranks_by_the_mean_of_the_two_track_agreements() -> None:
    result = {"agreement": 0.94, "bce": 0.15, "mtt_track": 0.90, "msd_track": 0.96}
    assert selection_measure(result, "window") == pytest.approx(0.94)
    assert selection_measure(result, "track") == pytest.approx(0.93)
    # Too few positives for a measure: the soft BCE ranks instead (lower is better).
    thin = {"agreement": None, "bce": 0.2, "mtt_track": 0.9, "msd_track": None}
    assert selection_measure(thin, "window") == pytest.approx(-0.2)
    assert selection_measure(thin, "track") == pytest.approx(-0.2)


def test_an_unknown_selection_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"selection = 'auc'.*\['track', 'window'\]"):
        DistillConfig(selection="auc")
