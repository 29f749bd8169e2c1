"""Disk space for outputs: a file's blocks are reserved before it is memory-mapped.

A new file that is written through a memory map is sparse until its pages
are stored. When the file system then cannot allocate a block (a full disk,
a quota), the store is not an error the program can catch: the kernel
kills the process with SIGBUS, the whole batch dies and its temporary files
stay. So every file pixelmix maps for writing first gets all its blocks
(:func:`reserve`, ``posix_fallocate``), and a full disk becomes an ordinary
``OSError`` for that one file: "No space left on device (needs 12 MB)".

Examples
--------
>>> import os, tempfile
>>> from pixelmix.io.space import reserve
>>> path = os.path.join(tempfile.mkdtemp(), "out.bin")
>>> with open(path, "wb") as f:
...     _ = f.truncate(2**20)                  # sparse: no blocks yet
>>> reserve(path)
>>> os.stat(path).st_blocks * 512 >= 2**20    # every block allocated
True
"""

from __future__ import annotations

import errno
import math
import os

__all__ = ["reserve", "no_space", "is_full", "FULL_ERRNOS"]

# The errors of a file system that cannot take more data.
FULL_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))
# posix_fallocate fails with these where the file system cannot preallocate
# (glibc emulates it then, but other C libraries do not).
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system has no room (full, over quota, over a size limit).

    Examples
    --------
    >>> import errno
    >>> from pixelmix.io.space import is_full
    >>> is_full(OSError(errno.ENOSPC, "No space left on device")), is_full(ValueError())
    (True, False)
    """
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def no_space(code: int, nbytes: int) -> OSError:
    """The error for a file of ``nbytes`` that does not fit: one line, with the size needed.

    Examples
    --------
    >>> import errno
    >>> from pixelmix.io.space import no_space
    >>> no_space(errno.ENOSPC, 12_500_000).strerror
    'No space left on device (needs 13 MB)'
    """
    return OSError(code, f"{os.strerror(code)} (needs {math.ceil(nbytes / 1e6)} MB)")


def reserve(path: str | os.PathLike, nbytes: int | None = None) -> None:
    """Allocate the blocks of the first ``nbytes`` bytes of ``path`` (default: all of it).

    Blocks that already hold data are kept as they are. Raises the error of
    :func:`no_space` when the file system cannot hold them; the file itself
    is left for the caller to remove. Where the platform has no
    ``posix_fallocate``, or the file system cannot preallocate, each empty
    block is written once instead (what glibc does).
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size if nbytes is None else int(nbytes)
        if size <= 0:
            return
        try:
            if not hasattr(os, "posix_fallocate"):
                raise OSError(errno.ENOSYS, "no posix_fallocate")
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise no_space(exc.errno, size) from None
            if exc.errno not in _UNSUPPORTED:
                raise
            _touch_blocks(fd, size)
    finally:
        os.close(fd)


def reserved_map(path: str | os.PathLike, nbytes: int, open_map):
    """``open_map()``, a new memory map of the file ``path``, with its ``nbytes`` reserved on disk.

    A full disk is the OSError of :func:`no_space`, raised before any
    pixel is written (never a SIGBUS on a later write); the map is closed
    again when the reservation fails.
    """
    try:
        mapped = open_map()
    except OSError as exc:
        if is_full(exc):
            raise no_space(exc.errno, nbytes) from None
        raise
    try:
        reserve(path)
    except BaseException:
        del mapped  # unmapped before the caller removes the file
        raise
    return mapped


def _touch_blocks(fd: int, size: int) -> None:
    """Write a zero into each block of ``fd`` that reads as zero (so holes get allocated)."""
    if not hasattr(os, "pwrite"):
        return  # no positional writes (Windows): mapped stores there fail without SIGBUS
    block = os.fstatvfs(fd).f_bsize if hasattr(os, "fstatvfs") else 4096
    end = os.fstat(fd).st_size
    try:
        for offset in range(size - 1, -1, -block):
            if offset < end and os.pread(fd, 1, offset) not in (b"", b"\0"):
                continue  # holds data: allocated already
            os.pwrite(fd, b"\0", offset)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise no_space(exc.errno, size) from None
        raise
