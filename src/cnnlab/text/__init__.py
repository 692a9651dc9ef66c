"""Text for people, one catalog per language (``en.toml``, ``ja.toml``), read by the report, its figures and the CLI.

Code picks a key (``catalog(lang)("overfit.none", ...)``) and fills named fields; the words live only in the
catalogs, so a language is rewritten without touching code, and no text is translated by rules.
"""

from __future__ import annotations

import functools
import string
import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LANGS = ("en", "ja")


class Catalog:
    def __init__(self, lang: str, data: dict[str, Any]) -> None:
        self.lang = lang
        self.data = data

    def raw(self, key: str) -> Any:
        """The entry at a dotted key: a string, a list or a table."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"text catalog {self.lang}.toml has no entry {key!r}")
            node = node[part]
        return node

    def __call__(self, key: str, **fields: Any) -> str:
        text = self.raw(key)
        if not isinstance(text, str):
            raise KeyError(f"text catalog {self.lang}.toml: {key!r} is not a string")
        return text.format(**fields) if fields else text

    def has(self, key: str) -> bool:
        try:
            self.raw(key)
        except KeyError:
            return False
        return True


@functools.cache
def catalog(lang: str) -> Catalog:
    if lang not in LANGS:
        raise KeyError(f"no text catalog for language {lang!r}")
    raw = resources.files("cnnlab").joinpath(f"text/{lang}.toml").read_text(encoding="utf-8")
    return Catalog(lang, tomllib.loads(raw))


def fields_of(text: str) -> set[str]:
    """The named fields of a catalog string (for the test that both catalogs ask for the same fields)."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out
