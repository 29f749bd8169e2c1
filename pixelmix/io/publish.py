"""Atomic publishing: an output appears under its final name only when it is whole.

An output is written under a temporary name beside its final one
(``.<name>.pixelmix-<pid>-<token>.tmp``), flushed to disk (the file, or
every file and directory of a Zarr group), renamed into place, and the
parent directory is flushed so the rename survives a power cut. A crash or
SIGKILL leaves at most a temporary entry, never a partial output under the
final name; :func:`clean_stale` removes the entries of processes that died.

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> from pixelmix.io.publish import published
>>> dst = Path(tempfile.mkdtemp()) / "out.txt"
>>> with published(dst) as tmp:
...     _ = tmp.write_text("whole")
...     print(dst.exists(), tmp.name.startswith(".out.txt.pixelmix-"))
False True
>>> dst.read_text(), os.listdir(dst.parent)
('whole', ['out.txt'])
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = [
    "published",
    "temp_name",
    "clean_stale",
    "clean_stale_dirs",
    "fsync_path",
    "fsync_tree",
    "replace_dir",
    "pid_alive",
]

# Temporary outputs: ".<name>.pixelmix-<pid>-<token>.tmp" beside the final file
# (".spill" for the uncompressed scratch copy of a compressed output).
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.pixelmix-(?P<pid>\d+)-[0-9a-f]+\.(tmp|spill)$")


def temp_name(dst: Path, kind: str = "tmp") -> Path:
    """A fresh temporary path beside ``dst``, naming this process (see :func:`clean_stale`).

    Examples
    --------
    >>> import os
    >>> from pathlib import Path
    >>> from pixelmix.io.publish import TEMP_RE, temp_name
    >>> int(TEMP_RE.match(temp_name(Path("out/a.tif")).name)["pid"]) == os.getpid()
    True
    """
    return dst.with_name(f".{dst.name}.pixelmix-{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one we may not signal counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(outdir: str | os.PathLike, *, dirs: bool = False) -> list[Path]:
    """Remove temporaries left in ``outdir`` by pixelmix runs that died; return them.

    Only entries named like pixelmix's own temporaries and made by a process
    that no longer runs are removed: files, or with ``dirs`` directories
    (the temporary groups of Zarr output).

    Examples
    --------
    >>> import tempfile
    >>> from pixelmix.io.publish import clean_stale
    >>> clean_stale(tempfile.mkdtemp())
    []
    """
    removed = []
    try:
        entries = list(os.scandir(outdir))
    except OSError:
        return removed
    for entry in entries:
        m = TEMP_RE.match(entry.name)
        if not m or not (entry.is_dir() if dirs else entry.is_file()) or pid_alive(int(m["pid"])):
            continue
        try:
            shutil.rmtree(entry.path) if dirs else os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def clean_stale_dirs(store: str | os.PathLike) -> list[Path]:
    """Remove temporary groups left in ``store`` by runs that died (see :func:`clean_stale`)."""
    return clean_stale(store, dirs=True)


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush ``path`` (a file, or with ``directory`` a directory's entries) to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # some platforms cannot open directories; the rename still happened
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory of a finished group before it is renamed into place."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath), directory=True)


def replace_dir(tmp: Path, dst: Path) -> None:
    """Rename ``tmp`` to ``dst``; an existing ``dst`` is moved aside first, then removed."""
    old = None
    if dst.exists():
        old = temp_name(dst)
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def published(dst: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``dst`` under; publish it when the block succeeds.

    On success the temporary file (or, with ``directory``, the temporary
    directory tree) is flushed to disk and renamed to ``dst``, replacing an
    existing one, and the parent directory is flushed. On an error nothing
    is published and the temporary entry is removed.
    """
    tmp = temp_name(dst)
    try:
        yield tmp
        if directory:
            fsync_tree(tmp)
            replace_dir(tmp, dst)
        else:
            fsync_path(tmp)
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            if directory:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
    fsync_path(dst.parent, directory=True)
