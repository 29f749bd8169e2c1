"""``pixelmix fit endmembers | spillover | rank``: the unmixing fits of the command line.

- ``endmembers``: find K endmember spectra in the files (ATGP, N-FINDR,
  VCA) and save them as JSON ``{"endmembers": [[...]], "method", "found_at"}``
  (``--unmixer nnls|fcls|ls|sto`` saves an unmixer of them instead, ready
  for ``pixelmix apply --mixer``);
- ``spillover``: calibrate a non-negative unmixer from single-stain
  controls (``--reference NAME=FILE``) and an unstained one
  (``--background FILE``);
- ``rank``: print the number of endmembers (HySime).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..learn import estimate_rank, find_endmembers, fit_spillover, unmixer
from .common import EXIT_OK, UsageError

# --unmixer NAME -> (nonneg, sum_to_one)
CONSTRAINTS = {"ls": (False, False), "sto": (False, True), "nnls": (True, False), "fcls": (True, True)}
METHODS = ("atgp", "nfindr", "vca")


def add_options(p) -> None:
    """The options of the unmixing fits, on the ``fit`` parser."""
    p.add_argument("--method", dest="em_method", choices=METHODS, default="atgp",
                   help="endmembers: the extraction method (default atgp)")
    p.add_argument("--unmixer", choices=sorted(CONSTRAINTS), default=None,
                   help="endmembers: write an unmixer of the endmembers with this constraint "
                   "(ls: least squares, sto: sum to one, nnls: non-negative, fcls: both); "
                   "spillover: the constraint of its unmixer (default nnls)")
    p.add_argument("--residual", action="store_true",
                   help="the unmixer appends the per-pixel RMS residual as one more channel")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=FILE",
                   help="spillover: a dye's single-stain control (repeat for each dye)")
    p.add_argument("--background", metavar="FILE",
                   help="spillover: an unstained control; adds an 'autofluorescence' output")


def _options(args) -> dict:
    kwargs = {"nodata": args.nodata}
    if args.channel_axis is not None:
        kwargs["channel_axis"] = args.channel_axis
    return kwargs


def _whole_k(args) -> int:
    k = args.components
    if k is None or k < 1 or k != int(k):
        raise UsageError(f"fit {args.method}: -k must be a whole number of endmembers")
    return int(k)


def run_endmembers(args, files: list[str]) -> int:
    """Find endmembers; save them (or an unmixer of them)."""
    if not files:
        raise UsageError("fit endmembers needs at least one FILE")
    if args.output is None:
        raise UsageError("fit endmembers needs -o FILE.json")
    spectra, where = find_endmembers(
        files, _whole_k(args), method=args.em_method, sample=args.sample, return_indices=True, **_options(args)
    )
    found = [{"file": Path(files[int(f)]).name, "pixel": int(p)} for f, p in where]
    if args.unmixer is None:
        # Plain JSON data, not a step: pm.unmixer(json.load(f)["endmembers"]) makes one.
        tmp = Path(f"{args.output}.tmp")
        tmp.write_text(json.dumps({"method": args.em_method, "endmembers": spectra.tolist(), "found_at": found}))
        tmp.replace(args.output)
        print(f"found {len(spectra)} endmembers ({args.em_method}) in {len(files)} file(s)")
    else:
        nonneg, sum_to_one = CONSTRAINTS[args.unmixer]
        u = unmixer(spectra, nonneg=nonneg, sum_to_one=sum_to_one, residual=args.residual)
        u.metadata.update({"endmember_method": args.em_method, "found_at": found})
        u.save(args.output)
        print(f"found {len(spectra)} endmembers ({args.em_method}); unmixer ({args.unmixer}) of "
              f"{u.n_inputs} channels -> {u.n_outputs}")
    print(f"wrote {args.output}")
    return EXIT_OK


def run_spillover(args, files: list[str]) -> int:
    """Calibrate an unmixer from single-stain controls; save it."""
    if files:
        raise UsageError("fit spillover takes its controls as --reference NAME=FILE, not as FILE arguments")
    if not args.reference:
        raise UsageError("fit spillover needs --reference NAME=FILE for each dye")
    if args.output is None:
        raise UsageError("fit spillover needs -o FILE.json")
    references = {}
    for item in args.reference:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--reference takes NAME=FILE, got {item!r}")
        if name in references:
            raise UsageError(f"--reference {name} is given twice")
        references[name] = path
    nonneg, sum_to_one = CONSTRAINTS[args.unmixer or "nnls"]
    if sum_to_one:
        raise UsageError("spillover amounts do not sum to one: use --unmixer nnls or ls")
    u = fit_spillover(references, background=args.background, nonneg=nonneg, residual=args.residual,
                      **_options(args))
    u.save(args.output)
    print(f"spillover of {len(references)} dye(s){' + autofluorescence' if args.background else ''}: "
          f"{u.n_inputs} channels -> {u.n_outputs} ({', '.join(u.output_names)})")
    print(f"wrote {args.output}")
    return EXIT_OK


def run_rank(args, files: list[str]) -> int:
    """Print the number of endmembers (HySime)."""
    if not files:
        raise UsageError("fit rank needs at least one FILE")
    rank = estimate_rank(files, **_options(args))
    print(json.dumps({"rank": int(rank)}) if args.output == "-" else f"estimated rank (HySime): {rank}")
    return EXIT_OK


RUNNERS = {"endmembers": run_endmembers, "spillover": run_spillover, "rank": run_rank}
