"""Tolerations and affinity in the shape of the core API, so that the API server checks them and
the Deployment apply cannot fail on garbage; control-plane nodes stay out of reach."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator

from vlm_operator.api.base import ApiModel, Int32, Int64, cel
from vlm_operator.api.safety import (
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    NOT_CONTROL_PLANE_KEY,
    check_not_control_plane,
    rules,
)

LabelKey = Annotated[str, Field(min_length=1, max_length=316, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
Values = Annotated[list[Annotated[str, Field(max_length=316)]], Field(max_length=64)]
Weight = Annotated[Int32, Field(ge=1, le=100)]
AVOIDING = ("NotIn", "DoesNotExist")
"""Node-selector operators that keep pods away from the nodes a label names."""


class Toleration(ApiModel):
    """A toleration of the core API. The key is required: an empty key with Exists would
    tolerate every taint, the control-plane one included."""

    model_config = ConfigDict(json_schema_extra=rules(NOT_CONTROL_PLANE_KEY))

    key: Annotated[LabelKey, AfterValidator(check_not_control_plane)]
    """The taint key the toleration matches."""

    operator: Literal["Exists", "Equal"] | None = None
    """Exists matches any value; Equal (the default) matches value."""

    value: LabelValue | None = None
    """The taint value, with Equal."""

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect to match; unset matches every effect."""

    toleration_seconds: Annotated[Int64 | None, Field(ge=0, le=31_536_000)] = None
    """With NoExecute: how long the pod stays bound after the taint appears."""


class NodeSelectorRequirement(ApiModel):
    """One node-label expression; one that selects control-plane nodes is refused, one that
    keeps away from them (NotIn, DoesNotExist) is fine."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                f"{NOT_CONTROL_PLANE_KEY['rule']} || self.operator in {list(AVOIDING)}",
                str(NOT_CONTROL_PLANE_KEY["message"]),
                ".key",
            )
        )
    )

    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the label is compared with values."""

    key: LabelKey
    """The node label key."""

    @field_validator("key")
    @classmethod
    def _not_selecting_control_plane(cls, key: str, info: ValidationInfo) -> str:
        return key if info.data.get("operator") in AVOIDING else check_not_control_plane(key)

    values: Values = []
    """Values to compare with."""


class NodeSelectorTerm(ApiModel):
    """Expressions that must all hold on a node."""

    match_expressions: Annotated[list[NodeSelectorRequirement], Field(max_length=32)] = []
    """Expressions over node labels."""


class NodeSelector(ApiModel):
    """Terms of which at least one must hold."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(min_length=1, max_length=16)]
    """The terms, ORed."""


class PreferredSchedulingTerm(ApiModel):
    """A weighted preference for nodes."""

    weight: Weight
    """Weight, 1 to 100."""

    preference: NodeSelectorTerm
    """The nodes preferred."""


class NodeAffinity(ApiModel):
    """Which nodes the vLLM pods may or prefer to run on."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pods must run on."""

    preferred_during_scheduling_ignored_during_execution: Annotated[
        list[PreferredSchedulingTerm], Field(max_length=16)
    ] = []
    """Nodes the pods prefer."""


class LabelSelectorRequirement(ApiModel):
    """One pod-label expression."""

    key: LabelKey
    """The label key."""

    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label is compared with values."""

    values: Values = []
    """Values to compare with."""


class LabelSelector(ApiModel):
    """A pod label selector."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=32)] = {}
    """Labels that must be equal."""

    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=32)] = []
    """Expressions that must hold."""


class PodAffinityTerm(ApiModel):
    """Pods, in the VisionModel's namespace, to be placed with or away from."""

    label_selector: LabelSelector | None = None
    """The pods."""

    topology_key: LabelKey
    """The node label whose equal values count as together, e.g. kubernetes.io/hostname."""


class WeightedPodAffinityTerm(ApiModel):
    """A weighted preference to be with or away from pods."""

    weight: Weight
    """Weight, 1 to 100."""

    pod_affinity_term: PodAffinityTerm
    """The pods."""


class PodAffinity(ApiModel):
    """Pod (anti-)affinity terms."""

    required_during_scheduling_ignored_during_execution: Annotated[
        list[PodAffinityTerm], Field(max_length=16)
    ] = []
    """Terms that must hold."""

    preferred_during_scheduling_ignored_during_execution: Annotated[
        list[WeightedPodAffinityTerm], Field(max_length=16)
    ] = []
    """Terms that should hold."""


class Affinity(ApiModel):
    """Affinity of the vLLM pods: the core API's fields, namespace selectors left out."""

    node_affinity: NodeAffinity | None = None
    """Node affinity."""

    pod_affinity: PodAffinity | None = None
    """Be placed with these pods."""

    pod_anti_affinity: PodAffinity | None = None
    """Be placed away from these pods."""
