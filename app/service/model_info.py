"""`GET /model`: what is loaded and how it runs, built from a `TaggingService`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.service.schemas import BatchingInfo, ModelInfo, RuntimeDescription

if TYPE_CHECKING:
    from app.service.tagging import TaggingService


def describe_model(service: TaggingService) -> ModelInfo:
    metadata = service.checkpoint.metadata
    runtime = service.runtime.info()
    execution = service.execution
    settings = service.settings
    provenance = metadata.provenance
    return ModelInfo(
        model_id=service.model_id,
        preset=metadata.preset,
        architecture=metadata.architecture,
        parameters=service.model.num_parameters(),
        checkpoint_sha256=service.checkpoint.sha256,
        n_tags=len(service.tags),
        sample_rate=service.model.audio.sample_rate,
        window_samples=service.model.audio.window_samples,
        window_seconds=service.model.audio.window_seconds,
        device=str(service.device),
        dtype=service.dtype_name,
        torch_threads=service.torch_threads,
        runtime=RuntimeDescription(
            precision=runtime.precision,
            channels_last=runtime.channels_last,
            compile=settings.compile,
            compiled=runtime.compiled,
            execution=execution.name,
            compile_error=runtime.compile_error or execution.compile_error,
            warmup_seconds=runtime.warmup_seconds,
            compile_seconds=execution.compile_seconds,
            artifact=runtime.artifact,
            compile_cache=None if execution.plan is None else str(execution.plan.cache.root),
            int8=service.int8.use,
            int8_reason=service.int8.decision.reason,
        ),
        batching=BatchingInfo(
            max_batch_windows=settings.max_batch_windows,
            max_wait_ms=settings.max_wait_ms,
            max_queued_windows=settings.max_queued_windows,
            batch_shapes=list(service.runtime.shapes),
        ),
        training_data=provenance.get("training_data"),
        metrics=provenance.get("metrics"),
        provenance=provenance,
    )
