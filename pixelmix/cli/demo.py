"""``pixelmix demo``: the whole job on the bundled sample data."""

from __future__ import annotations

from ..demo import run_demo
from .common import formatter


def add_parser(sub, common) -> None:
    """Add the ``demo`` subcommand to ``sub`` (``common``: the options all commands share)."""
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="the whole job on the bundled sample data",
        description="Fit PCA on a synthetic 64-band hyperspectral scene, reduce it, unmix it "
        "with its known endmembers and check against the ground truth, and separate the "
        "crosstalk of a small fluorescence stack; print what was done and where the outputs are.",
        epilog="examples:\n  pixelmix demo\n  pixelmix demo --out /tmp/pixelmix-demo",
        formatter_class=formatter,
    )
    p.add_argument("--out", default="pixelmix-demo", metavar="DIR",
                   help="where the outputs go (default ./pixelmix-demo)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the demo into ``--out``; return the exit status."""
    return run_demo(args.out)
