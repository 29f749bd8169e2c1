"""The ``pixelmix`` command line: ``main(argv=None) -> int``."""

from __future__ import annotations

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelmix",
        description="Fast 1x1 channel mixing for multispectral and hyperspectral stacks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from .bench import SUITES

    bench = sub.add_parser(
        "bench",
        help="side-by-side speed of pixelmix and NumPy (and others installed)",
        description="Time pixelmix against NumPy (and PyTorch, scikit-learn, scikit-image "
        "where installed) on realistic workloads, alternating, and print medians and ratios.",
        epilog="examples:\n  pixelmix bench --quick\n  pixelmix bench --suite mix --repeat 11",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds")
    bench.add_argument(
        "--suite",
        default="mix",
        help=f"comma-separated suites to run (default: mix; available: {', '.join(SUITES)})",
    )
    bench.add_argument("--repeat", type=int, default=None, help="alternating rounds (default 7, quick 3)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def _cmd_bench(args) -> int:
    from .bench import run

    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    return run(suites, quick=args.quick, repeat=args.repeat)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
