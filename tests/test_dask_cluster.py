"""pixelmix on a real dask.distributed LocalCluster: lazy arrays, fits, batches of files."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

import pixelmix as pm
from pixelmix import ops

from .helpers import random_image


@pytest.fixture(scope="module")
def client():
    from pixelmix.jobs.cluster import connect

    # Two worker processes (spawned), one task each at a time.
    with connect(n_workers=2) as c:
        yield c


def test_lazy_mix_on_worker_processes_equals_in_memory(client, rng):
    x = random_image(rng, (5, 60, 40), np.uint16)
    net = pm.Mixer(rng.standard_normal((2, 4))) @ ops.relu() @ pm.Mixer(rng.standard_normal((4, 5)))
    y = net.apply(da.from_array(x, chunks=(2, 20, 20)), channel_axis=0)
    futures = client.compute(y)
    np.testing.assert_array_equal(futures.result(), net.apply(x, channel_axis=0))
    # The work ran in the worker processes, whose kernels use their share of the cores.
    threads = client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    assert len(threads) == 2 and set(threads.values()) == {max(1, (os.cpu_count() or 1) // 2)}


def _smooth_cube(rng, shape, noise):
    """Channels that are smooth images plus noise: well-separated components."""
    rows, cols, c = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    signal = np.stack([np.sin(yy / 7.0 + k) * np.cos(xx / 5.0 - k) * (10 - k) for k in range(c)], -1)
    return (signal + rng.normal(size=shape) * noise + 100).astype(np.float32)


def _assert_same_mixer(a, b, rtol):
    assert a.output_names == b.output_names
    scale = np.abs(a.weights).max()
    np.testing.assert_allclose(b.weights, a.weights, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=rtol * max(np.abs(a.bias).max(), scale))


def test_fits_on_the_cluster_equal_in_memory_fits(client, rng):
    x = _smooth_cube(rng, (48, 40, 6), 0.3)
    dx = da.from_array(x, chunks=(10, 15, 4))  # any chunks: they are re-cut to the fit's blocks
    # One in-memory block: the same statistics, merged from one part, so exactly equal.
    assert pm.fit_pca(dx, 3) == pm.fit_pca(x, 3)
    assert pm.fit_mnf(dx, 3) == pm.fit_mnf(x, 3)
    labels = (x[..., 0] > 100).astype(np.int32) + (x[..., 1] > 102)
    assert pm.fit_lda(dx, labels) == pm.fit_lda(x, labels)
    target = x[..., :3] @ rng.random((3, 2)) + 1.0
    assert pm.fit_lstsq(dx, target) == pm.fit_lstsq(x, target)


@pytest.mark.parametrize("method", ["pca", "mnf"])
def test_many_blocks_merged_in_a_tree_equal_the_sequential_merge(client, rng, method):
    # Small blocks: ~20 of them, merged in a tree on the cluster here and one
    # after another in memory. Each block's statistics are bit for bit the
    # same (same blocks, same block numbers for sample=), so only the merge
    # order differs: the moments agree to float64 rounding (a few ulps per
    # merge level), and the solved mixers to that times the eigenproblem's
    # condition (its eigenvalues are well apart here).
    from pixelmix.learn.chunked import gather_chunks
    from pixelmix.learn.gather import gather
    from pixelmix.learn.mnf import mnf_block_statistics, solve_mnf
    from pixelmix.learn.pca import pca_block_statistics, solve_pca

    x = _smooth_cube(rng, (120, 90, 6), 0.3)
    if method == "pca":
        def block_fn(b):
            return pca_block_statistics(b.values, b.channel_axis, sample=0.5, seed=b.number)
        solve = solve_pca
    else:
        def block_fn(b):
            return mnf_block_statistics(b.values, b.channel_axis, seed=b.number)
        solve = solve_mnf
    want = gather(x, -1, block_fn, max_bytes=9000)
    got = gather_chunks(da.from_array(x, chunks=(30, 30, 6)), -1, block_fn, max_bytes=9000, split_every=3)
    for w, g in [(getattr(want, "signal", want), getattr(got, "signal", got))]:
        assert g.count == w.count and g.skipped == w.skipped
        np.testing.assert_allclose(g.mean, w.mean, rtol=1e-14)
        np.testing.assert_allclose(g.scatter, w.scatter, rtol=0, atol=1e-14 * np.abs(w.scatter).max())
    _assert_same_mixer(solve(want, 3), solve(got, 3), rtol=1e-12)


# --- batches of files -------------------------------------------------------------


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("stacks")
    images = {}
    for name, shape, axes in [
        ("a.tif", (3, 40, 50), "CYX"),
        ("b.ome.tif", (2, 3, 32, 24), "ZCYX"),
        ("c.tif", (30, 20, 3), "YXS"),
        ("d.tif", (2, 3, 10, 12), "QCYX"),
    ]:
        x = rng.integers(0, 4000, size=shape, dtype=np.uint16)
        photometric = "rgb" if axes == "YXS" else "minisblack"
        tifffile.imwrite(d / name, x, metadata={"axes": axes}, photometric=photometric)
        images[name] = (x, axes.index("S" if "S" in axes else "C"))
    (d / "broken.tif").write_bytes(b"not a tiff")
    return d, images


def test_batch_of_tiff_files_on_the_cluster(client, stacks, tmp_path):
    from pixelmix.jobs.batch import run_local as run_here
    from pixelmix.jobs.cluster import run_on_cluster as run_batch

    d, images = stacks
    m = pm.Mixer(np.random.default_rng(1).standard_normal((2, 3)))
    here = run_here([d], tmp_path / "here", m, quiet=True)
    there = run_batch([d], tmp_path / "there", m, client=client, quiet=True)
    assert [(r.src.name, r.status) for r in there.results] == [(r.src.name, r.status) for r in here.results]
    assert there.count("done") == 4 and there.count("failed") == 1 and not there.ok
    failed = [r for r in there.results if r.status == "failed"]
    assert failed[0].src.name == "broken.tif" and "not a readable TIFF" in failed[0].reason
    for name, (x, axis) in images.items():
        got = tifffile.imread(tmp_path / "there" / name)
        np.testing.assert_array_equal(got, tifffile.imread(tmp_path / "here" / name))
        np.testing.assert_array_equal(got, m.apply(x, channel_axis=axis))
    assert sorted(os.listdir(tmp_path / "there")) == sorted(images)  # no temporary files left
    again = run_batch([d], tmp_path / "there", m, client=client, resume=True, quiet=True)
    assert again.count("skipped") == 4 and again.count("failed") == 1


def test_zarr_output_on_the_cluster(client, stacks, tmp_path):
    from pixelmix.jobs.cluster import run_on_cluster as run_batch

    d, images = stacks
    m = pm.Mixer(np.random.default_rng(2).standard_normal((2, 3)), output_names=["u", "v"])
    store = tmp_path / "out.zarr"
    summary = run_batch([d], store, m, client=client, quiet=True)
    assert summary.count("done") == 4 and summary.count("failed") == 1
    root = zarr.open_group(str(store), mode="r")
    assert sorted(root.group_keys()) == ["a", "b", "c", "d"]
    # CYX, ZCYX and channels-last YXS become OME-Zarr images, in OME's c, z, y, x order.
    for group, name, order in [
        ("a", "a.tif", ["c", "y", "x"]),
        ("b", "b.ome.tif", ["c", "z", "y", "x"]),
        ("c", "c.tif", ["c", "y", "x"]),
    ]:
        x, axis = images[name]
        g = root[group]
        multiscales = g.attrs["multiscales"][0]
        assert [a["name"] for a in multiscales["axes"]] == order
        assert multiscales["datasets"][0]["path"] == "0"
        assert [c["label"] for c in g.attrs["omero"]["channels"]] == ["u", "v"]
        want = np.moveaxis(m.apply(x, channel_axis=axis), axis, 0)
        np.testing.assert_array_equal(np.asarray(g["0"]), want)
    # An axis OME-Zarr has no name for (Q): a plain array, axes in its attributes.
    x, axis = images["d.tif"]
    assert "multiscales" not in root["d"].attrs
    assert root["d"].attrs["pixelmix"]["axes"] == "QCYX"
    assert root["d"].attrs["pixelmix"]["channel_names"] == ["u", "v"]
    np.testing.assert_array_equal(np.asarray(root["d"]["0"]), m.apply(x, channel_axis=axis))
    again = run_batch([d], store, m, client=client, resume=True, quiet=True)
    assert again.count("skipped") == 4
    assert not [n for n in os.listdir(store) if n.startswith(".") and n.endswith(".tmp")]


def test_zarr_output_is_atomic_and_cleans_up_after_a_failure(stacks, tmp_path, monkeypatch):
    from pixelmix.io import publish
    from pixelmix.jobs import cluster

    d, images = stacks
    m = pm.Mixer(np.ones((1, 3)))
    store = tmp_path / "out.zarr"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    # A failure while the group is written leaves no group under the final
    # name and no temporary one (run here, in this process, without a client).
    monkeypatch.setattr(publish, "move_into_place", boom)
    summary = cluster.run_on_cluster([d / "a.tif"], store, m, quiet=True)
    assert summary.results[0].status == "failed" and "disk full" in summary.results[0].reason
    assert sorted(n for n in os.listdir(store) if not n.startswith(".z")) == []


def test_command_line_scheduler_and_zarr_output(client, stacks, tmp_path, capsys):
    from pixelmix.cli import main

    d, images = stacks
    m = pm.Mixer([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]])
    args = [str(d / "a.tif"), str(d / "c.tif"), "--matrix", "1,1,1;1,-1,0", "--quiet"]
    assert main(["apply", *args, "-o", str(tmp_path / "out"), "--scheduler", client.scheduler.address]) == 0
    for name in ("a.tif", "c.tif"):
        x, axis = images[name]
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / name), m.apply(x, channel_axis=axis))
    # Zarr output needs no cluster; TIFF-only options are refused (status 2).
    assert main(["apply", *args, "-o", str(tmp_path / "o.zarr")]) == 0
    np.testing.assert_array_equal(
        np.asarray(zarr.open_group(str(tmp_path / "o.zarr" / "a"), mode="r")["0"]),
        m.apply(images["a.tif"][0], channel_axis=0),
    )
    assert main(["apply", *args, "-o", str(tmp_path / "z.zarr"), "--compression", "zlib"]) == 2
    assert "TIFF output only" in capsys.readouterr().err
    # One bad file: the others are written, status 1.
    bad = [str(d / "broken.tif"), str(d / "a.tif"), "--matrix", "1,1,1", "--quiet"]
    assert main(["apply", *bad, "-o", str(tmp_path / "b"), "--scheduler", client.scheduler.address]) == 1
    assert os.listdir(tmp_path / "b") == ["a.tif"]
    assert main(["apply", *args, "-o", str(tmp_path / "w"), "--dask", "--workers", "0"]) == 2


def _stall_first_write(marker: str) -> None:
    """On a worker: the first file any worker writes stalls half way (the marker file says it began)."""
    import time as _time
    from pathlib import Path as _Path

    from pixelmix.jobs import to_tiff as job_file

    original = getattr(job_file, "_write_tiff_original", job_file._write_tiff)

    def stalled(stack, tmp, *args, **kwargs):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return original(stack, tmp, *args, **kwargs)
        _Path(tmp).write_bytes(b"half an output")
        _time.sleep(300)

    job_file._write_tiff_original = original
    job_file._write_tiff = stalled


def _unstall() -> None:
    from pixelmix.jobs import to_tiff as job_file

    if hasattr(job_file, "_write_tiff_original"):
        job_file._write_tiff = job_file._write_tiff_original
        del job_file._write_tiff_original


def test_a_killed_workers_temporary_is_removed_in_the_same_run(client, stacks, tmp_path):
    from pixelmix.io.publish import TEMP_RE
    from pixelmix.io.read import open_stack
    from pixelmix.jobs.cluster import run_on_cluster as run_batch

    d, images = stacks
    out, marker = tmp_path / "out", tmp_path / "stalled"
    m = pm.Mixer([[1.0, 2.0, 3.0]])
    client.run(_stall_first_write, str(marker))
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(run_batch, [d / "a.tif"], out, m, client=client, quiet=True)
            deadline = time.monotonic() + 120
            while not (out.is_dir() and os.listdir(out)) and time.monotonic() < deadline:
                time.sleep(0.02)
            [temporary] = os.listdir(out)
            os.kill(int(TEMP_RE.match(temporary)["pid"]), signal.SIGKILL)  # the worker dies mid-file
            summary = running.result(timeout=300)
    finally:
        client.run(_unstall)
    assert summary.results[0].status == "done", summary.results[0].reason  # redone by another worker
    assert os.listdir(out) == ["a.tif"]  # and the dead worker's temporary removed in this run
    x, axis = images["a.tif"]
    with open_stack(out / "a.tif") as s:
        np.testing.assert_array_equal(s.read(), m.apply(x, channel_axis=axis))
