"""VisionModel v1alpha1: the resource users write, and the status the operator reports."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlm_operator.api.base import ApiModel, Int32, Int64, cel, list_map
from vlm_operator.api.constants import MAX_NAME_LENGTH
from vlm_operator.api.safety import (
    DATA_KEY,
    DATA_KEY_PATTERN,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    ENV_NAME,
    EXTRA_ARG_OPERATOR_FLAG,
    EXTRA_ARG_SPELLING,
    IMAGE_PATTERN,
    LABEL_KEYS,
    LABEL_VALUE_PATTERN,
    MODEL_ID_PATTERN,
    NO_DOT_DOT,
    NOT_CONTROL_PLANE_KEYS,
    REVISION_PATTERN,
    SAFE_TEXT_PATTERN,
    SERVED_NAME_PATTERN,
    TOKEN_SECRET_KEY,
    TOKEN_SECRET_NAME,
    URL_PATTERN,
    URL_RULES,
    check_data_key,
    check_env_name,
    check_extra_arg,
    check_no_dot_dot,
    check_node_selector,
    check_token_secret_key,
    check_token_secret_name,
    check_url,
    rules,
)
from vlm_operator.api.scheduling import Affinity, Toleration

Precision = Literal["auto", "bf16", "fp16", "fp8", "awq", "gptq"]
CheckpointQuantization = Literal["none", "awq", "gptq", "fp8"]
KVCacheDtype = Literal["auto", "fp8"]
ImageTokenFamily = Literal[
    "llava",
    "llava-next",
    "qwen2-vl",
    "qwen2.5-vl",
    "qwen3-vl",
    "internvl",
    "mllama",
    "gemma3",
    "phi3v",
    "deepseek-vl2",
    "pixtral",
    "mistral3",
    "idefics3",
]
AttentionKind = Literal["standard", "sliding-window-mix", "multi-head-latent", "cross-attention"]
ScalingDriver = Literal["operator", "keda", "hpa"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$"
GPU_PRODUCT_PATTERN = r"^(auto|[A-Za-z0-9][A-Za-z0-9._-]*)$"
MAX_REPLICAS = 100
"""A bound on every replica count: one VisionModel holds at most this many vLLM replicas."""


class SecretKeyRef(ApiModel):
    """A key in a Secret in the VisionModel's namespace. The operator never reads the Secret,
    so it cannot check its type: names and keys of service-account token Secrets are refused."""

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            pattern=DNS_SUBDOMAIN_PATTERN,
            json_schema_extra=rules(TOKEN_SECRET_NAME),
        ),
        AfterValidator(check_token_secret_name),
    ]
    """Name of the Secret."""

    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            pattern=DATA_KEY_PATTERN,
            json_schema_extra=rules(DATA_KEY, TOKEN_SECRET_KEY),
        ),
        AfterValidator(check_token_secret_key),
    ] = "token"
    """Key inside the Secret whose value is the token."""


class ConfigMapKeyRef(ApiModel):
    """A key in a ConfigMap in the VisionModel's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
    """Name of the ConfigMap."""

    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            pattern=DATA_KEY_PATTERN,
            json_schema_extra=rules(DATA_KEY),
        ),
        AfterValidator(check_data_key),
    ] = "config.json"
    """Key inside the ConfigMap that holds the Hugging Face config.json."""


class ModelCache(ApiModel):
    """Where the model weights are downloaded to and kept."""

    persistent_volume_claim: Annotated[
        str | None, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    ] = None
    """Name of an existing PersistentVolumeClaim mounted as the Hugging Face cache.
    When absent, an emptyDir of sizeLimit is used and weights are downloaded on every start."""

    size_limit: Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)] = "200Gi"
    """Size limit of the emptyDir cache, as a Kubernetes quantity. Ignored with a PVC."""


class ArchitectureOverrides(ApiModel):
    """Architecture facts for a model outside the built-in catalog, or corrections to it.

    Each field set here replaces the catalog's value; unset fields keep it."""

    config_map_ref: ConfigMapKeyRef | None = None
    """A ConfigMap holding the model's Hugging Face config.json; its standard fields are parsed.
    Fields set explicitly below take precedence over the parsed file."""

    family: ImageTokenFamily | None = None
    """The image-token rule of the model's family, i.e. how vLLM turns an image into tokens."""

    attention: AttentionKind | None = None
    """The kind of attention of the language model, which decides the KV cache layout."""

    parameters: Annotated[Int64 | None, Field(ge=1_000_000, le=10_000_000_000_000)] = None
    """Total parameter count of the checkpoint, vision tower included."""

    vision_parameters: Annotated[Int64 | None, Field(ge=0, le=100_000_000_000)] = None
    """Parameters of the vision tower and its projector."""

    num_layers: Annotated[Int32 | None, Field(ge=1, le=1024)] = None
    """Number of decoder layers of the language model."""

    hidden_size: Annotated[Int32 | None, Field(ge=16, le=131072)] = None
    """Hidden size of the language model."""

    intermediate_size: Annotated[Int32 | None, Field(ge=16, le=1048576)] = None
    """MLP intermediate size of the language model."""

    num_attention_heads: Annotated[Int32 | None, Field(ge=1, le=1024)] = None
    """Number of attention (query) heads of the language model."""

    num_key_value_heads: Annotated[Int32 | None, Field(ge=1, le=1024)] = None
    """Number of key/value heads (GQA) of the language model."""

    head_dim: Annotated[Int32 | None, Field(ge=8, le=1024)] = None
    """Dimension of one attention head."""

    vocab_size: Annotated[Int32 | None, Field(ge=1, le=4_000_000)] = None
    """Vocabulary size of the language model."""

    max_position_embeddings: Annotated[Int32 | None, Field(ge=128, le=16_777_216)] = None
    """The longest context the model supports, in tokens."""

    sliding_window: Annotated[Int32 | None, Field(ge=1, le=16_777_216)] = None
    """Window of the sliding-window layers, in tokens, for sliding-window-mix attention."""

    supports_video: bool | None = None
    """Whether the model accepts video input."""


class ModelSpec(ApiModel):
    """Which model to serve."""

    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            pattern=MODEL_ID_PATTERN,
            json_schema_extra=rules(NO_DOT_DOT),
        ),
        AfterValidator(check_no_dot_dot),
    ]
    """Hugging Face model id, for example Qwen/Qwen2.5-VL-7B-Instruct."""

    revision: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            pattern=REVISION_PATTERN,
            json_schema_extra=rules(NO_DOT_DOT),
        ),
        AfterValidator(lambda value: value if value is None else check_no_dot_dot(value)),
    ] = None
    """Model revision: a branch, tag or commit hash. Unset means the default branch."""

    served_name: Annotated[
        str | None, Field(min_length=1, max_length=200, pattern=SERVED_NAME_PATTERN)
    ] = None
    """Name clients use in the OpenAI API's model field. Defaults to the model id."""

    checkpoint_quantization: CheckpointQuantization = "none"
    """The quantization the checkpoint was published in. awq and gptq precisions need a
    checkpoint quantized that way; fp8 checkpoints are served at fp8."""

    token_secret_ref: SecretKeyRef | None = None
    """Secret holding a Hugging Face token, passed to vLLM as HF_TOKEN. The operator never
    reads it."""

    cache: ModelCache = ModelCache()
    """Where weights are cached."""

    architecture: ArchitectureOverrides | None = None
    """Architecture facts for models outside the built-in catalog."""


class ImageSize(ApiModel):
    """The largest image, in pixels, that users send."""

    width: Annotated[Int32, Field(ge=14, le=16384)] = 1280
    """Width in pixels."""

    height: Annotated[Int32, Field(ge=14, le=16384)] = 1280
    """Height in pixels."""


class WorkloadSpec(ApiModel):
    """What requests look like. The plan sizes memory and engine limits for this workload."""

    max_images_per_request: Annotated[Int32, Field(ge=0, le=64)] = 1
    """Most images in one request. vLLM is limited to this many with --limit-mm-per-prompt."""

    max_image_size: ImageSize = ImageSize()
    """The largest image users send; larger ones are downscaled by the model's processor."""

    max_videos_per_request: Annotated[Int32, Field(ge=0, le=8)] = 0
    """Most videos in one request. 0 disables video, which keeps vLLM from profiling for it."""

    max_video_frames: Annotated[Int32, Field(ge=1, le=1024)] = 32
    """Most frames sampled from one video."""

    prompt_tokens: Annotated[Int32, Field(ge=1, le=1_048_576)] = 512
    """Text tokens in a typical long prompt, images excluded."""

    output_tokens: Annotated[Int32, Field(ge=1, le=1_048_576)] = 512
    """Tokens generated per request at most."""

    concurrency: Annotated[Int32, Field(ge=1, le=4096)] = 16
    """Requests one replica must hold in flight at once at full length."""


class HardwareSpec(ApiModel):
    """Which GPUs a replica may use, and pins for the plan."""

    gpu_product: Annotated[
        str, Field(min_length=1, max_length=128, pattern=GPU_PRODUCT_PATTERN)
    ] = "auto"
    """GPU product as in the node label nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3.
    auto picks among the products present on the cluster's GPU nodes."""

    max_gpus_per_replica: Annotated[Int32, Field(ge=1, le=16)] = 8
    """Most GPUs one replica may use."""

    precision: Precision = "auto"
    """Weight precision. auto picks the highest precision that fits."""

    kv_cache_dtype: KVCacheDtype = "auto"
    """KV cache element type. fp8 halves the KV cache per token."""

    tensor_parallel_size: Annotated[Int32 | None, Field(ge=1, le=16)] = None
    """Pins tensor parallelism. Unset lets the planner choose."""

    node_selector: Annotated[
        dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]],
        Field(max_length=32, json_schema_extra=rules(LABEL_KEYS, NOT_CONTROL_PLANE_KEYS)),
        AfterValidator(check_node_selector),
    ] = {}
    """Extra node labels a replica's node must carry. Control-plane roles are refused."""

    tolerations: Annotated[list[Toleration], Field(max_length=32)] = []
    """Extra tolerations for the vLLM pods. The GPU taint is tolerated always; a toleration of
    every taint (no key) or of the control-plane taint is refused."""

    affinity: Affinity | None = None
    """Affinity for the vLLM pods. Node affinity may not target control-plane nodes."""


class PrometheusSource(ApiModel):
    """A Prometheus server to read metrics from."""

    url: Annotated[
        str,
        Field(
            min_length=8,
            max_length=512,
            pattern=URL_PATTERN,
            json_schema_extra=rules(*URL_RULES),
        ),
        AfterValidator(check_url),
    ]
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090: http or
    https, no credentials, query or fragment, no link-local or metadata address."""


class PodsSource(ApiModel):
    """Scrape the vLLM pods' /metrics endpoints directly."""


class MetricsSource(ApiModel):
    """Where autoscaling reads its metrics. Exactly one member must be set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.prometheus), has(self.pods)].filter(x, x).size() == 1",
                    "exactly one of prometheus or pods must be set",
                )
            ]
        }
    )

    prometheus: PrometheusSource | None = None
    """Query a Prometheus server."""

    pods: PodsSource | None = None
    """Scrape the pods directly."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.prometheus is None) == (self.pods is None):
            raise ValueError("exactly one of prometheus or pods must be set")
        return self


class ScalingSpec(ApiModel):
    """Autoscaling bounds, targets and timing. Absent means spec.replicas is used as written."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".maxReplicas",
                ),
                cel(
                    "self.warmReplicas <= self.maxReplicas",
                    "warmReplicas must be less than or equal to maxReplicas",
                    ".warmReplicas",
                ),
                cel(
                    "self.driver == 'operator' || has(self.metricsSource.prometheus)",
                    "the keda and hpa drivers read Prometheus: set metricsSource.prometheus",
                    ".metricsSource",
                ),
            ]
        }
    )

    min_replicas: Annotated[Int32, Field(ge=0, le=MAX_REPLICAS)] = 1
    """Fewest replicas. 0 allows scale to zero after scaleToZeroAfterSeconds without traffic."""

    max_replicas: Annotated[Int32, Field(ge=1, le=MAX_REPLICAS)] = 4
    """Most replicas."""

    warm_replicas: Annotated[Int32, Field(ge=0, le=MAX_REPLICAS)] = 0
    """Loaded, idle replicas kept on top of demand, because a replica takes minutes to start."""

    queue_depth_target: Annotated[Int32, Field(ge=1, le=10000)] = 4
    """Waiting requests per replica that the autoscaler aims for."""

    gpu_utilization_target_percent: Annotated[Int32, Field(ge=1, le=100)] = 80
    """GPU utilization, in percent, that the autoscaler aims for."""

    driver: ScalingDriver = "operator"
    """Who writes spec.replicas: the operator's own loop, a KEDA ScaledObject, or an HPA.
    keda and hpa need metricsSource.prometheus."""

    metrics_source: Annotated[MetricsSource, Field(validate_default=True)] = MetricsSource(
        pods=PodsSource()
    )
    """Where metrics come from."""

    @field_validator("metrics_source")
    @classmethod
    def _external_drivers_read_prometheus(
        cls, metrics_source: MetricsSource, info: ValidationInfo
    ) -> MetricsSource:
        driver = info.data.get("driver", "operator")
        if driver != "operator" and metrics_source.prometheus is None:
            raise ValueError(f"the {driver} driver reads Prometheus: set metricsSource.prometheus")
        return metrics_source

    scale_up_delay_seconds: Annotated[Int32, Field(ge=0, le=3600)] = 0
    """How long demand must stay above capacity before scaling up."""

    scale_down_delay_seconds: Annotated[Int32, Field(ge=0, le=86400)] = 300
    """How long demand must stay below capacity before scaling down."""

    scale_to_zero_after_seconds: Annotated[Int32, Field(ge=60, le=604800)] = 1800
    """With minReplicas 0: scale to zero after this long without any request."""

    wake_on_request: bool = False
    """With minReplicas 0: the activator (images/activator) in front of the model may raise
    replicas from 0 to 1 when a request arrives, and the autoscaler reads the requests it holds."""

    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, max_replicas: int, info: ValidationInfo) -> int:
        min_replicas = info.data.get("min_replicas")
        if min_replicas is not None and min_replicas > max_replicas:
            raise ValueError(
                f"minReplicas ({min_replicas}) must be less than or equal to "
                f"maxReplicas ({max_replicas})"
            )
        return max_replicas

    @field_validator("warm_replicas")
    @classmethod
    def _warm_not_above_max(cls, warm_replicas: int, info: ValidationInfo) -> int:
        max_replicas = info.data.get("max_replicas")
        if max_replicas is not None and warm_replicas > max_replicas:
            raise ValueError(
                f"warmReplicas ({warm_replicas}) must be less than or equal to "
                f"maxReplicas ({max_replicas})"
            )
        return warm_replicas


class EnvVar(ApiModel):
    """An environment variable with a literal value."""

    model_config = ConfigDict(json_schema_extra=rules(ENV_NAME))

    name: Annotated[
        str,
        Field(min_length=1, max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
        AfterValidator(check_env_name),
    ]
    """Variable name."""

    value: Annotated[str, Field(max_length=4096, pattern=SAFE_TEXT_PATTERN)] = ""
    """Variable value. `$` is passed literally: the operator escapes it from the kubelet's
    $(VAR) expansion."""


class EngineSpec(ApiModel):
    """vLLM engine settings. Pins here are honoured by the planner instead of being derived."""

    image: Annotated[str | None, Field(min_length=1, max_length=512, pattern=IMAGE_PATTERN)] = None
    """vLLM container image. Unset uses the operator's pinned image."""

    max_model_len: Annotated[Int32 | None, Field(ge=128, le=16_777_216)] = None
    """Pins --max-model-len. Unset derives it from the workload."""

    max_num_seqs: Annotated[Int32 | None, Field(ge=1, le=4096)] = None
    """Pins --max-num-seqs. Unset derives it from workload.concurrency."""

    gpu_memory_utilization_percent: Annotated[Int32 | None, Field(ge=10, le=99)] = None
    """Pins --gpu-memory-utilization, in percent. Unset uses the engine default."""

    extra_args: Annotated[
        list[
            Annotated[
                str,
                Field(
                    max_length=1024,
                    pattern=SAFE_TEXT_PATTERN,
                    json_schema_extra=rules(EXTRA_ARG_SPELLING, EXTRA_ARG_OPERATOR_FLAG),
                ),
                AfterValidator(check_extra_arg),
            ]
        ],
        Field(max_length=64),
    ] = []
    """Extra arguments appended to vllm serve, each one argument (never a shell string). Flags
    are spelled --name or --name=value; the flags the plan writes, --host, --api-key and
    --allowed-local-media-path are refused, and the operator's configuration decides which
    other flags pass (extraArgsAllowed, allowTrustRemoteCode). `$` is passed literally."""

    env: Annotated[list[EnvVar], Field(max_length=64, json_schema_extra=list_map("name"))] = []
    """Extra environment variables for the vLLM container; names are unique."""

    @field_validator("env")
    @classmethod
    def _unique_env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        names = [var.name for var in env]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate names: {', '.join(duplicates)}")
        return env


class ServiceSpec(ApiModel):
    """How the OpenAI-compatible endpoint is exposed."""

    type: ServiceType = "ClusterIP"
    """Kubernetes Service type."""

    port: Annotated[Int32, Field(ge=1, le=65535)] = 8000
    """Service port."""


class VisionModelSpec(ApiModel):
    """The desired state of one vision-language model served by vLLM."""

    model: ModelSpec
    """Which model to serve."""

    workload: WorkloadSpec = WorkloadSpec()
    """What requests look like."""

    hardware: HardwareSpec = HardwareSpec()
    """Which GPUs to use, and plan pins."""

    replicas: Annotated[Int32, Field(ge=0, le=MAX_REPLICAS)] = 1
    """Number of vLLM replicas. Written by the autoscaler when scaling is set."""

    scaling: ScalingSpec | None = None
    """Autoscaling. Absent means replicas is used as written."""

    engine: EngineSpec = EngineSpec()
    """vLLM engine settings."""

    service: ServiceSpec = ServiceSpec()
    """How the endpoint is exposed."""


class ObjectMeta(ApiModel):
    """The part of metadata this API reads."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_LABEL_PATTERN)]
    """Name of the VisionModel; children are named after it."""

    namespace: str | None = None
    """Namespace of the VisionModel."""

    generation: int | None = None
    """Generation of the spec, set by the API server."""


class Condition(ApiModel):
    """A condition in the metav1.Condition shape."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Type of the condition: Ready, Reconciling or Stalled."""

    status: Literal["True", "False", "Unknown"]
    """Status of the condition."""

    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ]
    """A CamelCase reason for the condition's last transition."""

    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation."""

    last_transition_time: str
    """When the status last changed, RFC 3339."""

    observed_generation: Annotated[Int64 | None, Field(ge=0)] = None
    """The generation this condition was computed from."""


class MemoryBreakdown(ApiModel):
    """Planned memory of one GPU, in GiB."""

    weights: float
    """All weights held on one GPU."""

    vision: float
    """The vision tower's part of weights."""

    activation: float
    """Peak activation of vLLM's profile run: decoder plus vision encoder."""

    cuda_graphs: float
    """CUDA graph memory."""

    overhead: float
    """Non-torch memory: CUDA context, NCCL buffers."""

    kv_cache: float
    """What is left for the KV cache."""

    budget: float
    """Total GPU memory times gpu memory utilization."""


class RejectedCandidate(ApiModel):
    """A candidate plan that was considered and refused."""

    candidate: Annotated[str, Field(max_length=256)]
    """The candidate, e.g. NVIDIA-L40S/bf16/tp2."""

    reason: Annotated[str, Field(max_length=1024)]
    """Why it was refused."""


class PlanStatus(ApiModel):
    """The chosen sizing plan, and why."""

    feasible: bool
    """Whether the plan fits."""

    reason: Annotated[str, Field(max_length=4096)] = ""
    """Why the plan does not fit, and the smallest change that would."""

    gpu_product: str
    """GPU product of the plan."""

    precision: str
    """Weight precision."""

    tensor_parallel_size: Int32
    """Tensor parallel size."""

    gpus_per_replica: Int32
    """GPUs per replica."""

    max_model_len: Int32
    """--max-model-len."""

    max_num_seqs: Int32
    """--max-num-seqs."""

    gpu_memory_utilization: float
    """--gpu-memory-utilization."""

    tokens_per_image: Int32
    """Decoder tokens of the costliest image inside the declared box (width and height at most
    maxImageSize's): what sizes max-model-len and the KV cache."""

    tokens_per_declared_image: Int32 = 0
    """Decoder tokens of an image of exactly the declared size."""

    worst_case_image: Annotated[str, Field(max_length=32)] = ""
    """The costliest image inside the box, as WIDTHxHEIGHT: the dummy image vLLM profiles."""

    max_num_batched_tokens: Int32 = 0
    """--max-num-batched-tokens, raised above vLLM's default when its encoder cache would
    otherwise refuse an image inside the box."""

    encoder_cache_tokens: Int32 = 0
    """Embeddings vLLM's encoder cache will hold: at least those of the costliest item."""

    placement: Annotated[str, Field(max_length=1024)] = ""
    """Why this GPU product: the cheapest fit, the one already running, or the cheapest with
    free GPUs; and when replicas wait for GPUs, which feasible product has room."""

    kv_cache_tokens: Int64
    """Tokens the KV cache holds across the replica."""

    memory_gib: Annotated[MemoryBreakdown, Field(alias="memoryGiB")]
    """Memory per GPU, in GiB."""

    engine_args: Annotated[list[str], Field(max_length=128)] = []
    """The vllm serve arguments."""

    rejected: Annotated[list[RejectedCandidate], Field(max_length=256)] = []
    """Candidates considered and refused."""


class AutoscalingStatus(ApiModel):
    """The autoscaler's last decision."""

    desired_replicas: Int32
    """Replicas the autoscaler wants."""

    demand_replicas: Int32
    """Replicas needed for the current load, before warm replicas and bounds."""

    warm_replicas: Int32
    """Warm replicas added on top of demand."""

    last_scale_time: str | None = None
    """When replicas were last changed, RFC 3339."""

    reason: Annotated[str, Field(max_length=1024)] = ""
    """Why the autoscaler decided what it did."""

    metrics: Annotated[dict[str, float], Field(max_length=32)] = {}
    """The metric values the decision used."""

    gpu_signal: Annotated[str, Field(max_length=256)] = ""
    """Which GPU metric the decision read (a DCGM profiling field, or the GPU_UTIL fallback) and
    what it was used for."""


class VisionModelStatus(ApiModel):
    """The observed state of a VisionModel."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: Annotated[Int64 | None, Field(ge=0)] = None
    """The generation this status was computed from."""

    conditions: Annotated[
        list[Condition], Field(max_length=16, json_schema_extra=list_map("type"))
    ] = []
    """Ready summarizes; Reconciling and Stalled are present only while true."""

    replicas: Annotated[Int32, Field(ge=0)] = 0
    """vLLM pods that exist, ready or not."""

    ready_replicas: Annotated[Int32, Field(ge=0)] = 0
    """vLLM pods that are ready."""

    selector: str = ""
    """Label selector of the vLLM pods, for the scale subresource."""

    endpoint: str = ""
    """In-cluster OpenAI-compatible base URL."""

    plan: PlanStatus | None = None
    """The sizing plan."""

    autoscaling: AutoscalingStatus | None = None
    """The autoscaler's last decision."""


class VisionModel(ApiModel):
    """A vision-language model served by vLLM, sized and scaled by the operator."""

    api_version: Annotated[Literal["vlm-operator.io/v1alpha1"], Field(alias="apiVersion")] = (
        "vlm-operator.io/v1alpha1"
    )
    """API version."""

    kind: Literal["VisionModel"] = "VisionModel"
    """Kind."""

    metadata: ObjectMeta
    """Object metadata."""

    spec: VisionModelSpec
    """Desired state."""

    status: VisionModelStatus | None = None
    """Observed state."""
