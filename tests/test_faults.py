"""Faults and hostile input at the file, batch and command-line level, each reproduced for real.

A full disk (a small tmpfs when the tests run as root, else a file-size
limit), two real processes racing on one output directory, TIFF files that
lie about their size, control characters in channel and file names,
malformed mixer files given to the command line, huge provenance, resume
against another mixer, exit statuses, and Ctrl-C under ``--dask``.
"""

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import pixelmix as pm
from pixelmix import ops
from pixelmix.cli import main
from pixelmix.io import publish
from pixelmix.io.names import clean_names
from pixelmix.io.read import open_stack
from pixelmix.io.write import in_file_order, page_ndim
from pixelmix.jobs.batch import run_local
from pixelmix.jobs.cluster import run_on_cluster
from pixelmix.jobs.file import process_file, program_sha256, provenance, run_job
from pixelmix.plan import plan_slabs

RNG = np.random.default_rng(13)
DISK_MB = 16


def _cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelmix", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _tif(path, shape, dtype=np.uint16, **kwargs):
    info = np.iinfo(dtype)
    a = RNG.integers(0, min(info.max, 4000), size=shape, dtype=dtype)
    tifffile.imwrite(path, a, photometric=kwargs.pop("photometric", "minisblack"), **kwargs)
    return a


def _temporaries(d) -> list[str]:
    return [n for n in os.listdir(d) if ".pixelmix-" in n]


def _record(path: Path) -> dict:
    with open_stack(path) as s:
        return s.provenance


# --- a full disk ------------------------------------------------------------------


@dataclass
class Disk:
    """Where outputs go when the disk is full: a small tmpfs, or a file-size limit."""

    root: Path
    limited: bool  # True: no tmpfs, the command runs under RLIMIT_FSIZE instead
    message: str  # what a full disk says

    def limit(self):
        """``preexec_fn`` of a command writing here: the file-size limit, when there is no tmpfs."""
        if not self.limited:
            return None

        def apply():
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_MB * 10**6, DISK_MB * 10**6))

        return apply


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A 16 MB tmpfs for the module when this process may mount one (root), else a file-size limit."""
    root = tmp_path_factory.mktemp("small_disk")
    why = "mounting a tmpfs needs root" if os.geteuid() != 0 else None
    if why is None:
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(root)],
                               capture_output=True, text=True)
        why = None if mount.returncode == 0 else f"mount failed: {mount.stderr.strip()}"
    if why is None:
        yield Disk(root, False, "No space left on device")
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
    else:
        # Without a tmpfs the command runs under RLIMIT_FSIZE: a file past the
        # limit fails with EFBIG, as a full disk fails with ENOSPC.
        print(f"no tmpfs ({why}): using RLIMIT_FSIZE of {DISK_MB} MB instead")
        yield Disk(root, True, "File too large")


@pytest.fixture
def disk(small_disk):
    """A fresh directory on the small disk, emptied afterwards (the next test gets all the space)."""
    d = small_disk.root / f"t{time.monotonic_ns()}"
    d.mkdir()
    yield small_disk, d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("path", ["memmap", "compressed-spill"])
def test_a_full_disk_fails_that_file_alone_and_the_batch_goes_on(tmp_path, disk, path):
    disk, out_root = disk
    big, small = tmp_path / "big.tif", tmp_path / "small.tif"
    if path == "memmap":
        # 1 channel -> 3 float32: a 19 MB output, memory-mapped (was: SIGBUS, exit 135)
        _tif(big, (1, 1024, 1536), np.uint8)
        b = _tif(small, (1, 64, 64), np.uint8)
        matrix, extra, m = "1;2;3", [], pm.Mixer([[1.0], [2.0], [3.0]])
    else:
        # 2 channels -> 3: row bands of 4 MB cut across the channel planes, so the
        # compressed output is first mixed into a 38 MB spill file (was: SIGBUS)
        _tif(big, (2, 2048, 1536), np.uint8)
        b = _tif(small, (2, 64, 64), np.uint8)
        matrix, extra = "1,1;2,1;3,1", ["--compression", "zlib", "--slab-mb", "4"]
        m = pm.Mixer([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
        plan = plan_slabs((2, 2048, 1536), 0, 1, 4 * 2**20, (1, 1, 1))
        assert not in_file_order((3, 2048, 1536), page_ndim((3, 2048, 1536), "CYX"), plan, 256)  # the spill path
    out = out_root / "out"
    run = _cli("apply", big, small, "--matrix", matrix, "-o", out, *extra, preexec_fn=disk.limit())
    assert run.returncode == 1, f"status {run.returncode} (-7 or 135: SIGBUS)\n{run.stderr}"
    line = rf"^  FAILED {re.escape(str(big))}: {disk.message} \(needs \d+ MB\)$"
    assert re.search(line, run.stderr, re.M), run.stderr
    assert "1 done, 0 skipped, 1 failed" in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == f"wrote {out / 'small.tif'}\n"
    assert os.listdir(out) == ["small.tif"]  # the temporary (and spill) files were removed
    np.testing.assert_array_equal(tifffile.imread(out / "small.tif"), m.apply(b, channel_axis=0))


def test_zarr_output_on_a_full_disk_ends_its_writes_before_cleaning_up(tmp_path, disk):
    disk, out_root = disk
    if disk.limited:
        pytest.skip("a file-size limit cannot fill the disk under Zarr output (its chunks are small files); "
                    "this needs root to mount a tmpfs")
    big, small = tmp_path / "big.tif", tmp_path / "small.tif"
    _tif(big, (1, 2048, 2048))  # -> 4 float64 channels, 134 MB in 16 chunks written concurrently
    b = _tif(small, (1, 64, 64))
    m = pm.Mixer([[0.1], [0.37], [1.3], [-2.7]])
    m.save(tmp_path / "m.json")
    store = out_root / "out.zarr"
    for attempt in range(3):  # the leftovers showed in some runs only
        run = _cli("apply", big, small, "--mixer", tmp_path / "m.json", "-o", store, "--dtype", "float64",
                   "--quiet", "--overwrite")
        assert run.returncode == 1, run.stderr
        lines = run.stderr.splitlines()
        assert len(lines) == 2, run.stderr[:3000]  # the summary and one FAILED line: no asyncio tracebacks
        assert lines[1] == f"  FAILED {big}: No space left on device"
        assert sorted(os.listdir(store)) == [".zattrs", ".zgroup", "small"]  # no temporary group left
    got = np.asarray(zarr.open_group(str(store / "small"), mode="r")["0"])
    np.testing.assert_array_equal(got, m.apply(b, channel_axis=0, dtype=np.float64))


# --- concurrent runs --------------------------------------------------------------


def test_two_runs_racing_on_one_directory_never_mix_their_outputs(tmp_path):
    indir, out = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    images = {f"f{i:02d}.tif": _tif(indir / f"f{i:02d}.tif", (3, 48, 40)) for i in range(16)}
    mixers = [pm.Mixer(RNG.standard_normal((2, 3)), output_names=[f"run{r}a", f"run{r}b"]) for r in range(2)]
    for r, m in enumerate(mixers):
        m.save(tmp_path / f"m{r}.json")
    shas = [program_sha256(pm.load(tmp_path / f"m{r}.json")) for r in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "pixelmix", "apply", str(indir), "--mixer",
                               str(tmp_path / f"m{r}.json"), "-o", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    reports = [p.communicate(timeout=300) for p in procs]
    for name, image in images.items():
        dst = out / name
        wrote = [r for r in range(2) if f"wrote {dst}\n" in reports[r][0]]
        failed = [r for r in range(2) if re.search(rf"FAILED {re.escape(str(indir / name))}: .*{re.escape(str(dst))} "
                                                   rf"(exists|appeared while)", reports[r][1])]
        assert len(wrote) == 1 and failed == [1 - wrote[0]], (name, reports)
        winner = wrote[0]
        assert _record(dst)["program_sha256"] == shas[winner]  # the whole file is the winner's
        with open_stack(dst) as s:
            assert s.channel_names == [f"run{winner}a", f"run{winner}b"]
            np.testing.assert_array_equal(s.read(), mixers[winner].apply(image, channel_axis=0))
    for r, p in enumerate(procs):
        assert p.returncode == (0 if "FAILED" not in reports[r][1] else 1)
    assert _temporaries(out) == []


@pytest.mark.parametrize("how", ["renameat2", "hard link"])
def test_an_output_published_meanwhile_is_kept(tmp_path, monkeypatch, how):
    if how == "hard link":
        monkeypatch.setattr(publish, "_renameat2", lambda: None)
    elif publish._renameat2() is None:
        pytest.skip("no renameat2 here (not Linux, or glibc before 2.28)")
    src, dst = tmp_path / "in.tif", tmp_path / "out" / "in.tif"
    dst.parent.mkdir()
    a = _tif(src, (3, 40, 48))
    mine, theirs = pm.Mixer(RNG.standard_normal((2, 3))), pm.Mixer(RNG.standard_normal((2, 3)))

    def another_run(nbytes):  # while this output is written, another run publishes its own
        if not dst.exists():
            process_file(src, dst, theirs)

    with pytest.raises(FileExistsError, match="appeared while this output was written"):
        process_file(src, dst, mine, max_bytes=2000, progress=another_run)
    np.testing.assert_array_equal(tifffile.imread(dst), theirs.apply(a, channel_axis=0))
    assert _record(dst)["program_sha256"] == program_sha256(theirs)
    assert _temporaries(dst.parent) == []
    # asked to overwrite, the late run replaces it, as before
    process_file(src, dst, mine, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(dst), mine.apply(a, channel_axis=0))

    # under resume, an output of the same program published meanwhile is a skip, another one a failure
    class Bar:
        def __init__(self, program):
            self.program = program

        def update(self, n):
            if not dst.exists():
                process_file(src, dst, self.program)

    for program, status in [(mine, "skipped"), (theirs, "failed")]:
        dst.unlink()
        r = run_job(src, dst, mine, resume=True, options={"max_bytes": 2000}, bar=Bar(program), size=100)
        assert r.status == status, r.reason
        assert _record(dst)["program_sha256"] == program_sha256(program)
        assert _temporaries(dst.parent) == []


@pytest.mark.parametrize("how", ["renameat2", "rename"])
def test_a_group_published_meanwhile_is_kept(tmp_path, monkeypatch, how):
    if how == "rename":
        monkeypatch.setattr(publish, "_renameat2", lambda: None)
    dst = tmp_path / "out.zarr" / "img"
    dst.parent.mkdir()
    with pytest.raises(FileExistsError, match="appeared while"):
        with publish.published(dst, directory=True) as tmp:
            (tmp / "0").mkdir(parents=True)
            (tmp / "0" / "mine").write_text("mine")
            dst.mkdir()
            (dst / "theirs").write_text("theirs")
    assert os.listdir(dst) == ["theirs"] and os.listdir(dst.parent) == ["img"]
    with publish.published(dst, directory=True, replace=True) as tmp:
        tmp.mkdir()
        (tmp / "mine").write_text("mine")
    assert os.listdir(dst) == ["mine"] and os.listdir(dst.parent) == ["img"]


def test_temporaries_of_other_hosts_are_left_to_them(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = tmp_path / f".a.tif.pixelmix-{dead.pid}-{publish.host_tag()}0123abcd.tmp"
    other_tag = "0" * 8 if publish.host_tag() != "0" * 8 else "1" * 8
    there = tmp_path / f".b.tif.pixelmix-{dead.pid}-{other_tag}0123abcd.tmp"
    for p in (here, there):
        p.write_bytes(b"")
    assert publish.clean_stale(tmp_path) == [here]
    assert there.exists()


# --- TIFF files that lie about their size -------------------------------------------


def _patch_tags(path: Path, values: dict[int, int]) -> None:
    """Rewrite tags of every IFD of a little-endian classic TIFF as LONG values."""
    with tifffile.TiffFile(path) as t:
        assert t.byteorder == "<" and not t.is_bigtiff
        offsets = [p.offset for p in t.pages]
    data = bytearray(path.read_bytes())
    for off in offsets:
        for i in range(struct.unpack_from("<H", data, off)[0]):
            entry = off + 2 + 12 * i
            tag = struct.unpack_from("<H", data, entry)[0]
            if tag in values:
                struct.pack_into("<HHII", data, entry, tag, 4, 1, values[tag])
    path.write_bytes(bytes(data))


def _lying_tiff(path: Path, kind: str, n_pages: int = 50) -> Path:
    """16 x 16 pages whose tags claim 10^6 x 10^6 pixels each."""
    a = RNG.integers(0, 4000, size=(n_pages, 16, 16), dtype=np.uint16)
    big = {256: 10**6, 257: 10**6}
    if kind == "tiled zlib":  # tifffile itself says nothing about these
        tifffile.imwrite(path, a, tile=(16, 16), compression="zlib", metadata=None, photometric="minisblack")
    elif kind == "one strip, uncompressed":  # RowsPerStrip too: one strip "holds" each page
        tifffile.imwrite(path, a, metadata=None, photometric="minisblack")
        big[278] = 10**6
    elif kind == "one strip, zlib":
        tifffile.imwrite(path, a, compression="zlib", metadata=None, photometric="minisblack")
        big[278] = 10**6
    else:  # strips: the pages list far fewer strips than such pages need
        tifffile.imwrite(path, a, metadata=None, photometric="minisblack")
    _patch_tags(path, big)
    return path


LIES = ["tiled zlib", "one strip, uncompressed", "one strip, zlib", "too few strips"]


@pytest.mark.parametrize("kind", LIES)
def test_a_tiff_that_lies_about_its_size_is_refused_before_anything_is_made(tmp_path, kind):
    path = _lying_tiff(tmp_path / "liar.tif", kind)
    assert path.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="damaged or crafted") as info:
        open_stack(path)
    assert time.perf_counter() - t0 < 2.0
    assert str(info.value).startswith(f"{path} ")
    good = tmp_path / "good.tif"
    _tif(good, (1, 16, 16))
    out = tmp_path / "out"
    s = run_local([path, good], out, pm.Mixer([[2.0]]), quiet=True)
    assert [(r.src.name, r.status) for r in s.results] == [("liar.tif", "failed"), ("good.tif", "done")]
    assert "damaged or crafted" in s.results[0].reason
    assert os.listdir(out) == ["good.tif"]  # no 2 TB temporary file, no temporary at all


def test_genuine_files_pass_the_size_checks_and_max_ratio_reads_a_lie(tmp_path):
    blank = np.zeros((4, 256, 256), np.uint16)
    for compression in (None, "zlib", "lzw", "packbits", "zstd"):
        path = tmp_path / f"blank-{compression}.tif"
        tifffile.imwrite(path, blank, tile=(256, 256), compression=compression, photometric="minisblack")
        with open_stack(path) as s:  # a blank image compresses as well as the codec allows
            assert s.shape == (4, 256, 256)
    liar = _lying_tiff(tmp_path / "liar.tif", "one strip, zlib")
    with pytest.raises(ValueError, match="max_ratio="):
        open_stack(liar)
    with open_stack(liar, max_ratio=math.inf) as s:  # the caller's risk: the claimed size is taken
        assert s.shape == (50, 10**6, 10**6)
    # the plan of such a file is lazy: nothing proportional to its claimed size is built
    t0 = time.perf_counter()
    plan = plan_slabs(s.shape, 0, 2)
    assert len(plan) >= 10**6 and plan[-1][0] == slice(0, 50) and time.perf_counter() - t0 < 0.5


def test_the_command_line_reports_a_lying_tiff_on_one_line(tmp_path, capsys):
    path = _lying_tiff(tmp_path / "liar.tif", "tiled zlib")
    assert main(["apply", str(path), "--matrix", "1", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("0 done, 0 skipped, 1 failed") and len(err) == 2
    assert err[1].startswith(f"  FAILED {path}: ") and "damaged or crafted" in err[1]
    path = _lying_tiff(tmp_path / "liar2.tif", "one strip, zlib")
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "damaged or crafted" in err and "--max-ratio" in err and err.count("\n") == 1
    assert main(["info", str(path), "--max-ratio", "inf"]) == 0
    assert "shape (50, 1000000, 1000000)" in capsys.readouterr().out


# --- control characters in names -----------------------------------------------------

NASTY = ["DAPI\x00", "GFP\x1b[31m", "two\nlines", "tab\there", "c1\x85", "ok é\u2028", "<&\"'>"]


def test_control_characters_in_channel_names_give_readable_outputs(tmp_path, capsys):
    m = pm.Mixer(RNG.standard_normal((len(NASTY), 3)), output_names=NASTY)
    m.save(tmp_path / "m.json")
    cyx, yxs = tmp_path / "cyx.tif", tmp_path / "yxs.tif"
    _tif(cyx, (3, 16, 16))
    _tif(yxs, (16, 16, 3), np.uint8, photometric="rgb")
    clean = clean_names(NASTY)
    assert all(not re.search(r"[\x00-\x1f\x7f-\x9f]", n) for n in clean)
    for out in (tmp_path / "out", tmp_path / "out.zarr"):
        args = ["apply", str(cyx), str(yxs), "--mixer", str(tmp_path / "m.json"), "-o", str(out), "-q"]
        assert main(args) == 0, capsys.readouterr().err
        if out.suffix == ".zarr":
            for name in ("cyx", "yxs"):
                attrs = zarr.open_group(str(out / name), mode="r").attrs
                assert attrs["pixelmix"]["channel_names"] == clean
                assert [c["label"] for c in attrs["omero"]["channels"]] == clean
        else:
            for name, kind in [("cyx.tif", "ome"), ("yxs.tif", "shaped")]:
                with open_stack(out / name) as s:  # pixelmix reads them back, names and all
                    assert s.kind == kind and s.channel_names == clean
                with tifffile.TiffFile(out / name) as t:  # and so do tifffile and an XML parser
                    assert t.series[0].shape[0 if kind == "ome" else -1] == len(NASTY)
                    if kind == "ome":
                        ET.fromstring(t.ome_metadata)
        capsys.readouterr()
        assert main(args + ["--resume"]) == 0  # not redone forever
        assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().err


def test_info_escapes_control_characters_and_names_flow_clean(tmp_path, capsys):
    src = tmp_path / "evil\x1b[2J.tif"
    raw = ["\x1b[31mred", "line\nbreak", "bell\x07"]
    tifffile.imwrite(src, np.ones((3, 8, 8), np.uint16), photometric="minisblack",
                     metadata={"axes": "CYX", "channel_names": raw})
    with open_stack(src) as s:
        assert s.channel_names == raw  # the input's names as they are
    assert main(["info", str(src)]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out) and out.count("\n") == 4
    assert "\\x1b[31mred, line\\nbreak, bell\\x07" in out and "evil\\x1b[2J.tif" in out
    # an elementwise program keeps the input's names: they are cleaned on the way out
    dst = tmp_path / "out.tif"
    process_file(src, dst, pm.Program([ops.relu()]))
    with open_stack(dst) as s:
        assert s.channel_names == clean_names(raw)


def test_a_file_name_with_a_newline_keeps_its_report_on_one_line(tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    (indir / "bad\nname.tif").write_text("not a tiff")
    _tif(indir / "good\nname.tif", (1, 8, 8))
    out = tmp_path / "out"
    run = _cli("apply", indir, "--matrix", "2", "-o", out)
    assert run.returncode == 1
    assert run.stdout == f"wrote {out}/good\\nname.tif\n"
    lines = run.stderr.splitlines()
    assert lines[0].startswith("1 done, 0 skipped, 1 failed") and len(lines) == 2
    assert lines[1].startswith(f"  FAILED {indir}/bad\\nname.tif: not a readable TIFF file")
    assert (out / "good\nname.tif").is_file()


# --- mixer files and statuses --------------------------------------------------------


def _doc(**body) -> str:
    return json.dumps({"format": "pixelmix", "version": 1, **body})


HOSTILE = {
    "steps-5": (_doc(kind="program", steps=[5]), "step 0 is 5"),
    "nested": ('{"format": "pixelmix", "version": 1, "kind": "mixer", "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
               "nested deeper"),
    "big-int": ('{"format": "pixelmix", "version": 1, "kind": "mixer", "weights": [[' + "9" * 400 + ']], "bias": [0]}',
                "too large"),
    "no-bias": (_doc(kind="mixer", weights=[[1.0]]), "no 'bias'"),
    "not-json": ("{weights: [[1]]", "not JSON"),
    "not-utf8": (b"\xff\xfe\x00garbage", "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_malformed_mixer_files_are_one_line_and_status_2(tmp_path, capsys, name):
    text, problem = HOSTILE[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _tif(tmp_path / "a.tif", (1, 8, 8))
    for option in ("--mixer", "--matrix"):
        assert main(["apply", str(tmp_path / "a.tif"), option, str(path), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        if option == "--mixer" or name in ("steps-5", "no-bias", "big-int"):
            assert err.startswith(f"pixelmix apply: error: cannot read mixer file {path}: ")
        assert "Error" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_hostile_mixer_messages_say_what_is_wrong(tmp_path, capsys):
    _tif(tmp_path / "a.tif", (1, 8, 8))
    for name, (text, problem) in HOSTILE.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        assert main(["apply", str(tmp_path / "a.tif"), "--mixer", str(path), "-o", str(tmp_path / "o")]) == 2
        assert problem in capsys.readouterr().err, name


def test_exit_status_2_before_any_input_is_touched(tmp_path, capsys):
    _tif(tmp_path / "a.tif", (1, 8, 8))
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "mixer-dir").mkdir()
    a = str(tmp_path / "a.tif")
    cases = [
        (["--matrix", "1", "-o", str(tmp_path / "file.txt")], "is an existing file"),
        (["--matrix", "1", "-o", str(tmp_path / "file.txt" / "sub")], "cannot create the output directory"),
        (["--matrix", "1", "-o", str(tmp_path / "file.txt" / "sub.zarr")], "cannot create the Zarr store"),
        (["--mixer", str(tmp_path / "mixer-dir"), "-o", str(tmp_path / "o")], "it is a directory"),
        (["--mixer", str(tmp_path / "none.json"), "-o", str(tmp_path / "o")], "does not exist"),
    ]
    for args, message in cases:
        assert main(["apply", a, *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert (tmp_path / "file.txt").read_text() == "" and not (tmp_path / "o").exists()


def test_an_unreadable_mixer_file_is_status_2(tmp_path, capsys):
    path = tmp_path / "m.json"
    pm.Mixer([[1.0]]).save(path)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this process reads files whatever their permissions (root): cannot make one unreadable")
    _tif(tmp_path / "a.tif", (1, 8, 8))
    assert main(["apply", str(tmp_path / "a.tif"), "--mixer", str(path), "-o", str(tmp_path / "o")]) == 2
    assert f"cannot read mixer file {path}: Permission denied" in capsys.readouterr().err


# --- provenance and resume -----------------------------------------------------------


def test_huge_mixer_metadata_does_not_bloat_every_output(tmp_path):
    m = pm.Mixer([[1.0, 2.0]], metadata={"note": "x" * 20_000_000})
    m.save(tmp_path / "m.json")
    m = pm.load(tmp_path / "m.json")
    src = tmp_path / "a.tif"
    _tif(src, (2, 16, 16))
    out = tmp_path / "out"
    assert main(["apply", str(src), "--mixer", str(tmp_path / "m.json"), "-o", str(out), "-q"]) == 0
    assert (out / "a.tif").stat().st_size < 64_000  # was 20 MB for a 1 KB image
    record = _record(out / "a.tif")
    assert record["program_sha256"] == program_sha256(m) and "program" not in record
    assert record["program_summary"]["n_inputs"] == 2 and len(record["program_summary"]["metadata"]) <= 2048
    assert len(json.dumps(provenance(m, src, np.dtype("float32"), None))) < 8000
    assert main(["apply", str(src), "--mixer", str(tmp_path / "m.json"), "-o", str(tmp_path / "o.zarr"), "-q"]) == 0
    assert (tmp_path / "o.zarr" / "a" / ".zattrs").stat().st_size < 64_000
    # the SHA-256 is enough for resume
    assert run_local([src], out, m, resume=True, quiet=True).count("skipped") == 1


@pytest.mark.parametrize("zarr_out", [False, True])
def test_resume_redoes_an_output_made_by_another_mixer(tmp_path, zarr_out):
    indir = tmp_path / "in"
    indir.mkdir()
    images = {n: _tif(indir / n, (3, 16, 24)) for n in ("a.tif", "b.tif")}
    out = tmp_path / ("out.zarr" if zarr_out else "out")
    first, second = pm.Mixer(RNG.standard_normal((2, 3))), pm.Mixer(RNG.standard_normal((2, 3)))

    def run(m, **kwargs):
        return (run_on_cluster if zarr_out else run_local)([indir], out, m, quiet=True, **kwargs)

    def outputs():
        if zarr_out:
            return {n: np.asarray(zarr.open_group(str(out / n[:-4]), mode="r")["0"]) for n in images}
        return {n: tifffile.imread(out / n) for n in images}

    assert run(first).count("done") == 2
    assert [r.status for r in run(second, resume=True).results] == ["done", "done"]  # same shape, redone
    for n, got in outputs().items():
        np.testing.assert_array_equal(got, second.apply(images[n], channel_axis=0))
    assert run(second, resume=True).count("skipped") == 2
    assert run(second, resume=True, nodata=0).count("done") == 2  # another nodata: other pixels
    assert run(second, resume=True, nodata=0).count("skipped") == 2


# --- Ctrl-C under --dask ---------------------------------------------------------------


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_under_dask_prints_one_line_and_leaves_no_temporaries(tmp_path):
    indir, out = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    for i in range(12):
        _tif(indir / f"f{i:02d}.tif", (3, 1024, 1024))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixelmix", "apply", str(indir), "--matrix", "1,1,1;1,-1,0", "-o", str(out),
         "--dask", "--workers", "2", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # As in a terminal's foreground job: a suite started in the background
        # (`cmd &` in a script) ignores SIGINT, and so would its children.
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and os.listdir(out)) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert err.splitlines() == ["pixelmix: interrupted"], err[-3000:]
    assert _temporaries(out) == []
    for name in os.listdir(out):  # what was published is whole
        assert tifffile.imread(out / name).shape == (2, 1024, 1024)
