"""Tests for fractaldiff.theory: the paper's derived dimensions and their uncertainties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractaldiff.fitting import DiffusionExponents
from fractaldiff.theory import (
    Estimate,
    SpectralBoundCheck,
    check_spectral_bound,
    coarse_grained_diffusion_coefficient,
    effective_temperature,
    exponents_from_dimensions,
    spectral_dimension,
)

# (model, lambda_bar, d_s, displacement exponent alpha = d_s / (2 lambda_bar))
# Table 1 of the paper (TinyStories-1M: alpha = 0.33 printed, 21.422 / 64 = 0.3347) and
# Table 4 (MNIST MLP, Adam and SGD; alpha derived here from the printed lambda and d_s).
PAPER_ROWS = [
    ("TinyStories-1M", 32.0, 21.422, 0.335),
    ("MNIST MLP, Adam", 3.10, 0.41, 0.0661),
    ("MNIST MLP, SGD", 12.5, 7.82, 0.3128),
]


@pytest.mark.parametrize(("model", "llc", "d_s", "alpha"), PAPER_ROWS)
def test_paper_table_arithmetic(model, llc, d_s, alpha):
    exps = exponents_from_dimensions(llc, d_s)
    assert exps.displacement_exponent == pytest.approx(d_s / (2 * llc), rel=1e-12)
    assert exps.displacement_exponent == pytest.approx(alpha, abs=5e-4), model
    assert exps.walk_dimension == pytest.approx(2 * llc / d_s, rel=1e-12)
    assert exps.msd_exponent == pytest.approx(d_s / llc, rel=1e-12)
    # and back: d_s = 2 lambda / d_walk = 2 lambda alpha
    assert spectral_dimension(llc, exps).value == pytest.approx(d_s, rel=1e-12)
    check = check_spectral_bound(llc, exps)
    assert check.satisfied  # every published row obeys Lemma 3.4
    assert check.margin.value == pytest.approx(llc - d_s, rel=1e-12)
    assert exps.diffusion_type == "sub-diffusive"


def test_tinystories_row_by_hand():
    exps = DiffusionExponents.from_displacement_exponent(21.422 / 64)
    assert round(exps.displacement_exponent, 3) == 0.335
    assert exps.walk_dimension == pytest.approx(2.98758, abs=1e-5)
    assert spectral_dimension(32, exps).value == pytest.approx(21.422)


def test_brownian_limits():
    brownian = DiffusionExponents.from_walk_dimension(2.0)
    assert spectral_dimension(7.5, brownian).value == pytest.approx(7.5)  # d_s = lambda
    check = check_spectral_bound(7.5, brownian)
    assert check.margin.value == pytest.approx(0.0, abs=1e-12) and check.satisfied
    for xi in (1e-3, 0.5, 1.0, 40.0):
        assert coarse_grained_diffusion_coefficient(xi, brownian).value == pytest.approx(1.0)
    assert effective_temperature(1000, 1.0).value == pytest.approx(1e-3)


def test_super_diffusion_violates_the_bound():
    check = check_spectral_bound(10.0, DiffusionExponents.from_msd_exponent(1.5, 0.05))
    assert isinstance(check, SpectralBoundCheck)
    assert not check.satisfied
    assert check.margin.value == pytest.approx(-5.0)
    assert check.relative_margin.value == pytest.approx(-0.5)
    assert check.significant and check.z_score < -3
    assert "violated" in repr(check)


def test_coarse_grained_diffusion_and_temperature_values():
    sub = DiffusionExponents.from_walk_dimension(3.0, 0.1)
    d_xi = coarse_grained_diffusion_coefficient(0.5, sub)
    assert d_xi.value == pytest.approx(0.5 ** (2 - 3.0))  # = 2
    assert d_xi.stderr == pytest.approx(abs(math.log(0.5)) * 2.0 * 0.1, rel=1e-9)
    temperature = effective_temperature(200, d_xi)
    assert temperature.value == pytest.approx(1 / (200 * 2.0))
    assert temperature.stderr == pytest.approx(d_xi.stderr / (200 * 4.0))


def _monte_carlo_std(function, means, stds, n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    draws = [rng.normal(m, s, n) for m, s in zip(means, stds)]
    return float(np.std(function(*draws)))


def test_delta_method_matches_monte_carlo():
    llc, llc_se, beta, beta_se = 20.0, 0.6, 0.7, 0.02
    exps = DiffusionExponents.from_msd_exponent(beta, beta_se)
    d_s = spectral_dimension(llc, exps, mean_llc_stderr=llc_se)
    mc = _monte_carlo_std(lambda lam, b: lam * b, [llc, beta], [llc_se, beta_se])
    assert d_s.stderr == pytest.approx(mc, rel=0.03)
    # the margin lambda (1 - beta) reuses lambda: its error is not that of lambda - d_s
    # with independent terms
    check = check_spectral_bound(llc, exps, mean_llc_stderr=llc_se)
    mc_margin = _monte_carlo_std(lambda lam, b: lam * (1 - b), [llc, beta], [llc_se, beta_se])
    assert check.margin.stderr == pytest.approx(mc_margin, rel=0.03)
    naive_independent = math.hypot(llc_se, d_s.stderr)
    assert check.margin.stderr < 0.8 * naive_independent
    # D_xi = xi^(2 - 2 / beta) and 1 / (m D_xi)
    xi = 0.3
    d_xi = coarse_grained_diffusion_coefficient(xi, exps)
    mc_d = _monte_carlo_std(lambda b: xi ** (2 - 2 / b), [beta], [beta_se])
    assert d_xi.stderr == pytest.approx(mc_d, rel=0.05)
    temperature = effective_temperature(5000, d_xi)
    mc_t = _monte_carlo_std(lambda b: 1 / (5000 * xi ** (2 - 2 / b)), [beta], [beta_se])
    assert temperature.stderr == pytest.approx(mc_t, rel=0.06)
    # inverse Alexander-Orbach with both errors
    back = exponents_from_dimensions(
        llc, 14.0, mean_llc_stderr=llc_se, spectral_dimension_stderr=0.3
    )
    mc_b = _monte_carlo_std(lambda lam, ds: ds / lam, [llc, 14.0], [llc_se, 0.3])
    assert back.msd_exponent_stderr == pytest.approx(mc_b, rel=0.03)


def test_stderr_from_a_fitted_exponent_flows_through():
    t = np.arange(1.0, 2000.0)
    rng = np.random.default_rng(4)
    rows = t**0.6 * np.exp(rng.normal(0, 0.03, (8, t.size)))
    from fractaldiff.fitting import fit_msd

    exps = fit_msd(t, rows)
    d_s = spectral_dimension(Estimate(30.0, 1.0), exps)
    expected = math.hypot(exps.msd_exponent * 1.0, 30.0 * exps.msd_exponent_stderr)
    assert d_s.stderr == pytest.approx(expected)
    assert d_s.ci[0] < d_s.value < d_s.ci[1]


@settings(max_examples=50, deadline=None)
@given(llc=st.floats(0.01, 1e4), walk=st.floats(1.01, 50.0))
def test_alexander_orbach_round_trip(llc, walk):
    exps = DiffusionExponents.from_walk_dimension(walk)
    d_s = spectral_dimension(llc, exps).value
    assert d_s == pytest.approx(2 * llc / walk, rel=1e-12)
    assert exponents_from_dimensions(llc, d_s).walk_dimension == pytest.approx(walk, rel=1e-9)
    assert check_spectral_bound(llc, exps).satisfied == (walk >= 2)


def test_estimate_interval_and_repr():
    est = Estimate(10.0, 1.0)
    assert est.ci == pytest.approx((10 - 1.959964, 10 + 1.959964), abs=1e-5)
    assert float(est) == 10.0 and est.relative_stderr == pytest.approx(0.1)
    assert repr(est).startswith("Estimate(10 ± 1")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: spectral_dimension(-1.0, DiffusionExponents(1.0)),
            ValueError,
            r"mean_llc must be > 0",
        ),
        (
            lambda: spectral_dimension(1.0, 2.5),
            TypeError,
            r"exponents must be a DiffusionExponents",
        ),
        (
            lambda: spectral_dimension(np.nan, DiffusionExponents(1.0)),
            ValueError,
            r"mean_llc must be finite",
        ),
        (
            lambda: spectral_dimension("3", DiffusionExponents(1.0)),
            TypeError,
            r"mean_llc must be a real number",
        ),
        (
            lambda: spectral_dimension(3.0, DiffusionExponents(1.0), mean_llc_stderr=-1),
            ValueError,
            r"mean_llc_stderr must be >= 0",
        ),
        (
            lambda: spectral_dimension(
                Estimate(3.0, 0.1), DiffusionExponents(1.0), mean_llc_stderr=0.1
            ),
            TypeError,
            r"do not pass mean_llc_stderr",
        ),
        (
            lambda: exponents_from_dimensions(3.0, 0.0),
            ValueError,
            r"spectral_dimension must be > 0",
        ),
        (
            lambda: coarse_grained_diffusion_coefficient(0.0, DiffusionExponents(1.0)),
            ValueError,
            r"coarse_graining_scale must be > 0",
        ),
        (lambda: effective_temperature(0, 1.0), ValueError, r"n_samples must be > 0"),
        (lambda: effective_temperature(10.5, 1.0), TypeError, r"n_samples must be an integer"),
        (lambda: effective_temperature(10, -1.0), ValueError, r"diffusion_coefficient must be > 0"),
        (
            lambda: check_spectral_bound(3.0, DiffusionExponents(1.0), confidence=2),
            ValueError,
            r"confidence must be in \(0, 1\)",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
