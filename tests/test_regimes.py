"""Regimes found globally, explicit windows, three verdicts, bounded options (issues 15, 16)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff import crossover, fit_displacement, fit_exponent, fit_msd

from fbm import fractional_brownian_motion

# slopes and breakpoints of planted piecewise power laws, 0..3 breaks
CASES = {
    0: ([0.6], []),
    1: ([1.5, 0.5], [100.0]),
    2: ([0.7, 2.0, 0.3], [30.0, 300.0]),
    3: ([1.8, 0.9, 0.3, 1.0], [10.0, 100.0, 1000.0]),
}


def planted(slopes, breaks, t):
    x = np.log10(t)
    z = slopes[0] * x
    for b, s0, s1 in zip(breaks, slopes[:-1], slopes[1:]):
        z += (s1 - s0) * np.maximum(x - np.log10(b), 0.0)
    return z


def bent_sgd_curve(seed=0, n_steps=3000, noise=0.01):
    """A bent SGD displacement curve: local slope ~0.7, a super-diffusive bump (~2.2) from ~90 to
    ~370 steps, then sub-diffusion (~0.28); smooth crossovers, correlated noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n_steps + 1.0)
    x = np.log10(t)

    def soft(u, s=0.05):
        return s * np.logaddexp(0.0, u / s)

    z = 0.72 * x + (2.16 - 0.72) * soft(x - np.log10(92)) + (0.28 - 2.16) * soft(
        x - np.log10(367)
    )
    z += noise * np.cumsum(rng.standard_normal(t.size)) / math.sqrt(t.size)
    return t, 10.0**z


@pytest.mark.parametrize("k", sorted(CASES))
@pytest.mark.parametrize("kind", ["iid", "fbm"])
def test_crossover_finds_planted_breaks(k, kind):
    slopes, breaks = CASES[k]
    t = np.arange(1, 10**4 + 1.0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        z = planted(slopes, breaks, t)
        if kind == "iid":
            z = z + 0.01 * rng.standard_normal(t.size)
        else:  # correlated noise along the curve, as a diffusion curve has
            g = fractional_brownian_motion(t.size, 0.7, 1, rng)[:, 0]
            z = z + 0.03 * g / t.size**0.7
        c = crossover(t, 10.0**z)
        assert c.n_breaks == k, c
        for found, true in zip(c.breakpoints, breaks):
            assert abs(math.log10(found / true)) < 0.1
        for regime, true in zip(c.regimes, slopes):
            assert regime.exponent == pytest.approx(true, abs=0.06)
        assert [m.n_breaks for m in c.models] == list(range(4))


def test_crossover_needs_two_breaks_together():
    """The greedy rule missed this curve (no break, slope 0.98); the global BIC does not."""
    t, R = bent_sgd_curve()
    c = crossover(t, R, curve="displacement")
    assert c.n_breaks >= 2
    assert c.breakpoints[0] == pytest.approx(92, rel=0.15)
    assert c.breakpoints[1] == pytest.approx(367, rel=0.15)
    assert c.regimes[0].exponent == pytest.approx(0.72, abs=0.05)
    assert max(c.exponents) == pytest.approx(2.16, abs=0.2)
    assert c.last_regime.exponent < 0.45
    bics = {m.n_breaks: m.bic for m in c.models}
    assert bics[2] < bics[1] - 10 and bics[2] < bics[0] - 10


def test_runner_up_reported_when_close():
    t, R = bent_sgd_curve()
    c = crossover(t, R)
    if c.runner_up is not None:
        chosen = next(m.bic for m in c.models if m.n_breaks == c.n_breaks)
        assert c.runner_up.bic - chosen < 4
        assert "runner_up" in repr(c)


def test_window_rules_choose_and_say_which_regime():
    t, R = bent_sgd_curve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fd.WindowWarning)
        late = fit_displacement(t, R, window="last_regime", cov="independent")
        early = fit_displacement(t, R, window="first_regime", cov="independent")
        auto = fit_displacement(t, R, cov="independent")
    assert late.displacement_exponent < 0.45 and "last" in late.regime
    assert early.displacement_exponent == pytest.approx(0.72, abs=0.05)
    assert "first" in early.regime
    assert late.window[0] > 367 and early.window[1] < 92
    assert auto.fit.window_rule.startswith("auto: widest of")
    for ex in (late, early, auto):
        assert "regime" in repr(ex) and "window=" in repr(ex.fit)


def test_short_window_warns_at_the_callers_line():
    t, R = bent_sgd_curve()
    with pytest.warns(fd.WindowWarning, match="decades") as record:
        fit = fit_msd(t, R**2, window="last_regime", cov="independent")  # this line
    assert record[0].filename == __file__
    assert fit.fit.notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_exponent(t, R, window="last_regime", cov="independent", warn_window=False)


def test_uncalibrated_warning_points_at_caller():
    t = np.arange(1.0, 100.0)
    with pytest.warns(fd.UncalibratedStderrWarning) as record:
        fit_displacement(t, t**0.5)
    assert record[0].filename == __file__


def test_transient_regime_warns():
    t = np.arange(1, 3000.0)
    y = 10.0 ** planted([1.0, 2.0, 0.5], [10.0, 1000.0], t)  # the middle regime is widest
    with pytest.warns(fd.WindowWarning, match="transient"):
        fit = fit_exponent(t, y, cov="independent")
    assert fit.regime == "regime 2 of 3 (transient)"
    assert fit.exponent == pytest.approx(2.0, abs=0.02)
    late = fit_exponent(t, y, cov="independent", window="last_regime", warn_window=False)
    assert late.exponent == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "beta, se, verdict",
    [(0.5, 0.02, "holds"), (1.5, 0.02, "violated"), (1.003, 0.02, "consistent within error")],
)
def test_spectral_bound_three_verdicts(beta, se, verdict):
    ex = fd.DiffusionExponents.from_msd_exponent(beta, se)
    check = fd.check_spectral_bound(32.0, ex, mean_llc_stderr=1.0)
    assert check.verdict == verdict
    assert verdict in repr(check) and "z=" in repr(check)
    assert check.z_score == pytest.approx(check.margin.value / check.margin.stderr)


def test_points_per_decade_is_bounded():
    t = np.arange(1.0, 1000.0)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="points_per_decade must be in"):
        crossover(t, t**0.5, points_per_decade=1e8)
    assert time.perf_counter() - start < 1.0
    crossover(t, t**0.5, points_per_decade=10_000)  # the bound itself is cheap


def test_gls_with_singular_covariance():
    t = np.arange(1.0, 100.0)
    with pytest.raises(ValueError, match="no positive eigenvalue"):
        fit_exponent(t, t**0.5, cov=np.zeros((99, 99)), method="gls", window=None)
    with pytest.warns(fd.SingularCovarianceWarning, match="regularized"):
        fit = fit_exponent(t, t**0.5, cov=np.full((99, 99), 1e-4), method="gls", window=None)
    assert math.isfinite(fit.exponent) and math.isfinite(fit.stderr)


def test_named_exponent_aliases():
    t = np.arange(1.0, 100.0)
    fit = fit_exponent(t, t**0.5, cov="independent", curve="displacement")
    assert fit.displacement_exponent == fit.exponent
    with pytest.raises(AttributeError):
        _ = fit.msd_exponent
    assert repr(fit).startswith("ExponentFit(displacement_exponent=")


def test_fit_groups_share_one_window():
    t = np.arange(1, 3000.0)
    early = 10.0 ** planted([1.0, 0.4], [30.0], t)
    late = 10.0 ** planted([1.0, 0.4], [300.0], t)
    groups = {"total": early + late, "early": early, "late": late}
    fits = fd.fit_groups(t, groups, window="last_regime", cov="independent", warn_window=False)
    windows = {f.window for f in fits.values()}
    assert len(windows) == 1  # one window: the exponents are comparable
    assert all(f.window_rule.startswith("shared: chosen on 'total'") for f in fits.values())
    separate = fd.fit_groups(t, groups, window="last_regime", cov="independent",
                             shared_window=False, warn_window=False)
    assert len({f.window for f in separate.values()}) > 1


def test_effective_dimension_calibrates_a_single_curve():
    rng = np.random.default_rng(5)
    x = fractional_brownian_motion(800, 0.5, 8, rng)
    dims = fd.effective_dimension(x)
    assert 6.5 < dims <= 8.0
    m = fd.msd(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning the user cannot act on
        ex = fit_msd(np.arange(1, 800), m[1:], n_snapshots=800, effective_dims=dims,
                     window=(1, 80))
    assert ex.fit.stderr_source == "fbm"
    assert abs(ex.msd_exponent - 1.0) < 3 * ex.msd_exponent_stderr


def test_trajectory_pca_and_dimension_plots():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.cumsum(np.random.default_rng(0).standard_normal((200, 30)), axis=0)
    t = np.arange(1.0, 500.0)
    ax = fd.local_slope(t, t**0.5, curve="displacement").plot()
    assert ax.get_ylabel().startswith("local slope d log R") and ax.lines[-1].get_ydata()[0] == 0.5
    ax = fd.trajectory_pca(X, 3).plot(components=(0, 2))
    assert ax.get_xlabel().startswith("PC1") and ax.get_ylabel().startswith("PC3")
    rng = np.random.default_rng(1)
    Y = rng.uniform(size=(3000, 2)) @ rng.standard_normal((2, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fd.box_counting_dimension(Y)
    ax = est.plot()
    chao = [line for line in ax.lines if "chao1" in str(line.get_label())][0]
    low = est.details["coverage"] < 0.5
    assert len(chao.get_xdata()) == int(np.count_nonzero(~low & (est.values > 0)))
    assert "window" in ax.get_title()
    plt.close("all")


def test_bound_check_warns_about_an_early_regime():
    t, R = bent_sgd_curve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        early = fit_displacement(t, R, window="first_regime", cov="independent")
        late = fit_displacement(t, R, window="last_regime", cov="independent")
    with pytest.warns(fd.WindowWarning, match="not its late regime") as record:
        fd.check_spectral_bound(10.0, early)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fd.check_spectral_bound(10.0, late).verdict == "holds"


def test_fit_msd_refuses_log_spaced_snapshots():
    steps = np.unique(np.geomspace(1, 3000, 200).astype(int))
    m = np.arange(1.0, 100.0)
    with pytest.raises(ValueError, match="not evenly spaced.*fit_displacement"):
        fit_msd(np.arange(1, 100.0), m, snapshot_steps=steps)
    ex = fit_msd(10.0 * np.arange(1, 100), m, snapshot_steps=10 * np.arange(1000),
                 effective_dims=4, window=None)
    assert ex.fit.stderr_source == "fbm"  # spacing 10 and n_snapshots 1000 taken from the steps
