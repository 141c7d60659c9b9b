"""Out-of-core sources, memory_limit, per-layer groups, progress and dask: all give the same
answer as the in-memory run, from one pass over the data."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff.engine.sources import SlicedSource, as_source, iter_blocks

from reference import displacement_direct, msd_direct, weight_like


@pytest.fixture(scope="module")
def W():
    return weight_like(150, 333, 1e-3, seed=21)


@pytest.fixture(scope="module")
def expected(W):
    return fd.msd(W)


def test_npy_path_and_memmap(tmp_path, W, expected):
    path = tmp_path / "w.npy"
    np.save(path, W)
    np.testing.assert_allclose(fd.msd(str(path)), expected, rtol=1e-12)
    np.testing.assert_allclose(fd.msd(path), expected, rtol=1e-12)
    src = as_source(str(path))
    assert src.zero_copy and src.shape == W.shape


@pytest.mark.parametrize("limit", [2**20, "3MB", 10 * 2**20])
def test_memory_limit_blocks_give_same_result(W, expected, limit):
    big_endian = W.astype(">f4")  # needs conversion, so it streams in blocks
    src = as_source(big_endian)
    assert not src.zero_copy
    widths = [b.shape[1] for _, b in iter_blocks(src, memory_limit=fd_limit(limit))]
    assert sum(widths) == W.shape[1]
    np.testing.assert_allclose(fd.msd(big_endian, memory_limit=limit), expected, rtol=1e-10)
    lags = [1, 17, 149]
    np.testing.assert_allclose(fd.msd(big_endian, lags=lags, memory_limit=limit),
                               msd_direct(W, lags), rtol=1e-12)


def fd_limit(limit):
    from fractaldiff._validation import check_memory_limit

    return check_memory_limit(limit)


def test_memory_limit_validation(W):
    with pytest.raises(ValueError, match="at least 1 MiB"):
        fd.msd(W, memory_limit=1000)
    with pytest.raises(ValueError, match="not a size"):
        fd.msd(W, memory_limit="lots")
    with pytest.raises(TypeError, match="memory_limit must be"):
        fd.msd(W, memory_limit=[1])
    tall = np.zeros((200_000, 2), dtype=">f8")
    with pytest.raises(ValueError, match="too small for X with T=200000"):
        fd.msd(tall, memory_limit="1MiB")


class LazyArray:
    """A minimal lazily sliced array (like zarr/h5py) that records what was read."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return np.array(self._data[key])


def test_lazy_source_reads_each_column_once(W, expected):
    lazy = LazyArray(W)
    got = fd.msd(lazy, memory_limit=2**20)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    cols = [k[1] for k in lazy.reads]
    assert len(cols) > 1  # really streamed in blocks
    covered = np.concatenate([np.arange(W.shape[1])[c] for c in cols])
    np.testing.assert_array_equal(np.sort(covered), np.arange(W.shape[1]))


def test_lazy_source_nonfinite_is_located(W):
    bad = W.copy()
    bad[77, 300] = np.nan
    with pytest.raises(ValueError, match="t=77, parameter d=300"):
        fd.msd(LazyArray(bad), memory_limit=2**20)


def test_zarr_source(tmp_path, W, expected):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(tmp_path / "w.zarr"), shape=W.shape, chunks=(150, 64),
                          dtype="float32")
    z[:] = W
    np.testing.assert_allclose(fd.msd(z, memory_limit=2**20), expected, rtol=1e-12)
    np.testing.assert_allclose(fd.msd(str(tmp_path / "w.zarr")), expected, rtol=1e-12)
    np.testing.assert_allclose(fd.displacement(z), displacement_direct(W), rtol=1e-12)


def test_hdf5_source(tmp_path, W, expected):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("w", data=W, chunks=(150, 32))
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert isinstance(as_source(f["w"]), SlicedSource)
        np.testing.assert_allclose(fd.msd(f["w"], memory_limit=2**20), expected, rtol=1e-12)


def test_groups_slices_indices_masks(W, expected):
    D = W.shape[1]
    mask = np.zeros(D, bool)
    mask[::7] = True
    groups = {"a": slice(0, 100), "b": slice(100, None), "odd": np.arange(1, D, 2),
              "mask": mask, "overlap": slice(50, 150)}
    res = fd.msd(W, groups=groups)
    assert set(res) == {"total", *groups}
    np.testing.assert_allclose(res["total"], expected, rtol=1e-10)
    np.testing.assert_allclose(res["a"] + res["b"], expected, rtol=1e-10)
    for name, sel in [("a", slice(0, 100)), ("odd", np.arange(1, D, 2)), ("mask", mask),
                      ("overlap", slice(50, 150))]:
        np.testing.assert_allclose(res[name], fd.msd(W[:, sel]), rtol=1e-10, err_msg=name)
    disp = fd.displacement(W, groups={"a": slice(0, 100), "b": slice(100, None)})
    np.testing.assert_allclose(disp["a"] ** 2 + disp["b"] ** 2, disp["total"] ** 2, rtol=1e-12)
    lags = fd.msd(W, lags=[3, 5], groups={"a": slice(0, 100)})
    np.testing.assert_allclose(lags["a"], msd_direct(W[:, :100], [3, 5]), rtol=1e-12)


def test_groups_reads_data_once(W):
    lazy = LazyArray(W)
    fd.msd(lazy, groups={"x": slice(0, 10), "y": np.arange(5, 300, 3)})
    assert len(lazy.reads) == 1  # one block covers everything at the default limit


def test_groups_layers_from_layout(W, expected):
    src = SlicedSource(LazyArray(W), layout=[("layer1.weight", 0, 300), ("layer1.bias", 300, 333)])
    res = fd.msd(src, groups="layers")
    np.testing.assert_allclose(res["layer1.weight"] + res["layer1.bias"], expected, rtol=1e-10)


@pytest.mark.parametrize(
    "groups,exc,match",
    [("layers", ValueError, "needs a source that records"), ("other", ValueError, "or 'layers'"),
     ({}, TypeError, "non-empty mapping"), ({"total": slice(0, 2)}, ValueError, "reserved"),
     ({"a": slice(5, 5)}, ValueError, "must select columns"),
     ({"a": [0, 1000]}, ValueError, r"must hold indices in \[0, "), ({"a": np.ones(3, bool)}, ValueError, "mask"),
     ({"a": [0.5]}, TypeError, "slice, integer"), ({1: slice(0, 2)}, TypeError, "strings")],
)
def test_bad_groups(W, groups, exc, match):
    with pytest.raises(exc, match=match):
        fd.msd(W, groups=groups)


def test_progress_bar(W, monkeypatch):
    pytest.importorskip("tqdm")
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    fd.msd(W.astype(">f4"), progress=True, memory_limit=2**20)
    assert "msd" in buf.getvalue()
    buf.truncate(0)
    fd.msd(W.astype(">f4"), progress=False, memory_limit=2**20)
    assert buf.getvalue().strip("\x00") == ""


def test_dask_array_local_scheduler(W, expected):
    da = pytest.importorskip("dask.array")
    X = da.from_array(W, chunks=(50, 40))
    np.testing.assert_allclose(fd.msd(X), expected, rtol=1e-10)
    np.testing.assert_allclose(fd.displacement(X, ref=-1), displacement_direct(W, -1), rtol=1e-12)
    res = fd.msd(X, groups={"a": slice(0, 100)})
    np.testing.assert_allclose(res["a"], fd.msd(W[:, :100]), rtol=1e-10)
    bad = W.copy()
    bad[10, 250] = np.inf
    with pytest.raises(ValueError, match="t=10, parameter d=250"):
        fd.msd(da.from_array(bad, chunks=(150, 40)))


def test_dask_distributed_local_cluster(W, expected):
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster):
        X = da.from_array(W, chunks=(150, 60))
        np.testing.assert_allclose(fd.msd(X), expected, rtol=1e-10)
        res = fd.msd(X, lags=[1, 2, 149])
        np.testing.assert_allclose(res, msd_direct(W, [1, 2, 149]), rtol=1e-12)


RSS_SCRIPT = textwrap.dedent(
    """
    import threading, time, sys
    import numpy as np
    import fractaldiff as fd

    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    path, limit = sys.argv[1], int(sys.argv[2])
    X = np.load(path, mmap_mode="r")
    base = rss_anon()
    peak = [base]
    stop = False
    def sample():
        while not stop:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fd.msd(X, memory_limit=limit)
    finally:
        stop = True
        th.join()
    print(peak[0] - base)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.parametrize("dtype", ["<f4", ">f4"])
def test_peak_anonymous_memory_within_limit(tmp_path, dtype):
    # a 96 MB source with a 16 MB limit: anonymous memory must stay <= limit + 256 MB, and in
    # fact far below the size of the data
    T, D = 1500, 16000
    path = tmp_path / "big.npy"
    # big-endian data cannot be read in place: it streams through converted blocks
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(T, D))
    rng = np.random.default_rng(0)
    for a in range(0, D, 4000):
        mm[:, a : a + 4000] = np.cumsum(rng.standard_normal((T, 4000), dtype=np.float32), 0)
    mm.flush()
    del mm
    limit = 16 * 2**20
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path), str(limit)],
                         capture_output=True, text=True, check=True, timeout=300)
    grown = int(out.stdout.strip())
    assert grown <= limit + 256 * 2**20
    assert grown < T * D * 4 / 2  # never holds a copy of the data


def test_box_counts_and_distances_stream_within_memory_limit(W):
    # streamed (converted) blocks give the same box ids and distances as the in-place run
    lazy = LazyArray(W)
    eps, counts = fd.box_counts(W, n_scales=12)
    eps2, counts2 = fd.box_counts(lazy, n_scales=12, memory_limit=2**20)
    np.testing.assert_array_equal(eps, eps2)
    np.testing.assert_array_equal(counts, counts2)
    assert len(lazy.reads) > 2  # min/max pass and id pass, each in several blocks
    np.testing.assert_allclose(fd.pairwise_sqdist(W.astype(">f4"), memory_limit="1MiB"),
                               fd.pairwise_sqdist(W), rtol=1e-12, atol=1e-12)


def test_fractal_analyses_on_dask_match_local(W):
    da = pytest.importorskip("dask.array")
    X = da.from_array(W, chunks=(75, 50))
    eps, counts = fd.box_counts(W, n_scales=12, n_grids=2)
    eps2, counts2 = fd.box_counts(X, n_scales=12, n_grids=2)
    np.testing.assert_array_equal(eps, eps2)
    np.testing.assert_array_equal(counts, counts2)  # box ids merge exactly across workers
    np.testing.assert_allclose(fd.pairwise_sqdist(X), fd.pairwise_sqdist(W), rtol=1e-10,
                               atol=1e-10)
    a, b = fd.correlation_dimension(X, theiler=5), fd.correlation_dimension(W, theiler=5)
    assert a.dimension == pytest.approx(b.dimension, rel=1e-9)
    bad = W.copy()
    bad[3, 120] = np.nan
    with pytest.raises(ValueError, match="t=3, parameter d=120"):
        fd.box_counts(da.from_array(bad, chunks=(150, 50)))
