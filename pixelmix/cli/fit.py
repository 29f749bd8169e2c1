"""``pixelmix fit``: learn a mixer (PCA, MNF) or an unmixer from TIFF files and save it.

The unmixing fits (``endmembers``, ``spillover``, ``rank``) are in
:mod:`pixelmix.cli.unmix`.
"""

from __future__ import annotations

from pathlib import Path

from ..io.geotiff import input_nodata
from ..io.names import shown
from ..io.read import open_stack
from ..jobs.batch import expand_inputs
from ..learn import fit_mnf, fit_pca
from ..plan import dtype_problem
from .apply import NO_NODATA, nodata_option
from .common import EXIT_OK, UsageError, add_channel_axis, formatter
from . import unmix
from .report import fit_report

# method name on the command line -> the fit
FIT_METHODS = {"pca": fit_pca, "mnf": fit_mnf}


def add_parser(sub, common) -> None:
    """Add the ``fit`` subcommand to ``sub`` (``common``: the options all commands share)."""
    p = sub.add_parser(
        "fit",
        parents=[common],
        help="learn a mixer (PCA, MNF) or an unmixer from TIFF files",
        description="Fit a mixer on the pixels of all the given files (streamed, never loaded "
        "whole) and save it as a pixelmix JSON file for 'pixelmix apply --mixer'.",
        epilog="examples:\n"
        "  pixelmix fit pca cube.tif -k 10 -o pca10.json\n"
        "  pixelmix fit mnf scans/*.tif -k 8 -o mnf8.json --sample 0.1 --report mnf8.png\n"
        "  pixelmix fit rank cube.tif\n"
        "  pixelmix fit endmembers cube.tif -k 4 --method vca --unmixer fcls -o fcls.json\n"
        "  pixelmix fit spillover --reference DAPI=dapi.tif --reference FITC=fitc.tif "
        "--background unstained.tif -o spill.json",
        formatter_class=formatter,
    )
    p.add_argument("method", choices=sorted([*FIT_METHODS, *unmix.RUNNERS]), help="fitting method")
    p.add_argument("files", nargs="*", metavar="FILE", help="TIFF files, directories or glob patterns")
    p.add_argument("-k", "--components", type=float, metavar="N",
                   help="components (or endmembers) to keep (PCA: a fraction in (0, 1) keeps enough to explain it)")
    p.add_argument("-o", "--output", metavar="MIXER", help="mixer file to write (.json)")
    add_channel_axis(p)
    p.add_argument("--sample", type=float, default=None, metavar="F",
                   help="fit on a fraction F of the pixels (or every F-th pixel when F > 1)")
    p.add_argument("--whiten", action="store_true", help="PCA: scale components to unit variance")
    p.add_argument("--nodata", type=nodata_option, default=None, metavar="V",
                   help="input value marking missing pixels, which are skipped (default: the files' own, "
                   "e.g. a GeoTIFF's nodata; 'none': skip no value)")
    p.add_argument("--report", metavar="PNG",
                   help="save a figure of explained variance and the first components (needs matplotlib)")
    unmix.add_options(p)
    p.set_defaults(func=run)


def _sample_value(sample):
    if sample is None:
        return None
    if sample <= 0:
        raise UsageError("--sample must be positive")
    if sample < 1:
        return float(sample)
    if sample != int(sample):
        raise UsageError("--sample above 1 means every n-th pixel and must be a whole number")
    return int(sample)


def run(args) -> int:
    """Fit, save the mixer, print a summary (and save the report figure); return the exit status."""
    files, missing = expand_inputs(args.files)
    if missing:
        raise UsageError("; ".join(f"{m.src}: {m.reason}" for m in missing))
    args.nodata = fit_nodata(files, args.nodata, args.channel_axis)
    if args.method in unmix.RUNNERS:
        args.sample = _sample_value(args.sample)
        return unmix.RUNNERS[args.method](args, [str(f) for f in files])
    fit = FIT_METHODS[args.method]
    if not files or args.components is None or args.output is None:
        raise UsageError(f"fit {args.method} needs FILE..., -k N and -o MIXER")
    k = args.components
    k = int(k) if k >= 1 and k == int(k) else k
    if isinstance(k, float) and not 0 < k < 1:
        raise UsageError("-k must be a whole number of components or a fraction in (0, 1)")
    kwargs = {"nodata": args.nodata, "sample": _sample_value(args.sample)}
    if args.channel_axis is not None:
        kwargs["channel_axis"] = args.channel_axis
    if args.whiten:
        if args.method != "pca":
            raise UsageError("--whiten applies to pca only")
        kwargs["whiten"] = True
    data = [str(f) for f in files]
    mixer = fit(data, k, **kwargs)
    mixer.metadata.setdefault("fitted_on", [Path(f).name for f in data])
    mixer.save(args.output)
    print(f"fitted {args.method} on {len(data)} file(s): {mixer.n_inputs} channels -> {mixer.n_outputs}")
    print(fit_summary(mixer))
    print(f"wrote {args.output}")
    if args.report:
        fit_report(mixer, data[0], args.report, channel_axis=args.channel_axis)
        print(f"wrote {args.report}")
    return EXIT_OK


def fit_nodata(files, nodata, channel_axis=None) -> float | None:
    """The nodata a fit skips: ``--nodata`` if given, else the one the files declare.

    Also refuses, in one line, files whose dtype no fit can take. Files
    that declare different values (or some none) cannot be fitted with one
    value: the user chooses with ``--nodata``.
    """
    if nodata == NO_NODATA:
        nodata, declared = None, False
    else:
        declared = nodata is None
    found: dict[Path, float | None] = {}
    for path in files:
        with open_stack(path, channel_axis=channel_axis) as stack:
            problem = dtype_problem(stack.dtype)
            if problem is not None:
                raise UsageError(f"{shown(path)}: {problem}")
            if declared:
                found[path] = input_nodata(stack.geo, stack.dtype)
    values = set(found.values())
    if len(values) > 1:
        listed = ", ".join(f"{shown(p.name)}: {'none' if v is None else f'{v:g}'}" for p, v in found.items())
        raise UsageError(f"the files declare different nodata values ({listed}); fit them separately, or "
                         f"give the value to skip with --nodata V (--nodata none skips none)")
    return values.pop() if declared and values else nodata


def fit_summary(mixer) -> str:
    """One line: the explained variance (PCA) or signal-to-noise (MNF) of the first components."""
    meta = mixer.metadata
    if "explained_variance_ratio" in meta:
        ratio = [float(r) for r in meta["explained_variance_ratio"]]
        parts = [f"{i + 1}: {100 * r:.1f}%" for i, r in enumerate(ratio[:10])]
        return f"  explained variance: {', '.join(parts)} (total {100 * sum(ratio):.1f}%)"
    if "snr" in meta:
        snr = [float(s) for s in meta["snr"]]
        return "  signal-to-noise: " + ", ".join(f"{i + 1}: {s:.3g}" for i, s in enumerate(snr[:10]))
    return ""

