"""pixelmix.jobs: one file (process_file) and many files (run_local); pixelmix.io.publish."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.io.publish import clean_stale
from pixelmix.io.read import open_stack
from pixelmix.jobs.batch import expand_inputs
from pixelmix.jobs.batch import run_local as run_batch
from pixelmix.jobs.file import is_complete, process_file

RNG = np.random.default_rng(11)


def _mixer(c, k=2):
    return pm.Mixer(RNG.standard_normal((k, c)), RNG.standard_normal(k),
                    output_names=[f"out{i}" for i in range(k)], metadata={"method": "test"})


def _zcyx(path, compressed=True):
    a = RNG.integers(0, 4000, size=(2, 3, 40, 48), dtype=np.uint16)
    kw = dict(tile=(16, 16), compression="zlib") if compressed else {}
    tifffile.imwrite(path, a, ome=True, photometric="minisblack",
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}, **kw)
    return a


def _temporaries(d):
    return [p for p in os.listdir(d) if p.startswith(".")]


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("max_bytes", [2000, 64 * 2**20])
def test_process_file_matches_mixer_apply(tmp_path, compression, max_bytes):
    src, dst = tmp_path / "in.ome.tif", tmp_path / "out" / "in.ome.tif"
    dst.parent.mkdir()
    a = _zcyx(src)
    m = _mixer(3)
    r = process_file(src, dst, m, compression=compression, max_bytes=max_bytes, tile=(16, 16))
    assert r.status == "done" and r.bytes_in == a.nbytes and r.bytes_out == dst.stat().st_size
    with open_stack(dst) as s:
        assert s.axes == "ZCYX" and s.shape == (2, 2, 40, 48) and s.dtype == np.float32
        assert s.channel_names == ["out0", "out1"]
        assert s.calibration["PhysicalSizeX"] == 0.5
        np.testing.assert_array_equal(s.read(), m.apply(a, channel_axis=1))
    with tifffile.TiffFile(dst) as t:
        desc = t.ome_metadata.split("<Description>")[1].split("</Description>")[0]
        record = json.loads(desc.replace("&quot;", '"'))["pixelmix"]
        assert record["source"] == "in.ome.tif" and pm.Mixer.from_dict(record["program"]) == m
    assert _temporaries(dst.parent) == []


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_channels_first_row_bands(tmp_path, compression):
    # row bands cut across every channel plane: compressed output goes through a spill file
    src, dst = tmp_path / "cyx.tif", tmp_path / "o" / "cyx.tif"
    dst.parent.mkdir()
    a = RNG.integers(0, 4000, size=(6, 64, 40), dtype=np.uint16)
    tifffile.imwrite(src, a, photometric="minisblack")
    m = _mixer(6, 3)
    process_file(src, dst, m, compression=compression, max_bytes=6 * 16 * 40 * 2, tile=(16, 16))
    np.testing.assert_array_equal(tifffile.imread(dst), m.apply(a, channel_axis=0))
    assert _temporaries(dst.parent) == []


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("input_compressed", [False, True])
@pytest.mark.parametrize("max_bytes", [2 * 16 * 40 * 2, 64 * 2**20])
def test_channels_first_with_more_outputs_than_inputs(tmp_path, compression, input_compressed, max_bytes):
    # K > C: the output's part of a slab is every output channel, not the input's C
    src, dst = tmp_path / "cyx.tif", tmp_path / "o" / "cyx.tif"
    dst.parent.mkdir()
    a = RNG.integers(0, 4000, size=(2, 64, 40), dtype=np.uint16)
    kw = dict(tile=(16, 16), compression="zlib") if input_compressed else {}
    tifffile.imwrite(src, a, photometric="minisblack", **kw)
    m = _mixer(2, 5)
    process_file(src, dst, m, compression=compression, max_bytes=max_bytes, tile=(16, 16))
    np.testing.assert_array_equal(tifffile.imread(dst), m.apply(a, channel_axis=0))
    assert _temporaries(dst.parent) == []


def test_channels_last_integer_output(tmp_path):
    src, dst = tmp_path / "rgb.tif", tmp_path / "o" / "rgb.tif"
    dst.parent.mkdir()
    a = RNG.integers(0, 255, size=(40, 30, 3), dtype=np.uint8)
    tifffile.imwrite(src, a, photometric="rgb", rowsperstrip=8, compression="zlib")
    m = pm.Mixer([[0.2125, 0.7154, 0.0721], [4.0, 4.0, 4.0]], [0.5, -300.0])
    process_file(src, dst, m, dtype="uint8", compression="zlib", max_bytes=2000, tile=(16, 16))
    with open_stack(dst) as s:
        assert s.axes == "YXS"
        np.testing.assert_array_equal(s.read(), m.apply(a, dtype=np.uint8))


def test_wrong_channel_count_names_both(tmp_path):
    src = tmp_path / "in.tif"
    _zcyx(src)
    (tmp_path / "o").mkdir()
    with pytest.raises(ValueError, match="has 3 channels on axis 1.*expects 4"):
        process_file(src, tmp_path / "o" / "in.tif", _mixer(4))
    assert not (tmp_path / "o" / "in.tif").exists() and _temporaries(tmp_path / "o") == []


def test_refuses_to_overwrite(tmp_path):
    src = tmp_path / "in.tif"
    _zcyx(src)
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        process_file(src, src, _mixer(3))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "in.tif").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--resume"):
        process_file(src, tmp_path / "o" / "in.tif", _mixer(3))


def test_failure_midway_leaves_nothing(tmp_path):
    src, dst = tmp_path / "in.tif", tmp_path / "o" / "in.tif"
    dst.parent.mkdir()
    _zcyx(src)

    def boom(nbytes):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        process_file(src, dst, _mixer(3), max_bytes=2000, progress=boom)
    assert not dst.exists() and _temporaries(dst.parent) == []


def test_run_batch_reports_bad_files_and_goes_on(tmp_path):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    good = [_zcyx(indir / f"g{i}.tif", compressed=bool(i)) for i in range(2)]
    (indir / "text.tif").write_text("not a tiff")
    raw = (indir / "g1.tif").read_bytes()
    (indir / "cut.tif").write_bytes(raw[: len(raw) // 2])
    tifffile.imwrite(indir / "four.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    m = _mixer(3)
    s = run_batch([indir, tmp_path / "nothing*.tif"], outdir, m, quiet=True)
    status = {r.src.name: (r.status, r.reason) for r in s.results}
    assert status["g0.tif"][0] == status["g1.tif"][0] == "done"
    assert status["text.tif"][0] == "failed" and "not a readable TIFF" in status["text.tif"][1]
    assert status["cut.tif"][0] == "failed" and "truncated" in status["cut.tif"][1]
    assert status["four.tif"][0] == "failed" and "expects 3" in status["four.tif"][1]
    assert status["nothing*.tif"] == ("failed", "pattern matched no files")
    assert not s.ok and s.count("done") == 2 and s.count("failed") == 4
    assert "2 done, 0 skipped, 4 failed" in s.text() and "FAILED" in s.text()
    assert sorted(os.listdir(outdir)) == ["g0.tif", "g1.tif"]
    for i, a in enumerate(good):
        np.testing.assert_array_equal(tifffile.imread(outdir / f"g{i}.tif"), m.apply(a, channel_axis=1))


def test_run_batch_refuses_input_directory_as_output(tmp_path):
    _zcyx(tmp_path / "a.tif")
    with pytest.raises(ValueError, match="choose another output directory"):
        run_batch([tmp_path / "a.tif"], tmp_path, _mixer(3), quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]


def test_resume_skips_complete_and_redoes_the_rest(tmp_path):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    for name in ("a.tif", "b.tif"):
        _zcyx(indir / name)
    m = _mixer(3)
    assert run_batch([indir], outdir, m, quiet=True).count("done") == 2
    (outdir / "b.tif").write_bytes(b"garbage")  # not a complete output
    s = run_batch([indir], outdir, m, resume=True, quiet=True)
    assert [(r.src.name, r.status) for r in s.results] == [("a.tif", "skipped"), ("b.tif", "done")]
    assert is_complete(outdir / "b.tif", (2, 2, 40, 48), np.float32)
    s = run_batch([indir], outdir, m, quiet=True)  # neither resume nor overwrite: refused per file
    assert s.count("failed") == 2 and "--resume" in s.results[0].reason


def test_clean_stale_removes_only_dead_owners(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".x.tif.pixelmix-{dead.pid}-abcd1234.tmp"
    live = tmp_path / f".y.tif.pixelmix-{os.getpid()}-abcd1234.tmp"
    other = tmp_path / ".z.tif.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"")
    assert clean_stale(tmp_path) == [stale]
    assert live.exists() and other.exists()
    # Zarr output leaves temporary directories: the same rule, for directories only
    group = tmp_path / f".img.pixelmix-{dead.pid}-abcd1234.tmp"
    group.mkdir()
    (group / "0").write_bytes(b"")
    assert clean_stale(tmp_path) == [] and group.exists()
    assert clean_stale(tmp_path, dirs=True) == [group] and not group.exists()
    assert live.exists()


def test_expand_inputs(tmp_path):
    for name in ("a.tif", "b.TIFF", "c.txt", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"")
    files, missing = expand_inputs([tmp_path, str(tmp_path / "a.*"), tmp_path / "nope.tif"])
    assert [f.name for f in files] == ["a.tif", "b.TIFF"]
    assert [m.reason for m in missing] == ["no such file or directory"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import pixelmix as pm
    from pixelmix.batch import process_file

    def progress(nbytes):
        print("slab", flush=True)
        time.sleep(60)  # killed here, half way through the output

    m = pm.Mixer([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    process_file(sys.argv[1], sys.argv[2], m, compression=sys.argv[3] or None, max_bytes=2000,
                 progress=progress)
    """
)


@pytest.mark.parametrize("compression", ["", "zlib"])
def test_sigkill_then_resume(tmp_path, compression):
    src, outdir = tmp_path / "in.tif", tmp_path / "out"
    outdir.mkdir()
    a = _zcyx(src)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(src), str(outdir / "in.tif"), compression],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "slab", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (outdir / "in.tif").exists()
    assert len(_temporaries(outdir)) == 1  # the dead process's temporary file
    run = subprocess.run(
        [sys.executable, "-m", "pixelmix", "apply", str(src), "--matrix", "1,0,0;0,1,1", "-o", str(outdir),
         "--resume", "--quiet"] + (["--compression", compression] if compression else []),
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert _temporaries(outdir) == []
    expected = np.stack([a[:, 0], a[:, 1].astype(np.float32) + a[:, 2]], axis=1)
    np.testing.assert_array_equal(tifffile.imread(outdir / "in.tif"), expected)


def test_documented_import_paths_still_work():
    # README documents these paths; the code moved to pixelmix.io and pixelmix.jobs.
    from pixelmix import batch, cluster, tiff
    from pixelmix.io import read
    from pixelmix.jobs import batch as jobs_batch
    from pixelmix.jobs import cluster as jobs_cluster
    from pixelmix.jobs import file

    assert tiff.open_stack is read.open_stack
    assert batch.process_file is file.process_file and batch.run_batch is jobs_batch.run_local
    assert cluster.run_batch is jobs_cluster.run_on_cluster
