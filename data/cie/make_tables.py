"""Write the CIE tables pixelmix ships, from the colour-science package's datasets.

Run once (``python data/cie/make_tables.py``) with colour-science installed;
it writes plain CSV files to ``pixelmix/data/cie/`` (inside the package, so
they ship in the wheel). See README.md beside this script for the sources.
"""

from pathlib import Path

import colour

OUT = Path(__file__).resolve().parents[2] / "pixelmix" / "data" / "cie"

TABLES = {
    "cie1931_2deg_cmf.csv": (
        colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"],
        "wavelength_nm,x_bar,y_bar,z_bar",
        "CIE 1931 2-degree standard observer colour-matching functions, 360-830 nm at 1 nm. "
        "Source: CIE 018:2019 / CVRL (http://cvrl.ioo.ucl.ac.uk/cie.htm), as shipped by "
        "colour-science {version} (colour.MSDS_CMFS['CIE 1931 2 Degree Standard Observer']).",
    ),
    "cie_d65_spd.csv": (
        colour.SDS_ILLUMINANTS["D65"],
        "wavelength_nm,relative_power",
        "CIE standard illuminant D65 relative spectral power distribution, 300-780 nm at 5 nm. "
        "Source: CIE 15:2004 tables / CIE S 014-2 (http://files.cie.co.at/204.xls), as shipped "
        "by colour-science {version} (colour.SDS_ILLUMINANTS['D65']).",
    ),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (table, columns, source) in TABLES.items():
        values = table.values.reshape(len(table.wavelengths), -1)
        lines = [f"# {source.format(version=colour.__version__)}", columns]
        for wl, row in zip(table.wavelengths, values):
            lines.append(",".join([f"{wl:g}"] + [repr(float(v)) for v in row]))
        (OUT / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {OUT / name} ({len(values)} rows)")


if __name__ == "__main__":
    main()
