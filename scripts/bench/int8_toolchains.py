"""Int8 toolchains side by side on the bundled model's convolutions (the part int8 quantises).

Measured in one run, one thread, same calibration windows (real music, as
scripts/calibrate_int8.py picks them), same input (batch of mel spectrograms):

- bf16: the current fast path's recipe for this part (bf16 autocast, channels-last, inductor
  with frozen weights).
- torchao PT2E + X86InductorQuantizer, compiled by inductor (what `model/quantize.py` uses).
- ONNX Runtime: the same part exported to ONNX, fp32 and statically quantised (QDQ, int8
  weights per channel, uint8 activations) with its MLAS kernels (VNNI where present).

Needs the `int8-compare` extra (onnxruntime, onnx, onnxscript):

    .venv/bin/python scripts/bench/int8_toolchains.py --batch 8
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_int8 import DEFAULT_PACKAGES, calibration_windows
from common import MUSIC, ROOT, cpu_model, say

from model.checkpoint import load_checkpoint
from model.quantize import _Convolutions, _prepare


def rate(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    fn(x)
    best = 0.0
    for _ in range(5):
        n, started = 0, time.perf_counter()
        while n < 1 or time.perf_counter() - started < 1.0:
            fn(x)
            n += 1
        best = max(best, n * x.shape[0] / (time.perf_counter() - started))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "model/weights/default.safetensors"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).model.eval()
    windows, _ = calibration_windows(MUSIC, DEFAULT_PACKAGES, 4, model.audio.window_samples, 16)
    with torch.no_grad():
        mels = model.frontend(windows)
    x = mels[: args.batch].contiguous()
    results: dict[str, tuple[float, float, float]] = {}  # name -> (w/s, prepare s, max diff)
    with torch.no_grad():
        reference = _Convolutions(copy.deepcopy(model))(mels)

    # bf16, the fast path's recipe.
    started = time.monotonic()
    conv = _Convolutions(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(conv, dynamic=False, options={"freezing": True})

    def bf16(v: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return compiled(v).float()

    bf16(x)
    prep = time.monotonic() - started
    diff = max(
        (bf16(mels[i : i + args.batch]) - reference[i : i + args.batch]).abs().max().item()
        for i in range(0, mels.shape[0] - args.batch + 1, args.batch)
    )
    results["bf16 autocast + inductor (fast path)"] = (rate(bf16, x), prep, diff)
    say(f"bf16: {results}")

    # torchao PT2E.
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    started = time.monotonic()
    parts = _prepare(model, args.batch)
    with torch.no_grad():
        for i in range(0, mels.shape[0] - args.batch + 1, args.batch):
            features = mels[i : i + args.batch]
            for part in parts.values():
                features = part(features)
    converted = torch.nn.Sequential(*(convert_pt2e(part) for part in parts.values()))
    torch._inductor.config.freezing = True
    ao = torch.compile(converted, dynamic=False)
    with torch.no_grad():
        ao(x)
    prep = time.monotonic() - started

    def ao_run(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ao(v)  # type: ignore[no-any-return]

    diff = max(
        (ao_run(mels[i : i + args.batch]) - reference[i : i + args.batch]).abs().max().item()
        for i in range(0, mels.shape[0] - args.batch + 1, args.batch)
    )
    results["torchao PT2E int8 + inductor"] = (rate(ao_run, x), prep, diff)
    say(f"torchao: {results}")

    # ONNX Runtime.
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        fp32_path, pre_path, q_path = (
            str(Path(scratch) / n) for n in ("c.onnx", "p.onnx", "q.onnx")
        )
        started = time.monotonic()
        torch.onnx.export(
            _Convolutions(copy.deepcopy(model)).eval(),
            (x,),
            fp32_path,
            input_names=["mel"],
            output_names=["out"],
            dynamic_axes={"mel": {0: "b"}, "out": {0: "b"}},
            dynamo=False,
        )
        quant_pre_process(fp32_path, pre_path)
        batches = [{"mel": mels[i : i + 8].numpy()} for i in range(0, mels.shape[0], 8)]

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self.items = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        quantize_static(
            pre_path,
            q_path,
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        prep = time.monotonic() - started
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        for name, path in (
            ("ONNX Runtime fp32", fp32_path),
            ("ONNX Runtime int8 (QDQ, static)", q_path),
        ):
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

            def run(v: torch.Tensor, s: ort.InferenceSession = session) -> np.ndarray:
                return s.run(None, {"mel": v.numpy()})[0]  # type: ignore[no-any-return]

            diff = float(np.abs(run(mels) - reference.numpy()).max())
            results[name] = (rate(run, x), prep if "int8" in name else 0.0, diff)
            say(f"{name}: {results[name]}")

    print(f"Convolutions of the bundled model, batch {args.batch}, one thread, {cpu_model()}:\n")
    print("| toolchain | windows/s | x bf16 | preparation s | max abs diff of features |")
    print("|---|---|---|---|---|")
    base = results["bf16 autocast + inductor (fast path)"][0]
    for name, (speed, prep, diff) in results.items():
        print(f"| {name} | {speed:.0f} | {speed / base:.2f}x | {prep:.0f} | {diff:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
