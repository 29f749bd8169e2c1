"""Atomic publishing: an output appears under its final name only when it is whole.

An output is written under a temporary name beside its final one
(``.<name>.pixelmix-<pid>-<token>.tmp``, the token naming the host, so
runs on several machines sharing a file system tell their entries apart),
flushed to disk (the file, or every file and directory of a Zarr group),
moved into place, and the parent directory is flushed so the move survives
a power cut. A crash or SIGKILL leaves at most a temporary entry, never a
partial output under the final name; :func:`clean_stale` removes the
entries of processes of this host that died.

Unless asked to replace, the move never replaces an output that appeared
meanwhile (another run writing the same directory): it is
``renameat2(RENAME_NOREPLACE)`` where Linux has it, else a hard link then
the removal of the temporary name, and it fails with
:class:`FileExistsError`, leaving the other output as it is.

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
import errno
import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator

from .names import shown

__all__ = [
    "published",
    "temp_name",
    "clean_stale",
    "clean_stale_dirs",
    "fsync_path",
    "fsync_tree",
    "replace_dir",
    "move_into_place",
    "pid_alive",
    "host_tag",
]

# Temporary outputs: ".<name>.pixelmix-<pid>-<token>.tmp" beside the final file
# (".spill" for the uncompressed scratch copy of a compressed output). The
# token is the host's tag (8 hex digits) and 8 random ones; a token of 8
# digits only (older pixelmix) names no host.
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.pixelmix-(?P<pid>\d+)-(?P<token>[0-9a-f]+)\.(tmp|spill)$")


@functools.cache
def host_tag() -> str:
    """8 hex digits naming this host in temporary names (a digest of its name).

    Examples
    --------
    >>> from pixelmix.io.publish import host_tag
    >>> len(host_tag()), host_tag() == host_tag()
    (8, True)
    """
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_name(dst: Path, kind: str = "tmp") -> Path:
    """A fresh temporary path beside ``dst``, naming this process and host (see :func:`clean_stale`).

    Examples
    --------
    >>> import os
    >>> from pathlib import Path
    >>> from pixelmix.io.publish import TEMP_RE, host_tag, temp_name
    >>> m = TEMP_RE.match(temp_name(Path("out/a.tif")).name)
    >>> int(m["pid"]) == os.getpid(), m["token"].startswith(host_tag())
    (True, True)
    """
    token = host_tag() + secrets.token_hex(4)
    return dst.with_name(f".{dst.name}.pixelmix-{os.getpid()}-{token}.{kind}")


def _ours_and_dead(match: re.Match) -> bool:
    """Whether a temporary entry was made on this host by a process that no longer runs."""
    token = match["token"]
    if len(token) > 8 and token[:8] != host_tag():
        return False  # another machine's: its pid means nothing here
    return not pid_alive(int(match["pid"]))


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

    Only entries named like pixelmix's own temporaries and made on this host
    by a process that no longer runs are removed: files, or with ``dirs``
    directories (the temporary groups of Zarr output). The entries of other
    hosts sharing the directory are left to cleanups run there.

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
        if not m or not (entry.is_dir() if dirs else entry.is_file()) or not _ours_and_dead(m):
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


@functools.cache
def _renameat2():
    """libc's ``renameat2``, or None where there is none (not Linux, or glibc before 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exists_error(dst: Path) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST,
        f"{shown(dst)} appeared while this output was written (another run writing the same "
        f"output?); it was left as it is",
    )


def _rename_noreplace(tmp: Path, dst: Path) -> bool:
    """``renameat2(tmp, dst, RENAME_NOREPLACE)``; False where the system cannot do it."""
    fn = _renameat2()
    if fn is None:
        return False
    import ctypes

    at_fdcwd, rename_noreplace = -100, 1
    if fn(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise _exists_error(dst)
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # the file system has no such rename: fall back
    raise OSError(code, os.strerror(code), os.fspath(tmp), None, os.fspath(dst))


def move_into_place(tmp: Path, dst: Path, *, directory: bool = False, replace: bool = False) -> None:
    """Move the finished ``tmp`` to ``dst``; unless ``replace``, never over an existing ``dst``.

    Without ``replace`` an existing ``dst`` (even one that appears at the
    last moment) raises :class:`FileExistsError` and stays as it is; ``tmp``
    is then still there for the caller to remove. Atomic with
    ``renameat2(RENAME_NOREPLACE)``; otherwise a file is hard-linked to
    ``dst`` and its temporary name removed, and a directory is renamed
    (which fails over a non-empty one); on file systems with neither, an
    existence check comes just before the rename.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixelmix.io.publish import move_into_place
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a").write_text("first"), (d / "b").write_text("second")
    >>> try:
    ...     move_into_place(d / "b", d / "a")
    ... except FileExistsError:
    ...     print((d / "a").read_text())
    first
    """
    if replace:
        if directory:
            replace_dir(tmp, dst)
        else:
            os.replace(tmp, dst)
        return
    if _rename_noreplace(tmp, dst):
        return
    if not directory:
        try:
            os.link(tmp, dst)
        except FileExistsError:
            raise _exists_error(dst) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            # no hard links here (some network and FUSE file systems)
        else:
            os.unlink(tmp)
            return
    if os.path.lexists(dst):
        raise _exists_error(dst)
    try:
        os.rename(tmp, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise _exists_error(dst) from None
        raise


def _remove(path: Path, directory: bool) -> None:
    if directory and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def published(dst: Path, *, directory: bool = False, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``dst`` under; publish it when the block succeeds.

    On success the temporary file (or, with ``directory``, the temporary
    directory tree) is flushed to disk and moved to ``dst``
    (:func:`move_into_place`: over an existing ``dst`` only with
    ``replace``, else :class:`FileExistsError`), and the parent directory
    is flushed. On an error nothing is published and the temporary entry is
    removed.
    """
    tmp = temp_name(dst)
    try:
        yield tmp
        if directory:
            fsync_tree(tmp)
        else:
            fsync_path(tmp)
        move_into_place(tmp, dst, directory=directory, replace=replace)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp, directory)
    fsync_path(dst.parent, directory=True)
