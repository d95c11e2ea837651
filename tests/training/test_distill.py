"""The default-model pipeline: corpus splits, window labels, targets, and a tiny real corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from training.data.distilled import prepare_distilled
from training.distill.cache import WINDOW, _label_matrix, build_cache, read_index
from training.distill.choose import main as choose_teachers
from training.distill.corpus import Source, music_sources, package_split, qualified
from training.distill.data import Split, load_split
from training.distill.teachers import TAG_IDS

PIANO, FLUTE, VIOLIN = (TAG_IDS.index(f"mtt/{t}") for t in ("piano", "flute", "violin"))


def _render(labels: dict[str, int], active: dict[str, list[tuple[float, float]]]) -> Source:
    return Source("r", "render", Path("x.flac"), "bach/x", "train", labels, "PD", active)


def test_held_out_packages_never_train() -> None:
    assert package_split("singularity-music") == "test"
    assert package_split("xmoto-data") == "valid"
    assert package_split("wesnoth-1.16-music") == "train"


def test_instrument_labels_follow_where_the_instrument_sounds() -> None:
    source = _render(
        {"mtt/piano": 1, "mtt/flute": 1, "mtt/violin": 0},
        {"mtt/piano": [(0.0, 20.0)], "mtt/flute": [(8.0, 9.0)]},
    )
    starts = [0, WINDOW, 2 * WINDOW]  # windows at 0, 3.69 and 7.38 s
    labels = _label_matrix(source, starts)
    assert labels[:, PIANO].tolist() == [1, 1, 1]
    assert labels[:, FLUTE].tolist() == [0, 0, 1]  # flute sounds 8-9 s only
    assert labels[:, VIOLIN].tolist() == [0, 0, 0]
    unknown = [TAG_IDS.index(t) for t in ("mtt/rock", "mtt/techno", "mtt/vocal", "msd/rock")]
    assert (labels[:, unknown] == -1).all()


def test_old_manifests_name_mtt_tags_bare() -> None:
    assert qualified("piano") == "mtt/piano"
    assert qualified("msd/instrumental") == "msd/instrumental"


def test_a_recorded_choir_is_known_to_sing(tmp_path: Path) -> None:
    row = {"package": "performous", "local_path": "p/practice.ogg", "content": "choir"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    [source] = music_sources(tmp_path)
    assert source.labels["mtt/choir"] == 1
    assert source.labels["mtt/singing"] == 1
    assert source.labels["mtt/no vocals"] == 0
    assert source.labels["msd/instrumental"] == 0
    assert "mtt/piano" not in source.labels  # whatever accompanies the choir is unknown


def test_ground_truth_replaces_teacher_targets() -> None:
    teacher = np.full((2, 100), 0.4, dtype=np.float32)
    labels = np.full((2, 100), -1, dtype=np.int8)
    labels[0, PIANO] = 1
    labels[1, PIANO] = 0
    split = Split(
        np.zeros((2, 4), np.int16),
        teacher,
        labels,
        np.array(["a", "b"]),
        np.array(["render", "render"]),
        {},
    )
    targets = split.soft_targets()
    assert targets[:, PIANO].tolist() == [1.0, 0.0]
    assert targets[0, FLUTE] == pytest.approx(0.4)
    agreement = split.agreement_labels()
    assert agreement[0, FLUTE] == 1  # teacher 0.4 >= 0.3
    assert agreement[1, PIANO] == 0


def _tone(path: Path, seconds: float, freq: float, noise: float) -> None:
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(int(freq))
    audio = 0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))
    soundfile.write(path, audio.astype(np.float32), rate, format="FLAC")


def test_a_tiny_corpus_becomes_a_soft_target_dataset(tmp_path: Path) -> None:
    music = tmp_path / "music"
    rows = []
    for package, freq, noise in [
        ("wesnoth-1.16-music", 440.0, 0.01),
        ("naev-data", 220.0, 0.2),
        ("xmoto-data", 330.0, 0.05),
        ("singularity-music", 550.0, 0.02),
    ]:
        (music / package).mkdir(parents=True)
        _tone(music / package / "track.flac", 9.0, freq, noise)
        rows.append({"package": package, "local_path": f"{package}/track.flac", "licence": "GPL"})
    (music / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(music_sources(music)) == 4

    cache = tmp_path / "cache"
    build_cache(
        music, tmp_path / "no-renders", cache, threads=1, max_windows=2, teacher_names=["mtt_vgg"]
    )
    assert len(read_index(cache)) == 4
    folder = cache / next(iter(read_index(cache)))
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.npy",
        "teacher-mtt_vgg.npy",
        "windows.npy",
    ]
    # A second run adds the missing teachers to the cached windows, and only them.
    vgg_scores = np.load(folder / "teacher-mtt_vgg.npy")
    build_cache(music, tmp_path / "no-renders", cache, threads=1, max_windows=2)
    assert len(list(folder.glob("teacher-*.npy"))) == 4
    np.testing.assert_array_equal(np.load(folder / "teacher-mtt_vgg.npy"), vgg_scores)
    assert np.load(folder / "teacher-msd_musicnn.npy").shape == (2, 50)
    assert np.load(folder / "labels.npy").shape == (2, 100)

    # No ground truth in this corpus: no candidate can be scored, each single teacher stands.
    assert choose_teachers(["--cache", str(cache)]) == 0
    choice = json.loads((cache / "teachers.json").read_text())
    assert choice["choices"] == {"mtt": "mtt_musicnn", "msd": "msd_musicnn"}
    train = load_split(cache, "train")
    assert len(train) == 4  # two sources, two windows each
    assert train.teacher.shape == (4, 100)

    data = prepare_distilled(cache, tmp_path / "soft", soft=True)
    assert data.n_classes == 100
    assert data.info["clips"] == {"train": 4, "valid": 2, "test": 2}
    assert data.targets is not None
    train_rows = data.split_indices("train")
    # No render: the soft targets are the teachers' scores, in the cache's source order.
    assert np.allclose(data.targets[train_rows], train.teacher)
    assert "MTT_musicnn" in data.info["source"]["teachers"]["mtt"]
