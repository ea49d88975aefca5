"""A vLLM stand-in for clusters without GPUs: the OpenAI endpoints, vLLM's metrics and DCGM's."""
