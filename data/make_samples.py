"""Regenerate the sample stacks in this directory (deterministic: fixed seed).

    python data/make_samples.py

The generator itself lives in :func:`pixelmix.demo.make_samples`, so a wheel
install (which has no ``data/``) can make the same files for ``pixelmix demo``.
See README.md beside this script for what each file holds.
"""

from pathlib import Path

from pixelmix.demo import make_samples

if __name__ == "__main__":
    where = make_samples(Path(__file__).resolve().parent)
    for p in sorted(where.iterdir()):
        if p.is_file() and p.suffix in (".tif", ".npz", ".csv"):
            print(f"{p.name:32s} {p.stat().st_size / 1e6:6.2f} MB")
