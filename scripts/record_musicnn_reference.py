"""Record reference outputs of the ORIGINAL musicnn TensorFlow models (run once in a throwaway TF
venv, see below).

Why: the project runs the four checkpoints of the ``musicnn`` wheel (MTT_musicnn, MTT_vgg,
MSD_musicnn, MSD_vgg) as distillation teachers through its own PyTorch ports, without
TensorFlow. This script produces the ground truth those ports are tested against:
``tests/fixtures/musicnn_reference.npz``. The audio is synthesised here from a fixed seed (no
third-party recordings, so nothing to license) and stored in the fixture, so the test never needs
to re-synthesise it. With ``--audio FILE...`` it records the same arrays for real recordings
instead, into a file kept out of git (``python -m training.teacher.parity`` compares them).

It is NOT part of the project's environment (it needs TensorFlow, 2 GB). To re-record, in a
throwaway virtual environment outside the repository (TFENV=its folder)::

    python3 -m venv "$TFENV"
    "$TFENV"/bin/pip install tensorflow-cpu==2.21.0 librosa
    "$TFENV"/bin/pip install --no-deps tf-keras==2.21.0 musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 "$TFENV"/bin/python scripts/record_musicnn_reference.py

Deviation from musicnn, on purpose: ``musicnn.extractor.batch_data`` casts the mel spectrogram to
float16 before ``log10(10000 * x + 1)``, which overflows to ``inf`` for any mel power above 6.55
(most real music). Here the log-mel is computed in float32 and fed straight into the original
graphs (``musicnn.models.define_model`` plus the shipped checkpoints), which is how the project
uses the teachers. The clips are made loud enough to be in that overflow regime, and the fixture's
``provenance`` records how many patches the float16 path would have broken.

Two input lengths are recorded, because the project feeds the teachers the student's
59,049-sample windows (231 frames), not only musicnn's 3-s patches (187 frames):

* patches: non-overlapping 187-frame patches from frame 0, as musicnn's extractor cuts them;
* windows: 231-frame windows from frame 0 of each clip (and every 231 frames on for ``--audio``).
  The musicnn graphs are built for 231 frames (they pool over time, so TF takes any length).
  TF's vgg graph only takes 187 frames; a window's vgg score is defined (``model/musicnn_vgg.py``)
  as the mean of the sigmoid over 187-frame crops at frames 0 and 44, and those crops are run
  through the TF graph here.

Fixture contents (all plain arrays, loadable with ``allow_pickle=False``; M is a model name):
    audio                   float32 [clips, samples]  16 kHz mono clips (synthetic only)
    clip_logmel             float32 [clips, F, 96]    whole clips, time × mel, float32 log-mel
    patch_clip              int64 [P]                 clip of each 187-frame patch
    patch_frame             int64 [P]                 first frame of each patch in its clip
    window_clip             int64 [W]                 clip of each 231-frame window
    window_frame            int64 [W]                 first frame of each window in its clip
    M_logits                float32 [P, 50]           pre-sigmoid outputs on the patches
    M_probabilities         float32 [P, 50]           sigmoid outputs on the patches
    M_window_probabilities  float32 [W, 50]           on the windows (vgg: mean over crops)
    M_labels                str [50]                  tag names in output order, as musicnn's
    provenance              str [k]                   versions and settings used
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SR = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
WINDOW_FRAMES = 231  # 1 + 59_049 // 256: the student's window, which the teachers label
VGG_CROPS = (0, WINDOW_FRAMES - PATCH_FRAMES)  # model/musicnn_vgg.py's crops of a window
CLIP_SECONDS = 7.0
SEED = 20_261_124
TF_BATCH = 32
MODELS = ("MTT_musicnn", "MTT_vgg", "MSD_musicnn", "MSD_vgg")
FLOAT16_LIMIT = 6.55  # above this mel power, 10000 * x overflows float16 (max 65504)

FloatArray = npt.NDArray[np.float32]

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "musicnn_reference.npz"


def _envelope(n: int, attack: float, decay: float) -> npt.NDArray[np.float64]:
    """Linear attack then exponential decay, in samples; gives each note/hit a natural shape."""
    t = np.arange(n) / SR
    return np.minimum(t / attack, 1.0) * np.exp(-np.maximum(t - attack, 0.0) / decay)


def _normalise(x: npt.NDArray[np.float64], peak: float) -> FloatArray:
    scaled: npt.NDArray[np.float64] = x * (peak / np.max(np.abs(x)))
    return scaled.astype(np.float32)


def chord_clip(rng: np.random.Generator, n: int) -> FloatArray:
    """I-IV-V-I progression of harmonic tones (1/k partials, slight detune), 1.75 s per chord."""
    chords_hz = [
        (220.00, 277.18, 329.63),
        (293.66, 369.99, 440.00),
        (329.63, 415.30, 493.88),
        (220.00, 277.18, 329.63),
    ]
    out = np.zeros(n)
    seg = n // len(chords_hz)
    t = np.arange(seg) / SR
    env = _envelope(seg, attack=0.05, decay=1.2)
    for i, chord in enumerate(chords_hz):
        tone = np.zeros(seg)
        for f0 in chord:
            detune = 1.0 + rng.uniform(-0.002, 0.002)
            for k in range(1, 9):
                if k * f0 < SR / 2:
                    phase = rng.uniform(0, 2 * np.pi)
                    tone += np.sin(2 * np.pi * k * f0 * detune * t + phase) / k
        out[i * seg : (i + 1) * seg] = tone * env
    return _normalise(out, 0.8)


def drum_clip(rng: np.random.Generator, n: int) -> FloatArray:
    """120 bpm pattern: kick (pitch-dropping sine + thump) on beats, snare noise on 2 and 4,
    hi-hat (differentiated noise) on eighths, over a pulsing 55/82 Hz bass line."""
    out = np.zeros(n)
    beat = SR // 2
    kick_len, snare_len, hat_len = int(0.25 * SR), int(0.2 * SR), int(0.06 * SR)
    tk = np.arange(kick_len) / SR
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk / 0.03)) * 0.03)) * _envelope(
        kick_len, 0.002, 0.08
    )
    for b, start in enumerate(range(0, n, beat)):
        stop = min(start + kick_len, n)
        out[start:stop] += 1.0 * kick[: stop - start]
        if b % 2 == 1:
            snare = rng.standard_normal(snare_len) * _envelope(snare_len, 0.001, 0.05)
            stop = min(start + snare_len, n)
            out[start:stop] += 0.5 * snare[: stop - start]
        for half in (0, beat // 2):
            h0 = start + half
            hat = np.diff(rng.standard_normal(hat_len + 1)) * _envelope(hat_len, 0.001, 0.015)
            stop = min(h0 + hat_len, n)
            if h0 < n:
                out[h0:stop] += 0.25 * hat[: stop - h0]
    t = np.arange(n) / SR
    bass_f = np.where((t // 2.0) % 2 == 0, 55.0, 82.41)
    bass_env = 0.6 + 0.4 * np.cos(2 * np.pi * 2.0 * t) ** 2
    out += 0.5 * np.sin(2 * np.pi * np.cumsum(bass_f) / SR) * bass_env
    return _normalise(out, 0.9)


def sweep_clip(rng: np.random.Generator, n: int) -> FloatArray:
    """Exponential sine sweep 80 Hz -> 7 kHz with a tremolo, plus white noise 20 dB down."""
    t = np.arange(n) / SR
    duration = n / SR
    f0, f1 = 80.0, 7000.0
    k = np.log(f1 / f0) / duration
    sweep = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    tremolo = 0.75 + 0.25 * np.sin(2 * np.pi * 3.0 * t)
    noise = 0.1 * rng.standard_normal(n)
    return _normalise(sweep * tremolo + noise, 0.7)


def make_clips(seed: int = SEED) -> FloatArray:
    rng = np.random.default_rng(seed)
    n = int(CLIP_SECONDS * SR)
    return np.stack([chord_clip(rng, n), drum_clip(rng, n), sweep_clip(rng, n)])


def musicnn_mel(audio: FloatArray) -> FloatArray:
    """musicnn's mel power spectrogram, time × mel (``extractor.batch_data`` before its cast)."""
    import librosa

    mel: FloatArray = librosa.feature.melspectrogram(
        y=audio, sr=SR, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS
    ).T
    return mel


def float32_logmel(mel: FloatArray) -> FloatArray:
    """``log10(10000 x + 1)`` in float32: musicnn's formula without the float16 overflow."""
    assert mel.dtype == np.float32
    out: FloatArray = np.log10(np.float32(10_000) * mel + np.float32(1))
    assert out.dtype == np.float32
    return out


def cut_patches(rep: FloatArray, frames: int = PATCH_FRAMES) -> tuple[list[FloatArray], list[int]]:
    """Non-overlapping patches starting at frame 0, full patches only (as musicnn)."""
    starts = list(range(0, rep.shape[0] - frames + 1, frames))
    return [rep[s : s + frames] for s in starts], starts


def run_tensorflow(model: str, inputs: FloatArray) -> tuple[FloatArray, FloatArray, list[str]]:
    """Build musicnn's own graph for `model` exactly as ``musicnn.extractor.extractor`` does (but
    for the input's number of frames), restore the shipped checkpoint, and return
    (logits, sigmoid probabilities, labels)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from musicnn import configuration, models

    # musicnn.models uses tf.compat.v1.layers, which warns once per layer; the noise hides output.
    warnings.filterwarnings("ignore", message=r"`tf\.layers\.")
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    labels = list(configuration.MTT_LABELS if model.startswith("MTT") else configuration.MSD_LABELS)
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, inputs.shape[1], N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_features = models.define_model(x, is_training, model, len(labels))
        normalized_y = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        # Same prefix as musicnn.extractor: the checkpoint directory plus "/".
        prefix = os.path.join(os.path.dirname(models.__file__), model) + "/"
        tf.compat.v1.train.Saver().restore(sess, prefix)
        # In batches, so whole tracks fit in memory (inference does not depend on the batching).
        outputs = [
            sess.run([y, normalized_y], feed_dict={x: inputs[i : i + TF_BATCH], is_training: False})
            for i in range(0, len(inputs), TF_BATCH)
        ]
    logits = np.concatenate([np.asarray(out[0], np.float32) for out in outputs])
    probs = np.concatenate([np.asarray(out[1], np.float32) for out in outputs])
    return logits, probs, labels


def window_probabilities(model: str, windows: FloatArray) -> FloatArray:
    """TF's scores of 231-frame windows: musicnn reads them whole; vgg, whose graph only takes
    187 frames, scores the mean of the sigmoid over the crops of ``VGG_CROPS``."""
    if "vgg" not in model:
        return run_tensorflow(model, windows)[1]
    crops = np.stack([windows[:, s : s + PATCH_FRAMES] for s in VGG_CROPS], axis=1)
    probs = run_tensorflow(model, crops.reshape(-1, PATCH_FRAMES, N_MELS))[1]
    mean: FloatArray = probs.reshape(len(windows), len(VGG_CROPS), -1).mean(axis=1)
    return mean.astype(np.float32)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load(path: Path) -> FloatArray:
    import librosa

    audio, _ = librosa.load(path, sr=SR)  # as musicnn.extractor.batch_data
    return np.asarray(audio, np.float32)


def record(out: Path, audio_files: list[Path] | None = None) -> dict[str, Any]:
    clips = [_load(p) for p in audio_files] if audio_files else list(make_clips())
    clip_logmel: list[FloatArray] = []
    patches: list[FloatArray] = []
    windows: list[FloatArray] = []
    patch_clip: list[int] = []
    patch_frame: list[int] = []
    window_clip: list[int] = []
    window_frame: list[int] = []
    float16_broken = 0
    max_mel = 0.0
    for clip_index, clip in enumerate(clips):
        mel = musicnn_mel(clip)
        max_mel = max(max_mel, float(mel.max()))
        rep = float32_logmel(mel)
        clip_logmel.append(rep)
        clip_patches, starts = cut_patches(rep)
        mel_patches, _ = cut_patches(mel)
        for patch, mel_patch, start in zip(clip_patches, mel_patches, starts, strict=True):
            patches.append(patch)
            patch_clip.append(clip_index)
            patch_frame.append(start)
            with np.errstate(over="ignore"):
                as_shipped = np.log10(10000 * mel_patch.astype(np.float16) + 1)
            float16_broken += int(not np.all(np.isfinite(as_shipped)))
        clip_windows, starts = cut_patches(rep, WINDOW_FRAMES)
        # The synthetic fixture keeps one window per clip (its size limit); real audio all.
        keep = len(clip_windows) if audio_files else 1
        windows.extend(clip_windows[:keep])
        window_clip.extend([clip_index] * len(clip_windows[:keep]))
        window_frame.extend(starts[:keep])
    logmel = np.stack(patches)
    if max_mel <= FLOAT16_LIMIT:
        raise RuntimeError(f"clips too quiet: max mel power {max_mel:.2f} <= {FLOAT16_LIMIT}")
    arrays: dict[str, Any] = {}
    if not audio_files:
        arrays["audio"] = np.stack(clips)
    else:
        # Real tracks differ in length; pad to one array with NaN, which no test reads.
        longest = max(r.shape[0] for r in clip_logmel)
        clip_logmel = [
            np.pad(r, ((0, longest - r.shape[0]), (0, 0)), constant_values=np.nan)
            for r in clip_logmel
        ]
    arrays["clip_logmel"] = np.stack(clip_logmel).astype(np.float32)
    arrays["patch_clip"] = np.asarray(patch_clip, np.int64)
    arrays["patch_frame"] = np.asarray(patch_frame, np.int64)
    arrays["window_clip"] = np.asarray(window_clip, np.int64)
    arrays["window_frame"] = np.asarray(window_frame, np.int64)
    for model in MODELS:
        logits, probabilities, labels = run_tensorflow(model, logmel)
        arrays[f"{model}_logits"] = logits
        arrays[f"{model}_probabilities"] = probabilities
        arrays[f"{model}_window_probabilities"] = window_probabilities(model, np.stack(windows))
        arrays[f"{model}_labels"] = np.asarray(labels, dtype=np.str_)
    if audio_files:
        source = f"audio: {len(clips)} files: " + ", ".join(p.name for p in audio_files)
    else:
        source = (
            f"audio: numpy default_rng({SEED}), {len(clips)} clips of {CLIP_SECONDS} s at {SR} Hz"
        )
    arrays["provenance"] = np.asarray(
        [
            f"generated by scripts/record_musicnn_reference.py, models {', '.join(MODELS)}",
            f"musicnn=={_version('musicnn')}",
            f"tensorflow-cpu=={_version('tensorflow-cpu')}",
            f"tf-keras=={_version('tf-keras')}",
            f"librosa=={_version('librosa')}",
            f"numpy=={np.__version__}",
            f"python=={platform.python_version()}",
            source,
            f"mel: librosa.feature.melspectrogram(sr={SR}, n_fft={N_FFT}, hop_length={HOP}, "
            f"n_mels={N_MELS}).T; log10(10000*x+1) in float32 (musicnn's float16 cast removed)",
            f"patches: non-overlapping {PATCH_FRAMES} frames from frame 0, full patches only",
            f"windows: {WINDOW_FRAMES} frames; vgg scored as the mean sigmoid of the "
            f"{PATCH_FRAMES}-frame crops at frames {VGG_CROPS}",
            f"max mel power {max_mel:.1f}; musicnn's float16 path would give inf in "
            f"{float16_broken} of {len(logmel)} patches",
        ],
        dtype=np.str_,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture path to write")
    parser.add_argument(
        "--audio",
        type=Path,
        nargs="+",
        help="real recordings to record instead of the synthetic clips (keep --out out of git)",
    )
    args = parser.parse_args()
    if args.audio and args.out.resolve() == DEFAULT_OUT:
        parser.error("--audio needs an --out outside tests/fixtures: recordings are not committed")
    arrays = record(args.out, args.audio)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    for line in arrays["provenance"]:
        print("  " + str(line))
    for model in MODELS:
        labels, probs = arrays[f"{model}_labels"], arrays[f"{model}_probabilities"]
        for p, clip in enumerate(arrays["patch_clip"]):
            top = np.argsort(-probs[p])[:4]
            tags = ", ".join(f"{labels[i]} {probs[p, i]:.2f}" for i in top)
            print(f"  {model} patch {p} (clip {clip}): {tags}")


if __name__ == "__main__":
    main()
