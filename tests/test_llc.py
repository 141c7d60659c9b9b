"""fractaldiff.bayes: LLC by localized SGLD, its validation on known learning coefficients,
grid_llc, calibration, trajectories and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fractaldiff as fd  # noqa: E402
from fractaldiff.bayes import (  # noqa: E402
    LLCResult,
    LLCWarning,
    calibrate_llc,
    estimate_llc,
    grid_llc,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small batched problems: one intra-op thread is fastest and robust on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Recommended settings for small analytic potentials (docs/llc.md): nβ = 100 (1000 for the
# reduced-rank regression), γ = 1 << nβ a, ε with ε κ / 4 = 0.01 for the stiffest direction
# (κ = 2 nβ + γ), 64 chains (nearly free when batched), 3000 steps of which 1000 burn-in.
NB, GAMMA, EPS = 100.0, 1.0, 2e-4
RUN = dict(nbeta=NB, localization=GAMMA, step_size=EPS, n_chains=64, n_draws=3000,
           n_burnin=1000, seed=0, warn=False)


def quad(w):
    return (w**2).sum()


def quartic(w):
    return w[0] ** 4


def quad_quartic(w):
    return w[0] ** 2 + w[1] ** 4


def crossing(w):
    return w[0] ** 2 * w[1] ** 2


def rrr(w):
    """Reduced-rank regression at the zero map, population loss with x ~ N(0, I):
    K = ½ ||B A||_F², A: 3 x 5, B: 5 x 3 (M = 5, H = 3, N = 5, r = 0 -> λ = 6.5)."""
    a = w[:15].reshape(3, 5)
    b = w[15:].reshape(5, 3)
    return 0.5 * ((b @ a) ** 2).sum()


def aoyagi_watanabe(M: int, H: int, N: int, r: int) -> float:
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        lam = (2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2) / 8
        return lam + (1 / 8 if (M + H + N + r) % 2 else 0)
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    return M * N / 2


def test_aoyagi_watanabe_example():
    assert aoyagi_watanabe(5, 3, 5, 0) == 6.5


@pytest.mark.parametrize("d", [1, 4, 20])
def test_regular_quadratic(d):
    r = estimate_llc(quad, torch.zeros(d, dtype=torch.float64), **RUN)
    assert isinstance(r, LLCResult)
    assert abs(r.mean - d / 2) <= 0.10 * d / 2
    assert r.loss_trace.shape == (64, 3000)
    assert not r.diagnostics["flags"]["diverged"]


@pytest.mark.parametrize(
    "fn, d, lam",
    [(quartic, 1, 0.25), (quad_quartic, 2, 0.75)],
    ids=["w1^4", "w1^2+w2^4"],
)
def test_singular_monomials(fn, d, lam):
    r = estimate_llc(fn, torch.zeros(d, dtype=torch.float64), **RUN)
    assert abs(r.mean - lam) <= 0.15 * lam
    # and the exact finite-nβ value of the same quantity, from the grid
    g = grid_llc(fn, np.zeros(d), 1.5, nbeta=NB, localization=GAMMA,
                 n_points=20001 if d == 1 else 601)
    assert abs(r.mean - g.llc) <= max(0.15 * g.llc, 3 * r.stderr)


def test_normal_crossing_log_correction():
    # K = w1² w2²: λ = 1/2 with multiplicity 2, so at finite nβ the tempered value is
    # λ - O(1 / log nβ): 0.354 at nβ = 100, γ = 1 (grid, exact). SGLD at these settings sits
    # about 10 % below that value (256 chains, seeds 0-7: 0.307-0.328, mean 0.319 ± 0.010
    # each; the chains mix slowly along the two axes of the singular set), so the tolerance
    # is 20 %, with 256 chains to keep the scatter well inside it. Against the closed form
    # 1/2 the honest statement is "below 1/2, above 1/2 - 1.5 / log nβ" (the log correction).
    r = estimate_llc(crossing, torch.zeros(2, dtype=torch.float64), **{**RUN, "n_chains": 256})
    g = grid_llc(crossing, np.zeros(2), 5.0, nbeta=NB, localization=GAMMA, n_points=801)
    assert abs(r.mean - g.llc) <= 0.20 * g.llc
    assert 0.5 - 1.5 / math.log(NB) < r.mean < 0.5


def test_reduced_rank_regression():
    lam = aoyagi_watanabe(5, 3, 5, 0)
    r = estimate_llc(rrr, torch.zeros(30, dtype=torch.float64), nbeta=1000.0,
                     localization=GAMMA, step_size=1e-4, n_chains=64, n_draws=3000,
                     n_burnin=1000, seed=0, warn=False)
    assert abs(r.mean - lam) <= 0.15 * lam


@pytest.mark.parametrize(
    "fn, d, lam, radius",
    [(quad, 1, 0.5, 1.0), (quad, 3, 1.5, 0.5), (quartic, 1, 0.25, 1.5),
     (quad_quartic, 2, 0.75, 1.5)],
    ids=["w1^2", "|w|^2 d=3", "w1^4", "w1^2+w2^4"],
)
def test_grid_llc_closed_forms(fn, d, lam, radius):
    g = grid_llc(fn, np.zeros(d), radius, nbeta=1000.0, localization=0.0,
                 n_points={1: 20001, 2: 801, 3: 121}[d])
    assert abs(g.volume_exponent - lam) <= 0.02 * lam
    assert abs(g.llc - lam) <= 0.02 * lam  # γ = 0, nβ = 1000: the tempered value is λ
    assert g.boundary_mass < 1e-4


def test_grid_llc_quadratic_exact_finite_nbeta():
    # p ∝ exp(-(2 nβ + γ) w²/2): nβ E[w²] = nβ / (2 nβ + γ) per coordinate
    g = grid_llc(quad, [0.0, 0.0], 0.6, nbeta=50.0, localization=10.0, n_points=801)
    assert g.llc == pytest.approx(2 * 50.0 / (100.0 + 10.0), rel=1e-4)


def test_grid_llc_crossing_volume_has_log_correction():
    g = grid_llc(crossing, [0.0, 0.0], 4.0, nbeta=100.0, n_points=1201)
    assert 0.3 < g.volume_exponent < 0.5


# --- properties ----------------------------------------------------------------------------

hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_rotation_invariance(seed):
    d = 3
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    R = torch.as_tensor(q)
    H = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))

    def k_plain(w):
        return w @ H @ w

    def k_rot(w):
        v = R.T @ w
        return v @ H @ v

    kw = dict(nbeta=NB, localization=GAMMA, step_size=1e-4, n_chains=32, n_draws=1500,
              n_burnin=500, warn=False)
    a = estimate_llc(k_plain, torch.zeros(d, dtype=torch.float64), seed=1, **kw)
    b = estimate_llc(k_rot, torch.zeros(d, dtype=torch.float64), seed=2, **kw)
    assert abs(a.mean - b.mean) <= 4 * math.hypot(a.stderr, b.stderr)
    assert abs(a.mean - 1.5) < 0.15 * 1.5


@settings(max_examples=5, deadline=None)
@given(c=st.floats(0.05, 20.0))
def test_loss_scale_and_nbeta_compensate(c):
    kw = dict(localization=GAMMA, step_size=1e-4, n_chains=4, n_draws=300, n_burnin=100,
              seed=3, warn=False)
    a = estimate_llc(quad_quartic, torch.zeros(2, dtype=torch.float64), nbeta=NB, **kw)
    b = estimate_llc(lambda w: c * quad_quartic(w), torch.zeros(2, dtype=torch.float64),
                     nbeta=NB / c, **kw)
    assert b.mean == pytest.approx(a.mean, rel=1e-6, abs=1e-9)


# --- models and data -----------------------------------------------------------------------


def _moons_model(bn=False, steps=300, seed=0):
    pytest.importorskip("sklearn")  # the moons generator
    from fractaldiff.train import mlp, two_moons

    ds = two_moons(300, noise=0.1)
    model = mlp(2, 2, width=8, batch_norm=bn, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x = torch.as_tensor(ds.x_train)
    y = torch.as_tensor(ds.y_train)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model, ds


SMALL = dict(step_size=1e-4, localization=10.0, n_chains=4, n_draws=120, n_burnin=20,
             batch_size=32, seed=0, warn=False)


def test_module_entry_and_result_api():
    model, ds = _moons_model()
    r = estimate_llc(model, ds, **SMALL)
    assert r.settings["n"] == ds.n_train
    assert r.settings["nbeta"] == pytest.approx(ds.n_train / math.log(ds.n_train))
    assert r.per_chain.shape == (4,) and r.loss_trace.shape == (4, 120)
    assert r.draws.shape == (4, 100)
    assert r.stderr == pytest.approx(r.per_chain.std(ddof=1) / 2)
    x = torch.as_tensor(ds.x_train)
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(ds.y_train))
    assert r.init_loss == pytest.approx(float(full), rel=1e-3)
    assert np.all((r.acceptance >= 0) & (r.acceptance <= 1))
    est = r.as_estimate()
    assert isinstance(est, fd.Estimate) and est.value == r.mean
    exps = fd.DiffusionExponents.from_msd_exponent(0.5, 0.05)
    assert fd.spectral_dimension(est, exps).value == pytest.approx(0.5 * r.mean)
    import matplotlib

    matplotlib.use("Agg")
    assert r.plot() is not None
    assert "λ̂" in repr(r)
    assert model.training is False  # restored (it was in eval mode)


def test_data_forms_agree():
    model, ds = _moons_model()
    x, y = ds.x_train, ds.y_train
    a = estimate_llc(model, ds, **SMALL)
    b = estimate_llc(model, (torch.as_tensor(x), torch.as_tensor(y)), **SMALL)
    c = estimate_llc(model, (x, y), **SMALL)
    d = estimate_llc(model, torch.utils.data.TensorDataset(torch.as_tensor(x),
                                                           torch.as_tensor(y)), **SMALL)
    assert a.mean == b.mean == c.mean == d.mean


def test_bmm_program_matches_vmap_with_batchnorm():
    model, ds = _moons_model(bn=True)
    a = estimate_llc(model, ds, backend="auto", **SMALL)
    b = estimate_llc(model, ds, backend="vmap", **SMALL)
    assert a.settings["backend"] == "bmm" and b.settings["backend"] == "vmap"
    np.testing.assert_allclose(a.per_chain, b.per_chain, rtol=1e-3, atol=1e-3)


def _nets():
    nn = torch.nn
    torch.manual_seed(3)
    frozen = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4))
    frozen[0].weight.requires_grad_(False)
    bn = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3),
                       nn.Linear(6, 4, bias=False))
    bn_plain = nn.Sequential(nn.Flatten(), nn.Linear(3, 5), nn.BatchNorm1d(5, affine=False),
                             nn.Sigmoid(), nn.Identity(), nn.Linear(5, 4))
    bn_first = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
    for m in (bn[1], bn_plain[2], bn_first[0]):  # non-trivial running statistics
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    return {"tanh+frozen": frozen, "bn+relu+dropout": bn, "flatten+bn(no affine)+sigmoid":
            bn_plain, "bn before the first linear": bn_first}


@pytest.mark.parametrize("name", ["tanh+frozen", "bn+relu+dropout",
                                  "flatten+bn(no affine)+sigmoid", "bn before the first linear"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_written_backward_matches_autograd(name, loss, dtype):
    from fractaldiff.bayes._engine import make_module_potential

    model = _nets()[name].to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (40,), generator=g) if loss == "cross_entropy" else \
        torch.randn(40, 4, generator=g, dtype=dtype)
    manual, w0 = make_module_potential(model, (x, y), loss, "cpu", "test")
    auto, _ = make_module_potential(model, (x, y), loss, "cpu", "test", backend="vmap")
    assert manual.manual_grad and not auto.manual_grad
    W = w0 + 0.1 * torch.randn(5, w0.numel(), generator=g, dtype=dtype)
    idx = torch.randint(0, 40, (5, 16), generator=g)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for i in (idx, None):  # per-chain batches, and the full data shared by every chain
        L1, G1 = manual.value_and_grad(W, i)
        L2, G2 = auto.value_and_grad(W, i)
        torch.testing.assert_close(L1, L2, **tol)
        torch.testing.assert_close(G1, G2, **tol)


def test_hand_written_backward_not_used_for_other_activations():
    from fractaldiff.bayes._engine import make_module_potential

    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 2))
    x, y = torch.randn(10, 2), torch.randint(0, 2, (10,))
    pot, _ = make_module_potential(model, (x, y), "cross_entropy", "cpu", "test")
    assert pot.backend == "bmm" and not pot.manual_grad


def test_mse_and_callable_loss():
    torch.manual_seed(0)
    x = torch.randn(200, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(200, 1)
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():  # the least-squares solution: a minimum
        xa = torch.cat([x, torch.ones(200, 1)], 1)
        sol = torch.linalg.lstsq(xa, y).solution
        model.weight.copy_(sol[:3].T)
        model.bias.copy_(sol[3])
    kw = dict(step_size=1e-4, localization=1.0, n_chains=8, n_draws=600, n_burnin=100,
              nbeta=200.0, seed=0, warn=False)
    a = estimate_llc(model, (x, y), loss="mse", **kw)
    b = estimate_llc(model, (x, y), loss=lambda o, t: 0.5 * ((o - t) ** 2).sum(1).mean(), **kw)
    assert a.mean == pytest.approx(b.mean, rel=1e-4)
    # a regular model with d = 4 parameters and unit-noise Gaussian loss: λ = d/2 (the loss
    # is ½ (residual)² with noise sd 0.1, so curvature is large; λ is still 2)
    assert abs(a.mean - 2.0) < 0.25 * 2.0


def test_diagnostics_flag_not_a_minimum():
    pytest.importorskip("sklearn")
    from fractaldiff.train import mlp, two_moons

    ds = two_moons(300)
    model = mlp(2, 2, width=8, batch_norm=False, seed=1)  # untrained: not a minimum
    with pytest.warns(LLCWarning):
        r = estimate_llc(model, ds, step_size=1e-3, localization=1.0, n_chains=4, n_draws=200,
                         n_burnin=20, batch_size=64, seed=0)
    flags = r.diagnostics["flags"]
    assert flags["negative"] or flags["below_init"] or flags["not_converged"]
    assert not r.healthy


def test_diagnostics_flag_divergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = estimate_llc(quartic, torch.zeros(1, dtype=torch.float64), nbeta=1e4,
                         step_size=1.0, n_chains=3, n_draws=50, n_burnin=10, warn=False)
    assert r.diagnostics["flags"]["diverged"]


def test_calibrate_and_auto_step():
    cal = calibrate_llc(quad, torch.zeros(4, dtype=torch.float64), nbeta=NB, n_draws=600,
                        n_burnin=200)
    assert cal.ok
    kappa = 2 * NB + 1.0
    assert 1e-5 <= cal.step_size and cal.step_size * kappa / 4 < 0.1
    assert len(cal.table) == 11 and "stable" in repr(cal)
    r = estimate_llc(quad, torch.zeros(4, dtype=torch.float64), nbeta=NB, step_size="auto",
                     n_chains=16, n_draws=1500, n_burnin=500, warn=False, seed=0)
    assert r.settings["step_size"] == r.diagnostics["calibration"].step_size
    assert r.settings["step_size"] * kappa / 4 < 0.1
    assert abs(r.mean - 2.0) < 0.15 * 2.0


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=-1e-3), "step_size"),
        (dict(localization=-1.0), "localization"),
        (dict(n=1, nbeta=None), "n "),
        (dict(n_draws=100, n_burnin=100), "n_draws"),
        (dict(n_chains=0), "n_chains"),
        (dict(nbeta=0.0), "nbeta"),
        (dict(step_size="big"), "step_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    base = dict(n=100, n_draws=20, n_burnin=5, step_size=1e-3, warn=False)
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        estimate_llc(quad, torch.zeros(2), **base)


def test_bad_inputs_named():
    with pytest.raises(ValueError, match="not finite"):
        estimate_llc(lambda w: torch.log(w[0]) + w.sum() * 0, torch.zeros(2), n=100)
    with pytest.raises(ValueError, match="scalar"):
        estimate_llc(lambda w: w**2, torch.zeros(2), n=100)
    with pytest.raises(ValueError, match="w0"):
        estimate_llc(quad, torch.tensor([0.0, float("nan")]), n=100)
    pytest.importorskip("sklearn")
    from fractaldiff.train import two_moons

    ds = two_moons(100)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        estimate_llc(model, ds, batch_size=10_000)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        estimate_llc(frozen, ds)
    with pytest.raises(ValueError, match="scalar"):
        estimate_llc(model, ds, loss=lambda o, t: o.sum(1))
    with pytest.raises(TypeError, match="data"):
        estimate_llc(model)
    with pytest.raises(TypeError, match="n \\(the data-set size"):
        estimate_llc(quad, torch.zeros(2))
    nan_model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        nan_model.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="starting point"):
        estimate_llc(nan_model, ds)


def test_progress_bar_and_float32_loss_fn():
    pytest.importorskip("tqdm")
    r = estimate_llc(quad, torch.zeros(3, dtype=torch.float32), n=500, step_size=1e-4,
                     n_chains=2, n_draws=30, n_burnin=10, progress=True, warn=False)
    assert r.loss_trace.dtype == np.float64 and np.isfinite(r.mean)
    assert r.settings["nbeta"] == pytest.approx(500 / math.log(500))


def test_n_threads_is_scoped():
    before = torch.get_num_threads()
    estimate_llc(quad, torch.zeros(2), n=100, n_threads=1, n_draws=20, n_burnin=5, warn=False)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n_threads"):
        estimate_llc(quad, torch.zeros(2), n=100, n_threads=0)
