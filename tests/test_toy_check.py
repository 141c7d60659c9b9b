"""toy_singular_check: SGLD on f = w1 w2 x converges to the grid posterior."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")

import fractaldiff.bayes as fb  # noqa: E402


@pytest.fixture(scope="module")
def toy():
    return fb.toy_singular_check(n_chains=200, n_steps=8000, n_burnin=1000, seed=1)


def test_sgld_converges_to_grid_posterior(toy):
    conv = toy.sgld_convergence
    assert len(conv) >= 3
    steps, js = zip(*conv)
    assert list(steps) == sorted(steps)
    # distance shrinks with run length (histogram noise and the memory of the start decay)
    assert js[-1] < js[0]
    assert js[-1] < 0.5 * js[0]
    assert toy.distances["posterior-sgld"]["js"] < 0.02
    assert toy.distances["posterior-sgld"]["js"] == pytest.approx(js[-1])


def test_result_is_consistent(toy, tmp_path):
    for h in (toy.posterior, toy.sgld, toy.sgd, toy.sgd_tempered):
        assert h.shape == (40, 40) and math.isclose(h.sum(), 1.0) and (h >= 0).all()
    # the posterior is symmetric under w -> -w (f depends on w1 w2 only)
    np.testing.assert_allclose(toy.posterior, toy.posterior[::-1, ::-1], atol=1e-12)
    for d in toy.distances.values():
        assert 0 <= d["js"] <= math.log(2) and 0 <= d["tv"] <= 1
    # the fitted temperature fits SGD at least as well as the Bayesian one
    assert toy.distances["sgd_tempered-sgd"]["js"] <= toy.distances["posterior-sgd"]["js"]
    assert 50 < toy.sgd_predicted_nbeta < 1000  # 2B/(lr var(xy)), var(xy) ~ 1
    assert "posterior-sgld" in toy.table()
    pytest.importorskip("matplotlib")
    toy.plot(tmp_path / "toy.png")
    assert (tmp_path / "toy.png").stat().st_size > 0


def test_bad_input():
    with pytest.raises(ValueError, match="n_burnin"):
        fb.toy_singular_check(n_steps=10, n_burnin=10)
    with pytest.raises(ValueError, match="sgd_batch_size"):
        fb.toy_singular_check(n=10, sgd_batch_size=11)
    with pytest.raises(ValueError, match="prior_std"):
        fb.toy_singular_check(prior_std=0)
    with pytest.raises(FloatingPointError, match="diverged"):
        fb.toy_singular_check(n_chains=4, n_steps=300, n_burnin=10, sgld_step_size=1.0)
