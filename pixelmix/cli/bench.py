"""``pixelmix bench``: pixelmix side by side with NumPy and the other libraries installed."""

from __future__ import annotations

import argparse

from .. import bench
from ..dispatch import BACKENDS


def add_parser(sub, common) -> None:
    """Add the ``bench`` subcommand to ``sub`` (``common``: the options all commands share)."""
    p = sub.add_parser(
        "bench",
        help="side-by-side speed of pixelmix and NumPy (and others installed)",
        description="Time pixelmix against NumPy (and PyTorch, scikit-learn, scikit-image "
        "where installed) on realistic workloads, alternating, and print medians and ratios.",
        epilog="examples:\n  pixelmix bench --quick\n  pixelmix bench --suite mix --repeat 11",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds")
    p.add_argument(
        "--suite",
        default="mix",
        help=f"comma-separated suites to run (default: mix; available: {', '.join(bench.SUITES)})",
    )
    p.add_argument("--repeat", type=int, default=None, help="alternating rounds (default 7, quick 3)")
    p.add_argument("--backend", default="cpu", choices=[b for b in BACKENDS if b != "numpy"],
                   help="pixelmix's backend in the comparisons (default cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the suites named by ``--suite``; return the exit status."""
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    return bench.run(suites, quick=args.quick, repeat=args.repeat, backend=args.backend)
