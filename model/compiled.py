"""Compiled graphs, built ahead of time (in a child process where something else is running)
and kept in a cache that is keyed by everything the graph depends on.

Why not `torch.compile` in the serving process: dynamo traces under autocast while the
batcher's thread runs eager batches under autocast, and PyTorch takes its autocast cast cache
and the GIL in opposite orders in those two paths; the whole process can freeze for good
(docs/reliability.md, "first start"). A serving process therefore never traces or compiles: it
loads AOTInductor packages (`torch._inductor.aoti_load_package`: a shared library and the
weights, loaded in well under a second) that were built by `python -m model.compiled` in a
child process, by `tagger compile` ahead of time, or by the CLI before it tags anything.

An artifact is one directory in the cache:

    <cache>/<key digest>/key.json        the `ArtifactKey` it was built for
                        /manifest.json   each package's sha256, the build time and parity check
                        /batch-any.pt2   one package with a dynamic batch dimension (float)
                        /batch-<N>.pt2   or one package per batch shape (int8: oneDNN's int8
                                         weight prepacking needs static shapes)

It is written into a temporary directory and renamed into place, so a reader never sees half
an artifact. An entry whose key, manifest or package bytes do not match is removed and rebuilt,
never loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model.base import TaggingModel
from model.checkpoint import file_sha256

logger = logging.getLogger("model.compiled")

MODEL_CODE = Path(__file__).resolve().parent
"""The graphs are functions of the model code too: its sources are part of the key."""

_ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
_FORMAT = 1
"""Bumped when the layout of an artifact directory changes."""


class CompileError(Exception):
    """An artifact could not be built, or a build process failed; the message says why."""


def model_digest(model: TaggingModel) -> str:
    """sha256 of the network's class, configuration and every tensor of its state."""
    digest = hashlib.sha256()
    digest.update(type(model).__qualname__.encode())
    digest.update(repr(getattr(model, "config", None)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu", memory_format=torch.contiguous_format).contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@functools.cache
def code_digest(root: Path = MODEL_CODE) -> str:
    """sha256 of the model package's Python sources, read once per process: the code this
    process runs, even if the files change under it (an upgrade in place)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cpu_isa(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The instruction-set flags of this CPU that decide which kernels inductor generates."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(flag for flag in _ISA_FLAGS if flag in flags)


def device_signature(device: torch.device) -> str:
    """What the graphs are compiled for: a GPU's compute capability and name, or a CPU's
    architecture, torch's vector capability and its ISA flags."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda sm_{major}{minor} {torch.cuda.get_device_name(device)}"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"cpu {platform.machine()} {capability} {' '.join(cpu_isa())}".strip()


def default_cache_dir() -> Path:
    """`$TAGGER_COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME/music-tagger/compiled`, else
    `~/.cache/music-tagger/compiled`."""
    explicit = os.environ.get("TAGGER_COMPILE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "music-tagger" / "compiled"


@dataclass(frozen=True)
class ArtifactKey:
    """Everything a compiled graph depends on; any change means another artifact.

    Attributes:
        model_sha256: `model_digest` of the network (weights and configuration).
        code_sha256: `code_digest` of the model package's sources.
        torch_version: The torch that compiled it (packages are not portable across versions).
        device: `device_signature` of the device it runs on.
        precision: fp32, bf16, fp16 or int8.
        channels_last: Channels-last convolutions.
        embeddings: Rows of scores and embedding rather than scores only.
        shapes: The batch sizes it is called with (a float package covers 1 to the largest).
        int8_sha256: The int8 recipe's digest (int8 only, else "").
    """

    model_sha256: str
    code_sha256: str
    torch_version: str
    device: str
    precision: str
    channels_last: bool
    embeddings: bool
    shapes: tuple[int, ...]
    int8_sha256: str = ""

    @property
    def digest(self) -> str:
        document = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(document).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shapes": list(self.shapes), "format": _FORMAT}

    def describe(self) -> str:
        return (
            f"{self.precision}{', channels-last' if self.channels_last else ''}, batch shapes "
            f"{list(self.shapes)} on {self.device}, torch {self.torch_version}"
        )


@dataclass(frozen=True)
class Artifact:
    """A compiled artifact loaded from the cache and ready to call.

    Attributes:
        key: What it was built for.
        path: Its directory in the cache.
        origin: "built" (by this process or a child it waited for) or "cache" (found there).
        build_seconds: How long building it took, when it was built.
    """

    key: ArtifactKey
    path: Path
    origin: str
    build_seconds: float | None
    runners: dict[int, Callable[[Tensor], Tensor]]

    def __call__(self, windows: Tensor) -> Tensor:
        """(N, window_samples) -> (N, row width), N one of the key's shapes."""
        runner = self.runners.get(windows.shape[0]) or self.runners[0]
        output = runner(windows)
        return output[0] if isinstance(output, list | tuple) else output

    def describe(self) -> str:
        origin = "built now" if self.origin == "built" else "from the cache, built"
        took = f" in {self.build_seconds:.0f} s" if self.build_seconds is not None else ""
        return f"{self.key.describe()} ({origin}{took}; entry {self.path.name})"


# ----- the cache -------------------------------------------------------------------------


class CompileCache:
    """A folder of artifacts, one directory per `ArtifactKey` digest."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, key: ArtifactKey) -> Path:
        return self.root / key.digest

    def problem(self, key: ArtifactKey) -> str | None:
        """Why the entry for `key` cannot be used ("missing", a mismatch, corruption), or None."""
        entry = self.entry(key)
        try:
            stored_key = json.loads((entry / "key.json").read_text())
            manifest = json.loads((entry / "manifest.json").read_text())
        except FileNotFoundError:
            return "missing"
        except (OSError, ValueError) as error:
            return f"unreadable ({type(error).__name__}: {error})"
        if stored_key != key.to_dict():
            return "built for another key"
        packages = manifest.get("packages")
        if not isinstance(packages, dict) or not packages:
            return "its manifest lists no packages"
        for name, sha256 in packages.items():
            path = entry / name
            if not path.is_file():
                return f"{name} is missing"
            if file_sha256(path) != sha256:
                return f"{name} does not match its manifest (corrupt or modified)"
        return None

    def load(self, key: ArtifactKey, *, origin: str = "cache") -> Artifact:
        """Load a valid entry; CompileError if it is not (see `problem`)."""
        problem = self.problem(key)
        if problem is not None:
            raise CompileError(f"no usable compiled artifact for {key.describe()}: {problem}")
        entry = self.entry(key)
        manifest = json.loads((entry / "manifest.json").read_text())
        runners: dict[int, Callable[[Tensor], Tensor]] = {}
        for name in manifest["packages"]:
            batch = name.removeprefix("batch-").removesuffix(".pt2")
            runner = torch._inductor.aoti_load_package(str(entry / name))
            runners[0 if batch == "any" else int(batch)] = runner
        return Artifact(key, entry, origin, manifest.get("build_seconds"), runners)

    def discard(self, key: ArtifactKey) -> None:
        shutil.rmtree(self.entry(key), ignore_errors=True)

    def store(self, key: ArtifactKey, build: Callable[[Path], dict[str, Any]]) -> Path:
        """Run `build(folder)`, which writes the packages into `folder` and returns extra
        manifest fields, then publish the folder as the entry for `key` in one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{key.digest}-", dir=self.root))
        try:
            extra = build(staging)
            packages = {
                path.name: file_sha256(path) for path in sorted(staging.glob("batch-*.pt2"))
            }
            if not packages:
                raise CompileError("the build wrote no package")
            manifest = {
                "packages": packages,
                "build_seconds": round(time.monotonic() - started, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **extra,
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
            (staging / "key.json").write_text(json.dumps(key.to_dict(), indent=1))
            entry = self.entry(key)
            shutil.rmtree(entry, ignore_errors=True)  # a stale or corrupt one
            try:
                staging.rename(entry)
            except OSError:
                if self.problem(key) is not None:  # not another builder's identical entry
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.entry(key)


# ----- building --------------------------------------------------------------------------


def build_packages(
    forward: nn.Module,
    key: ArtifactKey,
    window_samples: int,
    folder: Path,
    *,
    device: torch.device,
    tolerance: float,
) -> dict[str, Any]:
    """Export `forward` ((N, window_samples) -> rows) and compile it into AOTInductor packages
    in `folder`, then check them against `forward` itself; returns the manifest's check fields.

    Raises:
        CompileError: the packages disagree with `forward` by more than `tolerance`.
    """
    generator = torch.Generator().manual_seed(0)
    largest = max(key.shapes)
    static = key.precision == "int8" or largest < 2
    plans: list[tuple[str, int, dict[int, Any] | None]]
    if static:
        plans = [(f"batch-{batch}.pt2", batch, None) for batch in key.shapes]
    else:
        # The example has 2 rows: export specialises a dimension whose example size is 1.
        batch_dim = torch.export.Dim("batch", min=1, max=largest)
        plans = [("batch-any.pt2", min(2, largest), {0: batch_dim})]
    # Freezing (constant weights: batch norms folded into the convolutions, weights prepacked
    # for oneDNN) is what lowers int8 convolutions to oneDNN's int8 kernels, so int8 needs it;
    # without layout optimisation, since with it torch 2.14 fails to compile a strided view in
    # the decoder. Float graphs are built without it: in torch 2.14 a frozen bf16 graph fails
    # at run time in a fused convolution ("Unsupported datatype for add_relu: BFloat16"), and
    # a frozen fp32 graph exported from channels-last weights computed wrong scores (off by
    # 0.35); both were caught by the parity check below.
    int8 = key.precision == "int8"
    configs: dict[str, Any] = {"freezing": True, "layout_optimization": False} if int8 else {}
    for name, batch, dynamic in plans:
        example = 0.1 * torch.randn(batch, window_samples, generator=generator)
        example = example.to(device)
        with torch.no_grad():
            exported = torch.export.export(
                forward, (example,), dynamic_shapes=(dynamic,) if dynamic else None
            )
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(folder / name), inductor_configs=configs
            )
    # Parity: every shape, through the package that will serve it.
    worst = 0.0
    with torch.inference_mode():
        for batch in key.shapes:
            windows = (0.1 * torch.randn(batch, window_samples, generator=generator)).to(device)
            name = f"batch-{batch}.pt2" if static else "batch-any.pt2"
            runner = torch._inductor.aoti_load_package(str(folder / name))
            got = runner(windows)
            got = got[0] if isinstance(got, list | tuple) else got
            worst = max(worst, (got.float() - forward(windows).float()).abs().max().item())
    if not worst <= tolerance:
        raise CompileError(
            f"the compiled graph disagrees with eager execution by {worst:.3g} "
            f"(more than {tolerance}); not caching it"
        )
    return {"parity_max_abs_diff": worst, "parity_tolerance": tolerance}


def build_command(
    checkpoint: Path,
    key: ArtifactKey,
    cache: CompileCache,
    device: torch.device,
    tag_sets: Sequence[Path] = (),
) -> list[str]:
    """The child process that builds `key`'s artifact for `checkpoint` (extended by the
    `tag_sets` files, model.tagset) into `cache`."""
    return [
        sys.executable,
        "-m",
        "model.compiled",
        "--checkpoint",
        str(checkpoint),
        *(arg for path in tag_sets for arg in ("--tag-set", str(path))),
        "--cache",
        str(cache.root),
        "--device",
        str(device),
        "--precision",
        key.precision,
        "--shapes",
        ",".join(str(shape) for shape in key.shapes),
        *(["--channels-last"] if key.channels_last else []),
        *(["--embeddings"] if key.embeddings else []),
        "--expect-key",
        key.digest,
    ]


def _main(argv: list[str] | None = None) -> int:
    """The build process: load the checkpoint, build its artifact, print the entry's path."""
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.runtime import Runtime, RuntimeOptions
    from model.tagset import TagSetError, extend_checkpoint, load_tag_set

    parser = argparse.ArgumentParser(prog="python -m model.compiled", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tag-set", type=Path, action="append", default=[])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--shapes", required=True)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--embeddings", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority")
    parser.add_argument("--expect-key", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nice:
        os.nice(args.nice)
    device = torch.device(args.device)
    try:
        checkpoint = load_checkpoint(args.checkpoint, device=device)
        checkpoint = extend_checkpoint(checkpoint, [load_tag_set(p) for p in args.tag_set])
    except (CheckpointError, TagSetError) as error:
        print(f"cannot compile: {error}", file=sys.stderr)
        return 2
    shapes = tuple(int(shape) for shape in args.shapes.split(","))
    options = RuntimeOptions(
        precision=args.precision,
        channels_last=args.channels_last,
        compile="on",
        max_chunk=max(shapes),
        embeddings=args.embeddings,
    )
    recipe = None
    if args.precision == "int8":
        from model.quantize import CalibrationError, Int8Calibration, calibration_path

        try:
            recipe = Int8Calibration.load(calibration_path(checkpoint.path)).recipe
        except (CalibrationError, OSError) as error:
            print(f"cannot compile int8: {error}", file=sys.stderr)
            return 2
    try:
        runtime = Runtime(
            checkpoint.model,
            device,
            options,
            max_batch=max(shapes),
            int8_recipe=recipe,
            cache=CompileCache(args.cache),
        )
        if args.expect_key and runtime.key.digest != args.expect_key:
            print(
                f"cannot compile: this process computes key {runtime.key.digest}, the caller "
                f"expected {args.expect_key} (another torch, model code or CPU?)",
                file=sys.stderr,
            )
            return 2
        entry = runtime.build()
    except Exception as error:
        print(f"cannot compile: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"entry": str(entry), "key": runtime.key.digest}))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(_main())
