"""Tests for fractaldiff.fitting: exponent fits, crossovers, local slopes, named exponents."""

from __future__ import annotations

import functools
import math
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractaldiff.fitting import (
    Crossover,
    DiffusionExponents,
    ExponentFit,
    UncalibratedStderrWarning,
    crossover,
    fit_displacement,
    fit_exponent,
    fit_msd,
    local_slope,
    tamsd_covariance,
)

from fbm import (
    fgn_autocovariance,
    fractional_brownian_motion,
    time_averaged_msd,
    time_averaged_msd_direct,
)

# --------------------------------------------------------------------------- fBm ensemble

N_SNAPSHOTS = 4096
N_DIMS = 64
N_BLOCKS = 16  # 4 coordinates per parameter block
N_SEEDS = 50
HURSTS = (0.25, 0.5, 0.75)
LAGS = np.arange(1, N_SNAPSHOTS, dtype=np.float64)


@functools.cache
def fbm_block_msds(hurst: float) -> np.ndarray:
    """Per-block time-averaged MSDs of 50 seeds, shape (N_SEEDS, N_BLOCKS, T - 1)."""
    out = np.empty((N_SEEDS, N_BLOCKS, N_SNAPSHOTS - 1))
    for seed in range(N_SEEDS):
        rng = np.random.default_rng([seed, int(round(1000 * hurst))])
        x = fractional_brownian_motion(N_SNAPSHOTS, hurst, N_DIMS, rng)
        out[seed] = time_averaged_msd(x, n_blocks=N_BLOCKS)[:, 1:]
    return out


@pytest.mark.parametrize("hurst", HURSTS)
def test_fbm_generator_is_exact(hurst):
    """The Davies-Harte helper: increments have the fGn autocovariance, and the
    FFT time-averaged MSD equals the direct one."""
    rng = np.random.default_rng(99)
    x = fractional_brownian_motion(65, hurst, 6000, rng)
    steps = np.diff(x, axis=0)  # (64, 6000): columns independent fGn paths
    empirical = [np.mean(steps[: 64 - k] * steps[k:]) for k in range(4)]
    np.testing.assert_allclose(empirical, fgn_autocovariance(np.arange(4), hurst), atol=0.01)
    assert np.all(x[0] == 0)
    small = fractional_brownian_motion(200, hurst, 3, rng)
    lags = np.array([1, 2, 17, 100, 199])
    np.testing.assert_allclose(
        time_averaged_msd(small)[lags], time_averaged_msd_direct(small, lags), rtol=1e-10
    )
    blocks = time_averaged_msd(small, n_blocks=3)
    np.testing.assert_allclose(blocks.sum(axis=0)[1:], time_averaged_msd(small)[1:], rtol=1e-10)


def _coverage_summary(fits, truth):
    estimates = np.array([f.exponent for f in fits])
    covered = np.array([f.ci[0] <= truth <= f.ci[1] for f in fits])
    return estimates, covered.mean()


@pytest.mark.parametrize("hurst", HURSTS)
def test_fbm_default_fit_recovers_2h_with_calibrated_interval(hurst):
    """Default method (OLS) on per-block curves: the documented, recommended route."""
    truth = 2 * hurst
    blocks = fbm_block_msds(hurst)
    fits = [fit_exponent(LAGS, b, n_snapshots=N_SNAPSHOTS, combine_rows="sum") for b in blocks]
    estimates, coverage = _coverage_summary(fits, truth)
    errors = np.abs(estimates - truth)
    assert all(f.stderr_source == "rows" and f.method == "ols" for f in fits)
    assert all(f.window[1] <= 0.1 * N_SNAPSHOTS for f in fits)  # auto window cap
    assert abs(estimates.mean() - truth) <= 0.01
    assert np.mean(errors <= 0.03) >= 0.96
    assert coverage >= 0.90, f"95% CI covered 2H in only {coverage:.0%} of {N_SEEDS} seeds"
    # the interval is not absurdly wide either: stderr matches the seed-to-seed scatter
    mean_stderr = np.mean([f.stderr for f in fits])
    assert 0.6 < mean_stderr / estimates.std(ddof=1) < 1.6


@pytest.mark.parametrize("hurst", HURSTS)
def test_fbm_gls_over_blocks_is_precise_and_calibrated(hurst):
    truth = 2 * hurst
    blocks = fbm_block_msds(hurst)
    fits = [
        fit_exponent(LAGS, b, n_snapshots=N_SNAPSHOTS, combine_rows="sum", method="gls")
        for b in blocks
    ]
    estimates, coverage = _coverage_summary(fits, truth)
    assert np.all(np.abs(estimates - truth) <= 0.03)
    assert coverage >= 0.90


@pytest.mark.parametrize("hurst", HURSTS)
def test_fbm_analytic_covariance_gls_single_curve(hurst):
    """One summed curve, exact fBm covariance (cov='fbm' chosen by effective_dims)."""
    truth = 2 * hurst
    curves = fbm_block_msds(hurst).sum(axis=1)
    fits = [
        fit_exponent(
            LAGS,
            c,
            n_snapshots=N_SNAPSHOTS,
            effective_dims=N_DIMS,
            method="gls",
        )
        for c in curves
    ]
    estimates, coverage = _coverage_summary(fits, truth)
    assert all(f.stderr_source == "fbm" for f in fits)
    assert np.all(np.abs(estimates - truth) <= 0.03)
    assert coverage >= 0.90


def test_fbm_analytic_covariance_ols_matches_row_stderr():
    """OLS with the analytic covariance gives the same stderr as the row estimate."""
    blocks = fbm_block_msds(0.5)[:10]
    for b in blocks:
        rows_fit = fit_exponent(LAGS, b, n_snapshots=N_SNAPSHOTS, combine_rows="sum")
        analytic = fit_exponent(
            LAGS,
            b.sum(axis=0),
            window=rows_fit.window,
            n_snapshots=N_SNAPSHOTS,
            effective_dims=N_DIMS,
        )
        assert analytic.exponent == pytest.approx(rows_fit.exponent, abs=1e-12)
        assert 0.5 < analytic.stderr / rows_fit.stderr < 2.0


def test_naive_interval_is_too_narrow_and_warns():
    """Why the covariance matters: scatter-based intervals miss 2H most of the time."""
    curves = fbm_block_msds(0.5).sum(axis=1)
    fits = [fit_exponent(LAGS, c, n_snapshots=N_SNAPSHOTS, cov="independent") for c in curves]
    _, coverage = _coverage_summary(fits, 1.0)
    assert coverage < 0.6
    with pytest.warns(UncalibratedStderrWarning, match="correlated"):
        fit_exponent(LAGS, curves[0], n_snapshots=N_SNAPSHOTS)


def test_ballistic_motion_has_msd_exponent_two():
    rng = np.random.default_rng(3)
    velocity = rng.normal(size=5)
    times = np.arange(2048.0)
    x = np.outer(times, velocity)
    msd = time_averaged_msd(x)[1:]
    exps = fit_msd(np.arange(1.0, 2048.0), msd, n_snapshots=2048, cov="independent")
    assert exps.msd_exponent == pytest.approx(2.0, abs=1e-6)
    assert exps.walk_dimension == pytest.approx(1.0, abs=1e-6)
    assert exps.diffusion_type == "ballistic"
    # ballistic drift plus weak Brownian noise: beta -> 2 at the lags used
    noisy = x + 0.05 * np.cumsum(rng.normal(size=x.shape), axis=0)
    blocks = time_averaged_msd(noisy, n_blocks=5)[:, 1:]
    fit = fit_exponent(np.arange(1.0, 2048.0), blocks, n_snapshots=2048, window=(20, 200))
    assert fit.exponent == pytest.approx(2.0, abs=0.03)


# --------------------------------------------------------------------------- exact power laws


@settings(max_examples=40, deadline=None)
@given(
    prefactor=st.floats(1e-6, 1e6),
    exponent=st.floats(-3.0, 3.0),
    n_points=st.integers(8, 400),
    span=st.floats(0.5, 6.0),
)
def test_exact_power_law_recovered(prefactor, exponent, n_points, span):
    t = np.geomspace(1e-2, 1e-2 * 10**span, n_points)
    y = prefactor * t**exponent
    for window in (None, "auto"):
        fit = fit_exponent(t, y, window=window, cov="independent")
        assert fit.exponent == pytest.approx(exponent, abs=1e-8)
        assert fit.prefactor == pytest.approx(prefactor, rel=1e-7)
        assert fit.r2 == pytest.approx(1.0, abs=1e-9)
        assert fit.window == (t[0], t[-1])


@settings(max_examples=30, deadline=None)
@given(
    t_scale=st.floats(1e-4, 1e4),
    y_scale=st.floats(1e-4, 1e4),
    seed=st.integers(0, 2**31),
)
def test_exponent_invariant_under_scaling_t_and_y(t_scale, y_scale, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(1.0, 600.0)
    y = t**0.7 * np.exp(np.cumsum(rng.normal(0, 0.01, t.size)))  # correlated noise
    base = fit_exponent(t, y, window=None, cov="independent")
    scaled = fit_exponent(t * t_scale, y * y_scale, window=None, cov="independent")
    assert scaled.exponent == pytest.approx(base.exponent, abs=1e-9)
    assert scaled.stderr == pytest.approx(base.stderr, rel=1e-6, abs=1e-12)
    assert scaled.prefactor == pytest.approx(
        base.prefactor * y_scale * t_scale ** (-base.exponent), rel=1e-6
    )
    # rows: scaling every replicate curve by the same factor changes nothing either
    rows = y * np.exp(rng.normal(0, 0.05, (6, t.size)))
    a = fit_exponent(t, rows, window=None)
    b = fit_exponent(t * t_scale, rows * y_scale, window=None)
    assert b.exponent == pytest.approx(a.exponent, abs=1e-9)
    assert b.stderr == pytest.approx(a.stderr, rel=1e-6)


def test_log_even_weighting_ignores_dense_noisy_tail():
    """All-lag data: 90% of points sit in the last decade; OLS must not follow them."""
    t = np.arange(1.0, 10_000.0)
    y = t**0.5
    y[t > 1000] *= (t[t > 1000] / 1000) ** 0.5  # a kink in the last decade only
    fit = fit_exponent(t, y, window=None, cov="independent")
    # even in log t the last decade carries 1/4 of the weight, not 90%
    assert 0.55 < fit.exponent < 0.75
    assert fit.n_points < 60


def test_manual_window_and_reported_window():
    t = np.arange(1.0, 1000.0)
    y = 2.0 * t**1.3
    fit = fit_exponent(t, y, window=(10, 100), cov="independent")
    assert fit.window == (10.0, 100.0)
    assert np.all((fit.t >= 10) & (fit.t <= 100))
    wide = fit_exponent(t, y, window=(0.5, 1e9), cov="independent")  # reaching past the data
    assert wide.window == (1.0, 999.0)
    assert fit.predict(50.0) == pytest.approx(2.0 * 50**1.3)


def test_auto_window_picks_widest_regime():
    t = np.geomspace(1, 1e4, 400)
    y = np.where(t < 30, t**1.6, 30**1.6 * (t / 30) ** 0.6)  # 1.5 decades, then 2.5
    fit = fit_exponent(t, y, cov="independent")
    assert fit.exponent == pytest.approx(0.6, abs=1e-6)
    assert fit.window[0] > 30 and fit.window[1] == pytest.approx(1e4)


@pytest.mark.parametrize("combine_rows", ["mean", "sum"])
@pytest.mark.parametrize("method", ["ols", "gls"])
def test_rows_prefactor_refers_to_combined_curve(method, combine_rows):
    t = np.arange(1.0, 500.0)
    rows = np.array([2.0, 3.0, 4.0, 3.0])[:, None] * t**0.9
    fit = fit_exponent(t, rows, method=method, combine_rows=combine_rows)
    assert fit.exponent == pytest.approx(0.9, abs=1e-9)
    assert fit.prefactor == pytest.approx(12.0 if combine_rows == "sum" else 3.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_gls_with_given_covariance_matrix():
    t = np.arange(1.0, 120.0)
    lags = t.astype(int)
    cov = tamsd_covariance(lags, 1500, 0.5, n_dims=10)
    y = 10 * t  # the exact mean of that MSD
    fit = fit_exponent(t, y, window=None, cov=cov, method="gls")
    assert fit.exponent == pytest.approx(1.0, abs=1e-9)
    assert fit.stderr_source == "cov" and fit.stderr > 0
    brownian = fit_exponent(
        t, y, window=None, cov="brownian", n_snapshots=1500, effective_dims=10, method="gls"
    )
    assert brownian.stderr == pytest.approx(fit.stderr, rel=1e-6)


def test_snapshot_spacing_for_analytic_covariance():
    t = np.arange(1.0, 200.0)
    y = 4 * t
    a = fit_exponent(t, y, window=None, n_snapshots=2000, effective_dims=4)
    b = fit_exponent(
        100 * t, y, window=None, n_snapshots=2000, effective_dims=4, snapshot_spacing=100
    )
    assert b.stderr == pytest.approx(a.stderr, rel=1e-9)
    with pytest.raises(ValueError, match="snapshot_spacing"):
        fit_exponent(
            100 * t + 1, y, window=None, n_snapshots=2000, effective_dims=4, snapshot_spacing=100
        )


def test_repr_is_readable():
    t = np.arange(1.0, 100.0)
    fit = fit_exponent(t, 3 * t**0.5, cov="independent")
    text = repr(fit)
    assert text.startswith("ExponentFit(msd_exponent=0.5")
    assert "95% CI" in text and "window=(1, 99)" in text and "method='ols'" in text
    assert "the only regime" in text and "auto:" in text  # the window and why
    assert isinstance(fit, ExponentFit)
    with pytest.raises(AttributeError):
        fit.exponent = 1.0  # frozen


# --------------------------------------------------------------------------- tamsd_covariance


@pytest.mark.parametrize("hurst", [0.25, 0.5, 0.75])
def test_tamsd_covariance_matches_quadratic_form_reference(hurst):
    """Independent derivation: msd(n) = x^T Q_n x, Cov = 2 tr(Q_n G Q_m G) for x ~ N(0, G)."""
    n_snap = 30
    lags = [1, 2, 5, 11, 29]
    times = np.arange(n_snap, dtype=np.float64)
    gram = 0.5 * (
        times[:, None] ** (2 * hurst)
        + times[None, :] ** (2 * hurst)
        - np.abs(times[:, None] - times[None, :]) ** (2 * hurst)
    )

    def quadratic(n):
        q = np.zeros((n_snap, n_snap))
        for s in range(n_snap - n):
            v = np.zeros(n_snap)
            v[s + n], v[s] = 1.0, -1.0
            q += np.outer(v, v) / (n_snap - n)
        return q

    qs = [quadratic(n) for n in lags]
    reference = np.array([[2 * np.trace(a @ gram @ b @ gram) for b in qs] for a in qs])
    got = tamsd_covariance(lags, n_snap, hurst, n_dims=3)
    np.testing.assert_allclose(got, 3 * reference, rtol=1e-10)


def test_tamsd_covariance_brownian_lag_one_is_chi_square():
    # lag 1: the mean of T-1 independent squared N(0,1) steps, variance 2/(T-1)
    assert tamsd_covariance([1], 1000)[0, 0] == pytest.approx(2 / 999, rel=1e-12)
    cov = tamsd_covariance([1, 10, 100], 1000, 0.3)
    assert np.allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_tamsd_covariance_against_simulation():
    rng = np.random.default_rng(11)
    lags = np.array([1, 8, 64])
    samples = np.array(
        [time_averaged_msd(fractional_brownian_motion(512, 0.7, 1, rng))[lags] for _ in range(600)]
    )
    simulated = np.cov(samples, rowvar=False)
    exact = tamsd_covariance(lags, 512, 0.7)
    np.testing.assert_allclose(np.diag(simulated), np.diag(exact), rtol=0.25)


# --------------------------------------------------------------------------- crossover


def _two_regime(t, t_c, early, late):
    return np.where(t < t_c, (t / t_c) ** early, (t / t_c) ** late)


def test_crossover_exact_piecewise():
    t = np.geomspace(1, 1e4, 500)
    t_c = 10**2.3
    result = crossover(t, 5 * _two_regime(t, t_c, 1.5, 0.5))
    assert isinstance(result, Crossover)
    assert result.n_breaks == 1
    assert result.breakpoints[0] == pytest.approx(t_c, rel=1e-4)
    assert result.exponents == pytest.approx((1.5, 0.5), abs=1e-6)
    assert result.regimes[0].window == pytest.approx((1.0, t_c), rel=1e-4)
    np.testing.assert_allclose(result.predict(t), 5 * _two_regime(t, t_c, 1.5, 0.5), rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_crossover_noisy_super_then_sub_diffusive(seed):
    """The paper's picture: super-diffusive early, sub-diffusive late, noisy."""
    rng = np.random.default_rng(seed)
    t = np.arange(1.0, 20_000.0)
    t_c = 300.0
    y = _two_regime(t, t_c, 1.6, 0.6) * np.exp(rng.normal(0, 0.03, t.size))
    result = crossover(t, y)
    assert result.n_breaks == 1
    found = math.log10(result.breakpoints[0])
    assert abs(found - math.log10(t_c)) <= 0.1 * math.log10(t_c)  # within 10% in log t
    assert abs(found - math.log10(t_c)) <= 0.1 * math.log10(t[-1] / t[0])
    early, late = result.regimes
    assert early.exponent == pytest.approx(1.6, abs=0.05)
    assert late.exponent == pytest.approx(0.6, abs=0.05)
    assert early.exponent > 1 > late.exponent


def test_crossover_smooth_transition_breakpoint():
    t = np.geomspace(1e-2, 1e6, 600)  # symmetric in log t about t_c = 100
    t_c, early, late, sharpness = 100.0, 1.4, 0.6, 2.0
    y = (t / t_c) ** early / (1 + (t / t_c) ** ((early - late) * sharpness)) ** (1 / sharpness)
    result = crossover(t, y, n_breaks=1)
    found = math.log10(result.breakpoints[0])
    assert abs(found - 2.0) <= 0.1 * 2.0
    assert result.exponents[0] == pytest.approx(early, abs=0.05)
    assert result.exponents[1] == pytest.approx(late, abs=0.05)


def test_crossover_no_break_for_single_power_law_and_rows_give_errors():
    rng = np.random.default_rng(5)
    t = np.arange(1.0, 3000.0)
    rows = t**0.8 * np.exp(rng.normal(0, 0.05, (8, t.size)))
    result = crossover(t, rows)
    assert result.n_breaks == 0
    assert result.stderr_source == "rows"
    regime = result.regimes[0]
    assert regime.exponent == pytest.approx(0.8, abs=0.02)
    assert 0 < regime.stderr < 0.02
    assert regime.ci[0] < regime.exponent < regime.ci[1]


def test_crossover_two_breaks():
    t = np.geomspace(1, 1e6, 800)
    y = np.where(t < 1e2, t**2.0, np.where(t < 1e4, 1e4 * (t / 1e2) ** 1.0, 1e6 * (t / 1e4) ** 0.4))
    result = crossover(t, y)
    assert result.n_breaks == 2
    np.testing.assert_allclose(np.log10(result.breakpoints), [2.0, 4.0], atol=1e-3)
    assert result.exponents == pytest.approx((2.0, 1.0, 0.4), abs=1e-4)


# --------------------------------------------------------------------------- local slope


def test_local_slope_of_power_law_is_constant():
    t = np.arange(1.0, 5000.0)
    result = local_slope(t, 7 * t**0.35)
    np.testing.assert_allclose(result.slope, 0.35, atol=1e-10)
    assert result.stderr is None
    assert result.t[0] == 1.0 and result.t[-1] == 4999.0


def test_local_slope_tracks_crossover_and_gives_errors_with_rows():
    rng = np.random.default_rng(2)
    t = np.geomspace(1, 1e5, 2000)
    rows = _two_regime(t, 300.0, 1.5, 0.5) * np.exp(rng.normal(0, 0.02, (10, t.size)))
    result = local_slope(t, rows, at=[3.0, 300.0, 3e4])
    assert result.slope[0] == pytest.approx(1.5, abs=0.05)
    assert result.slope[2] == pytest.approx(0.5, abs=0.05)
    assert 0.5 < result.slope[1] < 1.5
    assert result.stderr is not None and np.all(result.stderr > 0)
    assert np.all(result.stderr < 0.05)


# --------------------------------------------------------------------------- named exponents


def test_named_exponents_from_each_name():
    from_msd = DiffusionExponents.from_msd_exponent(0.5, 0.02)
    from_disp = DiffusionExponents.from_displacement_exponent(0.25, 0.01)
    from_walk = DiffusionExponents.from_walk_dimension(4.0, 0.16)
    for exps in (from_msd, from_disp, from_walk):
        assert exps.msd_exponent == pytest.approx(0.5)
        assert exps.displacement_exponent == pytest.approx(0.25)
        assert exps.walk_dimension == pytest.approx(4.0)
        assert exps.msd_exponent_stderr == pytest.approx(0.02)
        assert exps.displacement_exponent_stderr == pytest.approx(0.01)
        assert exps.walk_dimension_stderr == pytest.approx(0.16)
        assert exps.diffusion_type == "sub-diffusive"
        assert not hasattr(exps, "alpha")
    lo, hi = from_msd.msd_exponent_ci
    assert from_msd.walk_dimension_ci == pytest.approx((2 / hi, 2 / lo))
    assert DiffusionExponents.from_msd_exponent(1.02, 0.05).diffusion_type == "Brownian"
    assert DiffusionExponents.from_msd_exponent(1.5, 0.05).diffusion_type == "super-diffusive"
    assert "walk_dimension=4" in repr(from_walk)


def test_fit_msd_and_fit_displacement_agree_on_fbm():
    rng = np.random.default_rng(8)
    hurst, n_snap, n_seeds = 0.35, 2048, 12
    paths = [fractional_brownian_motion(n_snap, hurst, 16, rng) for _ in range(n_seeds)]
    times = np.arange(1.0, n_snap)
    displacement = np.array([np.linalg.norm(p[1:] - p[0], axis=1) for p in paths])
    msds = np.array([time_averaged_msd(p)[1:] for p in paths])
    by_r = fit_displacement(times, displacement)  # seeds as rows
    by_msd = fit_msd(times, msds, n_snapshots=n_snap)
    assert by_r.source == "displacement" and by_msd.source == "msd"
    assert by_r.fit.exponent == pytest.approx(by_r.displacement_exponent)
    assert by_r.displacement_exponent == pytest.approx(
        hurst, abs=4 * by_r.displacement_exponent_stderr + 0.01
    )
    assert by_msd.msd_exponent == pytest.approx(
        2 * hurst, abs=4 * by_msd.msd_exponent_stderr + 0.01
    )
    # analytic covariance of R(t) for one path
    single = fit_displacement(times, displacement[0], effective_dims=16)
    assert single.fit.stderr_source == "fbm" and single.displacement_exponent_stderr > 0


# --------------------------------------------------------------------------- plots


def test_plots_draw(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.geomspace(1, 1e4, 300)
    y = _two_regime(t, 100.0, 1.5, 0.5)
    fit = fit_exponent(t, y, cov="independent")
    ax = fit.plot()
    # data, fitted points, line, Brownian reference; axes say what the curve is
    assert len(ax.lines) == 4 and ax.get_xscale() == "log"
    assert ax.get_ylabel() == "MSD(τ)" and "lag" in ax.get_xlabel()
    assert "regime" in ax.get_title() or "auto" in ax.get_title()
    brownian = [line for line in ax.lines if "Brownian" in str(line.get_label())]
    assert "slope 1" in brownian[0].get_label()
    ax = fit_exponent(t, y, cov="independent", curve="displacement").plot()
    assert ax.get_ylabel().startswith("R(t)")
    brownian = [line for line in ax.lines if "Brownian" in str(line.get_label())]
    assert "slope 0.5" in brownian[0].get_label()
    ax = crossover(t, y).plot()
    assert len(ax.lines) >= 4
    ax = crossover(t, y, curve="displacement").plot()
    assert ax.get_ylabel().startswith("R(t)")
    ax = local_slope(t, y).plot()
    assert ax.get_ylabel().startswith("d log y")
    plt.close("all")


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    t = np.arange(1.0, 50.0)
    fit = fit_exponent(t, t**0.5, cov="independent")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'fractaldiff\[plot\]'"):
        fit.plot()


# --------------------------------------------------------------------------- bad input

T_OK = np.arange(1.0, 11.0)
Y_OK = T_OK**0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(t=np.arange(0.0, 10.0)), ValueError, r"t must be > 0 .*t\[0\] = 0\.0"),
        (dict(y=np.r_[Y_OK[:3], -1.0, Y_OK[4:]]), ValueError, r"y must be > 0 .*y\[3\] = -1\.0"),
        (dict(y=np.r_[Y_OK[:5], np.nan, Y_OK[6:]]), ValueError, r"y must be finite; y\[5\] = nan"),
        (dict(t=np.r_[T_OK[:2], np.inf, T_OK[3:]]), ValueError, r"t must be finite; t\[2\] = inf"),
        (dict(t=T_OK[:2], y=Y_OK[:2]), ValueError, r"t has 2 points; .*at least 3"),
        (dict(y=Y_OK[:9]), ValueError, r"y has 9 points .* t has 10"),
        (dict(t=T_OK[::-1]), ValueError, r"t must be strictly increasing"),
        (dict(t=T_OK.reshape(2, 5)), ValueError, r"t must be 1-D"),
        (dict(y=np.ones((2, 2, 10))), ValueError, r"y must be 1-D, or 2-D"),
        (dict(y=Y_OK[None, :]), ValueError, r"at least 2 rows"),
        (dict(y="abc"), TypeError, r"y must be an array of real numbers"),
        (dict(y=Y_OK + 0j), TypeError, r"y must be an array of real numbers, got dtype complex"),
        (dict(t=None), TypeError, r"t must be an array"),
        (dict(window=(100.0, 1000.0)), ValueError, r"window \(100, 1000\) lies outside the data"),
        (dict(window=(2.5, 4.5)), ValueError, r"contains 2 point\(s\) of t; .*at least 3"),
        (dict(window=(5.0, 2.0)), ValueError, r"window must satisfy 0 < t_min < t_max"),
        (dict(window=(1.0, np.nan)), ValueError, r"window must be finite"),
        (dict(window="widest"), ValueError, r"window must be 'auto', None or"),
        (dict(window=3.0), TypeError, r"window must be 'auto', None or a pair"),
        (dict(method="mle"), ValueError, r"method must be 'ols' or 'gls'"),
        (dict(method="gls", cov="independent"), ValueError, r"method='gls' needs the covariance"),
        (dict(cov=np.eye(3)), ValueError, r"cov must have shape \(len\(t\), len\(t\)\)"),
        (dict(cov="robust"), ValueError, r"cov must be None, a \(len\(t\), len\(t\)\) matrix"),
        (dict(cov="fbm", n_snapshots=20), ValueError, r"needs effective_dims"),
        (dict(cov="fbm", effective_dims=2), ValueError, r"needs n_snapshots"),
        (dict(cov="fbm", effective_dims=2, n_snapshots=8), ValueError, r"n_snapshots = 8 allows"),
        (dict(y=np.vstack([Y_OK, Y_OK]), cov=np.eye(10)), ValueError, r"either 2-D y .* or cov"),
        (dict(confidence=1.5), ValueError, r"confidence must be in \(0, 1\)"),
        (
            dict(y=np.vstack([Y_OK, 2 * Y_OK]), cov=None, method="gls"),
            ValueError,
            r"method='gls' with 2-D y needs at least 3 rows",
        ),
        (dict(effective_dims=-1, cov="independent"), ValueError, r"effective_dims must be"),
        (dict(n_snapshots=10.5, cov="independent"), TypeError, r"n_snapshots must be an integer"),
        (dict(points_per_decade=1), ValueError, r"points_per_decade must be in \[2, 10000\]"),
        (dict(curve="velocity"), ValueError, r"curve must be one of"),
        (dict(combine_rows="median", y=np.vstack([Y_OK, Y_OK])), ValueError, r"combine_rows"),
    ],
)
def test_fit_exponent_bad_input(kwargs, error, match):
    arguments = dict(t=T_OK, y=Y_OK, cov="independent", window=None)
    arguments.update(kwargs)
    t = arguments.pop("t")
    y = arguments.pop("y")
    with pytest.raises(error, match=match) as info:
        fit_exponent(t, y, **arguments)
    assert str(info.value).startswith("fit_exponent: ")


def test_other_functions_bad_input():
    with pytest.raises(ValueError, match=r"crossover: n_breaks must be an integer in \[0, 3\]"):
        crossover(T_OK, Y_OK, n_breaks=5)
    with pytest.raises(ValueError, match=r"crossover: .* too few for 4 regime"):
        crossover(T_OK, Y_OK, n_breaks=3)
    with pytest.raises(ValueError, match=r"crossover: t must be > 0"):
        crossover(np.arange(10.0), Y_OK)
    with pytest.raises(ValueError, match=r"crossover: cov must be None, 'independent'"):
        crossover(T_OK, Y_OK, cov="fbm")
    with pytest.raises(ValueError, match=r"local_slope: bandwidth must be finite and > 0"):
        local_slope(T_OK, Y_OK, bandwidth=-0.1)
    with pytest.raises(ValueError, match=r"local_slope: at must lie within the data"):
        local_slope(T_OK, Y_OK, at=[0.5])
    with pytest.raises(TypeError, match=r"fit_msd: curve is fixed"):
        fit_msd(T_OK, Y_OK, curve="displacement")
    with pytest.raises(ValueError, match=r"from_walk_dimension: value must be finite and > 0"):
        DiffusionExponents.from_walk_dimension(0.0)
    with pytest.raises(TypeError, match=r"from_msd_exponent: value must be a real number"):
        DiffusionExponents.from_msd_exponent("1")
    with pytest.raises(
        ValueError, match=r"tamsd_covariance: lags must lie in \[1, n_snapshots - 1\] = \[1, 99\]"
    ):
        tamsd_covariance([0, 5], 100)
    with pytest.raises(ValueError, match=r"tamsd_covariance: lags must be whole numbers"):
        tamsd_covariance([1.5], 100)
    with pytest.raises(ValueError, match=r"tamsd_covariance: hurst must be in \(0, 1\)"):
        tamsd_covariance([1], 100, 1.0)


def test_inputs_of_other_layouts_work():
    t = np.arange(1.0, 200.0)
    y = np.ascontiguousarray((3 * t**0.6)[::-1])[::-1]  # negative stride
    y_readonly = y.copy()
    y_readonly.flags.writeable = False
    a = fit_exponent(t, y, cov="independent")
    b = fit_exponent(list(t), y_readonly, cov="independent")
    c = fit_exponent(t.astype(np.int64), y.astype(np.float32), cov="independent")
    assert a.exponent == pytest.approx(0.6) and b.exponent == pytest.approx(0.6)
    assert c.exponent == pytest.approx(0.6, abs=1e-6)
    rows = np.asfortranarray(np.vstack([y, 1.1 * y, 0.9 * y]))
    assert fit_exponent(t, rows).exponent == pytest.approx(0.6)


def test_no_warning_when_covariance_is_known():
    t = np.arange(1.0, 100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_exponent(t, np.vstack([t, 1.1 * t]))
        fit_exponent(t, t, n_snapshots=1000, effective_dims=3)
        fit_exponent(t, t, cov="independent")
