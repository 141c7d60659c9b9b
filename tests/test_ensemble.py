"""Tests for fractaldiff.fitting.ensemble: fits over seeds and the ergodicity-breaking parameter."""

from __future__ import annotations

import numpy as np
import pytest

from fractaldiff.fitting.ensemble import (
    EnsembleFit,
    ergodicity_breaking,
    fit_ensemble,
    reference_ergodicity_breaking,
)

from fbm import fractional_brownian_motion, time_averaged_msd


def _fbm_msds(n_runs, n_snapshots, hurst, n_dims, seed):
    rng = np.random.default_rng(seed)
    return np.array(
        [
            time_averaged_msd(fractional_brownian_motion(n_snapshots, hurst, n_dims, rng))
            for _ in range(n_runs)
        ]
    )


def test_ergodicity_breaking_definition():
    curves = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0], [0.0, 2.0, 2.0]])
    eb = ergodicity_breaking(curves)
    assert np.isnan(eb[0])  # lag 0: mean 0
    second_moment = np.mean(curves[:, 1] ** 2)
    assert eb[1] == pytest.approx((second_moment - 2.0**2) / 2.0**2)
    assert eb[2] == 0.0
    assert ergodicity_breaking(curves, ddof=1)[1] == pytest.approx(1.0 / 4.0)


@pytest.mark.parametrize("hurst", [0.25, 0.5, 0.75])
def test_ergodicity_breaking_of_fbm_matches_exact_reference(hurst):
    n_snapshots, n_runs = 1024, 400
    msds = _fbm_msds(n_runs, n_snapshots, hurst, 1, seed=int(100 * hurst))
    lags = np.array([1, 4, 16, 64])
    measured = ergodicity_breaking(msds)[lags]
    expected = reference_ergodicity_breaking(lags, n_snapshots, hurst)
    np.testing.assert_allclose(measured, expected, rtol=0.25)


def test_brownian_reference_asymptotes():
    n_snapshots = 4096
    exact = reference_ergodicity_breaking([1, 8, 32], n_snapshots)
    assert exact[0] == pytest.approx(2 / (n_snapshots - 1), rel=1e-12)
    # EB ~ 4 tau / (3 T) for 1 << tau << T (one coordinate)
    np.testing.assert_allclose(exact[1:], 4 * np.array([8, 32]) / (3 * n_snapshots), rtol=0.06)
    assert reference_ergodicity_breaking([8], n_snapshots, n_dims=4)[0] == pytest.approx(
        exact[1] / 4
    )


def test_non_ergodic_ensemble_has_large_eb():
    """Runs with random diffusivities: each time average converges, to a different value."""
    rng = np.random.default_rng(21)
    n_runs, n_snapshots = 300, 512
    diffusivity = rng.exponential(1.0, n_runs)  # EB -> Var(D) / E[D]^2 = 1
    msds = np.array(
        [
            time_averaged_msd(np.sqrt(d) * np.cumsum(rng.normal(size=(n_snapshots, 4)), axis=0))
            for d in diffusivity
        ]
    )
    eb = ergodicity_breaking(msds)[[1, 4, 16]]
    ergodic = reference_ergodicity_breaking([1, 4, 16], n_snapshots, n_dims=4)
    assert np.all(eb > 0.6) and np.all(eb < 1.5)
    assert np.all(eb > 50 * ergodic)


def test_fit_ensemble_over_seeds():
    n_snapshots = 2048
    msds = _fbm_msds(16, n_snapshots, 0.35, 8, seed=7)
    lags = np.arange(1.0, n_snapshots)
    result = fit_ensemble(lags, msds[:, 1:], n_snapshots=n_snapshots)
    assert isinstance(result, EnsembleFit)
    fit = result.ensemble_fit
    assert fit.stderr_source == "rows" and fit.dof == 15
    assert fit.exponent == pytest.approx(0.7, abs=4 * fit.stderr)
    assert result.n_runs == 16 and result.run_exponents.shape == (16,)
    assert all(r.window == fit.window for r in result.run_fits)
    assert result.mean_run_exponent == pytest.approx(0.7, abs=0.03)
    spread = result.run_exponent_spread
    assert 0 < spread < 0.1
    assert result.run_exponent_stderr == pytest.approx(spread / 4)
    lo, hi = result.run_exponent_range
    assert lo <= result.mean_run_exponent <= hi
    # the error of the ensemble-mean exponent is about the per-run spread / sqrt(n)
    assert 0.4 < fit.stderr / result.run_exponent_stderr < 2.5
    assert result.ergodicity_breaking.shape == (n_snapshots - 1,)
    assert "EnsembleFit(n_runs=16" in repr(result)


def test_fit_ensemble_with_analytic_per_run_errors_and_gls():
    n_snapshots = 1024
    msds = _fbm_msds(6, n_snapshots, 0.5, 16, seed=3)[:, 1:]
    lags = np.arange(1.0, n_snapshots)
    result = fit_ensemble(
        lags, msds, method="gls", n_snapshots=n_snapshots, effective_dims=16, run_cov="fbm"
    )
    assert result.ensemble_fit.method == "gls"
    assert all(r.stderr_source == "fbm" and r.method == "gls" for r in result.run_fits)
    assert result.exponent == pytest.approx(1.0, abs=0.05)


def test_fit_ensemble_plot():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(1.0, 300.0)
    curves = t**0.8 * np.exp(np.random.default_rng(0).normal(0, 0.05, (5, t.size)))
    ax = fit_ensemble(t, curves).plot()
    assert len(ax.lines) >= 5 + 3
    plt.close("all")


def test_bad_input():
    t = np.arange(1.0, 11.0)
    with pytest.raises(ValueError, match=r"ergodicity_breaking: curves must be 2-D"):
        ergodicity_breaking(t)
    with pytest.raises(ValueError, match=r"ergodicity_breaking: curves needs at least 2 runs"):
        ergodicity_breaking(t[None, :])
    with pytest.raises(ValueError, match=r"curves must be finite; curves\[1, 3\] = nan"):
        bad = np.vstack([t, t])
        bad[1, 3] = np.nan
        ergodicity_breaking(bad)
    with pytest.raises(ValueError, match=r"ddof must be an integer in \[0, 1\]"):
        ergodicity_breaking(np.vstack([t, t]), ddof=2)
    with pytest.raises(ValueError, match=r"fit_ensemble: curves has 9 points per run but t has 10"):
        fit_ensemble(t, np.ones((3, 9)))
    with pytest.raises(TypeError, match=r"fit_ensemble: .* use run_cov"):
        fit_ensemble(t, np.vstack([t, t]), cov=np.eye(10))
    with pytest.raises(TypeError, match=r"fit_ensemble: curves must be an array of real numbers"):
        fit_ensemble(t, "runs")
    with pytest.raises(
        ValueError, match=r"reference_ergodicity_breaking: lags must be a non-empty"
    ):
        reference_ergodicity_breaking([], 100)
    with pytest.raises(ValueError, match=r"lags must lie in \[1, n_snapshots - 1\]"):
        reference_ergodicity_breaking([100], 100)
