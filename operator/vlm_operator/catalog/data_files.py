"""Reading the catalog's data files, which ship inside the package."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml


def load_data_file(name: str) -> Any:
    """Parse one YAML file from the catalog's data folder."""
    text = files("vlm_operator.catalog").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)
