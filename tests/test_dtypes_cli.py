"""Files of every dtype through the command line: ``apply`` and ``fit`` take the same set.

int8, uint32, float16 and big-endian data are converted exactly, slab by
slab; what neither can take (complex, bool, int64) is refused by both in
one line a command-line user can act on.
"""

import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.cli import main
from pixelmix.plan import dtype_problem

RNG = np.random.default_rng(23)
WEIGHTS = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]])


def _stack(dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.uniform(-60, 60, (3, 24, 32)).astype(dtype)
    if dtype == np.uint32:  # beyond float32's exact integers
        return RNG.integers(2**31, 2**32 - 1, (3, 24, 32), dtype=np.uint64).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, (3, 24, 32), endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["int8", "uint32", "float16", ">f4"])
def test_apply_and_fit_take_converted_dtypes(tmp_path, dtype):
    a = _stack(dtype)
    src = tmp_path / "stack.tif"
    order = ">" if dtype.startswith(">") else "<"
    tifffile.imwrite(src, a, photometric="minisblack", byteorder=order)
    with tifffile.TiffFile(src) as tif:  # stored as given: big-endian bytes for ">f4"
        assert tif.series[0].dtype == np.dtype(dtype).newbyteorder("=") and tif.byteorder == order
    argv = ["apply", str(src), "--matrix", "1,1,1;1,-1,0", "-o", str(tmp_path / "out"), "-q", "--dtype", "float64"]
    assert main(argv) == 0
    # sums of three values of any of these dtypes are exact in float64
    want = np.einsum("kc,cyx->kyx", WEIGHTS, a.astype(np.float64))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "stack.tif"), want)

    assert main(["fit", "pca", str(src), "-k", "2", "-o", str(tmp_path / "pca.json")]) == 0
    fitted = pm.load(tmp_path / "pca.json")
    oracle = pm.fit_pca(a.astype(np.float64), 2, channel_axis=0)
    np.testing.assert_allclose(fitted.weights, oracle.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fitted.bias, oracle.bias, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", ["complex64", "bool", "int64"])
def test_what_neither_takes_is_one_line_from_both(tmp_path, capsys, dtype):
    a = _stack("int16").astype(dtype) if dtype != "complex64" else _stack("float32") * (1 + 1j)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, a.astype(dtype), photometric="minisblack")
    problem = dtype_problem(np.dtype(dtype))
    assert problem is not None and "astype" not in problem
    capsys.readouterr()

    assert main(["apply", str(src), "--matrix", "1,1,1", "-o", str(tmp_path / "out"), "-q"]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert failed == [f"  FAILED {src}: {problem}"]
    assert not (tmp_path / "out" / "stack.tif").exists()

    assert main(["fit", "pca", str(src), "-k", "2", "-o", str(tmp_path / "pca.json")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"pixelmix fit: error: {src}: {problem}"]
    assert not (tmp_path / "pca.json").exists()
