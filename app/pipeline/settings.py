"""The settings both front ends read: which checkpoint, on which device, at which precision.

`tagger serve` reads them as part of the service's `Settings`, which extends this class;
`tagger tag` reads only these, so a service-only variable that is invalid (`TAGGER_PORT=abc`)
is the service's problem and never stops a run on local files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.pipeline.defaults import default_checkpoint_path


class ModelSettings(BaseSettings):
    """The model's `TAGGER_*` variables; docs/service.md has the table with defaults."""

    # Other TAGGER_* variables are ignored here; the service's `Settings` forbids unknown ones.
    model_config = SettingsConfigDict(env_prefix="TAGGER_", extra="ignore", frozen=True)

    checkpoint: Path = Field(
        default_factory=default_checkpoint_path,
        description="The .safetensors checkpoint to serve.",
    )
    tag_sets: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Tag set files and folders (every .safetensors in a folder) whose taught "
        "tags are served beside the checkpoint's, separated by ':' (docs/custom-tags.md).",
    )
    device: str = Field(
        default="auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        default="auto",
        description="Inference precision: 'auto' is bf16 where the CPU or GPU computes it "
        "natively (fp16 on older GPUs), else fp32, and int8 convolutions on a CPU with int8 "
        "dot products when the checkpoint's int8 calibration passed its accuracy check and "
        "measured faster; 'int8' forces int8 (refused for a checkpoint failing its check); "
        "the mel front end always stays fp32.",
    )
    channels_last: bool = Field(
        default=True, description="Channels-last memory format for the convolutions."
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="Intra-op threads for CPU inference; 0 picks one less than the core count.",
    )

    @field_validator("tag_sets", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: paths separated like PATH's
            return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not (value == "auto" or value == "cpu" or value.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {value!r}")
        return value
