"""Stored text on a terminal: its control characters shown, never obeyed; never read as markup.

Names, session ids, models and log messages come from LLM output, OTLP spans and file names. A
terminal obeys the escape sequences in them (``ESC [2J`` clears the screen, ``ESC ]0;...BEL``
sets the window title) and Rich reads ``[bold]`` and ``:smile:`` in a ``str`` as markup. So every
human-readable output goes through ``visible`` / ``plain``; ``--json`` output is escaped by JSON.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 controls - with \n, \r and \t: a table cell or a log line is one line of output, so a line
# break in a message must not start a line of its own that could pass for another entry - DEL,
# C1 controls (U+009B is a CSI on its own to some terminals), the line and paragraph separators,
# and the bidirectional formatting characters that reorder how a line reads ("Trojan Source").
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# What JSON leaves raw with ensure_ascii=False (it escapes C0 itself): found only inside strings,
# where a \uXXXX escape is the same value.
RAW_IN_JSON = re.compile(f"[{_BEYOND_C0}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _spelled(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(value: object) -> str:
    r"""Return ``value`` as text with each control character spelled out: ESC as ``\x1b``.

    Backslashes are left as they are (doubling them would make every Windows path and escaped
    string in a message harder to read); ``--json`` is the unambiguous form.
    """
    return _UNSAFE.sub(_spelled, str(value))


def plain(value: object, style: str = "") -> Text:
    """Return ``value`` as Rich ``Text``: control characters spelled out, no markup, no emoji."""
    return Text(visible(value), style=style)


__all__ = ["RAW_IN_JSON", "plain", "visible"]
