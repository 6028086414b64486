"""Redis glob escaping, shared by the Redis store and the test tooling."""

from __future__ import annotations

__all__ = ["glob_escape"]

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]^"})


def glob_escape(text: str) -> str:
    """Escape ``text`` so that Redis ``MATCH``/``KEYS`` patterns match it literally (``* ? [ ] \\ ^`` included)."""
    return text.translate(_GLOB_SPECIAL)
