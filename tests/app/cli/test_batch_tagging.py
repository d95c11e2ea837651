"""The batch tagger behind `tagger tag`: windows of several files share batches, results come
in input order, and a bad file or a failing batch fails only the files it concerns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from app.cli.batch_tagging import BatchTagger, collect_files
from app.pipeline.defaults import InferFn
from model.checkpoint import load_checkpoint
from model.runtime import Runtime, RuntimeOptions
from tests.app.audio import encode


@pytest.fixture(scope="module")
def runtime(checkpoint: Path) -> Runtime:
    options = RuntimeOptions(precision="fp32", compile="off")
    return Runtime(load_checkpoint(checkpoint).model, torch.device("cpu"), options)


class Counting:
    """The real model call, recording the size of every batch."""

    def __init__(self, infer: InferFn) -> None:
        self.infer = infer
        self.calls: list[int] = []

    def __call__(self, windows: Tensor) -> Tensor:
        self.calls.append(int(windows.shape[0]))
        return self.infer(windows)


def tagger(infer: InferFn, runtime: Runtime, batch_windows: int) -> BatchTagger:
    audio = runtime.model.audio
    return BatchTagger(
        infer,
        window_samples=audio.window_samples,
        sample_rate=audio.sample_rate,
        batch_windows=batch_windows,
    )


def clips(folder: Path, seconds: dict[str, float]) -> list[str]:
    paths = []
    for name, length in seconds.items():
        path = folder / name
        path.write_bytes(encode("wav", length))
        paths.append(str(path))
    return paths


def test_windows_of_several_files_share_batches_and_results_keep_input_order(
    tmp_path: Path, runtime: Runtime
) -> None:
    # 16 kHz, windows of 59,049 samples (3.69 s): 2 s is 1 window, 8 s is 3, 5 s is 2.
    files = clips(tmp_path, {"one.wav": 2.0, "three.wav": 8.0, "two.wav": 5.0})
    counting = Counting(runtime)
    batch = tagger(counting, runtime, batch_windows=4)
    results = list(batch.tag(files))
    assert counting.calls == [4, 2]
    assert batch.batches == 2
    assert [r.path for r in results] == files
    assert [int(r.window_scores.shape[0]) for r in results if r.window_scores is not None] == [
        1,
        3,
        2,
    ]
    assert all(r.ok for r in results)
    assert results[1].duration_seconds == 8.0
    # Starts 0, 59049 and 68951 (the last window ends with the track's 128,000 samples).
    assert results[1].window_times == [
        (0.0, 3.6905625),
        (3.6905625, 7.381125),
        (4.3094375, 8.0),
    ]
    # The track scores are the mean of the file's own windows, whoever shared its batches.
    alone = next(iter(tagger(runtime, runtime, batch_windows=8).tag([files[1]])))
    assert alone.track_scores is not None
    assert results[1].track_scores is not None
    torch.testing.assert_close(results[1].track_scores, alone.track_scores, atol=1e-5, rtol=0)


def test_a_file_that_is_not_audio_fails_and_the_run_goes_on(
    tmp_path: Path, runtime: Runtime
) -> None:
    files = clips(tmp_path, {"a.wav": 2.0})
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all", encoding="utf-8")
    results = list(tagger(runtime, runtime, batch_windows=8).tag([str(text), *files]))
    assert [r.ok for r in results] == [False, True]
    assert results[0].error is not None
    assert results[0].error.startswith("not audio in a supported format")


def test_a_failing_batch_fails_the_files_in_it_only(tmp_path: Path, runtime: Runtime) -> None:
    files = clips(tmp_path, {"a.wav": 2.0, "b.wav": 2.0, "c.wav": 2.0})

    def faulty(windows: Tensor) -> Tensor:
        if len(calls) == 0:
            calls.append(int(windows.shape[0]))
            raise RuntimeError("injected fault")
        calls.append(int(windows.shape[0]))
        return runtime(windows)

    calls: list[int] = []
    results = list(tagger(faulty, runtime, batch_windows=2).tag(files))
    assert calls == [2, 1]
    assert [r.ok for r in results] == [False, False, True]
    assert results[0].error == (
        "the model failed on a batch holding this file: RuntimeError('injected fault')"
    )


def test_folders_contribute_their_audio_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.mp3", "a.flac", "notes.txt", ".hidden.mp3", "sub/c.ogg"):
        (tmp_path / name).write_bytes(b"x")
    listing = collect_files([tmp_path, tmp_path / "missing.mp3"], recursive=False)
    assert listing.files == [str(tmp_path / "a.flac"), str(tmp_path / "b.mp3")]
    assert listing.unusable == [(str(tmp_path / "missing.mp3"), "no such file or folder")]
    assert listing.ignored == 2
    assert listing.subfolders_not_searched == 1
    deep = collect_files([tmp_path], recursive=True)
    assert deep.files == [
        str(tmp_path / "a.flac"),
        str(tmp_path / "b.mp3"),
        str(tmp_path / "sub" / "c.ogg"),
    ]
