"""cluster_solutions and compare_posterior: planted clusters, a known-answer case, properties."""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fractaldiff.bayes as fb  # noqa: E402
import fractaldiff.train as ft  # noqa: E402
from fractaldiff.bayes.posterior import (  # noqa: E402
    js_divergence,
    kl_divergence,
    tempered_masses,
    wasserstein_masses,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- planted clusters ------------------------------------------------------------------------


def test_planted_clusters_from_outputs():
    rng = np.random.default_rng(0)
    P, sizes = 300, [40, 25, 10]
    protos = [rng.integers(0, 3, P) for _ in sizes]
    outs, truth = [], []
    for k, (proto, m) in enumerate(zip(protos, sizes)):
        for _ in range(m):
            lab = proto.copy()
            flip = rng.random(P) < 0.01  # 1 % label noise inside a cluster
            lab[flip] = rng.integers(0, 3, flip.sum())
            outs.append(np.eye(3)[lab])
            truth.append(k)
    order = rng.permutation(len(truth))
    outs = np.asarray(outs)[order]
    truth = np.asarray(truth)[order]
    res = fb.cluster_solutions(outs)
    assert res.n_clusters == 3
    assert list(res.sizes) == sizes
    # the clustering equals the planted one up to the cluster numbering
    for k in range(3):
        assert len(set(truth[res.labels == k])) == 1
    assert np.isclose(res.masses.sum(), 1.0)
    assert all(res.labels[r] == k for k, r in enumerate(res.representatives))
    assert res.ground_distance.shape == (3, 3)
    assert np.all(np.diag(res.ground_distance) == 0)
    assert "C1" in res.table()


def _linear_members(weights):
    mods = []
    for w in weights:
        m = torch.nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            m.bias.zero_()
        mods.append(m)
    return mods


def test_planted_clusters_from_modules_are_symmetry_free():
    rng = np.random.default_rng(1)
    a = np.array([[1.0, 0.0], [-1.0, 0.0]])   # class by sign of x0
    b = np.array([[0.0, 1.0], [0.0, -1.0]])   # class by sign of x1
    weights = [a * rng.uniform(0.5, 3.0) for _ in range(12)] + \
              [b * rng.uniform(0.5, 3.0) for _ in range(6)]  # rescaling: same function
    probe = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    x = rng.uniform(-1, 1, (50, 2)).astype(np.float32)
    y = (x[:, 0] < 0).astype(np.int64)
    res = fb.cluster_solutions(_linear_members(weights), probe, data=(x, y), llc=None)
    assert list(res.sizes) == [12, 6]
    assert list(res.labels) == [0] * 12 + [1] * 6
    assert res.mean_accuracy[0] == pytest.approx(1.0)
    assert res.ground_distance[0, 1] == pytest.approx(0.5, abs=0.1)


def test_single_member_cluster_warns_not_crashes():
    rng = np.random.default_rng(2)
    a = np.array([[1.0, 0.0], [-1.0, 0.0]])
    b = np.array([[0.0, 1.0], [0.0, -1.0]])
    mods = _linear_members([a] * 5 + [b])
    probe = rng.uniform(-1, 1, (100, 2)).astype(np.float32)
    with pytest.warns(fb.clusters.ClusterWarning, match="one member"):
        res = fb.cluster_solutions(mods, probe, llc=np.arange(6.0), min_cluster_fraction=0)
    assert res.n_clusters == 2 and list(res.sizes) == [5, 1]
    assert res.llc[0] == pytest.approx(2.0)
    assert res.llc_stderr[0] == pytest.approx(np.std(np.arange(5.0), ddof=1) / math.sqrt(5))


def test_cluster_bad_input():
    probe = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match="at least 2"):
        fb.cluster_solutions(_linear_members([np.eye(2)]), probe)
    with pytest.raises(ValueError, match="3 features per row but the models take 2"):
        fb.cluster_solutions(_linear_members([np.eye(2)] * 3), np.zeros((10, 3)))
    mixed = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)]
    with pytest.raises(ValueError, match="differ in architecture"):
        fb.cluster_solutions(mixed, probe)
    with pytest.raises(ValueError, match="threshold"):
        fb.cluster_solutions(_linear_members([np.eye(2)] * 3), probe, threshold=-1)
    with pytest.raises(TypeError, match="models_or_params"):
        fb.cluster_solutions("nope", probe)


# --- distances: properties -------------------------------------------------------------------


masses = st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=8).filter(
    lambda v: sum(v) > 1e-6)


@settings(max_examples=60, deadline=None)
@given(masses, st.floats(0.01, 50.0))
def test_tempered_masses_are_probability_vectors(p, e):
    q = tempered_masses(p, np.full(len(p), e))
    assert np.all(q >= 0) and math.isclose(q.sum(), 1.0, rel_tol=1e-9)
    assert np.all(q[np.asarray(p) == 0] == 0)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8).flatmap(lambda k: st.tuples(
    st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-6),
    st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-6))))
def test_divergence_properties(pq):
    p, q = pq
    assert kl_divergence(p, q) >= 0
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-12)
    assert 0 <= js_divergence(p, q) <= math.log(2) + 1e-12
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    k = len(p)
    ground = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).astype(float)
    w = wasserstein_masses(p, q, ground)
    assert w >= 0 and wasserstein_masses(p, p, ground) == pytest.approx(0.0, abs=1e-9)
    # on a line with unit spacing W1 is the L1 distance of the cumulative masses
    pn, qn = np.asarray(p) / sum(p), np.asarray(q) / sum(q)
    assert w == pytest.approx(np.abs(np.cumsum(pn - qn)).sum(), abs=1e-6)  # LP tolerance


def test_disjoint_supports():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert np.isfinite(kl_divergence([1, 0], [0, 1]))


# --- known answer: a regular quadratic model --------------------------------------------------


def _norm_cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _cluster_result_by_cut(ens, cut, probe):
    """Two clusters of f(x) = w x split at w = cut (representatives at cut -/+ 0.1)."""
    from fractaldiff.bayes.clusters import ClusterResult

    w = ens.params["weight"][:, 0, 0].numpy().astype(float)
    labels = (w > cut).astype(np.int64)
    sig = w[:, None] * probe[None, :, 0]
    reps = np.array([[cut - 0.1], [cut + 0.1]]) * probe[None, :, 0]
    N = len(w)
    return ClusterResult(
        labels=labels, sizes=np.bincount(labels, minlength=2), masses=np.bincount(
            labels, minlength=2) / N, representatives=np.array([0, 1]),
        representative_signatures=reps, ground_distance=np.array([[0, 0.2], [0.2, 0]]),
        metric="euclidean", threshold=None, n_clusters_requested=2,
        mean_loss=np.full(2, np.nan), mean_accuracy=np.full(2, np.nan),
        llc=np.full(2, 0.5), llc_stderr=np.zeros(2), member_llc=np.full(N, 0.5),
        member_llc_stderr=np.zeros(N), signatures=sig)


def test_compare_posterior_known_answer_quadratic():
    rng = np.random.default_rng(3)
    n, B, lr, prior_std = 200, 10, 0.02, 10.0
    x = rng.standard_normal(n).astype(np.float32)
    y = (0.5 * x + rng.standard_normal(n)).astype(np.float32)
    X = x[:, None]
    ens = ft.train_ensemble(lambda s: torch.nn.Linear(1, 1, bias=False), (X, y), 400,
                            lr=lr, batch_size=B, steps=600, loss="mse", seed=0,
                            sampling="independent")
    xd, yd = x.astype(float), y.astype(float)
    sxx, sxy = np.mean(xd * xd), np.mean(xd * yd)
    w_hat = sxy / sxx
    # SGD stationary law for small lr: AR(1) around w_hat with the minibatch gradient noise of
    # independent batches (B distinct examples each)
    g = w_hat * xd * xd - xd * yd
    s2 = np.var(g) / B * (n - B) / (n - 1)
    var_sgd = lr * lr * s2 / (2 * lr * sxx - lr * lr * (sxx * sxx + np.var(xd * xd) / B))
    # Gaussian posterior at nβ = n with the N(0, prior_std²) prior
    prec = n * sxx + 1 / prior_std ** 2
    mu, sd = n * sxy / prec, 1 / math.sqrt(prec)
    cut = w_hat + 0.7 * math.sqrt(var_sgd)
    probe = np.array([[1.0], [-0.5]], dtype=np.float32)
    cl = _cluster_result_by_cut(ens, cut, probe)
    res = fb.compare_posterior(ens, probe_inputs=probe, clusters=cl, loss="mse", d_s=1.0,
                               sgld_steps=300, sgld_burnin=60, sgld_thin=20,
                               sgld_step_size=2e-3, sgld_batch_size=None,
                               prior_std=prior_std, n_bootstrap=50, xis=[0.5, 1.0, 2.0])
    p_sgd_true = 1 - _norm_cdf((cut - w_hat) / math.sqrt(var_sgd))
    p_bayes_true = 1 - _norm_cdf((cut - mu) / sd)
    # stated tolerances: 0.06 for SGD (400 members, small-lr approximation), 0.04 for the
    # posterior (400 chains x 12 thinned samples, SGLD bias ~ eps*kappa/4 = 10 % in variance)
    assert res.p_sgd[1] == pytest.approx(p_sgd_true, abs=0.06)
    assert res.p_bayes[1] == pytest.approx(p_bayes_true, abs=0.04)
    print(f"P_SGD {res.p_sgd[1]:.3f} (closed form {p_sgd_true:.3f}), P_Bayes {res.p_bayes[1]:.3f} "
          f"(closed form {p_bayes_true:.3f})")
    assert p_bayes_true - p_sgd_true > 0.1  # the two laws differ: the test discriminates
    assert res.settings["nbeta"] == n
    assert res.raw["kl"]["value"] > 0


def test_reshuffling_sgd_is_narrower_than_langevin():
    # random reshuffling: an epoch's gradient noise sums to zero, so at epoch ends the iterates
    # are far less spread than independent minibatches give (documented in train_ensemble)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 1)).astype(np.float32)
    y = (0.5 * x[:, 0] + rng.standard_normal(200)).astype(np.float32)
    sd = {}
    for sampling in ("reshuffle", "independent"):
        ens = ft.train_ensemble(lambda s: torch.nn.Linear(1, 1, bias=False), (x, y), 200,
                                lr=0.02, batch_size=10, steps=400, loss="mse",
                                sampling=sampling)
        sd[sampling] = float(ens.params["weight"].std())
    assert sd["reshuffle"] < 0.3 * sd["independent"]


# --- a small moons run end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_moons_ensemble():
    pytest.importorskip("sklearn")
    data = ft.two_moons(300, seed=0)
    return ft.train_ensemble(lambda s: ft.mlp(2, 2, width=8, depth=1, batch_norm=False,
                                              seed=s), data, 16, lr=0.2, batch_size=24,
                             epochs=8)


def test_compare_posterior_moons_smoke(small_moons_ensemble, tmp_path):
    import json

    ens = small_moons_ensemble
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fb.compare_posterior(ens, sgld_steps=60, sgld_burnin=20, sgld_thin=20,
                                   n_bootstrap=20, llc_members=2,
                                   llc_kwargs={"n_draws": 60, "n_burnin": 20},
                                   xis=np.geomspace(0.1, 2, 8))
    K = res.clusters.n_clusters
    for p in (res.p_sgd, res.p_bayes, *res.p_tempered):
        assert p.shape == (K,) and np.isclose(p.sum(), 1.0) and (p >= 0).all()
    assert res.kl.shape == (8,) and (res.kl >= 0).all() and (res.js <= math.log(2)).all()
    assert res.kl_ci.shape == (8, 2)
    assert 0.1 <= res.best_xi <= 2
    assert "Bayes vs tempered SGD" in res.table()
    json.dumps(res.to_dict())
    res1 = res.with_m(1)
    assert res1.m == 1 and np.array_equal(res1.p_bayes, res.p_bayes)
    pytest.importorskip("matplotlib")
    res.plot(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_compare_posterior_batchnorm_members():
    # BatchNorm members: every chain evaluates with its own member's running statistics
    pytest.importorskip("sklearn")
    data = ft.two_moons(200, seed=2)
    ens = ft.train_ensemble(lambda s: ft.mlp(2, 2, width=6, depth=2, seed=s), data, 8,
                            lr=0.1, batch_size=32, steps=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fb.compare_posterior(ens, llc_members=2, sgld_steps=30, sgld_burnin=10,
                                   sgld_thin=10, n_bootstrap=10, xis=[0.5, 1.0],
                                   llc_kwargs={"n_chains": 3, "n_draws": 30, "n_burnin": 10})
    assert np.isfinite(res.clusters.llc).all()
    assert np.isclose(res.p_bayes.sum(), 1.0)


def test_compare_posterior_bad_input(small_moons_ensemble):
    ens = small_moons_ensemble
    with pytest.raises(ValueError, match="ξ must be finite and > 0"):
        fb.compare_posterior(ens, xis=[0.5, 0.0])
    with pytest.raises(TypeError, match="train_ensemble result"):
        fb.compare_posterior([1, 2])
    with pytest.raises(ValueError, match="sgld_burnin"):
        fb.compare_posterior(ens, sgld_steps=10, sgld_burnin=10)
    with pytest.raises(ValueError, match="features per row"):
        fb.compare_posterior(ens, probe_inputs=np.zeros((5, 3)))


def test_compare_posterior_rejects_bad_sgld_options():
    import fractaldiff.bayes as fb
    import fractaldiff.train as ft

    data = ft.two_moons(200, seed=0)
    ens = ft.train_ensemble(lambda s: ft.mlp(2, 2, width=4, depth=1, batch_norm=False, seed=s),
                            data, 4, lr=0.1, batch_size=32, steps=5)
    with pytest.raises(ValueError, match="sgld_batch_size"):
        fb.compare_posterior(ens, sgld_batch_size=0)
    with pytest.raises(TypeError, match="n_chains"):
        fb.compare_posterior(ens, n_chains=2.7)
    with pytest.raises(TypeError, match="seed"):
        fb.compare_posterior(ens, seed=None)


def test_train_ensemble_rejects_bad_seeds_and_options():
    import fractaldiff.train as ft

    data = ft.two_moons(200, seed=0)

    def make(s):
        return ft.mlp(2, 2, width=4, depth=1, batch_norm=False, seed=s)

    with pytest.raises(TypeError, match="seeds must hold ints"):
        ft.train_ensemble(make, data, 2, seeds=[0, 0.5], lr=0.1, batch_size=32, steps=2)
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        ft.train_ensemble(make, data, 2, seeds=3, lr=0.1, batch_size=32, steps=2)
    with pytest.raises(ValueError, match="displacement_points"):
        ft.train_ensemble(make, data, 2, lr=0.1, batch_size=32, steps=2, displacement_points=-1)
    with pytest.raises(ValueError, match="betas"):
        ft.train_ensemble(make, data, 2, optimizer="adam", lr=0.1, batch_size=32, steps=2,
                          betas=(0.9, 1.5))
