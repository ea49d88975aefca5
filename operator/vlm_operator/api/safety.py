"""Rules for tenant-controlled fields: each is stated twice, as a CEL rule for the API server and
as a Python check for `vlm-operator validate` and the operator, with one message for both.

Whoever may create a VisionModel is untrusted: these rules keep what reaches the pod, the
scheduler and the operator's own HTTP client inside what the operator planned."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic.config import JsonDict

from vlm_operator.api.base import cel

_NO_CONTROL = r"\x00-\x1f\x7f-\x9f\x{061c}\x{200e}\x{200f}\x{2028}-\x{202e}\x{2066}-\x{2069}"
SAFE_TEXT_PATTERN = rf"^[^{_NO_CONTROL}]*$"
"""Printable text: no C0/C1 control characters (NUL, newline, escape), no bidirectional
overrides or marks, no line separators. Written in the syntax Go's and Rust's regex share."""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
REVISION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$"
DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret's or ConfigMap's data, as the API server accepts it."""
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
IMAGE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
"""An image reference: optional registry host[:port]/, lowercase path, optional :tag and
@sha256:digest. No scheme, no spaces, no shell syntax."""

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
"""Node labels and taints of control-plane nodes; tenants may not schedule onto them."""

SERVICE_ACCOUNT_TOKEN_NAME = r"^.+-token-[a-z0-9]{5}$"
"""How Kubernetes named the service-account token Secrets it generated before 1.24."""
SERVICE_ACCOUNT_TOKEN_KEYS = ("ca.crt", "namespace")
"""Keys only a service-account token Secret has (its `token` key is also the HF default)."""

OPERATOR_FLAGS = (
    "port",
    "host",
    "uds",
    "served-model-name",
    "revision",
    "tensor-parallel-size",
    "max-model-len",
    "max-num-seqs",
    "max-num-batched-tokens",
    "gpu-memory-utilization",
    "dtype",
    "quantization",
    "kv-cache-dtype",
    "limit-mm-per-prompt",
    "mm-processor-kwargs",
    "model",
    "config",
    "api-key",
    "hf-token",
    "allowed-local-media-path",
)
"""vllm serve flags that engine.extraArgs may never set: the ones the plan writes, where the
server listens, files it reads its settings from, and plain-text credentials."""

FLAG_SPELLING = r"^--[a-z0-9][a-z0-9-]*(\.[A-Za-z0-9_-]+)*(=.*)?$"
_OPERATOR_FLAG = rf"^--({'|'.join(OPERATOR_FLAGS)})([.=].*)?$"

REFUSED_ENV = (
    r"(?i)^(LD_[A-Z0-9_]*|PYTHON[A-Z0-9_]*|VLLM_[A-Z0-9_]*|NVIDIA_[A-Z0-9_]*|CUDA_VISIBLE_DEVICES"
    r"|HF_HOME|HF_HUB_CACHE|HF_ENDPOINT|HF_TOKEN|HF_TOKEN_PATH|HUGGING_FACE_HUB_TOKEN"
    r"|TRANSFORMERS_CACHE)$"
)
"""Environment variables engine.env may not set: the dynamic loader's and Python's (code
injection), vLLM's own switches, GPU visibility, and those the operator sets (HF_HOME, HF_TOKEN)
or that redirect where weights and tokens come from."""

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
URL_PATTERN = (
    r"^https?://(([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z]([-a-z0-9]*[a-z0-9])?"
    rf"|{_OCTET}(\.{_OCTET}){{3}})(:[0-9]{{1,5}})?(/[A-Za-z0-9._~%/-]*)?$"
)
"""http(s)://host[:port][/path]: no user:password@, no query or fragment. The host is a name
whose last label starts with a letter, or a canonical IPv4 address, so that other spellings of
an address (2852039166, 0251.0376.0251.0376, IPv6 literals) cannot slip past the checks below."""
METADATA_HOSTS = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
)
METADATA_NETWORKS = ("169.254.0.0/16", "100.100.100.200/32")
"""Link-local and cloud metadata addresses: the instance credentials live there."""
_METADATA_URL = (
    r"^https?://("
    + "|".join(host.replace(".", r"\.") for host in METADATA_HOSTS)
    + r"|169\.254\.[0-9.]+|100\.100\.100\.200)(:[0-9]+)?(/.*)?$"
)


def _cel_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


def rules(*entries: JsonDict) -> JsonDict:
    """Schema extras carrying CEL rules."""
    return {"x-kubernetes-validations": list(entries)}


# --- one check per rule: the CEL rule, its message and the Python check -------------------

NO_DOT_DOT = cel("!self.contains('..')", "must not contain '..'")


def check_no_dot_dot(value: str) -> str:
    """Refuse path traversal in names that become paths or URLs."""
    if ".." in value:
        raise ValueError("must not contain '..'")
    return value


DATA_KEY = cel(
    "self != '.' && !self.startsWith('..')", "must be a Secret/ConfigMap data key, not . or .."
)


def check_data_key(value: str) -> str:
    """A data key the API server accepts in secretKeyRef/configMapKeyRef."""
    if value == "." or value.startswith(".."):
        raise ValueError("must be a Secret/ConfigMap data key, not . or ..")
    return value


TOKEN_SECRET_NAME = cel(
    f"!self.matches(r'{SERVICE_ACCOUNT_TOKEN_NAME}')",
    "names a service-account token Secret (<account>-token-<suffix>); use a Secret of your own",
)


def check_token_secret_name(value: str) -> str:
    """Refuse the names Kubernetes gave generated service-account token Secrets."""
    if re.match(SERVICE_ACCOUNT_TOKEN_NAME, value):
        raise ValueError(
            "names a service-account token Secret (<account>-token-<suffix>); "
            "use a Secret of your own"
        )
    return value


TOKEN_SECRET_KEY = cel(
    f"!(self in {_cel_list(SERVICE_ACCOUNT_TOKEN_KEYS)})",
    "is a key of service-account token Secrets, not of a Hugging Face token",
)


def check_token_secret_key(value: str) -> str:
    """Refuse the keys only service-account token Secrets carry."""
    check_data_key(value)
    if value in SERVICE_ACCOUNT_TOKEN_KEYS:
        raise ValueError("is a key of service-account token Secrets, not of a Hugging Face token")
    return value


EXTRA_ARG_SPELLING = cel(
    f"!self.startsWith('-') || self.matches(r'{FLAG_SPELLING}')",
    "a flag must be spelled --name or --name=value (lowercase, dashes)",
)
EXTRA_ARG_OPERATOR_FLAG = cel(
    f"!self.matches(r'{_OPERATOR_FLAG}')",
    "sets a flag the operator plans or never passes through: " + ", ".join(OPERATOR_FLAGS),
)


def check_extra_arg(value: str) -> str:
    """One engine.extraArgs item: a value, or a canonical flag the operator does not own."""
    if value.startswith("-") and not re.match(FLAG_SPELLING, value, re.DOTALL):
        raise ValueError("a flag must be spelled --name or --name=value (lowercase, dashes)")
    if re.match(_OPERATOR_FLAG, value, re.DOTALL):
        raise ValueError(
            "sets a flag the operator plans or never passes through: " + ", ".join(OPERATOR_FLAGS)
        )
    return value


def flag_name(argument: str) -> str | None:
    """The flag an engine argument names (`--seed=1` -> `seed`), None for a value."""
    if not argument.startswith("--"):
        return None
    return argument[2:].split("=", 1)[0]


ENV_NAME = cel(
    f"!self.name.matches(r'{REFUSED_ENV}')",
    "may not be set: LD_*, PYTHON*, VLLM_*, NVIDIA_*, CUDA_VISIBLE_DEVICES and the HF_* "
    "cache, endpoint and token variables are the operator's",
    ".name",
)


def check_env_name(value: str) -> str:
    """Refuse environment variables that inject code or override what the operator sets."""
    if re.match(REFUSED_ENV, value):
        raise ValueError(
            "may not be set: LD_*, PYTHON*, VLLM_*, NVIDIA_*, CUDA_VISIBLE_DEVICES and the HF_* "
            "cache, endpoint and token variables are the operator's"
        )
    return value


NOT_CONTROL_PLANE_KEYS = cel(
    f"self.all(k, !(k in {_cel_list(CONTROL_PLANE_LABELS)}))",
    "must not select control-plane nodes",
)
LABEL_KEYS = cel(
    f"self.all(k, size(k) <= 316 && k.matches(r'{LABEL_KEY_PATTERN}'))",
    "keys must be label keys",
)


def check_node_selector(selector: dict[str, str]) -> dict[str, str]:
    """nodeSelector keys: label keys, never the control-plane role."""
    for key in selector:
        if len(key) > 316 or not re.match(LABEL_KEY_PATTERN, key):
            raise ValueError("keys must be label keys")
        if key in CONTROL_PLANE_LABELS:
            raise ValueError("must not select control-plane nodes")
    return selector


NOT_CONTROL_PLANE_KEY = cel(
    f"!(self.key in {_cel_list(CONTROL_PLANE_LABELS)})",
    "must not target control-plane nodes",
    ".key",
)


def check_not_control_plane(key: str) -> str:
    """A toleration or node-affinity key that is not the control-plane role."""
    if key in CONTROL_PLANE_LABELS:
        raise ValueError("must not target control-plane nodes")
    return key


URL_RULES = (
    cel(
        f"!self.matches(r'{_METADATA_URL}')",
        "must not point at a link-local or cloud metadata address",
    ),
)


def check_url(value: str) -> str:
    """The Python side of URL_RULES; URL_PATTERN is checked by the field's pattern."""
    host = urlsplit(value).hostname or ""
    if host in METADATA_HOSTS or (
        re.fullmatch(r"[0-9.]+", host)
        and any(
            ipaddress.ip_address(host) in ipaddress.ip_network(network)
            for network in METADATA_NETWORKS
        )
    ):
        raise ValueError("must not point at a link-local or cloud metadata address")
    return value
