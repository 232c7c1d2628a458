"""Loads the resource catalogue (GLASSGATE_RESOURCES) once per file, at the edge."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from integrations.principals import ConfigError
from risk.resources import CatalogError, ResourceCatalog


@lru_cache(maxsize=8)
def load_catalog(path: Path) -> ResourceCatalog:
    """The catalogue in ``path``.

    Raises:
        ConfigError: the file is missing or malformed (the message names the entry).
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the resource catalogue {path}: {exc}") from None
    try:
        return ResourceCatalog.from_mapping(data, source=str(path))
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None
