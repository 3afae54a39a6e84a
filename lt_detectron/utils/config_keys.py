"""Unknown config keys explained: the nearest valid keys and the keys at that level (both config trees use it)."""

from __future__ import annotations

import difflib
from typing import List, Mapping, Optional

__all__ = ["all_keys", "unknown_key", "unknown_key_hint"]

# yacs says "Non-existent config key: X" when merging a file and "Non-existent key: X" for a KEY VALUE override.
_MARKERS = ("Non-existent config key", "Non-existent key")


def all_keys(node: Mapping, prefix: str = "") -> List[str]:
    """Every key of a (nested) yacs CfgNode, dotted."""
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, Mapping):
            keys.extend(all_keys(value, full + "."))
    return keys


def unknown_key(error: BaseException) -> Optional[str]:
    """The dotted key of yacs's unknown-key error, or None for another error."""
    message = str(error.args[0]) if error.args else str(error)
    if not any(message.startswith(marker) for marker in _MARKERS):
        return None
    return message.split(":", 1)[1].strip().strip("'\"")


def unknown_key_hint(bad: str, reference: Mapping) -> str:
    """'Did you mean A, B? Keys at that level: ...' for an unknown key `bad` of the config tree `reference`."""
    known = all_keys(reference)
    close = difflib.get_close_matches(bad, known, n=3)
    parent = bad.rsplit(".", 1)[0] if "." in bad else ""
    siblings = [k for k in known if (k.rsplit(".", 1)[0] == parent if parent else "." not in k) and k != parent]
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    return hint + f"Keys at that level: {', '.join(sorted(siblings)) or '(none: the parent key is unknown too)'}."
