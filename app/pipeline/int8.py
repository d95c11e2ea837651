"""Whether the service and `tagger tag` run a checkpoint in int8, decided once at start-up.

The rule is `model.runtime.int8_decision`; this module finds the checkpoint's calibration
(`NAME.int8.safetensors` beside it, written by `scripts/calibrate_int8.py`), checks that it
was made for this very checkpoint and logs the decision with its reason in one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from model.checkpoint import Checkpoint
from model.quantize import (
    CalibrationError,
    Int8Calibration,
    Int8Recipe,
    calibration_path,
    cpu_int8_flags,
    supports_int8,
)
from model.runtime import Int8Decision, RuntimeOptions, int8_decision

logger = logging.getLogger("tagger.int8")


@dataclass(frozen=True)
class Int8Plan:
    """The decision, and what an int8 runtime needs when it is yes."""

    decision: Int8Decision
    recipe: Int8Recipe | None

    @property
    def use(self) -> bool:
        return self.decision.use

    def fallback(self, options: RuntimeOptions) -> RuntimeOptions:
        """The options of a runtime that is not int8 (the eager one, or the refusal's)."""
        if options.precision == "int8":
            return RuntimeOptions(
                precision="auto",
                channels_last=options.channels_last,
                compile=options.compile,
                max_chunk=options.max_chunk,
            )
        return options


def plan_int8(checkpoint: Checkpoint, options: RuntimeOptions, device: torch.device) -> Int8Plan:
    """Read the calibration if int8 is at all possible, decide, and log why."""
    calibration: Int8Calibration | None = None
    problem = supports_int8(checkpoint.model)
    path = calibration_path(checkpoint.path)
    wanted = options.precision in ("auto", "int8") and device.type == "cpu"
    if wanted and problem is None:
        if not path.exists():
            problem = (
                f"no int8 calibration {path.name} beside the checkpoint (see docs/performance.md)"
            )
        else:
            try:
                calibration = Int8Calibration.load(path)
            except CalibrationError as error:
                problem = str(error)
            else:
                if calibration.checkpoint_sha256 != checkpoint.sha256:
                    problem = f"{path.name} was calibrated for another checkpoint"
                    calibration = None
    decision = int8_decision(
        options.precision,
        device,
        compile=options.compile,
        cpu_flags=cpu_int8_flags(),
        calibration=calibration,
        problem=problem,
    )
    verb = "using int8" if decision.use else "not using int8"
    logger.info("%s: %s", verb, decision.reason, extra={"int8": decision.use})
    recipe = calibration.recipe if decision.use and calibration else None
    return Int8Plan(decision, recipe)
