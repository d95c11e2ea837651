"""Which runtime runs the batches: eager at once, compiled graphs once they are all ready.

Compiling every batch shape with `torch.compile` takes minutes on a small CPU with an empty
compile cache (131 s on the 2-core test machine), and the service used to stay unready for all
of it. With `compile="auto"` it now serves as soon as the eager fast path (bf16 where native,
channels-last, as `model.runtime.Runtime` chooses) has run every shape once, typically seconds:

    load -> eager runtime warms up -> ready, serving eagerly
                 \\-> compile thread: a copy of the model, compiled shape by shape
                         -> all shapes done -> batches switch to the compiled runtime

The compiled runtime owns a deep copy of the model, so the compile thread never touches the
weights the batcher's worker thread is computing with; dynamo's frame hook is per thread, so
the worker's eager calls are not traced. The switch is one attribute assignment, read once per
batch by the worker, so a batch runs wholly on one path and no request waits for compilation
(it only shares the CPU with it). If compilation fails, the service keeps serving eagerly and
`compile_error` says why.

`compile="on"` keeps its strict meaning: compile during warm-up, ready only once compiled, and
a failure keeps the service unready. `compile="off"` never compiles.

Int8 (`app/pipeline/int8.py` decides): the compiled runtime is the int8 one, quantised in the
compile thread, so the eager bf16 path still serves within seconds of start; the eager runtime
is never int8 (a quantised graph is slow until compiled).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from app.pipeline.int8 import Int8Plan
from model.base import TaggingModel
from model.runtime import Runtime, RuntimeOptions

logger = logging.getLogger("tagger.execution")

ExecutionName = Literal["eager", "compiling", "compiled"]


class Execution:
    """Runs batches on the eager runtime, then on the compiled one once it is ready.

    Args:
        model: The network (the eager runtime takes ownership of it).
        device: Where to run.
        options: The runtime options; `compile` decides whether a compiled runtime follows.
        max_batch: Largest batch callers pass.
        on_switch: Called (on the compile thread) after batches switched to compiled graphs, or
            after compilation failed, so that descriptions can be republished.
        int8: The int8 decision; when it is yes, the compiled runtime is int8.
    """

    def __init__(
        self,
        model: TaggingModel,
        device: torch.device,
        options: RuntimeOptions,
        *,
        max_batch: int,
        on_switch: Callable[[], None] | None = None,
        int8: Int8Plan | None = None,
    ) -> None:
        self.mode = options.compile
        self._on_switch = on_switch
        self.int8 = int8
        self._int8_recipe = int8.recipe if int8 is not None and int8.use else None
        # The compiled runtime's options: int8 when the plan says so, else never int8.
        if self._int8_recipe is not None:
            options = dataclasses.replace(options, precision="int8")
        elif int8 is not None:
            options = int8.fallback(options)
        self._options = options
        self._max_batch = max_batch
        if self.mode == "on":
            self.runtime = Runtime(
                model, device, options, max_batch=max_batch, int8_recipe=self._int8_recipe
            )
        else:
            eager = dataclasses.replace(options, compile="off")
            if eager.precision == "int8":
                eager = dataclasses.replace(eager, precision="auto")
            self.runtime = Runtime(model, device, eager, max_batch=max_batch)
        # Whether the compile thread of compile="auto" runs (started by warm-up).
        self._pending: bool = False
        self.compile_error: str | None = None
        self.compile_seconds: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def name(self) -> ExecutionName:
        """What runs the batches now."""
        if self.runtime.info().compiled:
            return "compiled"
        # Without a warm-up (TAGGER_WARMUP=false) nothing ever starts the compile thread.
        return "compiling" if self._pending else "eager"

    def __call__(self, windows: Tensor) -> Tensor:
        # One read of the attribute per batch: a switch never splits a batch between paths.
        runtime = self.runtime
        return runtime(windows)

    def warm_up(self) -> None:
        """Run every shape on the serving runtime, then start compiling in the background."""
        runtime = self.runtime
        if self.mode == "on":
            logger.info(
                "warming up: compiling batch shapes %s before serving (TAGGER_COMPILE=on; about "
                "2 minutes on a 2-core CPU with an empty compile cache)",
                list(runtime.shapes),
            )
        else:
            logger.info("warming up batch shapes %s eagerly (a few seconds)", list(runtime.shapes))
        runtime.warm_up()
        execution = "compiled" if runtime.info().compiled else "eager"
        logger.info("execution: %s", execution, extra={"execution": execution})
        if self.mode == "auto" and self._thread is None:
            # Copied after the eager runtime prepared it (device, memory format, eval mode), and
            # only now, so that a service without warm-up never holds a second model.
            twin = copy.deepcopy(runtime.model)
            logger.info(
                "compiling batch shapes %s%s in the background; requests are served eagerly "
                "meanwhile (about 2 minutes on a 2-core CPU with an empty compile cache)",
                list(runtime.shapes),
                " in int8" if self._int8_recipe is not None else "",
            )
            self._pending = True
            self._thread = threading.Thread(
                target=self._compile,
                args=(twin, runtime.device),
                name="tagger-compile",
                daemon=True,
            )
            self._thread.start()

    def _compile(self, twin: TaggingModel, device: torch.device) -> None:
        started = time.monotonic()
        try:
            # Made here, not in warm_up: quantising to int8 takes seconds (export, convert).
            pending = Runtime(
                twin,
                device,
                self._options,
                max_batch=self._max_batch,
                int8_recipe=self._int8_recipe,
            )
            pending.warm_up()
        except Exception as error:  # compile="auto": keep serving eagerly
            self.compile_error = f"{type(error).__name__}: {str(error)[:500]}"
            logger.warning("compilation failed, staying eager: %s", self.compile_error)
        else:
            if pending.compile_error is not None:
                self.compile_error = pending.compile_error  # the runtime fell back to eager
            elif not self._stop.is_set():
                self.compile_seconds = time.monotonic() - started
                self.runtime = pending
                logger.info(
                    "execution: compiled (batch shapes %s compiled in %.1f s)",
                    list(pending.shapes),
                    self.compile_seconds,
                    extra={"execution": "compiled", "compile_seconds": self.compile_seconds},
                )
        self._pending = False
        if self._on_switch is not None:
            self._on_switch()

    def stop(self) -> None:
        """Do not switch any more (a compile in progress runs to its end, unused)."""
        self._stop.set()
