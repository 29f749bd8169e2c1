"""The ``pixelmix`` command line: ``main(argv=None) -> int``.

Exit status: 0 when everything succeeded, 1 when some input failed (the
others were still processed), 2 for a usage error or a failure before any
input was touched (a bad mixer file, an output directory equal to the input
directory). Expected failures print one line, no traceback; ``--debug``
adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line or its files: reported in one line, status 2."""


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelmix",
        description="Fast 1x1 channel mixing for multispectral and hyperspectral stacks.",
        epilog="examples:\n"
        "  pixelmix demo                                   the whole job on bundled sample data\n"
        "  pixelmix info stack.ome.tif\n"
        "  pixelmix fit pca scans/*.tif -k 10 -o pca10.json --sample 0.05\n"
        "  pixelmix apply scans/ --mixer pca10.json -o reduced/ --resume\n"
        "\nrun 'pixelmix COMMAND --help' for the options of each command",
        formatter_class=_formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks of failures")

    from .bench import SUITES
    from .engine import BACKENDS

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
    bench.add_argument("--backend", default="cpu", choices=[b for b in BACKENDS if b != "numpy"],
                       help="pixelmix's backend in the comparisons (default cpu)")
    bench.set_defaults(func=_cmd_bench)

    info = sub.add_parser(
        "info",
        parents=[common],
        help="shape, axes, dtype, channel names and wavelengths of TIFF files",
        description="Describe TIFF stacks without reading their pixels: shape, axes, dtype, "
        "channel axis, channel names, wavelengths, compression, calibration.",
        epilog="examples:\n  pixelmix info stack.ome.tif\n  pixelmix info scans/ --json\n  pixelmix info --gpu",
        formatter_class=_formatter,
    )
    info.add_argument("files", nargs="*", metavar="FILE", help="TIFF files, directories or glob patterns")
    info.add_argument("--gpu", action="store_true",
                      help="say which GPU pixelmix can use (and why not, if none)")
    info.add_argument("--channel-axis", type=int, default=None, metavar="N",
                      help="override the channel axis found from the file's axes")
    info.add_argument("--json", action="store_true", help="one JSON object per file")
    info.set_defaults(func=_cmd_info)

    apply = sub.add_parser(
        "apply",
        parents=[common],
        help="mix the channels of TIFF files into new TIFF files",
        description="Apply a mixer (or per-pixel program) to every pixel of each input, "
        "streaming in slabs with bounded memory, and write OUTDIR/<same name>. Outputs keep "
        "the input's axes (C replaced by the mixer's outputs), calibration, and record the "
        "output channel names and the mixer. Each output is written to a temporary file and "
        "renamed into place when complete; one bad input never stops the others.",
        epilog="examples:\n"
        "  pixelmix apply a.tif b.tif --mixer pca10.json -o reduced/\n"
        "  pixelmix apply cube.ome.tif --preset spectral_to_srgb -o rgb/   # wavelengths from the file\n"
        "  pixelmix apply cube.tif --preset band_binning --preset-option factor=4 -o binned/\n"
        "  pixelmix apply rgb.tif --matrix '0.2125,0.7154,0.0721' -o gray/\n"
        "  pixelmix apply scans/ --matrix weights.csv --bias '0,10' -o out/ --compression zlib\n"
        "  pixelmix apply scans/ --mixer m.json -o out/ --resume      # after an interruption",
        formatter_class=_formatter,
    )
    apply.add_argument("files", nargs="*", metavar="FILE", help="TIFF files, directories or glob patterns")
    what = apply.add_mutually_exclusive_group(required=True)
    what.add_argument("--mixer", metavar="FILE", help="a mixer or program file (pixelmix JSON)")
    what.add_argument("--preset", metavar="NAME", help="a built-in mixer (see --preset list)")
    what.add_argument("--matrix", metavar="M",
                      help="weights: inline rows 'a,b,c;d,e,f' (write --matrix=-1,... when the first "
                      "value is negative), a JSON list, or a .csv/.json file")
    apply.add_argument("--bias", metavar="B", help="with --matrix: one value per output, e.g. '0,10'")
    apply.add_argument("--preset-option", action="append", metavar="KEY=VALUE",
                       help="a parameter of the preset, e.g. factor=4 or scale=255 (repeatable); "
                       "wavelengths and band counts come from the inputs")
    apply.add_argument("-o", "--output", metavar="OUTDIR",
                       help="output directory (required), or NAME.zarr for one Zarr/OME-Zarr store")
    _add_io_options(apply)
    apply.add_argument("--dtype", default=None,
                       choices=["float32", "float64", "uint8", "uint16", "int16", "int32"],
                       help="output dtype (default float32; integers round half to even and saturate)")
    apply.add_argument("--nodata", type=float, default=None, metavar="V",
                       help="input value marking missing pixels")
    apply.add_argument("--compression", default="none", choices=["none", "zlib", "zstd", "lzw"],
                       help="output compression (default none: fastest, memory-mappable)")
    apply.add_argument("--resume", action="store_true", help="skip inputs whose output is complete")
    apply.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    apply.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    apply.add_argument("--backend", default="auto", choices=list(BACKENDS),
                       help="compute backend (default auto: the GPU for large work when one is usable)")
    apply.add_argument("--slab-mb", type=float, default=64, metavar="MB",
                       help="input read per step, in MB (default 64): bounds memory")
    cluster = apply.add_mutually_exclusive_group()  # whole files as tasks (pixelmix/cluster.py)
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="send the files to this Dask scheduler (tcp://host:8786 or a scheduler file)")
    cluster.add_argument("--dask", action="store_true", help="send the files to a local Dask cluster")
    apply.add_argument("--workers", type=int, default=None, metavar="N",
                       help="with --dask: worker processes (default one per core)")
    apply.set_defaults(func=_cmd_apply)

    fit = sub.add_parser(
        "fit",
        parents=[common],
        help="learn a mixer (PCA, MNF) from TIFF files",
        description="Fit a mixer on the pixels of all the given files (streamed, never loaded "
        "whole) and save it as a pixelmix JSON file for 'pixelmix apply --mixer'.",
        epilog="examples:\n"
        "  pixelmix fit pca cube.tif -k 10 -o pca10.json\n"
        "  pixelmix fit mnf scans/*.tif -k 8 -o mnf8.json --sample 0.1 --report mnf8.png",
        formatter_class=_formatter,
    )
    fit.add_argument("method", choices=sorted(_FIT_METHODS), help="fitting method")
    fit.add_argument("files", nargs="+", metavar="FILE", help="TIFF files, directories or glob patterns")
    fit.add_argument("-k", "--components", required=True, type=float, metavar="N",
                     help="components to keep (PCA: a fraction in (0, 1) keeps enough to explain it)")
    fit.add_argument("-o", "--output", required=True, metavar="MIXER", help="mixer file to write (.json)")
    _add_io_options(fit)
    fit.add_argument("--sample", type=float, default=None, metavar="F",
                     help="fit on a fraction F of the pixels (or every F-th pixel when F > 1)")
    fit.add_argument("--whiten", action="store_true", help="PCA: scale components to unit variance")
    fit.add_argument("--nodata", type=float, default=None, metavar="V",
                     help="input value marking missing pixels (skipped)")
    fit.add_argument("--report", metavar="PNG",
                     help="save a figure of explained variance and the first components (needs matplotlib)")
    fit.set_defaults(func=_cmd_fit)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="the whole job on the bundled sample data",
        description="Fit PCA on a synthetic 64-band hyperspectral scene, reduce it, unmix it "
        "with its known endmembers and check against the ground truth, and separate the "
        "crosstalk of a small fluorescence stack; print what was done and where the outputs are.",
        epilog="examples:\n  pixelmix demo\n  pixelmix demo --out /tmp/pixelmix-demo",
        formatter_class=_formatter,
    )
    demo.add_argument("--out", default="pixelmix-demo", metavar="DIR",
                      help="where the outputs go (default ./pixelmix-demo)")
    demo.set_defaults(func=_cmd_demo)
    return parser


_FIT_METHODS = {"pca": "fit_pca", "mnf": "fit_mnf"}


def _add_io_options(p) -> None:
    p.add_argument("--channel-axis", type=int, default=None, metavar="N",
                   help="override the channel axis found from the file's axes")


# -- commands ---------------------------------------------------------------------


def _cmd_bench(args) -> int:
    from .bench import run

    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    return run(suites, quick=args.quick, repeat=args.repeat, backend=args.backend)


def _cmd_info(args) -> int:
    from .batch import expand_inputs
    from .tiff import open_stack

    if args.gpu:
        from .gpu import describe

        print(describe())
        if not args.files:
            return EXIT_OK
    elif not args.files:
        raise UsageError("pixelmix info needs TIFF files (or --gpu)")
    files, missing = expand_inputs(args.files)
    status = EXIT_OK
    for m in missing:
        print(f"pixelmix: {m.src}: {m.reason}", file=sys.stderr)
        status = EXIT_FAILED
    for path in files:
        try:
            with open_stack(path, channel_axis=args.channel_axis) as s:
                record = {
                    "path": str(path), "shape": list(s.shape), "axes": s.axes, "dtype": s.dtype.name,
                    "channel_axis": s.channel_axis, "channels": s.n_channels,
                    "channel_names": s.channel_names, "wavelengths": s.wavelengths,
                    "kind": s.kind, "compression": s.compression, "memory_mapped": s.is_memmap,
                    "bytes": s.nbytes, "calibration": s.calibration,
                }
        except Exception as exc:
            _report_failure(f"{path}", exc, args.debug)
            status = EXIT_FAILED
            continue
        if args.json:
            print(json.dumps(record))
        else:
            print(_info_text(record))
    return status


def _info_text(r: dict) -> str:
    lines = [
        f"{r['path']}",
        f"  shape {tuple(r['shape'])}  axes {r['axes']}  dtype {r['dtype']}  "
        f"({r['bytes'] / 1e6:.1f} MB, {r['kind']}, compression {r['compression']}"
        f"{', memory-mapped' if r['memory_mapped'] else ''})",
        f"  channels: {r['channels']} on axis {r['channel_axis']} ({r['axes'][r['channel_axis']]})",
    ]
    if r["channel_names"]:
        lines.append(f"  channel names: {_ellipsis(r['channel_names'])}")
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


def _parse_numbers(text: str, what: str):
    import numpy as np

    text = text.strip()
    try:
        if text.startswith("["):
            return np.array(json.loads(text), dtype=np.float64)
        rows = [r for r in text.split(";") if r.strip()]
        return np.array([[float(v) for v in r.replace(" ", ",").split(",") if v] for r in rows])
    except (ValueError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {what} {text!r}: {exc}; write rows as 'a,b,c;d,e,f'") from None


def _matrix_program(matrix: str, bias: str | None):
    import numpy as np

    from . import Mixer, load

    path = Path(matrix)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path} is not valid JSON: {exc}") from None
            if isinstance(doc, dict) and doc.get("format") == "pixelmix":
                if bias is not None:
                    raise UsageError("--bias cannot be combined with a pixelmix mixer file")
                return load(path)
            if isinstance(doc, dict):
                weights, file_bias = doc.get("weights"), doc.get("bias")
                if weights is None:
                    raise UsageError(f"{path} holds no 'weights' entry")
            else:
                weights, file_bias = doc, None
            weights = np.array(weights, dtype=np.float64)
        else:
            try:
                weights = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
            except ValueError as exc:
                raise UsageError(f"cannot read the matrix in {path}: {exc}") from None
            file_bias = None
    else:
        weights, file_bias = _parse_numbers(matrix, "--matrix"), None
    if weights.ndim == 1:
        weights = weights[None, :]
    b = file_bias if bias is None else _parse_numbers(bias, "--bias").ravel()
    try:
        return Mixer(weights, b, metadata={"method": "matrix", "source": matrix})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"bad --matrix: {exc}") from None


def _preset_program(name: str, options: list[str], files: list[str], channel_axis):
    """The preset ``name`` built with ``--preset-option KEY=VALUE`` values.

    Presets that depend on the data (``wavelengths``, ``n_bands``) take them
    from the inputs, which must all agree.
    """
    import inspect

    from . import presets

    names = list(presets.names())
    if name == "list":
        print("\n".join(names))
        return None
    if name not in names:
        raise UsageError(f"unknown preset {name!r}; choose from: {', '.join(names)}")
    kwargs = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep:
            raise UsageError(f"--preset-option takes KEY=VALUE, got {option!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    wanted = inspect.signature(presets._REGISTRY[name]).parameters
    needs = [k for k in ("wavelengths", "n_bands") if k in wanted and k not in kwargs]
    if needs:
        kwargs.update(_from_inputs(needs, files, channel_axis, name))
    try:
        return presets.get(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{exc} (give options as --preset-option KEY=VALUE)") from None


def _from_inputs(keys: list[str], files: list[str], channel_axis, preset: str) -> dict:
    """``wavelengths`` / ``n_bands`` read from the input files (they must all agree)."""
    from .batch import expand_inputs
    from .tiff import open_stack

    paths, _ = expand_inputs(files)
    found = None
    for path in paths:
        with open_stack(path, channel_axis=channel_axis) as stack:
            here = {"wavelengths": stack.wavelengths, "n_bands": stack.n_channels}
        if "wavelengths" in keys and here["wavelengths"] is None:
            raise UsageError(f"preset {preset!r} needs wavelengths, and {path} carries none; "
                             f"give them with --preset-option wavelengths=[...]")
        here = {k: here[k] for k in keys}
        if found is not None and here != found:
            raise UsageError(f"preset {preset!r}: {path} differs from the first input in {', '.join(keys)}; "
                             f"run such files separately")
        found = here
    if found is None:
        raise UsageError(f"preset {preset!r} takes {', '.join(keys)} from the inputs, but there are none")
    return found


def _load_program(args):
    from . import load

    if args.mixer:
        path = Path(args.mixer)
        if not path.is_file():
            raise UsageError(f"mixer file {path} does not exist")
        try:
            return load(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read mixer file {path}: {exc}") from None
    if args.preset:
        return _preset_program(args.preset, args.preset_option, args.files, args.channel_axis)
    return _matrix_program(args.matrix, args.bias)


def _cmd_apply(args) -> int:
    from .batch import run_batch

    if args.bias is not None and not args.matrix:
        raise UsageError("--bias goes with --matrix (a mixer file holds its own bias)")
    if args.slab_mb <= 0:
        raise UsageError("--slab-mb must be positive")
    program = _load_program(args)
    if program is None:  # --preset list
        return EXIT_OK
    if not args.files or not args.output:
        raise UsageError("give the input FILEs and -o OUTDIR (see pixelmix apply --help)")
    from .tiff import codec_problem

    problem = codec_problem(None if args.compression == "none" else args.compression)
    if problem:
        raise UsageError(problem)
    if args.backend == "cuda":
        from .gpu import unusable_reason

        reason = unusable_reason()
        if reason:
            raise UsageError(f"--backend cuda: {reason}")
    from .cluster import is_zarr_path

    if args.scheduler or args.dask or args.workers is not None or is_zarr_path(args.output):
        from functools import partial

        from .cluster import run_batch_cli

        run_batch = partial(run_batch_cli, scheduler=args.scheduler, local=args.dask, n_workers=args.workers)
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
            nodata=args.nodata,
            compression=None if args.compression == "none" else args.compression,
            backend=args.backend,
            max_bytes=int(args.slab_mb * 2**20),
        )
    except ValueError as exc:  # refused before any input was touched
        raise UsageError(str(exc)) from None
    if args.debug:
        for r in summary.results:
            if r.traceback:
                print(f"--- {r.src}\n{r.traceback}", file=sys.stderr)
    for r in summary.results:
        if r.status == "done" and not args.quiet:
            print(f"wrote {r.dst}")
    print(summary.text(), file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_FAILED


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


def _cmd_fit(args) -> int:
    import pixelmix

    from .batch import expand_inputs

    fit = getattr(pixelmix, _FIT_METHODS[args.method], None)
    if fit is None:
        raise UsageError(f"this pixelmix cannot fit {args.method!r} (no pixelmix.{_FIT_METHODS[args.method]})")
    files, missing = expand_inputs(args.files)
    if missing:
        raise UsageError("; ".join(f"{m.src}: {m.reason}" for m in missing))
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
    print(_fit_summary(mixer))
    print(f"wrote {args.output}")
    if args.report:
        _fit_report(mixer, data[0], args.report, channel_axis=args.channel_axis)
        print(f"wrote {args.report}")
    return EXIT_OK


def _fit_summary(mixer) -> str:
    meta = mixer.metadata
    if "explained_variance_ratio" in meta:
        ratio = [float(r) for r in meta["explained_variance_ratio"]]
        cum = 0.0
        parts = []
        for i, r in enumerate(ratio[:10]):
            cum += r
            parts.append(f"{i + 1}: {100 * r:.1f}%")
        return f"  explained variance: {', '.join(parts)} (total {100 * sum(ratio):.1f}%)"
    if "snr" in meta:
        snr = [float(s) for s in meta["snr"]]
        return "  signal-to-noise: " + ", ".join(f"{i + 1}: {s:.3g}" for i, s in enumerate(snr[:10]))
    return ""


def _fit_report(mixer, path: str, out: str, *, channel_axis=None, n_images: int = 4) -> None:
    """Save a figure: explained variance (or SNR) and the first component images of ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--report needs matplotlib: pip install 'pixelmix[report]'") from None
    import numpy as np

    from .tiff import open_stack

    with open_stack(path, channel_axis=channel_axis) as stack:
        # The first slab (up to 64 MB), first plane: enough to see the components.
        index, slab = next(stack.iter_slabs(prefetch=0))
        axis = stack.channel_axis
        comps = mixer.apply(slab, channel_axis=axis)
    comps = np.moveaxis(comps, axis, 0)
    comps = comps.reshape((comps.shape[0], -1) + comps.shape[-2:])[:, 0]
    step = max(1, max(comps.shape[1:]) // 512)
    comps = comps[:, ::step, ::step]
    meta = mixer.metadata
    if "explained_variance_ratio" in meta:
        values, label = 100 * np.asarray(meta["explained_variance_ratio"], float), "explained variance (%)"
    elif "snr" in meta:
        values, label = np.asarray(meta["snr"], float), "signal-to-noise ratio"
    else:
        values, label = np.linalg.norm(mixer.weights, axis=1), "weight norm"
    n = min(n_images, comps.shape[0])
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.2), squeeze=False)
    ax = axes[0, 0]
    ax.bar(np.arange(1, len(values) + 1), values, color="tab:blue")
    ax.set_xlabel("component")
    ax.set_ylabel(label)
    ax.set_title(f"{meta.get('method', 'fit')}: {mixer.n_inputs} -> {mixer.n_outputs}")
    names = mixer.output_names or [f"component {i + 1}" for i in range(mixer.n_outputs)]
    for i in range(n):
        ax = axes[0, i + 1]
        img = comps[i]
        lo, hi = np.nanpercentile(img, [1, 99]) if np.isfinite(img).any() else (0, 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(names[i])
        ax.axis("off")
    fig.suptitle(Path(path).name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out)


# -- entry point ------------------------------------------------------------------


def _report_failure(where: str, exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    from .batch import failure_reason

    print(f"pixelmix: error: {where}: {failure_reason(exc, where)}" if where else f"pixelmix: error: {failure_reason(exc)}",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Examples
    --------
    >>> from pixelmix.cli import main
    >>> main(["info", "no-such-file.tif"])
    1
    """
    parser = _build_parser()
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
        print(f"pixelmix {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pixelmix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pixelmix info ... | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            from .batch import failure_reason

            print(f"pixelmix {args.command}: error: {failure_reason(exc)} (run with --debug for details)",
                  file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
