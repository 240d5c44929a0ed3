"""Text that came from a file or a client, made safe to echo on a terminal or in a log line.

A manifest, a file name or a request is hostile until checked: a newline in it could forge a log line (``tvdeploy:
error: ...``), an ANSI escape could rewrite the terminal, and a value of megabytes would flood it. Everything such a
source supplies goes through :func:`printable` before it is printed or logged.
"""

from __future__ import annotations

#: What :func:`printable` keeps of a long value by default (a CPU model name, a file name, a label).
DEFAULT_LIMIT = 200


def printable(text: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` with control characters (newlines, escapes, ...) written as escapes, and cut to ``limit``
    characters with the number left out said (``None``: not cut)."""
    value = str(text)
    cut = ""
    if limit is not None and len(value) > limit:
        cut = f"... ({len(value) - limit} more characters)"
        value = value[:limit]
    if not value.isprintable():
        value = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)
    return value + cut


def printable_lines(text: str, limit: int | None = None) -> str:
    """``text`` with every control character but newline escaped (a multi-line message stays multi-line, but no
    escape sequence or carriage return reaches the terminal)."""
    return "\n".join(printable(line, limit) for line in text.split("\n"))


def a(word: object) -> str:
    """``word`` with its indefinite article, by its first letter: "an onnx", "an int8", "a pt2", "a torchscript"."""
    text = str(word)
    return f"{'an' if text[:1].lower() in 'aeiou' else 'a'} {text}"
