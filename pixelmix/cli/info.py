"""``pixelmix info``: describe TIFF stacks (and the GPU) without reading their pixels."""

from __future__ import annotations

import json
import sys

from ..backends import cuda as cuda_backend
from ..io import zarr as zarr_io
from ..io.names import shown
from ..io.pyramid import describe
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
        "channel axis, channel names, wavelengths, compression, calibration; for a GeoTIFF its "
        "CRS, geotransform, nodata and interleave; the series and pyramid levels of a file that "
        "has more than one. Zarr outputs (out.zarr) are described too: shape, axes, dtype, "
        "channel names, scale and levels of each image group.",
        epilog="examples:\n  pixelmix info stack.ome.tif\n  pixelmix info scans/ --json\n  pixelmix info --gpu",
        formatter_class=formatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="TIFF files, directories or glob patterns; Zarr stores or image groups")
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
    status = EXIT_OK
    tiffs = []
    for item in args.files:  # Zarr outputs (pixelmix apply -o out.zarr): their image groups
        images = zarr_io.find_images(item)
        if images is None:
            tiffs.append(item)
            continue
        if not images:
            print(f"pixelmix: {shown(item)}: holds no image groups", file=sys.stderr)
            status = EXIT_FAILED
        for image in images:
            try:
                record = zarr_io.describe_image(image)
            except Exception as exc:
                report_failure(f"{image}", exc, args.debug)
                status = EXIT_FAILED
                continue
            print(json.dumps(record) if args.json else zarr_text(record))
    if not tiffs:
        return status
    files, missing = expand_inputs(tiffs)
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
                if s.geo is not None:  # crs, geotransform, nodata, interleave, tile
                    record["geotiff"] = s.geo.describe()
                if s.n_series > 1 or s.n_levels > 1:  # every one is mixed by pixelmix apply
                    record["series"] = [
                        {"index": i.index, "name": i.name, "axes": i.axes, "dtype": i.dtype,
                         "levels": [list(shape) for shape in i.levels]}
                        for i in describe(s)
                    ]
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
    if r.get("geotiff"):
        lines.extend(_geo_lines(r["geotiff"]))
    for series in r.get("series") or []:
        name = f" {shown(series['name'])!r}" if series["name"] else ""
        levels = series["levels"]
        pyramid = f"; {len(levels)} levels: " + ", ".join(str(tuple(v)) for v in levels[1:]) if len(levels) > 1 else ""
        lines.append(f"  series {series['index']}{name}: shape {tuple(levels[0])}  axes {series['axes']}  "
                     f"dtype {series['dtype']}{pyramid}")
    return "\n".join(lines)


def zarr_text(r: dict) -> str:
    """The human-readable lines of one Zarr image group (``pixelmix info out.zarr``)."""
    lines = [
        f"{shown(r['path'])}",
        f"  shape {tuple(r['shape'])}  axes {r['axes']}  dtype {r['dtype']}  ({r['kind']})",
    ]
    if r.get("channel_names"):
        lines.append(f"  channel names: {_ellipsis([shown(n) for n in r['channel_names']])}")
    if r.get("scale"):
        units = r.get("units") or [None] * len(r["scale"])
        parts = [f"{a} {v:g} {u or ''}".strip() for a, v, u in zip(r["axes"], r["scale"], units) if a != "c"]
        lines.append(f"  scale: {', '.join(parts)}")
    if len(r["levels"]) > 1:
        lines.append(f"  {len(r['levels'])} levels: " + ", ".join(str(tuple(v)) for v in r["levels"][1:]))
    return "\n".join(lines)


def _geo_lines(g: dict) -> list[str]:
    """The GeoTIFF lines of ``info``: CRS, geotransform, nodata, interleave and tiling."""
    lines = []
    if g["crs"]:
        name = f" ({shown(g['crs_name'])})" if g.get("crs_name") and g["crs_name"] not in g["crs"] else ""
        lines.append(f"  CRS: {shown(g['crs'])}{name}")
    if g["geotransform"]:
        lines.append(f"  geotransform: ({', '.join(f'{v:.10g}' for v in g['geotransform'])})")
    if g["nodata"] is not None:
        value = g["nodata"]
        lines.append(f"  nodata: {value:.17g}" if isinstance(value, float) else f"  nodata: {value}")
    tile = f"tiled {g['tile'][0]}x{g['tile'][1]}" if g["tile"] else "strips"
    lines.append(f"  interleave: {g['interleave']}, {tile}")
    return lines


def _ellipsis(items, n: int = 8) -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if len(items) <= n else ", ".join(items[:n]) + f", ... ({len(items)} in all)"
