"""What every subcommand of the command line shares: exit statuses, usage errors, options."""

from __future__ import annotations

import argparse
import sys
import traceback

from ..jobs.file import failure_reason

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "formatter", "add_channel_axis",
           "report_failure"]

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


def report_failure(where: str, exc: BaseException, debug: bool) -> None:
    """Print one line about ``exc`` on stderr (after its traceback with ``debug``)."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"pixelmix: error: {where}: {failure_reason(exc, where)}" if where else f"pixelmix: error: {failure_reason(exc)}",
          file=sys.stderr)
