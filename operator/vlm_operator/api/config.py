"""Operator configuration: values that follow operator upgrades, never stored in the CRD.

One installation's settings come from a YAML file (the chart's ConfigMap, `run --config FILE`)
whose keys are the camelCase field names, with VLM_OPERATOR_<FIELD> environment variables on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from vlm_operator.api.safety import flag_name
from vlm_operator.catalog.engine import VLLM_IMAGE, VLLM_VERSION

DEFAULT_EXTRA_ARGS_ALLOWED = (
    "--enforce-eager",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
    "--seed",
    "--disable-log-stats",
    "--max-logprobs",
    "--tool-call-parser",
    "--reasoning-parser",
)
"""vllm serve flags a VisionModel may add by default: none changes what the plan sized, where
the server listens, which code it runs or which files and hosts it reads."""
TRUST_REMOTE_CODE = "--trust-remote-code"
"""Runs Python code from the model repository; off unless the configuration allows it."""


class OperatorConfig(BaseModel):
    """Settings of one operator installation."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )

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

    gpu_costs: dict[str, Annotated[float, Field(gt=0)]] = {}
    """Relative price per GPU-hour by nvidia.com/gpu.product, overriding the GPU catalog's:
    `gpuProduct: auto` takes the cheapest product that fits."""

    scrape_pods: bool = True
    """Whether the pods metrics source may connect to pod IPs. Off where pod IPs are not
    routable from the operator (a simulated cluster); such VisionModels then hold."""

    extra_args_allowed: tuple[str, ...] = DEFAULT_EXTRA_ARGS_ALLOWED
    """The vllm serve flags engine.extraArgs may set (--name; a dotted --name.key is allowed with
    --name). Every other flag is refused with the VisionModel Stalled. As an environment
    variable: a comma-separated list."""

    allow_trust_remote_code: bool = False
    """Whether engine.extraArgs may pass --trust-remote-code, which runs Python code downloaded
    with the model inside the vLLM pod."""

    @field_validator("extra_args_allowed", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        return tuple(item for item in value.split(",") if item) if isinstance(value, str) else value

    def refused_extra_args(self, extra_args: Sequence[str]) -> list[tuple[int, str]]:
        """(index, why) of every engine.extraArgs item this installation does not pass on."""
        refused: list[tuple[int, str]] = []
        takes_value = False
        for index, argument in enumerate(extra_args):
            name = flag_name(argument)
            if name is None:
                if not takes_value:
                    refused.append((index, f"{argument!r} is a value with no flag before it"))
                takes_value = False
                continue
            flag = f"--{name.split('.', 1)[0]}"
            takes_value = "=" not in argument
            if flag == TRUST_REMOTE_CODE:
                if not self.allow_trust_remote_code:
                    refused.append(
                        (
                            index,
                            f"{flag} is off in the operator's configuration (allowTrustRemoteCode)",
                        )
                    )
            elif flag not in self.extra_args_allowed:
                refused.append(
                    (
                        index,
                        f"{flag} is not in the operator's extraArgsAllowed: "
                        + ", ".join(self.extra_args_allowed),
                    )
                )
        return refused

    @classmethod
    def load(cls, path: Path | None, environment: Mapping[str, str]) -> OperatorConfig:
        """The file's settings (camelCase keys; none when path is None), then every
        VLM_OPERATOR_<FIELD> variable of `environment` on top; unset fields keep defaults."""
        values: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: operator configuration must be a mapping")
            values.update(loaded)
        for name, field in cls.model_fields.items():
            variable = f"VLM_OPERATOR_{name.upper()}"
            if variable in environment:
                values.pop(field.alias or name, None)
                values[name] = environment[variable]
        return cls.model_validate(values)
