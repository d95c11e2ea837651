"""The compile cache: keyed by everything a graph depends on; a stale, corrupt or mismatched
entry is never loaded. (Real builds: tests/model/test_runtime.py, test_quantize.py, the service's
first start and `tagger compile`.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from model.compiled import (
    ArtifactKey,
    CompileCache,
    CompileError,
    code_digest,
    cpu_isa,
    model_digest,
)
from model.zoo import build_model

CPU = torch.device("cpu")
KEY = ArtifactKey(
    model_sha256="a" * 64,
    code_sha256="b" * 64,
    torch_version="2.14.1",
    device="cpu x86_64 AVX512 avx2 avx512f avx512_bf16",
    precision="bf16",
    channels_last=True,
    embeddings=True,
    shapes=(1, 2, 4, 8),
)


def fake_build(folder: Path) -> dict[str, object]:
    (folder / "batch-any.pt2").write_bytes(b"not really a package")
    return {"parity_max_abs_diff": 0.0}


@pytest.mark.parametrize(
    "change",
    [
        {"model_sha256": "c" * 64},
        {"code_sha256": "d" * 64},
        {"torch_version": "2.15.0"},
        {"device": "cpu x86_64 AVX2 avx2"},
        {"precision": "fp32"},
        {"channels_last": False},
        {"embeddings": False},
        {"shapes": (1, 2)},
        {"int8_sha256": "e" * 64},
    ],
)
def test_every_field_of_the_key_gives_another_entry(change: dict[str, object]) -> None:
    assert dataclasses.replace(KEY, **change).digest != KEY.digest  # type: ignore[arg-type]


def test_cpu_isa_reads_the_flags_that_decide_the_kernels() -> None:
    cpuinfo = "processor: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
    assert cpu_isa(cpuinfo) == ("avx2", "avx512f", "avx512_bf16", "avx512_vnni")
    assert cpu_isa("flags: fpu sse sse2 avx avx2 fma\n") == ("avx2",)


def test_model_digest_follows_the_weights_not_their_memory_format() -> None:
    model = build_model("musicnn")
    digest = model_digest(model)
    assert digest == model_digest(model.to(memory_format=torch.channels_last))
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert model_digest(model) != digest


def test_code_digest_covers_the_model_sources_as_this_process_loaded_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "net.py").write_text("x = 1\n")
    (tmp_path / "b" / "net.py").write_text("x = 2\n")
    first = code_digest(tmp_path / "a")
    assert code_digest(tmp_path / "b") != first
    # Read once per process: files changed under a running service do not change its key.
    (tmp_path / "a" / "net.py").write_text("x = 3\n")
    assert code_digest(tmp_path / "a") == first


def test_a_stored_entry_is_complete_and_checked(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    assert cache.problem(KEY) == "missing"
    entry = cache.store(KEY, fake_build)
    assert entry == tmp_path / KEY.digest
    assert cache.problem(KEY) is None
    manifest = json.loads((entry / "manifest.json").read_text())
    assert list(manifest["packages"]) == ["batch-any.pt2"]
    assert json.loads((entry / "key.json").read_text())["precision"] == "bf16"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_corrupt_package_is_never_loaded(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    entry = cache.store(KEY, fake_build)
    (entry / "batch-any.pt2").write_bytes(b"not really a package, changed")
    assert "does not match its manifest" in str(cache.problem(KEY))
    with pytest.raises(CompileError, match="corrupt"):
        cache.load(KEY)


def test_an_entry_for_another_key_or_without_its_files_is_refused(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    entry = cache.store(KEY, fake_build)
    (entry / "key.json").write_text(json.dumps({**KEY.to_dict(), "torch_version": "2.0"}))
    assert cache.problem(KEY) == "built for another key"
    entry = cache.store(KEY, fake_build)
    (entry / "batch-any.pt2").unlink()
    assert cache.problem(KEY) == "batch-any.pt2 is missing"
    (entry / "manifest.json").write_text("{")
    assert str(cache.problem(KEY)).startswith("unreadable")


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def failing(folder: Path) -> dict[str, object]:
        (folder / "batch-any.pt2").write_bytes(b"half")
        raise CompileError("the compiler crashed")

    cache = CompileCache(tmp_path)
    with pytest.raises(CompileError, match="crashed"):
        cache.store(KEY, failing)
    assert list(tmp_path.iterdir()) == []
