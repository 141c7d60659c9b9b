"""The fused SGLD update (_core.sgld_step) against its numpy reference, its Gaussian stream's
statistics, its argument checks, and the LLC engine with and without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import fractaldiff._core as core

import reference as ref

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def run(w, center, grad, nbeta, gamma, eps, seed, step, n_threads=1, out=None):
    grad = grad.copy()
    out = np.empty_like(w) if out is None else out
    vir = np.zeros(w.shape[0])
    status = core.sgld_step(w, center, grad, out, np.asarray(nbeta, float),
                            np.asarray(gamma, float), np.asarray(eps, float), seed, step, vir,
                            n_threads)
    assert status == 0
    return out, grad, vir


def noise(seed, step, C, D, dtype=np.float64):
    z = np.zeros((C, D), dtype)
    return run(z, z, z, np.zeros(C), np.zeros(C), np.ones(C), seed, step)[0]


@SETTINGS
@given(C=st.integers(1, 4), D=st.integers(1, 1300), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**64 - 1), step=st.integers(0, 2**40), data=st.data())
def test_matches_reference(simd_level, C, D, dtype, seed, step, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    w, center, grad = (rng.standard_normal((C, D)).astype(dtype) for _ in range(3))
    nbeta = rng.uniform(0, 1e3, C)
    gamma = rng.uniform(0, 1e2, C)
    eps = 10.0 ** rng.uniform(-7, 0, C)
    out, drift, vir = run(w, center, grad, nbeta, gamma, eps, seed, step)
    r_out, r_drift, r_vir = ref.sgld_step(w, center, grad, nbeta, gamma, eps, seed, step)
    tol = 1e-12 if dtype == "float64" else 2e-6
    scale = np.abs(r_drift).max() + 1.0
    np.testing.assert_allclose(drift, r_drift, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(vir, r_vir, rtol=tol * 10, atol=tol * 10 * D * scale ** 2)
    # w_out: the drift term's rounding (ε/2 drift) and the noise's (√ε ξ, ξ to ~1e-7 in float32)
    atol = tol * (np.abs(w).max() + 0.5 * eps.max() * scale + 7 * math.sqrt(eps.max()))
    np.testing.assert_allclose(out, r_out, rtol=tol, atol=atol)


@SETTINGS
@given(C=st.integers(1, 3), D=st.integers(1, 2000), seed=st.integers(0, 2**64 - 1),
       step=st.integers(0, 2**62))
def test_noise_is_the_reference_stream(simd_level, C, D, seed, step):
    np.testing.assert_allclose(noise(seed, step, C, D), ref.sgld_noise(seed, step, C, D),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(noise(seed, step, C, D, np.float32),
                               ref.sgld_noise(seed, step, C, D), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(C=st.integers(1, 6), D=st.integers(1, 3000), seed=st.integers(0, 2**64 - 1))
def test_thread_count_and_in_place_do_not_change_results(C, D, seed):
    rng = np.random.default_rng(seed % 2**32)
    w, center, grad = (rng.standard_normal((C, D)) for _ in range(3))
    args = (np.full(C, 50.0), np.full(C, 3.0), np.full(C, 1e-3), seed, 7)
    a = run(w, center, grad, *args, n_threads=1)
    b = run(w, center, grad, *args, n_threads=2)
    w2 = w.copy()
    c = run(w2, center, grad, *args, n_threads=2, out=w2)  # w_out is w itself
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[0], w2)


def test_simd_levels_agree():
    rng = np.random.default_rng(3)
    w, center, grad = (rng.standard_normal((3, 1500)).astype(np.float32) for _ in range(3))
    args = (np.full(3, 10.0), np.full(3, 1.0), np.full(3, 1e-2), 11, 2)
    previous = core.simd_level()
    try:
        outs = []
        for level in core.available_simd_levels():
            core.set_simd_level(level)
            outs.append(run(w, center, grad, *args))
    finally:
        core.set_simd_level(previous)
    scale = np.abs(outs[0][1]).max()  # levels differ by FMA contraction: float32 rounding
    for o in outs[1:]:
        np.testing.assert_allclose(o[0], outs[0][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(o[1], outs[0][1], rtol=1e-6, atol=1e-6 * scale)
        np.testing.assert_allclose(o[2], outs[0][2], rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_statistics(dtype):
    # 4 chains x 2^20 draws: N(0, 1) by Kolmogorov-Smirnov, moments, tails, and no correlation
    # between chains, steps, neighbours or the two halves of a Box-Muller pair
    C, D = 4, 1 << 20
    z = noise(2026, 0, C, D, dtype).astype(np.float64)
    x = z.ravel()
    n = x.size
    assert stats.kstest(x, "norm").pvalue > 1e-4
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(x)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < 5 * math.sqrt(24 / n)
    tail = np.mean(np.abs(x) > 3)
    p3 = 2 * stats.norm.sf(3)
    assert abs(tail - p3) < 5 * math.sqrt(p3 / n)
    assert np.abs(x).max() < 6.7  # the 32-bit u1 bounds |ξ| by 6.66
    z2 = noise(2026, 1, C, D, dtype).astype(np.float64)
    lim = 5 / math.sqrt(D)
    for a, b in [(z[0], z[1]), (z[0], z2[0]), (z[0][:-1], z[0][1:]),
                 (z[0].reshape(-1, 512)[:, :256], z[0].reshape(-1, 512)[:, 256:])]:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < lim
    # different seeds give different streams
    assert not np.array_equal(noise(1, 0, 1, 64), noise(2, 0, 1, 64))


def test_update_moments():
    # from w = w* with γ = 0 and no gradient: w' - w* ~ N(0, ε) per coordinate
    C, D = 8, 1 << 16
    z = np.zeros((C, D))
    eps = np.linspace(1e-4, 1.0, C)
    out, drift, vir = run(z, z, z, np.ones(C), np.zeros(C), eps, 5, 0)
    np.testing.assert_allclose(out.var(axis=1) / eps, 1.0, atol=5 * math.sqrt(2 / D))
    assert np.all(drift == 0) and np.all(vir == 0)


# --- bad input -----------------------------------------------------------------------------

def _good(C=2, D=5, dtype=np.float64):
    return dict(w=np.zeros((C, D), dtype), center=np.zeros((C, D), dtype),
                grad=np.zeros((C, D), dtype), w_out=np.zeros((C, D), dtype),
                nbeta=np.ones(C), gamma=np.ones(C), eps=np.full(C, 1e-3), seed=0, step=0,
                virial=np.zeros(C))


@pytest.mark.parametrize("change, match", [
    (dict(center=np.zeros((2, 5), np.float32)), "center must have the dtype of w"),
    (dict(grad=np.zeros((3, 5))), "grad must have the shape of w"),
    (dict(w=np.zeros(5)), "w must be 2-D"),
    (dict(w=np.zeros((2, 5), np.int64)), "w must be native-endian float32 or float64"),
    (dict(w_out=np.zeros((2, 10))[:, ::2]), "w_out must have contiguous rows"),
    (dict(eps=np.array([1e-3, 0.0])), "eps must hold finite values > 0"),
    (dict(nbeta=np.array([1.0, np.nan])), "nbeta must hold finite values >= 0"),
    (dict(gamma=np.array([-1.0, 1.0])), "gamma must hold finite values >= 0"),
    (dict(eps=np.ones(3)), "eps must be 1-D of length 2"),
    (dict(step=-1), "step must be >= 0"),
    (dict(virial=np.zeros(2, np.float32)), "virial must be a writable C-contiguous float64"),
    (dict(w="w"), "w must be a numpy array"),
])
def test_bad_arguments(change, match):
    kw = {**_good(), **change}
    with pytest.raises(ValueError, match=match):
        core.sgld_step(**kw)


def test_read_only_output_refused():
    kw = _good()
    kw["grad"].flags.writeable = False
    with pytest.raises(ValueError, match="grad is read-only"):
        core.sgld_step(**kw)


# --- the engine with and without the fused update ------------------------------------------

def test_llc_engine_fused_and_tensor_paths_agree(monkeypatch):
    torch = pytest.importorskip("torch")
    import fractaldiff.bayes._engine as engine
    from fractaldiff.bayes import estimate_llc

    def quad(w):
        return (w**2).sum()

    kw = dict(nbeta=100.0, localization=1.0, step_size=2e-4, n_chains=64, n_draws=2000,
              n_burnin=500, warn=False)
    res = {}
    for fused in (True, False):
        monkeypatch.setattr(engine, "_FUSED_CPU_STEP", fused)
        res[fused] = [estimate_llc(quad, torch.zeros(4, dtype=dt), seed=1, **kw)
                      for dt in (torch.float64, torch.float32)]
    for a, b in zip(res[True], res[False]):
        # same posterior (λ = 2), different Gaussian streams
        assert abs(a.mean - 2.0) < 0.1 * 2.0 and abs(b.mean - 2.0) < 0.1 * 2.0
        assert abs(a.mean - b.mean) < 4 * math.hypot(a.stderr, b.stderr)
        assert a.diagnostics["flags"] == b.diagnostics["flags"]
