"""Int8 inference for the convolutional part of a tagger, with torchao's PT2E flow.

Where the CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX-INT8), oneDNN's int8
convolutions do four multiply-adds per lane where bf16 does two. This module quantises the
convolutions of a Query2Label model (the backbone, the 1×1 dense head and the input projection,
which together take about 85 % of its time), statically: weights per output channel, activations
per tensor with scales observed on real music. The mel front end stays fp32 and so does the
transformer (its matmuls are small, and autocast around a quantised graph would break the
quantise-dequantise patterns inductor fuses into int8 kernels):

    waveform -> fp32 log-mel -> [int8 backbone] -> features (also the embedding)
             -> [int8 dense head + input projection] -> fp32 transformer -> logits

Each bracket is a graph made by torch.export and the X86InductorQuantizer, one per batch size.
A checkpoint's recipe (`Int8Recipe`) may keep some of these modules fp32: the head, or blocks of
the backbone whose rounding errors grow most on the way to the sigmoid (for the v2 default
model, the first residual block, whose input is the log-mel itself).
A quantised graph only runs fast once inductor compiled it (eagerly it is a reference
implementation full of quantise/dequantise ops), so an int8 runtime is always a compiled one;
only the int8 graphs are compiled, the rest runs eagerly (compiled as a whole with the
embedding path, inductor 2.14 fails on a stride).

Calibration happens once, offline (`scripts/calibrate_int8.py`), and its result is a small
sidecar beside the checkpoint, `NAME.int8.safetensors`: the observers' state (activation ranges
and histograms), the modules kept fp32, the checkpoint's own accuracy check on the calibration
windows (int8 against fp32: max |difference| and top-5 agreement) and the measured speed
against the bf16 fast path.
Preparing int8 at start-up then needs no audio: export, load the observers, convert, compile.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from model.base import TaggingModel
from model.blocks import ResBlock2d

MAX_SCORE_DIFF = 0.03
"""Largest |int8 - fp32| sigmoid score a checkpoint may show on its calibration windows."""
MIN_TOP5_AGREEMENT = 0.95
"""Smallest share of calibration windows whose top-5 tags must be identical to fp32's."""
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""/proc/cpuinfo flags of x86 int8 dot-product instructions (any one is enough)."""

_METADATA_KEY = "music_tagger_int8"
_FORMAT = "music-tagger-int8-calibration"


class CalibrationError(Exception):
    """A calibration that cannot be used with this checkpoint or this toolchain."""


def cpu_int8_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The int8 dot-product flags this CPU reports (from /proc/cpuinfo text, or read it)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return tuple(flag for flag in INT8_CPU_FLAGS if flag in flags)


@dataclass(frozen=True)
class AccuracyCheck:
    """Int8 against fp32 on the calibration windows."""

    windows: int
    max_abs_diff: float
    top5_agreement: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_SCORE_DIFF and self.top5_agreement >= MIN_TOP5_AGREEMENT

    def describe(self) -> str:
        return (
            f"max |int8 - fp32| {self.max_abs_diff:.4f} (limit {MAX_SCORE_DIFF}), identical "
            f"top-5 on {self.top5_agreement:.1%} of {self.windows} windows "
            f"(limit {MIN_TOP5_AGREEMENT:.0%})"
        )


@dataclass(frozen=True)
class SpeedCheck:
    """Compiled int8 against the compiled bf16 (or fp32) fast path, same run, same batch."""

    batch: int
    int8_windows_per_s: float
    reference: str
    reference_windows_per_s: float
    cpu: str
    # The measuring CPU's int8 dot products (`cpu_int8_flags`); None in sidecars older than
    # this field, which were all measured on a CPU with avx512_vnni.
    int8_flags: tuple[str, ...] | None = None

    @property
    def ratio(self) -> float:
        return self.int8_windows_per_s / self.reference_windows_per_s

    @property
    def faster(self) -> bool:
        return self.ratio > 1.0

    @property
    def on_int8_hardware(self) -> bool:
        """Whether it was measured where int8 has dot products: elsewhere int8 runs on plain
        AVX2 multiply-adds, and its speed says nothing about a CPU that has them."""
        return self.int8_flags is None or bool(self.int8_flags)


HEAD = "head"
"""The name, in `fp32_modules`, of the 1×1 dense head with the input projection."""


@dataclass(frozen=True)
class Int8Recipe:
    """What an int8 runtime needs: the observed activation ranges, and which modules stay fp32.

    `fp32_modules` names modules the quantizer leaves in fp32: `"head"` (the dense head and the
    input projection run eagerly in fp32) or a module of the backbone graph as
    `"backbone.blocks.N"` or deeper (`"backbone.blocks.0.block.conv_2"`). A model whose first
    block is most sensitive to rounding (its input is the mel spectrogram itself) keeps it fp32.
    """

    observers: Mapping[str, Tensor]
    fp32_modules: tuple[str, ...] = ()


def recipe_digest(recipe: Int8Recipe) -> str:
    """sha256 of a recipe's observer state and fp32 modules (part of a compiled graph's key)."""
    digest = hashlib.sha256(json.dumps(list(recipe.fp32_modules)).encode())
    for name, value in sorted(recipe.observers.items()):
        tensor = value.detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Int8Calibration:
    """What `calibrate` learnt about one checkpoint; saved beside it."""

    checkpoint_sha256: str
    observers: dict[str, Tensor]
    check: AccuracyCheck
    speed: SpeedCheck | None
    source: str  # where the calibration audio came from, for the record
    fp32_modules: tuple[str, ...] = ()  # see Int8Recipe; empty in sidecars older than it

    @property
    def recipe(self) -> Int8Recipe:
        return Int8Recipe(self.observers, self.fp32_modules)

    def save(self, path: Path) -> Path:
        document = {
            "format": _FORMAT,
            "checkpoint_sha256": self.checkpoint_sha256,
            "check": asdict(self.check),
            "speed": asdict(self.speed) if self.speed else None,
            "source": self.source,
            "fp32_modules": list(self.fp32_modules),
            "torch": torch.__version__,
        }
        tensors = {name: value.contiguous() for name, value in self.observers.items()}
        save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(document)})
        return path

    @classmethod
    def load(cls, path: Path) -> Int8Calibration:
        try:
            with safe_open(str(path), framework="pt") as handle:
                document = json.loads((handle.metadata() or {})[_METADATA_KEY])
                observers = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as error:
            raise CalibrationError(f"{path}: not an int8 calibration file ({error})") from error
        if document.get("format") != _FORMAT:
            raise CalibrationError(f"{path}: not an int8 calibration file")
        speed = document.get("speed")
        if speed and speed.get("int8_flags") is not None:  # JSON gives a list
            speed["int8_flags"] = tuple(speed["int8_flags"])
        return cls(
            checkpoint_sha256=document["checkpoint_sha256"],
            observers=observers,
            check=AccuracyCheck(**document["check"]),
            speed=SpeedCheck(**speed) if speed else None,
            source=document.get("source", ""),
            fp32_modules=tuple(document.get("fp32_modules", ())),
        )


def calibration_path(checkpoint: Path) -> Path:
    """Where a checkpoint's int8 calibration lives: `NAME.int8.safetensors` beside it."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".int8.safetensors")


class _Blocks(nn.Module):
    """The residual blocks of a Query2Label backbone, mel in, backbone features out.

    Each residual block gets two ReLU modules instead of one shared one: the quantizer groups
    nodes by the module that made them, and one module called twice forms a partition with two
    outputs, which X86InductorQuantizer refuses.
    """

    def __init__(self, model: TaggingModel) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_SplitReluBlock(block) for block in model.backbone)  # type: ignore[union-attr]

    def forward(self, mel: Tensor) -> Tensor:
        for block in self.blocks:
            mel = block(mel)  # (B, 1, 128, 231) -> ... -> (B, C, 4, 8)
        return mel


class _Convolutions(nn.Module):
    """All convolutions (blocks, 1×1 head, input projection) in one module, for comparisons."""

    def __init__(self, model: TaggingModel) -> None:
        super().__init__()
        self.blocks = _Blocks(model)
        self.head = _head(model)

    def forward(self, mel: Tensor) -> Tensor:
        return self.head(self.blocks(mel))  # (B, 1, 128, 231) -> (B, d_model, 4, 8)


def _head(model: TaggingModel) -> nn.Module:
    """The 1×1 dense head and the input projection: backbone features -> (B, d_model, 4, 8)."""
    return nn.Sequential(model.dense, model.input_proj)  # type: ignore[arg-type]


class _SplitReluBlock(nn.Module):
    def __init__(self, block: ResBlock2d) -> None:
        super().__init__()
        self.block = block
        self.relu_inner, self.relu_out = nn.ReLU(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:  # the same arithmetic as ResBlock2d.forward
        b = self.block
        out = b.bn_2(b.conv_2(self.relu_inner(b.bn_1(b.conv_1(x)))))
        return self.relu_out(out + b.shortcut(x))


def supports_int8(model: TaggingModel) -> str | None:
    """None if `model` can be quantised here, else why not."""
    if model.architecture != "q2l":
        return f"int8 is implemented for q2l models, not {model.architecture}"
    return None


def _prepare(
    model: TaggingModel, batch: int, fp32_modules: tuple[str, ...] = ()
) -> dict[str, nn.Module]:
    """The convolutional parts exported at one batch size, with observers inserted: the
    backbone (whose output is also the embedding, so it stays a separate graph) and, unless
    `fp32_modules` names it, the head."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    reason = supports_int8(model)
    if reason:
        raise CalibrationError(reason)
    float_model = copy.deepcopy(model).eval().float().to(memory_format=torch.contiguous_format)
    parts = {"backbone": _Blocks(float_model).eval(), HEAD: _head(float_model).eval()}
    fp32_in_backbone = _check_fp32_modules(parts["backbone"], fp32_modules)
    # One static graph per batch size: inductor cannot constant-fold oneDNN's int8 weight
    # prepacking in a graph exported with a dynamic batch dimension.
    example = torch.zeros(batch, 1, *_mel_shape(model))
    prepared: dict[str, nn.Module] = {}
    for name, part in parts.items():
        if name in fp32_modules:
            continue
        exported = torch.export.export(part, (example,)).module()
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
        for module_name in fp32_in_backbone if name == "backbone" else ():
            quantizer.set_module_name_qconfig(module_name, None)
        prepared[name] = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            example = part(example)  # the next part's input shape
    return prepared


def _check_fp32_modules(backbone: nn.Module, fp32_modules: tuple[str, ...]) -> list[str]:
    """The backbone's module names among `fp32_modules`; CalibrationError for unknown names."""
    known = {name for name, _ in backbone.named_modules() if name}
    in_backbone: list[str] = []
    for name in fp32_modules:
        inner = name.removeprefix("backbone.")
        if name != HEAD and (inner == name or inner not in known):
            raise CalibrationError(
                f"fp32 module {name!r} is neither {HEAD!r} nor a module of the backbone "
                f"(backbone.blocks.0, backbone.blocks.0.block.conv_2, ...)"
            )
        if name != HEAD:
            in_backbone.append(inner)
    return in_backbone


def _mel_shape(model: TaggingModel) -> tuple[int, int]:
    with torch.no_grad():
        mel = model.frontend.float()(torch.zeros(1, model.audio.window_samples))  # type: ignore[operator]
    return int(mel.shape[2]), int(mel.shape[3])


class _PerBatch(nn.Module):
    """One converted int8 graph per batch size, picked by the input's batch."""

    def __init__(self, graphs: dict[int, nn.Module]) -> None:
        super().__init__()
        self.graphs = nn.ModuleDict({str(batch): graph for batch, graph in graphs.items()})

    def forward(self, mel: Tensor) -> Tensor:
        return self.graphs[str(mel.shape[0])](mel)  # (B, ...) -> (B, ...), int8 inside


def _observer_state(prepared: dict[str, nn.Module]) -> dict[str, Tensor]:
    return {
        f"{part}.{name}": value.detach().clone()
        for part, module in prepared.items()
        for name, value in module.state_dict().items()
        if "activation_post_process" in name
    }


def calibrate_observers(
    model: TaggingModel, windows: Tensor, batch: int = 8, fp32_modules: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """Observe activation ranges of `model`'s quantised convolutions (all but `fp32_modules`,
    see `Int8Recipe`) on `windows` (N, window_samples), `batch` windows at a time (N must be a
    multiple of it)."""
    if windows.shape[0] % batch:
        raise ValueError(f"{windows.shape[0]} windows are not a multiple of {batch}")
    prepared = _prepare(model, batch, fp32_modules)
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch):
            features = model.frontend(windows[start : start + batch].float())  # type: ignore[operator]
            for part in prepared.values():  # the backbone's output is the head's input
                features = part(features)
    return _observer_state(prepared)


def quantize_model(
    model: TaggingModel, recipe: Int8Recipe, batch_sizes: tuple[int, ...]
) -> TaggingModel:
    """A copy of `model` whose convolutions (but `recipe.fp32_modules`) are int8 graphs, one per
    part and batch size in `batch_sizes` (compile it to make it fast: `model.compiled`; other
    batch sizes raise KeyError).

    Raises:
        CalibrationError: the observers do not fit this model's graph (another checkpoint's
            calibration, or a torch/torchao whose export names the observers differently).
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    observers = recipe.observers
    graphs: dict[str, dict[int, nn.Module]] = {"backbone": {}, HEAD: {}}
    for batch in batch_sizes:
        prepared = _prepare(model, batch, recipe.fp32_modules)
        expected = set(_observer_state(prepared))
        if expected != set(observers):
            missing, extra = sorted(expected - set(observers)), sorted(set(observers) - expected)
            raise CalibrationError(
                f"the calibration does not match this model's graph (missing {missing[:3]}, "
                f"unexpected {extra[:3]}); rerun scripts/calibrate_int8.py"
            )
        for part, module in prepared.items():
            state = {
                name.removeprefix(part + "."): value
                for name, value in observers.items()
                if name.startswith(part + ".")
            }
            module.load_state_dict(state, strict=False)
            converted = convert_pt2e(module)
            allow_exported_model_train_eval(converted)  # the runtime calls .eval() on the model
            graphs[part][batch] = converted
    quantized = copy.deepcopy(model).eval()
    # The model's own forward runs the int8 graphs where it calls its backbone and its dense
    # head (so the backbone features, which are also the embedding, stay what they were); the
    # input projection is part of the head graph.
    quantized.backbone = _PerBatch(graphs["backbone"])
    if graphs[HEAD]:
        quantized.dense = _PerBatch(graphs[HEAD])
        quantized.input_proj = nn.Identity()
    return quantized


def accuracy_check(reference: Tensor, quantized: Tensor) -> AccuracyCheck:
    """Compare (N, n_classes) fp32 scores with int8 scores of the same windows."""
    top_reference = reference.topk(5, dim=1).indices.sort(dim=1).values
    top_quantized = quantized.topk(5, dim=1).indices.sort(dim=1).values
    agreement = (top_reference == top_quantized).all(dim=1).float().mean().item()
    return AccuracyCheck(
        windows=int(reference.shape[0]),
        max_abs_diff=(quantized - reference).abs().max().item(),
        top5_agreement=agreement,
    )


def describe_calibration(calibration: Int8Calibration) -> dict[str, Any]:
    """The calibration's record, for logs and `/model`."""
    speed = calibration.speed
    return {
        "check": calibration.check.describe(),
        "passed": calibration.check.passed,
        "speed": None
        if speed is None
        else f"int8 {speed.int8_windows_per_s:.1f} against {speed.reference} "
        f"{speed.reference_windows_per_s:.1f} windows/s at batch {speed.batch} "
        f"({speed.ratio:.2f}x) on {speed.cpu}"
        + ("" if speed.on_int8_hardware else " (no int8 dot products)"),
        "source": calibration.source,
        "fp32_modules": list(calibration.fp32_modules),
    }
