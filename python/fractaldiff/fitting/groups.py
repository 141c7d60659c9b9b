"""Exponents per parameter group (layer, module, block) on one shared window.

Per-group exponents are only comparable when they describe the same stretch of time: an
automatic window chosen per group can put one layer's fit on its early, super-diffusive
regime and another's on its late, sub-diffusive one. :func:`fit_groups` chooses the window
once, on a reference curve (the total over all groups by default), and fits every group on
it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._validation import as_real_array
from .exponents import ExponentFit, fit_exponent
from .windows import WINDOW_RULES

__all__ = ["fit_groups"]


def fit_groups(t: Any, groups: Mapping[str, Any], *, window: Any = "auto",
               shared_window: bool = True, reference: str | None = None,
               **options: Any) -> dict[str, ExponentFit]:
    """Fit every group's curve; by default all on one window chosen on a reference curve.

    Parameters
    ----------
    t : array_like, shape (N,)
        Lags or times (> 0, increasing), common to all groups.
    groups : mapping of str to array_like, shape (N,) or (n_rows, N)
        One curve (or rows of replicate curves) per group, e.g. the per-group MSDs of
        ``fd.msd(X, groups="modules")`` with the zero lag dropped. A ``"total"`` entry, if
        present, is fitted like the others.
    window : "auto", "last_regime", "first_regime", None or (t_min, t_max), default "auto"
        The window rule (see :func:`fractaldiff.fit_exponent`), applied to the reference
        curve when ``shared_window``.
    shared_window : bool, default True
        Fit every group on the reference curve's window. False applies ``window`` to each
        group separately (their exponents may then describe different regimes).
    reference : str, optional
        The group whose curve chooses the window. Default: ``"total"`` if present, else the
        sum of the groups' curves (row means for 2-D entries).
    **options
        Passed to :func:`fractaldiff.fit_exponent` (``curve``, ``cov``, ``n_snapshots``, ...).

    Returns
    -------
    dict of str to ExponentFit
        Keyed like ``groups``; with a shared window every fit's ``window_rule`` starts with
        ``"shared:"`` and names the reference.
    """
    func = "fit_groups"
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"{func}: groups must be a non-empty mapping of name to curve")
    t_arr = as_real_array(t, "t", func)
    if not shared_window or not (isinstance(window, str) and window in WINDOW_RULES):
        return {name: fit_exponent(t_arr, curve, window=window, **options)
                for name, curve in groups.items()}
    if reference is None:
        reference = "total" if "total" in groups else None
    if reference is not None:
        if reference not in groups:
            raise KeyError(f"{func}: reference {reference!r} is not one of the groups "
                           f"{sorted(groups)}")
        ref_curve = groups[reference]
        ref_name = repr(reference)
    else:
        curves = [np.atleast_2d(as_real_array(c, f"groups[{k!r}]", func)).mean(axis=0)
                  for k, c in groups.items()]
        ref_curve = np.sum(curves, axis=0)
        ref_name = "the sum of the groups"
    ref_options = {k: v for k, v in options.items() if k != "cov"}
    ref_cov = options.get("cov")
    if ref_cov is None or isinstance(ref_cov, str):
        ref_options["cov"] = ref_cov if np.ndim(ref_curve) == 1 else None
    if np.ndim(ref_curve) == 1 and ref_options.get("cov") is None:
        ref_options["cov"] = "independent"  # only the window is used
    ref_fit = fit_exponent(t_arr, ref_curve, window=window, **ref_options)
    lo, hi = ref_fit.window
    out = {}
    for name, curve in groups.items():
        fit = fit_exponent(t_arr, curve, window=(lo, hi), **options)
        out[name] = dataclasses.replace(
            fit, window_rule=f"shared: chosen on {ref_name} by {ref_fit.window_rule}",
            regime_index=ref_fit.regime_index, regime_windows=ref_fit.regime_windows,
            regime_exponents=ref_fit.regime_exponents)
    return out
