"""vlm-operator: size, deploy and autoscale vision-language models on vLLM."""

__version__ = "0.1.0"
