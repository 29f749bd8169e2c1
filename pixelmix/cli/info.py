"""``pixelmix info``: describe TIFF stacks (and the GPU) without reading their pixels."""

from __future__ import annotations

import json
import sys

from ..backends import cuda as cuda_backend
from ..io.names import shown
from ..io.read import open_stack
from ..jobs.batch import expand_inputs
from .common import EXIT_FAILED, EXIT_OK, UsageError, add_channel_axis, add_max_ratio, formatter, report_failure


def add_parser(sub, common) -> None:
    """Add the ``info`` subcommand to ``sub`` (``common``: the options all commands share)."""
    p = sub.add_parser(
        "info",
        parents=[common],
        help="shape, axes, dtype, channel names and wavelengths of TIFF files",
        description="Describe TIFF stacks without reading their pixels: shape, axes, dtype, "
        "channel axis, channel names, wavelengths, compression, calibration.",
        epilog="examples:\n  pixelmix info stack.ome.tif\n  pixelmix info scans/ --json\n  pixelmix info --gpu",
        formatter_class=formatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="TIFF files, directories or glob patterns")
    p.add_argument("--gpu", action="store_true",
                   help="say which GPU pixelmix can use (and why not, if none)")
    add_channel_axis(p)
    add_max_ratio(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print what each input holds (one JSON object per file with ``--json``); return the exit status."""
    if args.gpu:
        print(cuda_backend.describe())
        if not args.files:
            return EXIT_OK
    elif not args.files:
        raise UsageError("pixelmix info needs TIFF files (or --gpu)")
    files, missing = expand_inputs(args.files)
    status = EXIT_OK
    for m in missing:
        print(f"pixelmix: {shown(m.src)}: {m.reason}", file=sys.stderr)
        status = EXIT_FAILED
    for path in files:
        try:
            with open_stack(path, channel_axis=args.channel_axis, max_ratio=args.max_ratio) as s:
                record = {
                    "path": str(path), "shape": list(s.shape), "axes": s.axes, "dtype": s.dtype.name,
                    "channel_axis": s.channel_axis, "channels": s.n_channels,
                    "channel_names": s.channel_names, "wavelengths": s.wavelengths,
                    "kind": s.kind, "compression": s.compression, "memory_mapped": s.is_memmap,
                    "bytes": s.nbytes, "calibration": s.calibration,
                }
        except Exception as exc:
            report_failure(f"{path}", exc, args.debug)
            status = EXIT_FAILED
            continue
        if args.json:
            print(json.dumps(record))
        else:
            print(info_text(record))
    return status


def info_text(r: dict) -> str:
    """The human-readable lines of one ``info`` record (control characters in names escaped)."""
    lines = [
        f"{shown(r['path'])}",
        f"  shape {tuple(r['shape'])}  axes {r['axes']}  dtype {r['dtype']}  "
        f"({r['bytes'] / 1e6:.1f} MB, {r['kind']}, compression {r['compression']}"
        f"{', memory-mapped' if r['memory_mapped'] else ''})",
        f"  channels: {r['channels']} on axis {r['channel_axis']} ({r['axes'][r['channel_axis']]})",
    ]
    if r["channel_names"]:
        lines.append(f"  channel names: {_ellipsis([shown(n) for n in r['channel_names']])}")
    if r["wavelengths"]:
        w = r["wavelengths"]
        lines.append(f"  wavelengths: {min(w):g} to {max(w):g} nm ({len(w)} channels)")
    cal = {k: v for k, v in r["calibration"].items() if k.startswith("PhysicalSize") and not k.endswith("Unit")}
    if cal:
        parts = [f"{k[-1]} {v:g} {r['calibration'].get(k + 'Unit', '')}".strip() for k, v in cal.items()]
        lines.append(f"  pixel size: {', '.join(parts)}")
    return "\n".join(lines)


def _ellipsis(items, n: int = 8) -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if len(items) <= n else ", ".join(items[:n]) + f", ... ({len(items)} in all)"
