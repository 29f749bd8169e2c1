"""The ``pixelmix`` command line: ``main(argv=None) -> int``.

One module per subcommand (:mod:`~pixelmix.cli.info`, :mod:`~pixelmix.cli.fit`,
:mod:`~pixelmix.cli.apply`, :mod:`~pixelmix.cli.bench`, :mod:`~pixelmix.cli.demo`),
each with ``add_parser(sub, common)`` and ``run(args) -> int``; what they
share (exit statuses, :class:`~pixelmix.cli.common.UsageError`) is in
:mod:`~pixelmix.cli.common`, the fit's figure in :mod:`~pixelmix.cli.report`.
Here: the parser made of them, and :func:`main`.

Exit status: 0 when everything succeeded, 1 when some input failed (the
others were still processed), 2 for a usage error or a failure before any
input was touched (a mixer file that is missing, unreadable or malformed,
an output directory equal to the input directory, an existing file, or one
that cannot be created), 130 after Ctrl-C. Expected failures print one
line, no traceback; ``--debug`` adds the traceback. Names in messages have
their control characters escaped, so each report stays one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from ..io.names import shown
from ..jobs.file import failure_reason
from . import apply, bench, demo, fit, info
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, formatter

__all__ = ["main", "build_parser"]

# In the order `pixelmix --help` lists them.
COMMANDS = (bench, info, apply, fit, demo)

_EPILOG = (
    "examples:\n"
    "  pixelmix demo                                   the whole job on bundled sample data\n"
    "  pixelmix info stack.ome.tif\n"
    "  pixelmix fit pca scans/*.tif -k 10 -o pca10.json --sample 0.05\n"
    "  pixelmix apply scans/ --mixer pca10.json -o reduced/ --resume\n"
    "\nrun 'pixelmix COMMAND --help' for the options of each command"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``pixelmix`` parser: one subparser per command module, each setting ``func``."""
    parser = argparse.ArgumentParser(
        prog="pixelmix",
        description="Fast 1x1 channel mixing for multispectral and hyperspectral stacks.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks of failures")
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Examples
    --------
    >>> from pixelmix.cli import main
    >>> main(["info", "no-such-file.tif"])
    1
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return int(exc.code or 0)
    debug = getattr(args, "debug", False)
    try:
        return int(args.func(args))
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"pixelmix {args.command}: error: {shown(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pixelmix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pixelmix info ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            print(f"pixelmix {args.command}: error: {shown(failure_reason(exc))} (run with --debug for details)",
                  file=sys.stderr)
        return EXIT_FAILED
