"""Defaults records (frozen dataclasses next to each method) filled from a config node: one helper for both config
trees, so that a record's fields and the config keys cannot drift apart silently."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, TypeVar

__all__ = ["record_from_config"]

R = TypeVar("R")


def record_from_config(record: R, node: Mapping[str, Any], keys: Optional[Mapping[str, str]] = None) -> R:
    """`record` with every field replaced by the config value under its key: the field's name in upper case, or
    `keys[field]` where the config spells it differently (LADE's `lam` is `LAMBDA`). Fields without a key in `node`
    keep the record's value. Values are cast to the field's default's type (a YAML 1 for a float field)."""
    keys = dict(keys or {})
    changes = {}
    for field in dataclasses.fields(record):
        key = keys.get(field.name, field.name.upper())
        if key not in node:
            continue
        default, value = getattr(record, field.name), node[key]
        changes[field.name] = type(default)(value) if isinstance(default, (bool, int, float, str)) else value
    return dataclasses.replace(record, **changes)
