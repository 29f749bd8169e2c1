r"""Text from files and mixers made safe to store in metadata and to print.

Channel names come from mixer files (``output_names``) and from the inputs'
own metadata; file names come from the file system. Either may hold
control characters. Stored raw they break the output (XML 1.0, and so
OME-XML, cannot hold most of them, even escaped) and printed raw they
split report lines or drive the terminal. So:

- :func:`clean_name` is what goes into output metadata: every control
  character (C0, DEL, C1), lone surrogate and XML non-character becomes
  U+FFFD, and very long names are cut. It is idempotent, and what it
  returns survives OME-XML, tifffile's JSON description and Zarr attributes
  unchanged, so an output reads back with exactly the names it was given.
- :func:`shown` is what goes to the terminal: the same characters (and
  line and paragraph separators) written as Python escapes (``\n``,
  ``\x1b``, ``\udcff``), everything else as it is.

Examples
--------
>>> from pixelmix.io.names import clean_name, shown
>>> print(ascii(clean_name("DAPI\x00\x1b[31m")))
'DAPI\ufffd\ufffd[31m'
>>> print(shown("a\nb.tif"))
a\nb.tif
"""

from __future__ import annotations

import os
import re
from typing import Iterable

__all__ = ["clean_name", "clean_names", "shown", "MAX_NAME_CHARS"]

# A channel name longer than this is cut: names are copied into every output.
MAX_NAME_CHARS = 1024

# Not storable in XML 1.0 metadata, or not text at all: C0 and C1 controls,
# DEL, lone surrogates (undecodable bytes of file names) and U+FFFE/U+FFFF.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Also escaped when printed: line and paragraph separators and the
# bidirectional overrides, which would reorder what the terminal shows.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_name(name) -> str:
    r"""``name`` as text any metadata format stores and reads back unchanged.

    Control characters, lone surrogates and XML non-characters become
    U+FFFD; a name over :data:`MAX_NAME_CHARS` is cut and ends in "…".
    ``clean_name(clean_name(s)) == clean_name(s)``.

    Examples
    --------
    >>> from pixelmix.io.names import clean_name
    >>> print(ascii(clean_name("GFP\t(488)")), clean_name("é ok"))
    'GFP\ufffd(488)' é ok
    """
    text = _UNSTORABLE.sub("\ufffd", str(name))
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1] + "…"
    return text


def clean_names(names: Iterable | None) -> list[str] | None:
    r""":func:`clean_name` of each name (None stays None).

    Examples
    --------
    >>> from pixelmix.io.names import clean_names
    >>> print(ascii(clean_names(["a", "b\x07"])), clean_names(None))
    ['a', 'b\ufffd'] None
    """
    return None if names is None else [clean_name(n) for n in names]


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str | os.PathLike) -> str:
    r"""``text`` (or a path) for a report line: control characters written as escapes.

    The result is one line, and printable in any encoding that holds the
    rest of the text (undecodable bytes of file names become ``\udcXX``).

    Examples
    --------
    >>> from pixelmix.io.names import shown
    >>> print(shown("in/a\x1b[2Jb\r.tif"))
    in/a\x1b[2Jb\r.tif
    """
    return _UNPRINTABLE.sub(_escape, os.fspath(text) if isinstance(text, os.PathLike) else str(text))
