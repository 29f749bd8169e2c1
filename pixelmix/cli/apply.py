"""``pixelmix apply``: mix the channels of TIFF files into new TIFF files or a Zarr store."""

from __future__ import annotations

import argparse
import sys
from functools import partial

from ..backends import cuda as cuda_backend
from ..dispatch import BACKENDS
from ..io.names import shown
from ..io.write import codec_problem
from ..io.zarr import is_zarr_path
from ..jobs.batch import run_local
from ..jobs.cluster import connect_and_run
from .common import EXIT_FAILED, EXIT_OK, UsageError, add_channel_axis, add_max_ratio, formatter
from .programs import load_program

_DESCRIPTION = (
    "Apply a mixer (or per-pixel program) to every pixel of each input, "
    "streaming in slabs with bounded memory, and write OUTDIR/<same name>. Outputs keep "
    "the input's axes (C replaced by the mixer's outputs), calibration, and record the "
    "output channel names and the mixer. A GeoTIFF gives a GeoTIFF: same CRS, geotransform, "
    "interleave and tiling, band descriptions = output names, and the output's nodata "
    "(NaN for float outputs). Each output is written to a temporary file and "
    "renamed into place when complete; one bad input never stops the others.\n\n"
    "An existing output is never replaced without --overwrite (or --resume redoing it), "
    "also when another run writing the same directory finishes it first. A disk too full "
    "for an output fails that input alone, with the space it needs. Inputs whose tags claim "
    "more pixels than the file can hold are refused before anything is written."
)
_EPILOG = (
    "examples:\n"
    "  pixelmix apply a.tif b.tif --mixer pca10.json -o reduced/\n"
    "  pixelmix apply cube.ome.tif --preset spectral_to_srgb -o rgb/   # wavelengths from the file\n"
    "  pixelmix apply cube.tif --preset band_binning --preset-option factor=4 -o binned/\n"
    "  pixelmix apply rgb.tif --matrix '0.2125,0.7154,0.0721' -o gray/\n"
    "  pixelmix apply scans/ --matrix weights.csv --bias '0,10' -o out/ --compression zlib\n"
    "  pixelmix apply scans/ --mixer m.json -o out/ --resume      # after an interruption"
)


def add_parser(sub, common) -> None:
    """Add the ``apply`` subcommand to ``sub`` (``common``: the options all commands share)."""
    p = sub.add_parser(
        "apply",
        parents=[common],
        help="mix the channels of TIFF files into new TIFF files",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="TIFF files, directories or glob patterns")
    _add_program_options(p)
    p.add_argument("-o", "--output", metavar="OUTDIR",
                   help="output directory (required), or NAME.zarr for one Zarr/OME-Zarr store")
    add_channel_axis(p)
    add_max_ratio(p)
    _add_output_options(p)
    _add_cluster_options(p)
    p.set_defaults(func=run)


def _add_program_options(p) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mixer", metavar="FILE", help="a mixer or program file (pixelmix JSON)")
    what.add_argument("--preset", metavar="NAME", help="a built-in mixer (see --preset list)")
    what.add_argument("--matrix", metavar="M",
                      help="weights: inline rows 'a,b,c;d,e,f' (write --matrix=-1,... when the first "
                      "value is negative), a JSON list, or a .csv/.json file")
    p.add_argument("--bias", metavar="B", help="with --matrix: one value per output, e.g. '0,10'")
    p.add_argument("--preset-option", action="append", metavar="KEY=VALUE",
                   help="a parameter of the preset, e.g. factor=4 or scale=255 (repeatable); "
                   "wavelengths and band counts come from the inputs")


def _add_output_options(p) -> None:
    p.add_argument("--dtype", default=None,
                   choices=["float32", "float64", "uint8", "uint16", "int16", "int32"],
                   help="output dtype (default float32; integers round half to even and saturate)")
    p.add_argument("--nodata", type=nodata_option, default=None, metavar="V",
                   help="input value marking missing pixels (default: the file's own, e.g. a GeoTIFF's "
                   "nodata; 'none': no value marks missing pixels)")
    p.add_argument("--ignore-channel-names", action="store_true",
                   help="apply a mixer by position to files whose channel names differ from those it "
                   "was made for (refused otherwise)")
    p.add_argument("--compression", default="none", choices=["none", "zlib", "zstd", "lzw"],
                   help="output compression (default none: fastest, memory-mappable; a tiled GeoTIFF stays tiled)")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs whose output is complete and made by the same mixer (the "
                   "SHA-256 in its provenance), dtype and nodata; redo (replace) the others")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="compute backend (default auto: the GPU for large work when one is usable)")
    p.add_argument("--slab-mb", type=float, default=64, metavar="MB",
                   help="input read per step, in MB (default 64): bounds memory")


def _add_cluster_options(p) -> None:
    cluster = p.add_mutually_exclusive_group()  # whole files as tasks (pixelmix/jobs/cluster.py)
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="send the files to this Dask scheduler (tcp://host:8786 or a scheduler file)")
    cluster.add_argument("--dask", action="store_true", help="send the files to a local Dask cluster")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --dask: worker processes (default one per core)")


NO_NODATA = "none"


def nodata_option(text: str) -> float | str:
    """The value of ``--nodata``: a number, or ``"none"`` (no value marks missing pixels, not even the file's own).

    Examples
    --------
    >>> from pixelmix.cli.apply import nodata_option
    >>> nodata_option("-9999"), nodata_option("None")
    (-9999.0, 'none')
    """
    if text.strip().lower() == NO_NODATA:
        return NO_NODATA
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'none')") from None


def _check(args) -> None:
    """Refuse what cannot work before any input is touched."""
    if args.bias is not None and not args.matrix:
        raise UsageError("--bias goes with --matrix (a mixer file holds its own bias)")
    if args.slab_mb <= 0:
        raise UsageError("--slab-mb must be positive")


def run(args) -> int:
    """Mix every input into ``-o``; return 0 when all succeeded, 1 when some failed."""
    _check(args)
    program = load_program(args)
    if program is None:  # --preset list
        return EXIT_OK
    if not args.files or not args.output:
        raise UsageError("give the input FILEs and -o OUTDIR (see pixelmix apply --help)")
    problem = codec_problem(None if args.compression == "none" else args.compression)
    if problem:
        raise UsageError(problem)
    if args.backend == "cuda":
        reason = cuda_backend.unusable_reason()
        if reason:
            raise UsageError(f"--backend cuda: {reason}")
    run_batch = run_local
    if args.scheduler or args.dask or args.workers is not None or is_zarr_path(args.output):
        run_batch = partial(connect_and_run, scheduler=args.scheduler, local=args.dask, n_workers=args.workers)
    try:
        summary = run_batch(
            args.files,
            args.output,
            program,
            resume=args.resume,
            overwrite=args.overwrite,
            quiet=args.quiet,
            debug=args.debug,
            channel_axis=args.channel_axis,
            dtype=args.dtype,
            nodata=None if args.nodata == NO_NODATA else args.nodata,
            file_nodata=args.nodata != NO_NODATA,
            check_names=not args.ignore_channel_names,
            compression=None if args.compression == "none" else args.compression,
            backend=args.backend,
            max_bytes=int(args.slab_mb * 2**20),
            max_ratio=args.max_ratio,
        )
    except ValueError as exc:  # refused before any input was touched
        raise UsageError(str(exc)) from None
    if args.debug:
        for r in summary.results:
            if r.traceback:
                print(f"--- {shown(r.src)}\n{r.traceback}", file=sys.stderr)
    for r in summary.results:
        if r.status == "done" and not args.quiet:
            print(f"wrote {shown(r.dst)}")
    print(summary.text(), file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_FAILED
