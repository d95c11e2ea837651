"""Which graphs run the batches: eager at once, compiled ones as soon as they are built.

The service never traces or compiles in its own process. Dynamo tracing under autocast in one
thread while another thread runs eager batches under autocast deadlocks PyTorch (its autocast
cast cache and the GIL are taken in opposite orders), and that froze the whole service on its
first start on every machine whose eager path uses autocast (CPUs with native bf16, GPUs).
Compiled graphs are AOTInductor packages instead (`model.compiled`), built by a child process
and only loaded here:

    start -> cached artifact for this model, code, torch, device, precision and shapes?
               yes: load it (well under a second) -> warm up -> ready, compiled
               no:  warm up eagerly -> ready, serving eagerly
                      \\-> build process (`python -m model.compiled`, niced) -> cache entry
                             -> load it -> batches switch to it

One runtime serves throughout; it runs the eager forward or the artifact it adopted (one
attribute, read once per call, so a batch runs wholly on one path). The thread that waits for
the build process loads and warms the package; neither loading nor running an AOTInductor
package traces or uses autocast, so nothing here can take the locks the deadlock needed. If the
build fails, the service keeps serving eagerly and `compile_error` says why.

`compile="on"` keeps its strict meaning: ready only once compiled graphs run (built by the
child process during warm-up if the cache has none); a failure keeps the service unready.
`compile="off"` never compiles.

Int8 (`app/pipeline/int8.py` decides): the artifact is the int8 one, while the eager path that
serves until it is built stays bf16 or fp32 (a quantised graph is slow until compiled).
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from app.pipeline.int8 import Int8Plan
from model.base import TaggingModel
from model.compiled import Artifact, ArtifactKey, CompileCache, CompileError, build_command
from model.runtime import Runtime, RuntimeOptions, artifact_key, batch_shapes

logger = logging.getLogger("tagger.execution")

ExecutionName = Literal["eager", "compiling", "compiled"]

BUILD_NICENESS = 0
"""The build process shares the CPU with serving as an equal (as compiling in process did): a
niced build starved behind four busy clients for over 20 minutes on two cores, and compiled
graphs serve faster once they run."""


@dataclasses.dataclass(frozen=True)
class CompilePlan:
    """What the service compiles: the artifact's options and key, where it is cached, and the
    checkpoint the build process loads."""

    options: RuntimeOptions
    key: ArtifactKey
    cache: CompileCache
    checkpoint: Path
    int8_recipe_used: bool
    tag_sets: tuple[Path, ...] = ()


def plan_compile(
    model: TaggingModel,
    device: torch.device,
    options: RuntimeOptions,
    *,
    shapes: tuple[int, ...],
    checkpoint: Path,
    cache: CompileCache,
    int8: Int8Plan | None,
    tag_sets: tuple[Path, ...] = (),
) -> CompilePlan:
    """The compiled artifact a service with `options` runs (int8 where the plan says so)."""
    recipe = int8.recipe if int8 is not None and int8.use else None
    if recipe is not None:
        options = dataclasses.replace(options, precision="int8")
    elif int8 is not None:
        options = int8.fallback(options)
    key = artifact_key(model, device, options, shapes, int8_recipe=recipe)
    return CompilePlan(options, key, cache, checkpoint, recipe is not None, tag_sets)


class Execution:
    """Runs batches on one runtime: eagerly, then on the compiled artifact once it is loaded.

    Args:
        model: The network (the runtime takes ownership of it).
        device: Where to run.
        options: The runtime options; `compile` decides whether an artifact is loaded.
        max_batch: Largest batch callers pass.
        checkpoint: The checkpoint file the build process loads.
        cache: Where artifacts are cached.
        on_switch: Called after batches switched to compiled graphs, or after compilation
            failed, so that descriptions can be republished.
        int8: The int8 decision; when it is yes, the artifact is int8.
        build_threads: Threads of the build process (0: torch's default).
        tag_sets: The tag set files `model` was extended by; the build process extends the
            checkpoint by them too.
    """

    def __init__(
        self,
        model: TaggingModel,
        device: torch.device,
        options: RuntimeOptions,
        *,
        max_batch: int,
        checkpoint: Path,
        cache: CompileCache,
        on_switch: Callable[[], None] | None = None,
        int8: Int8Plan | None = None,
        build_threads: int = 0,
        tag_sets: tuple[Path, ...] = (),
    ) -> None:
        self.mode = options.compile
        self.int8 = int8
        self._on_switch = on_switch
        self._build_threads = build_threads
        eager = dataclasses.replace(options, compile="off")
        if int8 is not None:
            eager = int8.fallback(eager)
        self.plan: CompilePlan | None = None
        if self.mode != "off":
            # The digest ignores memory format, so the model is hashed once, before the runtime
            # moves it, and the runtime reuses the plan's digest for its own key.
            self.plan = plan_compile(
                model,
                device,
                options,
                shapes=batch_shapes(Runtime.chunk_cap(eager, device, max_batch)),
                checkpoint=checkpoint,
                cache=cache,
                int8=int8,
                tag_sets=tag_sets,
            )
        self.runtime = Runtime(
            model,
            device,
            eager,
            max_batch=max_batch,
            cache=cache,
            model_sha256=None if self.plan is None else self.plan.key.model_sha256,
        )
        self._pending = False
        self.compile_error: str | None = None
        self.compile_seconds: float | None = None
        self._thread: threading.Thread | None = None
        self._build: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def name(self) -> ExecutionName:
        """What runs the batches now."""
        if self.runtime.artifact is not None:
            return "compiled"
        # Without a warm-up (TAGGER_WARMUP=false) nothing ever starts the build.
        return "compiling" if self._pending else "eager"

    def __call__(self, windows: Tensor) -> Tensor:
        return self.runtime(windows)

    def warm_up(self) -> None:
        """Load a cached artifact or start building one, and run every shape once.

        Runs on the batcher's thread before the service reports ready.
        """
        plan = self.plan
        if plan is not None and self._load_cached(plan):
            self._warm_and_log()
            return
        if plan is not None and self.mode == "on":
            logger.info(
                "compiling %s before serving (TAGGER_COMPILE=on; about a minute on a 2-core CPU)",
                plan.key.describe(),
            )
            self._adopt(self._run_build(plan), plan)
            self._warm_and_log()
            return
        logger.info("warming up batch shapes %s eagerly (a few seconds)", list(self.runtime.shapes))
        self._warm_and_log()
        if plan is not None and self._thread is None:
            logger.info(
                "compiling %s in a background process; requests are served eagerly meanwhile "
                "(about a minute on a 2-core CPU)",
                plan.key.describe(),
            )
            self._pending = True
            self._thread = threading.Thread(
                target=self._build_in_background, args=(plan,), name="tagger-compile", daemon=True
            )
            self._thread.start()

    def _warm_and_log(self) -> None:
        self.runtime.warm_up()
        execution = "compiled" if self.runtime.artifact is not None else "eager"
        logger.info("execution: %s", execution, extra={"execution": execution})

    def _load_cached(self, plan: CompilePlan) -> bool:
        """Adopt the cache's artifact for `plan`; False (after discarding a bad entry) if none."""
        problem = plan.cache.problem(plan.key)
        if problem == "missing":
            logger.info("no compiled artifact %s in %s yet", plan.key.digest, plan.cache.root)
            return False
        if problem is None:
            try:
                self._adopt(plan.cache.load(plan.key), plan)
                return True
            except (CompileError, RuntimeError, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
        logger.warning(
            "discarding compiled artifact %s (%s); it will be rebuilt", plan.key.digest, problem
        )
        plan.cache.discard(plan.key)
        return False

    def _adopt(self, artifact: Artifact, plan: CompilePlan) -> None:
        self.runtime.adopt(artifact)
        logger.info(
            "compiled artifact: %s",
            artifact.describe(),
            extra={"artifact": str(artifact.path), "origin": artifact.origin},
        )

    def _run_build(self, plan: CompilePlan) -> Artifact:
        """Build `plan`'s artifact in a child process and load it; CompileError if it fails."""
        command = build_command(
            plan.checkpoint, plan.key, plan.cache, self.runtime.device, plan.tag_sets
        )
        command += ["--nice", str(BUILD_NICENESS), "--threads", str(self._build_threads)]
        started = time.monotonic()
        with self._lock:
            if self._stop.is_set():
                raise CompileError("the service is stopping")
            self._build = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # Its own session: a Ctrl-C or a signal to the service's process group is the
                # service's to handle; `stop` ends the build with it.
                start_new_session=True,
            )
        _, errors = self._build.communicate()
        if self._build.returncode != 0:
            last = errors.strip().splitlines()[-1:] or [f"exit status {self._build.returncode}"]
            raise CompileError(f"the build process failed: {last[0][:500]}")
        self.compile_seconds = time.monotonic() - started
        return plan.cache.load(plan.key, origin="built")

    def _build_in_background(self, plan: CompilePlan) -> None:
        try:
            artifact = self._run_build(plan)
            # Warm the package here, off the batcher's thread, so no request pays its first
            # call; running it computes with its own kernels, no autocast, no tracing.
            runtime = self.runtime
            generator = torch.Generator().manual_seed(0)
            with torch.inference_mode():
                for shape in runtime.shapes:
                    windows = 0.1 * torch.randn(shape, runtime.window_samples, generator=generator)
                    artifact(windows.to(runtime.device))
            if not self._stop.is_set():
                self._adopt(artifact, plan)
                logger.info(
                    "execution: compiled (batch shapes %s compiled in %.1f s)",
                    list(self.runtime.shapes),
                    self.compile_seconds or 0.0,
                    extra={"execution": "compiled", "compile_seconds": self.compile_seconds},
                )
        except Exception as error:  # compile="auto": keep serving eagerly
            self.compile_error = f"{type(error).__name__}: {str(error)[:500]}"
            if not self._stop.is_set():
                logger.warning("compilation failed, staying eager: %s", self.compile_error)
        self._pending = False
        if self._on_switch is not None:
            self._on_switch()

    def stop(self) -> None:
        """Do not switch any more, and end a build in progress."""
        with self._lock:
            self._stop.set()
            if self._build is not None and self._build.poll() is None:
                self._build.kill()
