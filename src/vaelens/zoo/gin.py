"""A tiny reader of gin files (``scope.name = value`` bindings), without eval.

disentanglement_lib writes its training configuration as a gin "operative config"
(``model/results/gin/train.gin``): comment lines, blank lines, optional ``import`` lines
and bindings ``[scope/]configurable.parameter = value``. A value here is a literal only:

- ``None``, ``True``, ``False``, integers, floats (``1e-4``, ``-0.5``), quoted strings
  (``'a'`` or ``"a"``, with ``\\\\``, ``\\'``, ``\\"``, ``\\n``, ``\\t`` escapes);
- references ``@name`` and ``@name()`` (:class:`GinRef`; ``name`` may carry a scope,
  ``@scope/name``, or a module, ``@a.b.name``);
- lists ``[...]`` and tuples ``(...)`` of those (nested, trailing comma allowed).

A binding may continue over lines inside brackets or after a trailing backslash. Anything
else (macros ``%X``, dicts, expressions, a line without ``=``) is one
:class:`~vaelens.errors.ConfigError` line naming the file and the line number. Nothing is
evaluated or imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vaelens.errors import ConfigError

__all__ = ["GinRef", "gin_to_json", "parse_gin"]

_KEY = re.compile(r"^[A-Za-z_][\w.]*(/[A-Za-z_][\w.]*)*\.[A-Za-z_]\w*$")
_REF = re.compile(r"@([A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)(\(\))?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class GinRef:
    """A gin reference: ``@name`` (``call=False``) or ``@name()`` (``call=True``)."""

    name: str
    call: bool = False

    def __str__(self) -> str:
        return f"@{self.name}{'()' if self.call else ''}"


class _Bad(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def value(self) -> Any:
        self.ws()
        s, i = self.s, self.i
        if i >= len(s):
            raise _Bad("a value is missing")
        c = s[i]
        if c in "[(":
            return self.sequence(c)
        if c in "'\"":
            return self.string(c)
        if c == "@":
            m = _REF.match(s, i)
            if not m:
                raise _Bad(f"bad reference at {s[i : i + 20]!r}")
            self.i = m.end()
            return GinRef(m.group(1), m.group(2) is not None)
        for word, val in (("None", None), ("True", True), ("False", False)):
            if s.startswith(word, i) and not (s[i + len(word) : i + len(word) + 1].isalnum()):
                self.i = i + len(word)
                return val
        m = _NUMBER.match(s, i)
        if m and not s[m.end() : m.end() + 1].isalnum():
            self.i = m.end()
            text = m.group(0)
            return float(text) if any(ch in text for ch in ".eE") else int(text)
        raise _Bad(f"not a literal: {s[i : i + 30].strip()!r}")

    def sequence(self, opening: str) -> list[Any] | tuple[Any, ...]:
        closing = "]" if opening == "[" else ")"
        self.i += 1
        items: list[Any] = []
        while True:
            self.ws()
            if self.i < len(self.s) and self.s[self.i] == closing:
                self.i += 1
                break
            items.append(self.value())
            self.ws()
            if self.i < len(self.s) and self.s[self.i] == ",":
                self.i += 1
                continue
            if self.i < len(self.s) and self.s[self.i] == closing:
                self.i += 1
                break
            raise _Bad(f"expected ',' or {closing!r} in a {'list' if closing == ']' else 'tuple'}")
        return items if opening == "[" else tuple(items)

    def string(self, quote: str) -> str:
        out, i, s = [], self.i + 1, self.s
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                if s[i + 1] not in _ESCAPES:
                    raise _Bad(f"unsupported escape \\{s[i + 1]} in a string")
                out.append(_ESCAPES[s[i + 1]])
                i += 2
                continue
            if c == quote:
                self.i = i + 1
                return "".join(out)
            if c == "\n":
                break
            out.append(c)
            i += 1
        raise _Bad("unterminated string")


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """``(index, char)`` of every character of ``text`` outside a quoted string.

    Quotes themselves are skipped, and so is the character after a backslash in a string.
    """
    quote, i = None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        else:
            yield i, c
        i += 1


def _strip_comment(line: str) -> str:
    """``line`` without a ``#`` comment outside quotes."""
    return next((line[:i] for i, c in _unquoted(line) if c == "#"), line)


def _depth(text: str) -> int:
    """Open brackets left in ``text`` (quotes skipped)."""
    return sum((c in "[(") - (c in "])") for _, c in _unquoted(text))


def parse_gin(text: str, source: str = "train.gin") -> dict[str, Any]:
    """The bindings of a gin file: ``{"scope.name": value}`` in file order.

    ``source`` names the file in errors: one :class:`ConfigError` line
    ``"<source>:<line>: ..."`` for anything that is not a literal binding (see the module
    docstring), or a key bound twice.
    """
    lines = text.splitlines()
    out: dict[str, Any] = {}
    n = 0
    while n < len(lines):
        start = n
        stmt = _strip_comment(lines[n]).strip()
        n += 1
        if not stmt or stmt.startswith("import ") or stmt.startswith("from "):
            continue
        while (stmt.endswith("\\") or _depth(stmt) > 0) and n < len(lines):
            stmt = (stmt[:-1] if stmt.endswith("\\") else stmt) + "\n" + lines[n]
            stmt = _strip_comment(stmt).rstrip()
            n += 1
        where = f"{source}:{start + 1}"
        key, eq, rest = stmt.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"{where}: expected 'scope.name = value', got {stmt[:60]!r}")
        if not _KEY.match(key):
            raise ConfigError(f"{where}: {key[:60]!r} is not a 'configurable.parameter' name")
        parser = _Parser(rest)
        try:
            value = parser.value()
            parser.ws()
            if parser.i != len(parser.s):
                raise _Bad(f"unexpected {parser.s[parser.i : parser.i + 30].strip()!r}")
        except _Bad as exc:
            raise ConfigError(
                f"{where}: {key} = {rest.strip()[:60]!r}: {exc} (expected a literal: number, "
                "string, True/False/None, @ref, @ref() or a list/tuple of those)"
            ) from None
        if key in out:
            raise ConfigError(f"{where}: {key} is bound twice")
        out[key] = value
    return out


def gin_to_json(value: Any) -> Any:
    """``value`` with :class:`GinRef` as ``"@name"`` / ``"@name()"`` and tuples as lists."""
    if isinstance(value, GinRef):
        return str(value)
    if isinstance(value, dict):
        return {k: gin_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [gin_to_json(v) for v in value]
    return value
