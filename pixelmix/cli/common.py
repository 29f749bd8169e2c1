"""What every subcommand of the command line shares: exit statuses, usage errors, options."""

from __future__ import annotations

import argparse
import sys
import traceback

from ..io.names import shown
from ..jobs.file import failure_reason

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "formatter", "add_channel_axis",
           "add_max_ratio", "report_failure"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line or its files: reported in one line, status 2."""


def formatter(prog):
    """Help layout: the examples of each epilog as written, option help from column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_channel_axis(parser) -> None:
    """The ``--channel-axis N`` option of the commands that read files."""
    parser.add_argument("--channel-axis", type=int, default=None, metavar="N",
                        help="override the channel axis found from the file's axes")


def add_max_ratio(parser) -> None:
    """The ``--max-ratio R`` option of the commands that read files (see ``pixelmix.io.read``)."""
    parser.add_argument("--max-ratio", type=float, default=None, metavar="R",
                        help="read inputs whose pixels claim up to R bytes per stored byte (default: "
                        "what the file's codec can reach; uncompressed data must store every pixel); "
                        "for genuine sparse or blank files whose size pixelmix refuses; inf: no ratio check")


def report_failure(where: str, exc: BaseException, debug: bool) -> None:
    """Print one line about ``exc`` on stderr (after its traceback with ``debug``)."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    reason = shown(failure_reason(exc, where))
    print(f"pixelmix: error: {shown(where)}: {reason}" if where else f"pixelmix: error: {reason}", file=sys.stderr)
