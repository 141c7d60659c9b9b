"""Online accumulators (fractaldiff.train.online) against the offline analysis."""

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff.train.online import (
    MultipleTauMSD,
    OnlineAccumulators,
    OnlineBoxIds,
    RunningDisplacement,
    box_grid_offsets,
    box_key_seed,
    fold_box_ids,
)

import reference


def _walk(rng, t, d, dtype=np.float32, scale=0.01):
    x = 1.0 + np.cumsum(rng.normal(scale=scale, size=(t, d)), axis=0)
    return x.astype(dtype)


def _feed(acc, X):
    for row in X:
        acc.update(row)
    return acc


def _levels(X, level, factor, coarsening):
    """The level-`level` points Z_l of the module docstring."""
    b = factor**level
    if coarsening == "sample":
        return X[::b]
    n = X.shape[0] // b
    return X[: n * b].astype(np.float64).reshape(n, b, -1).mean(axis=1)


@pytest.mark.parametrize("coarsening", ["sample", "mean"])
@pytest.mark.parametrize("block_size,factor", [(8, 2), (12, 3)])
def test_multiple_tau_is_exactly_msd_of_each_level(rng, coarsening, block_size, factor):
    X = _walk(rng, 301, 37)
    acc = _feed(MultipleTauMSD(37, block_size=block_size, factor=factor,
                               coarsening=coarsening), X)
    r = acc.result()
    assert r.lags.size > 0 and np.all(np.diff(r.lags) > 0)
    assert r.lags.max() > 150  # reaches coarse levels
    for lag, value, pairs, level in zip(r.lags, r.msd, r.n_pairs, r.level):
        Z = _levels(X, level, factor, coarsening)
        k = lag // factor**level
        assert lag == k * factor**level
        assert pairs == Z.shape[0] - k
        ref = fd.msd(np.asarray(Z, dtype=np.float64), lags=[k])[0]
        np.testing.assert_allclose(value, ref, rtol=1e-9, atol=0)
    # level 0 is the all-pairs MSD itself
    full = fd.msd(X)
    lvl0 = r.level == 0
    np.testing.assert_allclose(r.msd[lvl0], full[r.lags[lvl0]], rtol=1e-9)
    assert np.array_equal(r.lags[lvl0], np.arange(1, block_size))


def test_multiple_tau_float32_buffers_and_memory(rng):
    X = _walk(rng, 200, 20)
    a64 = _feed(MultipleTauMSD(20, block_size=8), X)
    a32 = _feed(MultipleTauMSD(20, block_size=8, dtype="float32"), X)
    np.testing.assert_allclose(a32.result().msd, a64.result().msd, rtol=1e-4)
    for acc, dt in ((a64, "float64"), (a32, "float32")):
        predicted = MultipleTauMSD.memory_bytes(20, 200, 8, 2, "sample", dt)
        counters = acc.n_levels * 16 * 8  # per-level lag sums and pair counts
        assert acc.nbytes == predicted + counters
        assert acc.n_levels == MultipleTauMSD.n_levels_for(200, 8, 2)


def test_multiple_tau_sample_is_unbiased_for_brownian_motion(rng):
    # sample coarsening estimates the same msd(tau) = D * tau as the all-pair average
    X = np.cumsum(rng.normal(size=(2048, 400)), axis=0)
    r = _feed(MultipleTauMSD(400, block_size=8), X).result()
    coarse = r.level >= 3
    np.testing.assert_allclose(r.msd[coarse] / (400 * r.lags[coarse]), 1.0, rtol=0.25)
    # the exact block-average relation of "mean" for Brownian motion: c*(k b - (b^2-1)/(3b))
    rm = _feed(MultipleTauMSD(400, block_size=8, coarsening="mean"), X).result()
    b = 2.0 ** rm.level
    expected = 400 * (rm.lags - (b * b - 1) / (3 * b))
    sel = (rm.level >= 1) & (rm.n_pairs > 50)
    np.testing.assert_allclose(rm.msd[sel] / expected[sel], 1.0, rtol=0.15)


def test_multiple_tau_max_levels_and_bad_input(rng):
    acc = _feed(MultipleTauMSD(5, block_size=4, max_levels=2), _walk(rng, 100, 5))
    assert acc.n_levels == 2 and acc.result().lags.max() == 3 * 2
    with pytest.raises(ValueError, match="block_size"):
        MultipleTauMSD(5, block_size=6, factor=4)
    with pytest.raises(ValueError, match="coarsening"):
        MultipleTauMSD(5, coarsening="median")
    with pytest.raises(TypeError, match="n_params"):
        MultipleTauMSD(5.0)
    with pytest.raises(ValueError, match="n_params=5"):
        acc.update(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        acc.update(np.array([0, 0, np.nan, 0, 0.0]))
    with pytest.raises(TypeError, match="floating"):
        acc.update(np.zeros(5, dtype=np.int64))


def test_running_displacement_equals_offline(rng):
    X = _walk(rng, 64, 1000)
    acc = _feed(RunningDisplacement(X.shape[1]), X)
    np.testing.assert_allclose(acc.values, fd.displacement(X), rtol=1e-12, atol=0)
    big = _walk(rng, 5, 140_000, scale=1e-3)  # spans three column chunks
    acc = _feed(RunningDisplacement(140_000), big)
    np.testing.assert_allclose(acc.values, fd.displacement(big), rtol=1e-12)
    assert acc.nbytes == RunningDisplacement.memory_bytes(140_000, 5)


def _slow_box_counts(X, origin, eps0, n_scales):
    q = np.floor((X.astype(np.float64) - origin) / eps0).astype(np.int64)
    return np.array([len({tuple(r) for r in (q >> k)}) for k in range(n_scales)])


def test_box_ids_match_offline_fold_and_distinct_boxes(rng):
    X = _walk(rng, 150, 300, scale=3e-3)
    acc = OnlineBoxIds(300, 1e-3, n_scales=10, seed=4)
    _feed(acc, X)
    # offline: the same hash over the stored block, in two column blocks, with the online grid
    ids = np.zeros((150, 10, 2), dtype=np.uint64)
    for a, b in ((0, 170), (170, 300)):
        fold_box_ids(X[:, a:b], a, acc.origin[a:b], 1e-3, 10, acc.key_seed, ids)
    assert np.array_equal(acc.ids, ids)
    # and the numpy oracle of the hash gives the same bits
    want = reference.box_ids_direct(X, 0, acc.origin, 1e-3, 10, acc.key_seed)
    assert np.array_equal(ids, want)
    eps, counts = acc.counts()
    np.testing.assert_allclose(eps, 1e-3 * 2.0 ** np.arange(10))
    assert np.array_equal(counts, _slow_box_counts(X, acc.origin, 1e-3, 10))
    assert counts[0] > counts[-1] >= 1


def test_box_ids_hash_is_the_kernel_formula():
    # one coordinate by hand: id = key(d) * q mod 2^64, keys from the numpy oracle
    X = np.array([[0.5, 2.25]])
    origin = np.zeros(2)
    ids = np.zeros((1, 2, 2), dtype=np.uint64)
    fold_box_ids(X, 7, origin, 0.25, 2, 123, ids)
    keys = reference.box_keys(123, 7, 2).astype(object)
    for k in range(2):
        q = [2 >> k, 9 >> k]
        for s in range(2):
            assert int(ids[0, k, s]) == (keys[s][0] * q[0] + keys[s][1] * q[1]) % 2**64
    u = box_grid_offsets(np.arange(1000), 2.0, seed=1)
    assert u.min() >= 0 and u.max() < 2.0 and abs(u.mean() - 1.0) < 0.1


@pytest.mark.parametrize("seed, grid", [(0, 0), (1, 3), (2**64 + 5, 2), (12345, 0)])
def test_box_seeding_is_the_one_in_hd_common(seed, grid):
    # _core (hd_common.hpp) against the numpy oracle of the same definitions
    from fractaldiff import _core

    assert box_key_seed(seed, grid) == reference.box_key_seed(seed % 2**64, grid)
    cols = np.arange(0, 5000, 7)
    np.testing.assert_array_equal(box_grid_offsets(cols, 3.5, seed, grid),
                                  reference.box_grid_offsets(cols, 3.5, seed % 2**64, grid))
    ks = reference.box_key_seed(seed % 2**64, grid)
    np.testing.assert_array_equal(_core.box_keys(ks, 11, 300), reference.box_keys(ks, 11, 300))
    assert _core.BOX_Q_LIMIT == 2.0**31 and _core.BOX_KEY_MULT == reference._KEY_MULT


def test_box_ids_out_of_grid_and_bad_eps():
    acc = OnlineBoxIds(3, 1e-6, n_scales=4)
    acc.update(np.zeros(3))
    with pytest.raises(ValueError, match="outside the box grid"):
        acc.update(np.array([0.0, 1e4, 0.0]))
    with pytest.raises(ValueError, match="eps0"):
        OnlineBoxIds(3, 0.0)
    with pytest.raises(ValueError, match="n_scales"):
        OnlineBoxIds(3, 1.0, n_scales=32)


def test_online_accumulators_summary(rng):
    X = _walk(rng, 40, 10)
    acc = OnlineAccumulators(10, msd={"block_size": 4}, box_eps0=1e-3)
    for t, row in enumerate(X):
        acc.update(row, step=t * 5)
    s = acc.summary()
    assert s["steps"] == list(range(0, 200, 5))
    np.testing.assert_allclose(s["displacement"], fd.displacement(X), rtol=1e-12)
    assert s["msd"]["lags"][:3] == [1, 2, 3]
    assert len(s["box_counts"]["counts"]) == 16
    assert acc.nbytes == sum(a.nbytes for a in acc.accumulators)


def test_recorder_online_agrees_with_its_store(tmp_path):
    """One training run, recorded to a store and online: both analyses agree."""
    torch = pytest.importorskip("torch")
    from fractaldiff.train import Recorder, train
    from fractaldiff.train.models import mlp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x[:, 0] > 0).long()
    model = mlp(5, 2, width=8, depth=1, seed=0)
    online = OnlineAccumulators(
        sum(p.numel() for p in model.parameters()), msd={"block_size": 8},
        box_eps0=1e-4, box_options={"n_scales": 12},
    )
    with Recorder(model, tmp_path / "r.fdstore", every=2, online=online) as rec:
        train(model, (x, y), lr=0.05, batch_size=16, steps=120, seed=0, recorder=rec,
              device="cpu")
    with fd.open_store(tmp_path / "r.fdstore") as store:
        X = store[:]
        assert X.shape[0] == 61 and list(store.steps) == online.steps
        np.testing.assert_allclose(online.displacement.values, fd.displacement(store),
                                   rtol=1e-10)
        r = online.msd.result()
        for lag, value, level in zip(r.lags, r.msd, r.level):
            k = lag // 2**level
            ref = fd.msd(np.asarray(X[:: 2**level], dtype=np.float64), lags=[k])[0]
            np.testing.assert_allclose(value, ref, rtol=1e-9)
        ids = np.zeros((61, 12, 2), dtype=np.uint64)
        fold_box_ids(X, 0, online.box_ids.origin, 1e-4, 12, online.box_ids.key_seed, ids)
        assert np.array_equal(online.box_ids.ids, ids)
