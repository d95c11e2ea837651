"""The fastest correct way to run a tagging model on the device at hand.

A `Runtime` wraps a model for inference and makes three choices, each of which can be forced:

- precision: bf16 autocast where the hardware computes bf16 natively (CPUs with AVX-512 BF16 or
  AMX, CUDA GPUs of compute capability 8.0 and later), fp16 autocast on older GPUs, fp32 anywhere
  else. The mel front end always stays fp32 (see `model.frontend`), and scores come back fp32.
- memory format: channels-last for the convolutions, which oneDNN and cuDNN run faster in both
  fp32 and bf16.
- compilation: an AOTInductor package (inductor, with frozen weights so batch norms fold into
  the convolutions and weights are prepacked), exported with a dynamic batch dimension so one
  artifact serves every batch size. It is built ahead of time, in a process that serves
  nothing meanwhile, and cached by everything it depends on (`model.compiled`); a serving
  process only loads it, so it never traces while it computes (see app/service/execution.py).

The runtime only ever calls the model with the batch sizes in `shapes` (powers of two up to a
cap), splitting larger inputs into such chunks, so `warm_up` runs every shape before the first
real request arrives. On a CPU, per-window cost stops falling beyond a batch of about 8
windows, hence the smaller CPU cap.

With `compile="auto"`, a compilation failure (for example a host without a C++ compiler, which
inductor needs on CPU) falls back to eager execution with a logged warning; `compile="on"`
makes it an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from model.base import TaggingModel
from model.embedding import scores_and_embedding_rows

if TYPE_CHECKING:
    from model.compiled import Artifact, ArtifactKey, CompileCache
    from model.quantize import Int8Calibration, Int8Recipe

logger = logging.getLogger("model.runtime")

Forward = Callable[[Tensor], Tensor]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
CompileMode = Literal["auto", "on", "off"]

CPU_MAX_CHUNK = 8
"""Largest batch a CPU runtime calls the model with (see the module docstring)."""

_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX) rather than emulating it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_device(setting: str, local_rank: int | None = None) -> torch.device:
    """The device for "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N".

    `local_rank` is a `torchrun` process's rank on its host: an unindexed CUDA device becomes
    that process's own GPU (rank modulo the GPU count), so one rule serves the service, the
    CLI and multi-process training.

    Raises:
        RuntimeError: CUDA was asked for and there is none.
    """
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} was requested but CUDA is not available")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def auto_precision(
    device_type: str, *, cuda_bf16: bool, cpu_bf16: bool, cpu_autocast: bool = True
) -> torch.dtype | None:
    """The "auto" precision rule as a function of what the hardware can do (None means fp32).

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 only where it is native and
    `cpu_autocast` allows it. Training and evaluation pass `cpu_autocast=False` so that their
    metrics on a CPU are the same fp32 numbers on every CPU, native bf16 or not; the service
    and the CLI take the speed.
    """
    if device_type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    if device_type == "cpu" and cpu_bf16 and cpu_autocast:
        return torch.bfloat16
    return None


def resolve_precision(
    precision: Precision | str, device: torch.device, *, cpu_autocast: bool = True
) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device (None means fp32).

    `auto` follows `auto_precision` with this machine's capabilities. An explicit setting is
    obeyed even where it is slow.
    """
    if precision != "auto":
        if precision == "int8":  # int8 convolutions; the rest runs in fp32 (model.quantize)
            return None
        if precision not in _DTYPES:
            raise ValueError(f"precision must be auto, fp32, bf16, fp16 or int8, got {precision!r}")
        return _DTYPES[precision]
    return auto_precision(
        device.type,
        cuda_bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        cpu_bf16=device.type == "cpu" and cpu_has_native_bf16(),
        cpu_autocast=cpu_autocast,
    )


@dataclass(frozen=True)
class Int8Decision:
    """Whether a runtime should quantise to int8, and why (for the log and `/model`)."""

    use: bool
    reason: str


def int8_decision(
    precision: Precision | str,
    device: torch.device,
    *,
    compile: CompileMode | str,
    cpu_flags: tuple[str, ...],
    calibration: Int8Calibration | None,
    problem: str | None = None,
) -> Int8Decision:
    """The int8 rule. `auto` uses int8 only where the CPU has int8 dot products (`cpu_flags`,
    see `model.quantize.cpu_int8_flags`), the checkpoint's calibration passed its own accuracy
    check and int8 measured faster than the bf16 (or fp32) fast path on a CPU with int8 dot
    products. `int8` forces it, except that a checkpoint failing its accuracy check is always
    refused. `problem` says why there is no usable calibration (missing, unreadable, made for
    another checkpoint).
    """
    if precision not in ("auto", "int8"):
        return Int8Decision(False, f"precision {precision} was asked for")
    if device.type != "cpu":
        return Int8Decision(False, f"int8 runs on CPUs; the device is {device.type}")
    if compile == "off":
        return Int8Decision(False, "int8 needs compiled graphs and compilation is off")
    if calibration is None:
        return Int8Decision(False, problem or "the checkpoint has no int8 calibration")
    if not calibration.check.passed:
        return Int8Decision(
            False,
            f"the checkpoint fails its own int8 accuracy check: {calibration.check.describe()}",
        )
    speed = calibration.speed
    measured = (
        "no speed measured"
        if speed is None
        else f"int8 measured {speed.ratio:.2f}x the {speed.reference} fast path at batch "
        f"{speed.batch} on {speed.cpu}"
    )
    if precision == "int8":
        return Int8Decision(True, f"int8 was asked for ({measured})")
    if not cpu_flags:
        return Int8Decision(
            False, "this CPU has no int8 dot products (avx512_vnni, avx_vnni, amx_int8)"
        )
    if speed is not None and not speed.on_int8_hardware:
        return Int8Decision(
            False,
            f"int8 speed was only measured on a CPU without int8 dot products ({measured}): "
            "run scripts/calibrate_int8.py on this CPU",
        )
    if speed is None or not speed.faster:
        return Int8Decision(False, f"int8 is not faster here: {measured}")
    return Int8Decision(
        True, f"the CPU has {', '.join(cpu_flags)}; accuracy check passed; {measured}"
    )


def batch_shapes(max_batch: int) -> tuple[int, ...]:
    """The batch sizes the model is called with: powers of two below the maximum, and it."""
    if max_batch <= 0:
        raise ValueError(f"max_batch must be positive, got {max_batch}")
    shapes = []
    size = 1
    while size < max_batch:
        shapes.append(size)
        size *= 2
    shapes.append(max_batch)
    return tuple(shapes)


def split_sizes(n: int, shapes: tuple[int, ...]) -> list[int]:
    """Cut `n` windows into chunks of the allowed shapes, largest first: 9 -> [8, 1]."""
    sizes = []
    for shape in sorted(shapes, reverse=True):
        while n >= shape:
            sizes.append(shape)
            n -= shape
    if n:  # only when 1 is not an allowed shape, which batch_shapes never produces
        raise ValueError(f"cannot split into shapes {shapes}")
    return sizes


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model; `auto` values are resolved per device by `Runtime`.

    Attributes:
        precision: auto, fp32, bf16 or fp16 (autocast; the front end stays fp32).
        channels_last: Channels-last memory format for the convolutions.
        compile: auto (compile, fall back to eager if compilation fails), on, or off.
        max_chunk: Largest batch per model call; 0 means the device default (8 on CPU, else
            `max_batch`).
        embeddings: Return each window's L2-normalised embedding after its probabilities, in
            one row of `n_classes + embedding_dim` (see `model.embedding`).
    """

    precision: Precision = "auto"
    channels_last: bool = True
    compile: CompileMode = "auto"
    max_chunk: int = 0
    embeddings: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "int8", *_DTYPES):
            raise ValueError(
                f"precision must be auto, fp32, bf16, fp16 or int8, got {self.precision!r}"
            )
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"compile must be auto, on or off, got {self.compile!r}")
        if self.max_chunk < 0:
            raise ValueError(f"max_chunk must be >= 0, got {self.max_chunk}")


def precision_name(dtype: torch.dtype | None, *, int8: bool = False) -> str:
    """fp32, bf16, fp16 or int8: how a runtime computes."""
    if int8:
        return "int8"
    return "fp32" if dtype is None else {torch.bfloat16: "bf16"}.get(dtype, "fp16")


def artifact_key(
    model: TaggingModel,
    device: torch.device,
    options: RuntimeOptions,
    shapes: tuple[int, ...],
    *,
    int8_recipe: Int8Recipe | None = None,
    model_sha256: str | None = None,
) -> ArtifactKey:
    """The key of the compiled artifact that runs `model` with `options` (`model.compiled`).

    `model_sha256` saves hashing the weights again when the caller knows the digest.
    """
    from model.compiled import ArtifactKey, code_digest, device_signature, model_digest

    int8 = options.precision == "int8"
    int8_sha256 = ""
    if int8:
        if int8_recipe is None:
            raise ValueError("an int8 artifact needs the checkpoint's int8 recipe")
        from model.quantize import recipe_digest

        int8_sha256 = recipe_digest(int8_recipe)
    return ArtifactKey(
        model_sha256=model_sha256 or model_digest(model),
        code_sha256=code_digest(),
        torch_version=torch.__version__,
        device=device_signature(device),
        precision=precision_name(resolve_precision(options.precision, device), int8=int8),
        channels_last=options.channels_last,
        embeddings=options.embeddings,
        shapes=shapes,
        int8_sha256=int8_sha256,
    )


@dataclass(frozen=True)
class RuntimeInfo:
    """What a runtime actually does, for `/model`, metrics and logs."""

    device: str
    precision: str
    channels_last: bool
    compiled: bool
    compile_error: str | None
    shapes: tuple[int, ...]
    warmup_seconds: float | None
    artifact: str | None = None
    """Which compiled artifact runs and where it came from (`model.compiled.Artifact`)."""


class ServingForward(nn.Module):
    """The computation a runtime serves, as one module: windows in, rows out.

    It is what runs eagerly and what `model.compiled` exports and compiles, so both paths
    compute the same thing: autocast around the network (the mel front end stays fp32 inside
    it), sigmoid in fp32, and the embedding after the scores when asked for.
    """

    def __init__(self, model: TaggingModel, dtype: torch.dtype | None, embeddings: bool) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.embeddings = embeddings

    def forward(self, windows: Tensor) -> Tensor:
        # (N, window_samples) -> (N, n_classes [+ embedding_dim]) float32
        device_type = windows.device.type
        with torch.autocast(device_type, dtype=self.dtype, enabled=self.dtype is not None):
            if self.embeddings:
                return scores_and_embedding_rows(*self.model.forward_with_embedding(windows))
            return torch.sigmoid(self.model(windows).float())


class Runtime:
    """A model prepared for inference on one device: windows in, probabilities out.

    Args:
        model: The network; the runtime moves it to `device`, puts it in eval mode and may
            change its memory format, so it takes ownership.
        device: Where to run.
        options: Precision, memory format and compilation choices.
        max_batch: Largest number of windows callers pass at once (the batcher's maximum).
        int8_recipe: With precision "int8": the calibration's observer state and the modules
            that stay fp32 (`model.quantize.Int8Recipe`); the runtime quantises the model's
            convolutions with it.
        cache: Where compiled artifacts are looked up and stored (`model.compiled`); None:
            the default cache folder.
        model_sha256: `model.compiled.model_digest` of `model`, when the caller has it.

    Calling it: (N, window_samples) float32 windows, on the host or the device, for any N ->
    (N, n_classes) float32 probabilities on the CPU; with `options.embeddings`, (N, n_classes +
    embedding_dim) rows of probabilities and embedding (`model.embedding.split_rows` cuts them).

    It runs eagerly until a compiled artifact is adopted: `warm_up` finds or builds one in this
    process (the CLI, before it tags anything); the service builds it in a child process and
    hands it to `adopt` (app/service/execution.py), so nothing is ever traced while it serves.
    """

    def __init__(
        self,
        model: TaggingModel,
        device: torch.device,
        options: RuntimeOptions | None = None,
        *,
        max_batch: int = 64,
        int8_recipe: Int8Recipe | None = None,
        cache: CompileCache | None = None,
        model_sha256: str | None = None,
    ) -> None:
        from model.compiled import CompileCache

        self.options = options or RuntimeOptions()
        self.device = device
        self.dtype = resolve_precision(self.options.precision, device)
        self.int8 = self.options.precision == "int8"
        self._int8_recipe = int8_recipe
        if self.int8:
            if device.type != "cpu" or int8_recipe is None:
                raise ValueError("int8 runs on a CPU and needs the checkpoint's calibration")
            if self.options.compile == "off":
                raise ValueError("int8 needs compilation (a quantised graph is slow eagerly)")
            from model.quantize import quantize_model
        self.shapes = batch_shapes(self.chunk_cap(self.options, device, max_batch))
        self.cache = cache if cache is not None else CompileCache()
        # Of the float model, before int8 conversion (see `key`); a caller that hashed the
        # weights already passes it, so they are hashed once.
        self._model_sha256 = model_sha256 or ""
        if self.int8 and int8_recipe is not None and not self._model_sha256:
            from model.compiled import model_digest

            self._model_sha256 = model_digest(model)
            model = quantize_model(model.to(device).eval(), int8_recipe, self.shapes)
        self.model = model.to(device).eval()
        if self.options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.serving = ServingForward(self.model, self.dtype, self.options.embeddings).eval()
        self.compile_error: str | None = None
        self.warmup_seconds: float | None = None
        self.artifact: Artifact | None = None
        self._forward: Forward = self.serving
        self._key: ArtifactKey | None = None
        self._artifact_tried = False

    @staticmethod
    def chunk_cap(options: RuntimeOptions, device: torch.device, max_batch: int) -> int:
        """The largest batch a runtime with `options` calls the model with."""
        cap = options.max_chunk or (CPU_MAX_CHUNK if device.type == "cpu" else max_batch)
        return min(cap, max_batch)

    @property
    def window_samples(self) -> int:
        return self.model.audio.window_samples

    @property
    def n_classes(self) -> int:
        return self.model.n_classes

    @property
    def row_width(self) -> int:
        """Values per window in the output: the scores, and the embedding when asked for."""
        extra = self.model.embedding_dim if self.options.embeddings else 0
        return self.n_classes + extra

    @property
    def key(self) -> ArtifactKey:
        """What this runtime's compiled artifact is keyed by (computed once)."""
        if self._key is None:
            self._key = artifact_key(
                self.model,
                self.device,
                self.options,
                self.shapes,
                int8_recipe=self._int8_recipe,
                model_sha256=self._model_sha256 or None,
            )
        return self._key

    @property
    def parity_tolerance(self) -> float:
        """How far a compiled graph may be from this runtime's eager scores."""
        return 1e-3 if self.dtype is None and not self.int8 else 0.05

    def build(self) -> Path:
        """Compile this runtime's artifact into the cache, in this process; returns its entry.

        Only for a process that serves nothing meanwhile (the CLI, `tagger compile`, the
        service's build process): building traces with dynamo.
        """
        from model.compiled import build_packages

        key = self.key
        logger.info("compiling %s into %s", key.describe(), self.cache.root)
        return self.cache.store(
            key,
            lambda folder: build_packages(
                self.serving,
                key,
                self.window_samples,
                folder,
                device=self.device,
                tolerance=self.parity_tolerance,
            ),
        )

    def adopt(self, artifact: Artifact) -> None:
        """Run `artifact` from the next call on (one attribute assignment: a call runs wholly
        on one path). It must compute this runtime's model, rows and batch shapes; its
        precision may differ (the service's int8 artifact replaces a bf16 eager path)."""
        mine, theirs = self.key, artifact.key
        interface = ("model_sha256", "embeddings", "shapes", "code_sha256", "device")
        if any(getattr(mine, name) != getattr(theirs, name) for name in interface):
            raise ValueError(f"artifact {artifact.path.name} was built for another model or device")
        self.artifact = artifact
        self.compile_error = None
        self._forward = artifact

    def fall_back(self, error: str) -> None:
        """Run eagerly, keeping why compilation did not happen (for `/model` and the log)."""
        self.compile_error = error
        self.artifact = None
        self._forward = self.serving

    def __call__(self, windows: Tensor) -> Tensor:
        if windows.dim() != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"expected windows (N, {self.window_samples}), got {tuple(windows.shape)}"
            )
        # Without a warm-up, the first call finds or builds the artifact (outside inference
        # mode: exporting needs to trace the model's parameters as they are).
        self._prepare_artifact()
        return self._call(windows)

    @torch.inference_mode()
    def _call(self, windows: Tensor) -> Tensor:
        # Quiet audio yields denormal floats, which slow CPU convolutions up to tenfold. The
        # flag belongs to the calling thread, so it is on only for the duration of the call:
        # callers (tests with hypothesis, numerical code) keep IEEE behaviour outside it.
        flush = self.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            outputs = []
            offset = 0
            for size in split_sizes(windows.shape[0], self.shapes):
                chunk = windows[offset : offset + size]
                outputs.append(self._run(chunk))
                offset += size
        finally:
            if flush:
                torch.set_flush_denormal(False)
        if not outputs:
            return torch.empty(0, self.row_width)
        return torch.cat(outputs)

    def _run(self, chunk: Tensor) -> Tensor:
        chunk = chunk.to(self.device, dtype=torch.float32, non_blocking=True)
        scores = self._forward(chunk)
        return scores.to("cpu", non_blocking=False)

    def load_or_build(self) -> Artifact:
        """The cached artifact for this runtime, built here first if it is missing or unusable."""
        from model.compiled import CompileError

        problem = self.cache.problem(self.key)
        if problem is None:
            try:
                return self.cache.load(self.key)
            except (CompileError, RuntimeError) as error:
                problem = str(error)
        if problem != "missing":
            logger.warning("rebuilding compiled artifact %s: %s", self.key.digest, problem)
            self.cache.discard(self.key)
        self.build()
        return self.cache.load(self.key, origin="built")

    def _prepare_artifact(self) -> None:
        """Adopt the compiled artifact, once, unless compilation is off (see `warm_up`)."""
        if self.options.compile == "off" or self.artifact is not None or self._artifact_tried:
            return
        self._artifact_tried = True
        try:
            self.adopt(self.load_or_build())
        except Exception as error:
            # An int8 graph that did not compile is not worth running eagerly: raise, so
            # that the caller keeps its other runtime.
            if self.options.compile == "on" or self.int8:
                raise
            self.fall_back(f"{type(error).__name__}: {str(error)[:500]}")
            logger.warning("compilation failed, running eagerly: %s", self.compile_error)

    def warm_up(self) -> float:
        """Find or build the compiled artifact (unless compile is off), then run every batch
        shape once; returns the seconds it took.

        With `compile="auto"`, a failure to compile switches to eager execution and is kept in
        `compile_error`; with `compile="on"` it is raised.
        """
        started = time.monotonic()
        self._prepare_artifact()
        generator = torch.Generator().manual_seed(0)
        for shape in self.shapes:
            self(0.1 * torch.randn(shape, self.window_samples, generator=generator))
        self.warmup_seconds = time.monotonic() - started
        logger.info("warmed up batch shapes %s in %.1f s", list(self.shapes), self.warmup_seconds)
        return self.warmup_seconds

    def info(self) -> RuntimeInfo:
        precision = precision_name(self.dtype, int8=self.int8)
        if self.artifact is not None:
            precision = self.artifact.key.precision
        return RuntimeInfo(
            device=str(self.device),
            precision=precision,
            channels_last=self.options.channels_last,
            compiled=self.artifact is not None,
            compile_error=self.compile_error,
            shapes=self.shapes,
            warmup_seconds=self.warmup_seconds,
            artifact=None if self.artifact is None else self.artifact.describe(),
        )
