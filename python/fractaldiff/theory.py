"""The paper's derived dimensions, with propagated uncertainties.

Hennick & De Baerdemacker (arXiv 2503.22478) relate the local learning
coefficient (LLC) lambda -- the local fractal (mass) dimension of the loss
landscape -- to the diffusion of the weights through the local Alexander-Orbach
relation d_walk = 2 lambda / d_s. With lambda_bar, the LLC averaged over
training checkpoints, and the measured walk dimension:

* spectral dimension         d_s = 2 lambda_bar / d_walk = 2 lambda_bar alpha = lambda_bar beta
* Lemma 3.4 (late training)  d_s <= lambda_bar, i.e. beta <= 1 (sub- or normal diffusion)
* coarse-grained diffusion   D_xi = xi^(2 - d_walk) at coarse-graining scale xi
* effective temperature      1 / (m D_xi) of the tempered posterior
                             p(w | X_m) ∝ rho(w) p_s(w)^(m D_xi), m samples.

Here beta is the ``msd_exponent``, alpha = beta / 2 the ``displacement_exponent``
and d_walk = 2 / beta the ``walk_dimension`` (see
:class:`fractaldiff.fitting.DiffusionExponents`, which every function here takes
so that no exponent is ever passed without its name).

Uncertainties are propagated by the delta method: for f(a, b) of independent
estimates, se(f)^2 = (df/da)^2 se(a)^2 + (df/db)^2 se(b)^2, a first-order Taylor
expansion. The LLC and the diffusion exponent come from different measurements
(SGLD sampling versus the weight trajectory) and are treated as independent.
Intervals are normal, value ± z se; the first-order terms dominate when each
relative error is small (for a product a b the neglected term is
se(a)^2 se(b)^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._validation import check_probability, check_real, warn_at_caller
from .fitting import DiffusionExponents, WindowWarning

__all__ = [
    "VERDICTS",
    "interval_verdict",
    "Estimate",
    "SpectralBoundCheck",
    "check_spectral_bound",
    "coarse_grained_diffusion_coefficient",
    "effective_temperature",
    "exponents_from_dimensions",
    "spectral_dimension",
]


@dataclass(frozen=True, repr=False)
class Estimate:
    """A value with its standard error and a normal interval.

    Attributes
    ----------
    value : float
    stderr : float
        Standard error (>= 0; 0 when the inputs carried no uncertainty).
    confidence : float
        Level of ``ci``.
    """

    value: float
    stderr: float = 0.0
    confidence: float = 0.95

    @property
    def ci(self) -> tuple[float, float]:
        """value ± z stderr, z the normal quantile for ``confidence``."""
        z = float(stats.norm.ppf(0.5 + self.confidence / 2.0))
        return (self.value - z * self.stderr, self.value + z * self.stderr)

    @property
    def relative_stderr(self) -> float:
        """stderr / |value| (inf when value is 0)."""
        return math.inf if self.value == 0 else self.stderr / abs(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        lo, hi = self.ci
        return (
            f"Estimate({self.value:.6g} ± {self.stderr:.3g}, "
            f"{100 * self.confidence:g}% CI [{lo:.6g}, {hi:.6g}])"
        )


def _estimate(value: Any, stderr: Any, name: str, func: str, *, positive: bool) -> Estimate:
    """A number or an Estimate (with ``stderr`` only for plain numbers) as an Estimate."""
    if isinstance(value, Estimate):
        if stderr is not None:
            raise TypeError(
                f"{func}: {name} is an Estimate, which carries its own stderr; do not pass "
                f"{name}_stderr as well"
            )
        number, error = value.value, value.stderr
    else:
        number = check_real(value, name, func)
        error = 0.0 if stderr is None else check_real(stderr, f"{name}_stderr", func)
    if positive and number <= 0:
        raise ValueError(f"{func}: {name} must be > 0, got {number!r}")
    if error < 0:
        raise ValueError(f"{func}: {name}_stderr must be >= 0, got {error!r}")
    return Estimate(number, error)


def _exponents(exponents: Any, func: str) -> DiffusionExponents:
    if not isinstance(exponents, DiffusionExponents):
        raise TypeError(
            f"{func}: exponents must be a DiffusionExponents (from fit_msd, "
            "fit_displacement or DiffusionExponents.from_walk_dimension / "
            "from_msd_exponent / from_displacement_exponent), so that the exponent is "
            f"named; got {type(exponents).__name__}"
        )
    return exponents


def _warn_if_not_late(exps: DiffusionExponents, func: str) -> None:
    """The paper's relations hold late in training: warn when the exponent was fitted on an
    earlier regime of a curve with several."""
    fit = exps.fit
    if fit is None or not fit.n_regimes or fit.regime_index is None:
        return
    if fit.regime_index != fit.n_regimes - 1:
        warn_at_caller(
            f"{func}: the exponent describes {fit.regime} of the curve (t = "
            f"{fit.window[0]:g}..{fit.window[1]:g}), not its late regime, which the paper's "
            "relations are about; fit with window='last_regime'",
            WindowWarning,
        )


def _check_confidence(confidence: Any, func: str) -> float:
    return check_probability(check_real(confidence, "confidence", func), "confidence", func)


def spectral_dimension(
    mean_llc: float | Estimate,
    exponents: DiffusionExponents,
    *,
    mean_llc_stderr: float | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """Spectral dimension d_s = 2 lambda_bar / d_walk = lambda_bar * beta.

    Parameters
    ----------
    mean_llc : float or Estimate
        lambda_bar, the LLC averaged over training checkpoints (> 0, dimensionless).
    exponents : DiffusionExponents
        The measured diffusion exponent (its ``msd_exponent`` beta and stderr are used).
    mean_llc_stderr : float, optional
        Standard error of ``mean_llc`` when it is a plain number.
    confidence : float, default 0.95

    Returns
    -------
    Estimate
        d_s with se(d_s)^2 = beta^2 se(lambda_bar)^2 + lambda_bar^2 se(beta)^2
        (delta method, independent errors).
    """
    func = "spectral_dimension"
    llc = _estimate(mean_llc, mean_llc_stderr, "mean_llc", func, positive=True)
    exps = _exponents(exponents, func)
    beta, beta_se = exps.msd_exponent, exps.msd_exponent_stderr
    value = llc.value * beta
    stderr = math.hypot(beta * llc.stderr, llc.value * beta_se)
    return Estimate(value, stderr, _check_confidence(confidence, func))


def exponents_from_dimensions(
    mean_llc: float | Estimate,
    spectral_dimension: float | Estimate,
    *,
    mean_llc_stderr: float | None = None,
    spectral_dimension_stderr: float | None = None,
    confidence: float = 0.95,
) -> DiffusionExponents:
    """Diffusion exponents implied by lambda_bar and d_s (Alexander-Orbach, inverted).

    d_walk = 2 lambda_bar / d_s, so beta = d_s / lambda_bar and the displacement
    exponent is alpha = d_s / (2 lambda_bar). This reproduces the paper's Table 1
    arithmetic: lambda = 32, d_s = 21.422 give alpha = 21.422 / 64 = 0.335.

    Parameters
    ----------
    mean_llc : float or Estimate
        lambda_bar (> 0).
    spectral_dimension : float or Estimate
        d_s (> 0).
    mean_llc_stderr, spectral_dimension_stderr : float, optional
        Standard errors of plain-number inputs.
    confidence : float, default 0.95

    Returns
    -------
    DiffusionExponents
        With se(beta)^2 = (se(d_s) / lambda_bar)^2 + (d_s se(lambda_bar) / lambda_bar^2)^2.
    """
    func = "exponents_from_dimensions"
    llc = _estimate(mean_llc, mean_llc_stderr, "mean_llc", func, positive=True)
    d_s = _estimate(
        spectral_dimension, spectral_dimension_stderr, "spectral_dimension", func, positive=True
    )
    beta = d_s.value / llc.value
    beta_se = math.hypot(d_s.stderr / llc.value, d_s.value * llc.stderr / llc.value**2)
    return DiffusionExponents.from_msd_exponent(
        beta, beta_se, confidence=_check_confidence(confidence, func)
    )


#: the three answers of a test-like check
VERDICTS = ("holds", "violated", "consistent within error")


def interval_verdict(margin: Estimate) -> str:
    """The verdict on ``margin >= 0`` from its interval at ``margin.confidence``.

    "holds" when the interval lies strictly above 0, "violated" when it lies
    strictly below 0, "consistent within error" when it contains 0 (the data cannot tell).
    """
    lo, hi = margin.ci
    if lo > 0:
        return "holds"
    if hi < 0:
        return "violated"
    return "consistent within error"


@dataclass(frozen=True, repr=False)
class SpectralBoundCheck:
    """Lemma 3.4 of the paper: d_s <= lambda_bar late in training.

    ``verdict`` is one of "holds" (the margin's interval lies above 0), "violated"
    (below 0) or "consistent within error" (it contains 0), with ``z_score`` the
    margin in standard errors. The bound is a late-time statement: check it with an
    exponent fitted on the late regime (``fit_msd(..., window="last_regime")``).

    Attributes
    ----------
    spectral_dimension : Estimate
        d_s = lambda_bar beta.
    mean_llc : Estimate
        lambda_bar.
    margin : Estimate
        lambda_bar - d_s = lambda_bar (1 - beta); >= 0 when the bound holds. Its
        standard error accounts for d_s being computed from lambda_bar:
        se^2 = (1 - beta)^2 se(lambda_bar)^2 + lambda_bar^2 se(beta)^2.
    relative_margin : Estimate
        margin / lambda_bar = 1 - beta = 1 - 2 / d_walk (independent of the LLC).
    """

    spectral_dimension: Estimate
    mean_llc: Estimate
    margin: Estimate
    relative_margin: Estimate

    @property
    def satisfied(self) -> bool:
        """Whether the estimates satisfy d_s <= lambda_bar (margin >= 0)."""
        return self.margin.value >= 0

    @property
    def z_score(self) -> float:
        """margin / se(margin): how many standard errors the margin is from 0."""
        if self.margin.stderr == 0:
            return math.copysign(math.inf, self.margin.value) if self.margin.value else 0.0
        return self.margin.value / self.margin.stderr

    @property
    def verdict(self) -> str:
        """"holds", "violated" or "consistent within error" (see :data:`VERDICTS`)."""
        return interval_verdict(self.margin)

    @property
    def significant(self) -> bool:
        """Whether the interval of the margin excludes 0 (the verdict is not noise)."""
        lo, hi = self.margin.ci
        return lo > 0 or hi < 0

    def __repr__(self) -> str:
        lo, hi = self.margin.ci
        return (
            f"SpectralBoundCheck(d_s={self.spectral_dimension.value:.4g} <= "
            f"lambda_bar={self.mean_llc.value:.4g}: {self.verdict}, z={self.z_score:.3g}, "
            f"margin={self.margin.value:.4g} ± {self.margin.stderr:.3g} "
            f"[{100 * self.margin.confidence:g}% CI {lo:.4g}, {hi:.4g}])"
        )


def check_spectral_bound(
    mean_llc: float | Estimate,
    exponents: DiffusionExponents,
    *,
    mean_llc_stderr: float | None = None,
    confidence: float = 0.95,
) -> SpectralBoundCheck:
    """Check Lemma 3.4, d_s <= lambda_bar, and report its margin.

    Since d_s = lambda_bar beta, the bound is equivalent to beta <= 1 for a
    positive LLC: late-stage SGD must be sub-diffusive (or at most Brownian).

    Parameters
    ----------
    mean_llc : float or Estimate
        lambda_bar (> 0).
    exponents : DiffusionExponents
        Measured late-stage exponent.
    mean_llc_stderr : float, optional
    confidence : float, default 0.95

    Returns
    -------
    SpectralBoundCheck

    Warns
    -----
    WindowWarning
        When ``exponents`` were fitted on a regime other than the last of their curve
        (the bound is a late-time statement; fit with ``window="last_regime"``).
    """
    func = "check_spectral_bound"
    level = _check_confidence(confidence, func)
    llc = _estimate(mean_llc, mean_llc_stderr, "mean_llc", func, positive=True)
    exps = _exponents(exponents, func)
    _warn_if_not_late(exps, func)
    beta, beta_se = exps.msd_exponent, exps.msd_exponent_stderr
    d_s = spectral_dimension(llc, exps, confidence=level)
    margin_value = llc.value * (1.0 - beta)
    margin_se = math.hypot((1.0 - beta) * llc.stderr, llc.value * beta_se)
    return SpectralBoundCheck(
        spectral_dimension=d_s,
        mean_llc=Estimate(llc.value, llc.stderr, level),
        margin=Estimate(margin_value, margin_se, level),
        relative_margin=Estimate(1.0 - beta, beta_se, level),
    )


def coarse_grained_diffusion_coefficient(
    coarse_graining_scale: float,
    exponents: DiffusionExponents,
    *,
    confidence: float = 0.95,
) -> Estimate:
    """Coarse-grained diffusion coefficient D_xi = xi^(2 - d_walk).

    Parameters
    ----------
    coarse_graining_scale : float
        xi (> 0), the length scale, in parameter units, over which the dynamics
        are coarse-grained.
    exponents : DiffusionExponents
        Supplies d_walk and its standard error.
    confidence : float, default 0.95

    Returns
    -------
    Estimate
        D_xi with se = |ln xi| D_xi se(d_walk) (delta method). Brownian motion
        (d_walk = 2) gives D_xi = 1 at every scale.
    """
    func = "coarse_grained_diffusion_coefficient"
    xi = check_real(coarse_graining_scale, "coarse_graining_scale", func)
    if xi <= 0:
        raise ValueError(
            f"{func}: coarse_graining_scale must be > 0, got {coarse_graining_scale!r}"
        )
    exps = _exponents(exponents, func)
    d_walk = exps.walk_dimension
    if not math.isfinite(d_walk):
        raise ValueError(f"{func}: exponents has an infinite walk dimension (msd_exponent = 0)")
    value = xi ** (2.0 - d_walk)
    stderr = abs(math.log(xi)) * value * exps.walk_dimension_stderr
    return Estimate(value, stderr, _check_confidence(confidence, func))


def effective_temperature(
    n_samples: int,
    diffusion_coefficient: float | Estimate,
    *,
    diffusion_coefficient_stderr: float | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """Effective temperature 1 / (m D_xi) of SGD's tempered posterior.

    The local steady state is p(w | X_m) ∝ rho(w) p_s(w)^(m D_xi); the exponent
    m D_xi is an inverse temperature.

    Parameters
    ----------
    n_samples : int
        m, the number of training samples (> 0).
    diffusion_coefficient : float or Estimate
        D_xi (> 0), e.g. from :func:`coarse_grained_diffusion_coefficient`.
    diffusion_coefficient_stderr : float, optional
        Standard error of a plain-number ``diffusion_coefficient``.
    confidence : float, default 0.95

    Returns
    -------
    Estimate
        1 / (m D_xi) with se = se(D_xi) / (m D_xi^2) (delta method).
    """
    func = "effective_temperature"
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"{func}: n_samples must be an integer, got {n_samples!r}")
    if n_samples <= 0:
        raise ValueError(f"{func}: n_samples must be > 0, got {n_samples!r}")
    diffusion = _estimate(
        diffusion_coefficient,
        diffusion_coefficient_stderr,
        "diffusion_coefficient",
        func,
        positive=True,
    )
    m = float(n_samples)
    value = 1.0 / (m * diffusion.value)
    stderr = diffusion.stderr / (m * diffusion.value**2)
    return Estimate(value, stderr, _check_confidence(confidence, func))
