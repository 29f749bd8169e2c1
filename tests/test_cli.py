"""The pixelmix command line: info, apply, fit, demo; exit statuses and messages."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.cli import main

RNG = np.random.default_rng(5)


def _cube(path, c=6, compressed=False):
    a = RNG.integers(0, 4000, size=(c, 32, 40), dtype=np.uint16)
    kw = dict(tile=(16, 16), compression="zlib") if compressed else {}
    tifffile.imwrite(path, a, ome=True, photometric="minisblack", metadata={
        "axes": "CYX", "Channel": {"Name": [f"b{i}" for i in range(c)],
                                   "EmissionWavelength": [400.0 + 10 * i for i in range(c)]}}, **kw)
    return a


@pytest.mark.parametrize("command", [[], ["info"], ["apply"], ["fit"], ["demo"], ["bench"]])
def test_help_has_examples(capsys, command):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: pixelmix" in out and "examples:" in out


def test_usage_error_is_status_2(capsys):
    assert main(["apply", "x.tif"]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["apply", "x.tif", "--matrix", "1"]) == 2
    assert "-o OUTDIR" in capsys.readouterr().err
    assert main(["apply", "--preset", "list"]) == 0
    assert "rgb2gray" in capsys.readouterr().out.split()


def test_info(tmp_path, capsys):
    _cube(tmp_path / "a.ome.tif")
    assert main(["info", str(tmp_path / "a.ome.tif")]) == 0
    out = capsys.readouterr().out
    assert "shape (6, 32, 40)" in out and "axes CYX" in out and "b0, b1" in out and "400 to 450 nm" in out
    assert main(["info", "--json", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["channel_axis"] == 0 and record["wavelengths"][-1] == 450.0
    assert main(["info", str(tmp_path / "missing.tif")]) == 1
    err = capsys.readouterr().err
    assert "missing.tif" in err and "Traceback" not in err


def test_info_gpu_says_what_it_found(capsys):
    from pixelmix.backends.cuda import describe

    assert main(["info", "--gpu"]) == 0
    assert capsys.readouterr().out.strip() == describe()
    assert main(["info"]) == 2
    assert "needs TIFF files (or --gpu)" in capsys.readouterr().err


def test_bench_quick_runs_and_prints_ratios(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "pixelmix (cpu)" in out and "numpy (astype + matmul)" in out
    assert "slower" in out or "faster" in out
    assert main(["bench", "--suite", "nope"]) == 2


def test_apply_matrix_forms(tmp_path, capsys):
    a = _cube(tmp_path / "a.ome.tif")
    w = RNG.standard_normal((2, 6)).round(3)
    b = [1.5, -2.0]
    expected = pm.Mixer(w, b).apply(a, channel_axis=0)
    inline = ";".join(",".join(str(v) for v in row) for row in w)
    np.savetxt(tmp_path / "w.csv", w, delimiter=",")
    (tmp_path / "w.json").write_text(json.dumps({"weights": w.tolist(), "bias": b}))
    pm.Mixer(w, b, output_names=["x", "y"]).save(tmp_path / "m.json")
    forms = [
        [f"--matrix={inline}", "--bias", "1.5,-2"],  # "=": the first value is negative
        ["--matrix", str(tmp_path / "w.csv"), "--bias", "1.5,-2"],
        ["--matrix", str(tmp_path / "w.json")],
        ["--matrix", json.dumps(w.tolist()), "--bias", "[1.5, -2]"],
        ["--mixer", str(tmp_path / "m.json"), "--compression", "zlib"],
    ]
    for i, form in enumerate(forms):
        out = tmp_path / f"out{i}"
        assert main(["apply", str(tmp_path / "a.ome.tif"), *form, "-o", str(out), "--quiet"]) == 0, form
        np.testing.assert_allclose(tifffile.imread(out / "a.ome.tif"), expected, rtol=1e-6, atol=1e-3)
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().err


def test_apply_dtype_and_preset(tmp_path):
    rgb = RNG.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    out = tmp_path / "out"
    assert main(["apply", str(tmp_path / "rgb.tif"), "--preset", "rgb2gray", "-o", str(out), "--quiet",
                 "--dtype", "float32"]) == 0
    expected = pm.presets.get("rgb2gray").apply(rgb)
    np.testing.assert_array_equal(tifffile.imread(out / "rgb.tif"), expected)  # YXS kept: (24, 32, 1)
    assert main(["apply", str(tmp_path / "rgb.tif"), "--matrix", "2,2,2", "-o", str(out), "--quiet",
                 "--dtype", "uint8", "--overwrite"]) == 0
    got = tifffile.imread(out / "rgb.tif")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, pm.mix(rgb, [[2, 2, 2]], dtype=np.uint8))  # saturated


def test_apply_failures_and_statuses(tmp_path, capsys):
    indir = tmp_path / "in"
    indir.mkdir()
    _cube(indir / "good.tif")
    _cube(indir / "three.tif", c=3)
    (indir / "junk.tif").write_text("junk")
    out = tmp_path / "out"
    assert main(["apply", str(indir), "--matrix", "1,1,1,1,1,1", "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 done, 0 skipped, 2 failed" in err
    assert "junk.tif: not a readable TIFF" in err and "three.tif: has 3 channels" in err
    assert "Traceback" not in err
    assert os.listdir(out) == ["good.tif"]
    # --debug shows the tracebacks
    assert main(["apply", str(indir / "junk.tif"), "--matrix", "1", "-o", str(out), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    # refused before any work: output directory = input directory, bad mixer files
    assert main(["apply", str(indir), "--matrix", "1,1,1,1,1,1", "-o", str(indir)]) == 2
    assert "choose another output directory" in capsys.readouterr().err
    assert main(["apply", str(indir), "--mixer", str(tmp_path / "none.json"), "-o", str(out)]) == 2
    assert main(["apply", str(indir), "--matrix", "1,x", "-o", str(out)]) == 2
    assert main(["apply", str(indir), "--preset", "nope", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "cannot read --matrix" in err and "unknown preset 'nope'" in err
    assert "Traceback" not in err


def test_python_m_exit_status(tmp_path):
    (tmp_path / "junk.tif").write_text("junk")
    run = subprocess.run([sys.executable, "-m", "pixelmix", "apply", str(tmp_path / "junk.tif"), "--matrix", "1",
                          "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr and "junk.tif" in run.stderr


@pytest.mark.parametrize("method", ["pca", "mnf"])
def test_fit_then_apply(tmp_path, capsys, method):
    files = []
    for i in range(2):
        _cube(tmp_path / f"c{i}.ome.tif", compressed=bool(i))
        files.append(str(tmp_path / f"c{i}.ome.tif"))
    mixer = tmp_path / f"{method}.json"
    report = tmp_path / "report.png"
    extra = ["--report", str(report)] if method == "pca" else ["--sample", "0.5"]
    assert main(["fit", method, *files, "-k", "3", "-o", str(mixer), *extra]) == 0
    out = capsys.readouterr().out
    assert ("explained variance" if method == "pca" else "signal-to-noise") in out
    m = pm.load(mixer)
    assert (m.n_inputs, m.n_outputs) == (6, 3)
    if method == "pca":
        assert report.stat().st_size > 1000
        np.testing.assert_allclose(m.weights, pm.fit_pca(files, 3).weights, rtol=1e-6, atol=1e-9)
    assert main(["apply", *files, "--mixer", str(mixer), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert tifffile.imread(tmp_path / "out" / "c1.ome.tif").shape == (3, 32, 40)
    assert main(["fit", method, *files, "-k", "0", "-o", str(mixer)]) == 2


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fit PCA" in out and "unmixed" in out and str(tmp_path) in out
    for name in ("pca3.json", "hyperspectral_pca3.ome.tif", "hyperspectral_abundances.ome.tif",
                 "microscopy_unmixed.ome.tif"):
        assert (tmp_path / name).is_file()


def test_demo_regenerates_samples_without_data_dir(tmp_path, monkeypatch):
    from pixelmix import demo

    monkeypatch.setattr(demo, "_has_samples", lambda d: d != demo.Path(demo.__file__).resolve().parent.parent
                        / "data" and all((d / n).is_file() for n in demo.SAMPLE_FILES))
    monkeypatch.setenv("PIXELMIX_DATA", str(tmp_path / "cache"))
    where = demo.sample_dir()
    assert where == tmp_path / "cache"
    with tifffile.TiffFile(where / "hyperspectral.ome.tif") as t:
        assert t.series[0].shape == (64, 128, 128)
    # deterministic: the same pixels as the repository's copy
    repo = demo.Path(demo.__file__).resolve().parent.parent / "data" / "hyperspectral.ome.tif"
    if repo.exists():
        np.testing.assert_array_equal(tifffile.imread(repo), tifffile.imread(where / "hyperspectral.ome.tif"))


def test_presets_take_wavelengths_and_band_counts_from_the_inputs(tmp_path, capsys):
    a = _cube(tmp_path / "a.ome.tif")
    out = tmp_path / "out"
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--preset", "band_binning",
                 "--preset-option", "factor=3", "-o", str(out), "-q"]) == 0
    got = tifffile.imread(out / "a.ome.tif")
    np.testing.assert_allclose(got, pm.presets.band_binning(6, 3).apply(a, channel_axis=0), rtol=1e-6)
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--preset", "spectral_to_xyz",
                 "-o", str(tmp_path / "xyz"), "-q"]) == 0
    want = pm.presets.spectral_to_xyz([400.0 + 10 * i for i in range(6)]).apply(a, channel_axis=0)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "xyz" / "a.ome.tif"), want, rtol=1e-6)
    tifffile.imwrite(tmp_path / "plain.tif", a, photometric="minisblack")
    assert main(["apply", str(tmp_path / "plain.tif"), "--preset", "spectral_to_srgb",
                 "-o", str(tmp_path / "rgb")]) == 2
    assert "carries none" in capsys.readouterr().err
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--preset", "band_binning",
                 "--preset-option", "factor", "-o", str(out)]) == 2


def test_missing_codec_and_gpu_are_usage_errors(tmp_path, capsys, monkeypatch):
    import pixelmix.io.write as write

    _cube(tmp_path / "a.ome.tif")
    monkeypatch.setattr(write, "_has_imagecodecs", lambda: False)
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--matrix", "1,1,1,1,1,1", "-o",
                 str(tmp_path / "o"), "--compression", "zstd"]) == 2
    assert "pixelmix[codecs]" in capsys.readouterr().err
    # zlib needs no codec: float output is written without the floating-point predictor
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--matrix", "1,1,1,1,1,1", "-o",
                 str(tmp_path / "z"), "--compression", "zlib", "-q"]) == 0
    import pixelmix.backends.cuda as cuda

    monkeypatch.setattr(cuda, "unusable_reason", lambda: "no device here")
    assert main(["apply", str(tmp_path / "a.ome.tif"), "--matrix", "1,1,1,1,1,1", "-o",
                 str(tmp_path / "g"), "--backend", "cuda"]) == 2
    assert "no device here" in capsys.readouterr().err
