"""Operator configuration: values that follow operator upgrades, never stored in the CRD."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from vlm_operator.catalog.engine import VLLM_IMAGE, VLLM_VERSION


class OperatorConfig(BaseModel):
    """Settings of one operator installation, read from VLM_OPERATOR_* environment variables."""

    model_config = ConfigDict(frozen=True)

    vllm_image: str = VLLM_IMAGE
    """The vLLM container image, pinned to the engine version the planner models."""

    vllm_version: str = VLLM_VERSION
    """The engine version, recorded in the app.kubernetes.io/version label."""

    download_mib_per_second: Annotated[float, Field(gt=0)] = 100.0
    """Bandwidth assumed for downloading weights into an empty cache."""

    load_mib_per_second: Annotated[float, Field(gt=0)] = 500.0
    """Bandwidth assumed for loading weights from a warm cache (a PersistentVolumeClaim)."""

    engine_init_seconds: Annotated[int, Field(ge=0)] = 180
    """Time vLLM spends after loading: memory profiling, CUDA graph capture, warm-up."""

    startup_safety_factor: Annotated[float, Field(ge=1)] = 2.0
    """Multiplier on the expected start time before the startup probe gives up."""

    resync_seconds: Annotated[float, Field(gt=0)] = 30.0
    """How often every VisionModel is reconciled even without events, to repair drift."""

    autoscale_seconds: Annotated[float, Field(gt=0)] = 15.0
    """How often the operator's autoscaler evaluates each VisionModel with driver operator."""

    scrape_pods: bool = True
    """Whether the pods metrics source may connect to pod IPs. Off where pod IPs are not
    routable from the operator (a simulated cluster); such VisionModels then hold."""

    @classmethod
    def from_environment(cls) -> OperatorConfig:
        """Build the configuration from VLM_OPERATOR_<FIELD> variables; unset ones keep defaults."""
        values = {
            name: os.environ[f"VLM_OPERATOR_{name.upper()}"]
            for name in cls.model_fields
            if f"VLM_OPERATOR_{name.upper()}" in os.environ
        }
        return cls.model_validate(values)
