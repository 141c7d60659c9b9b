"""fractaldiff.bayes.llc_trajectory and fractaldiff.train.load_snapshot on recorded runs, and the
optional agreement with devinterp 1.3.2."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import fractaldiff as fd  # noqa: E402
from fractaldiff.bayes import LLCWarning, estimate_llc, llc_trajectory  # noqa: E402
from fractaldiff.train import Recorder, load_snapshot, mlp, two_moons  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


KW = dict(step_size=1e-4, localization=10.0, n_chains=4, n_draws=120, n_burnin=20,
          batch_size=32, seed=0)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A small moons MLP (with BatchNorm) trained by full-batch Adam, recorded every 25 steps."""
    ds = two_moons(300, noise=0.1)
    model = mlp(2, 2, width=8, seed=0)
    path = tmp_path_factory.mktemp("llc") / "run.fdstore"
    x = torch.as_tensor(ds.x_train)
    y = torch.as_tensor(ds.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    with Recorder(model, path, every=25) as rec:
        for _ in range(300):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return path, model, ds


def test_load_snapshot_roundtrip(recorded):
    path, model, ds = recorded
    store = fd.open_store(path)
    fresh = mlp(2, 2, width=8, seed=5)
    load_snapshot(fresh, store, -1)
    flat = torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]).numpy()
    np.testing.assert_array_equal(flat, store[-1])
    load_snapshot(fresh, path, 0)  # a path works too
    flat0 = torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]).numpy()
    np.testing.assert_array_equal(flat0, store[0])
    # a plain array without layout, by order
    load_snapshot(fresh, np.asarray(store[:3]), 2)
    with pytest.raises(ValueError, match="trainable parameters"):
        load_snapshot(mlp(2, 2, width=9), np.asarray(store[:3]), 0)
    with pytest.raises(ValueError, match="shape"):
        load_snapshot(mlp(2, 2, width=9), store, 0)
    with pytest.raises(IndexError):
        load_snapshot(fresh, store, len(store))


def test_trajectory_excludes_the_untrained_start(recorded):
    path, model, ds = recorded
    T = len(fd.open_store(path))
    with pytest.warns(LLCWarning):
        tr = llc_trajectory(path, model, ds, at=[0, T // 2, T - 2, T - 1], **KW)
    assert tr.rows.tolist() == [0, T // 2, T - 2, T - 1]
    assert tr.steps[0] == 0
    assert tr.values[0] < 0 and not tr.included[0]  # step 0: not a minimum
    assert tr.included[1:].all()
    w = tr.weights[tr.included]
    assert w.sum() == pytest.approx(1.0)
    assert tr.mean_llc == pytest.approx(float((tr.weights * np.nan_to_num(tr.values)).sum()))
    assert 0 < tr.mean_llc_stderr < abs(tr.mean_llc)
    # the paper's derived quantities take it directly
    exps = fd.DiffusionExponents.from_msd_exponent(0.6, 0.05)
    assert tr.lambda_bar == tr.as_estimate()
    d_s = fd.spectral_dimension(tr.lambda_bar, exps)
    assert d_s.value == pytest.approx(0.6 * tr.mean_llc)
    check = fd.check_spectral_bound(tr.as_estimate(), exps)
    assert check.satisfied
    # user override: keep everything / exclude exactly what is asked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keep = llc_trajectory(path, model, ds, at=[0, T - 1], exclude="none", weights="uniform",
                              **KW)
        mask = llc_trajectory(path, model, ds, at=[0, T - 1], exclude=[T - 1], **KW)
    assert keep.included.all()
    assert keep.mean_llc == pytest.approx(keep.values.mean())
    assert mask.included.tolist() == [True, False]
    import matplotlib

    matplotlib.use("Agg")
    assert tr.plot() is not None


def test_trajectory_matches_estimate_llc_at_a_snapshot(recorded):
    # BatchNorm statistics recomputed for the snapshot = what estimate_llc sees after the
    # same recomputation
    path, model, ds = recorded
    from fractaldiff.bayes.trajectory import recompute_bn_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = llc_trajectory(path, model, ds, at=[-1], **KW)
        m = mlp(2, 2, width=8)
        load_snapshot(m, path, -1)
        recompute_bn_stats(m, torch.as_tensor(ds.x_train))
        r = estimate_llc(m, ds, **KW)
    assert tr.values[0] == pytest.approx(r.mean, rel=1e-4)
    assert tr.results[0].init_loss == pytest.approx(r.init_loss, rel=1e-5)


def test_trajectory_batches_snapshots_without_batchnorm():
    ds = two_moons(200, noise=0.1)
    model = mlp(2, 2, width=6, batch_norm=False, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    rows = []
    for i in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i % 50 == 49:
            rows.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
    run = np.stack(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = llc_trajectory(run, model, ds, at=None, **KW)  # one batched run for all 4
        single = estimate_llc(load_snapshot(mlp(2, 2, width=6, batch_norm=False), run, 3),
                              ds, **KW)
    assert len(tr.rows) == 4
    assert np.isfinite(tr.values).all()
    # same estimator, other random streams: agreement within the noise
    assert abs(tr.values[3] - single.mean) <= 5 * math.hypot(tr.stderrs[3], single.stderr) + 0.5


def test_trajectory_bad_input(recorded):
    path, model, ds = recorded
    with pytest.raises(IndexError):
        llc_trajectory(path, model, ds, at=[10_000], **KW)
    with pytest.raises(ValueError, match="exclude"):
        llc_trajectory(path, model, ds, at=[1], exclude="bogus", **KW)
    with pytest.raises(ValueError, match="shape"):
        llc_trajectory(path, mlp(2, 2, width=9), ds, at=[1], **KW)
    with pytest.raises(ValueError, match="n_draws"):
        llc_trajectory(path, model, ds, at=[1], **dict(KW, n_draws=10, n_burnin=10))


def test_trajectory_with_dask(recorded):
    distributed = pytest.importorskip("distributed")
    path, model, ds = recorded
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = llc_trajectory(path, model, ds, at=[3, 6, 9, 12], client=client, **KW)
            local = llc_trajectory(path, model, ds, at=[3, 6, 9, 12], **KW)
    assert np.isfinite(tr.values).all()
    assert np.allclose(tr.values, local.values, rtol=0.5, atol=2.0)


# --- devinterp 1.3.2 (optional) ------------------------------------------------------------


def test_agrees_with_devinterp():
    devinterp = pytest.importorskip("devinterp")
    if getattr(devinterp, "__version__", "1.3.2") != "1.3.2":
        from importlib.metadata import version

        if version("devinterp") != "1.3.2":
            pytest.skip("the comparison is pinned to devinterp==1.3.2")
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    ds = two_moons(500, noise=0.1)
    model = mlp(2, 2, width=16, batch_norm=False, seed=0)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    n = len(x)
    nbeta = n / math.log(n)
    settings = dict(eps=3e-4, gamma=10.0, chains=8, draws=300)
    ours = estimate_llc(model, ds, step_size=settings["eps"], localization=settings["gamma"],
                        n_chains=settings["chains"], n_draws=settings["draws"], n_burnin=0,
                        batch_size=64, seed=0, warn=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64,
                                         shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model, loader,
            evaluate=lambda m, d: torch.nn.functional.cross_entropy(m(d[0]), d[1]),
            sampling_method=SGLD,
            optimizer_kwargs=dict(lr=settings["eps"], localization=settings["gamma"],
                                  nbeta=nbeta),
            num_chains=settings["chains"], num_draws=settings["draws"], num_burnin_steps=0,
            init_loss=ours.init_loss,  # the same full-data baseline
            seed=0, device="cpu", verbose=False, online=False)
    theirs = float(out["llc/mean"])
    their_se = float(out["llc/std"]) / math.sqrt(settings["chains"])
    assert abs(ours.mean - theirs) <= 3 * math.hypot(ours.stderr, their_se)


def test_llc_trajectory_needs_two_samples(tmp_path):
    import numpy as np
    import torch

    from fractaldiff.bayes import llc_trajectory

    model = torch.nn.Linear(2, 2)
    n = sum(p.numel() for p in model.parameters())
    W = np.zeros((3, n), dtype=np.float32)
    x, y = torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="number of samples"):
        llc_trajectory(W, model, (x, y), batch_size=1)
