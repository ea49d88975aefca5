"""Names that are part of the API contract: group, kind, labels, condition types and reasons."""

from __future__ import annotations

from enum import StrEnum

GROUP = "vlm-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VisionModel"
PLURAL = "visionmodels"
SINGULAR = "visionmodel"
SHORT_NAMES = ("vlm",)
CATEGORIES = ("inference", "vlm-operator")
FIELD_MANAGER = "vlm-operator"

# Children get names "<visionmodel>-<suffix>"; 50 leaves room under the 63-character label limit.
MAX_NAME_LENGTH = 50

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_VERSION = "app.kubernetes.io/version"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COMPUTE_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
GPU_COMPUTE_MINOR_LABEL = "nvidia.com/gpu.compute.minor"


class ConditionType(StrEnum):
    """Condition types written to status.conditions."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Reason(StrEnum):
    """CamelCase reasons used in conditions and events."""

    MODEL_LOADING = "ModelLoading"
    MODEL_SERVING = "ModelServing"
    ROLLING_UPDATE = "RollingUpdate"
    SCALED_TO_ZERO = "ScaledToZero"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    UNSUPPORTED_MODEL = "UnsupportedModel"
    INVALID_SPEC = "InvalidSpec"
    NO_MATCHING_GPU_NODES = "NoMatchingGPUNodes"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    PLAN_CHOSEN = "PlanChosen"
    PLAN_CHANGED = "PlanChanged"
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    SCALING_HELD = "ScalingHeld"
    AUTOSCALER_UNAVAILABLE = "AutoscalerUnavailable"
    NAME_CONFLICT = "NameConflict"
