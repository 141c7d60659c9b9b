"""train_ensemble: the vmapped ensemble equals a loop of single train() calls."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import fractaldiff as fd  # noqa: E402
import fractaldiff.train as ft  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # tiny batched kernels: one thread is faster, and far faster on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def moons():
    return ft.two_moons(240, seed=1)


def _loop(model_fn, data, seeds, **kw):
    out = []
    for s in seeds:
        m = model_fn(int(s))
        h = ft.train(m, data, seed=int(s), device="cpu", **kw)
        out.append((m, h))
    return out


@pytest.mark.parametrize("backend", ["auto", "vmap"])
@pytest.mark.parametrize("bn", [True, False])
def test_sgd_momentum_equals_loop(moons, bn, backend):
    mf = lambda s: ft.mlp(2, 2, width=8, depth=2, batch_norm=bn, seed=s)  # noqa: E731
    kw = dict(lr=0.05, batch_size=16, steps=30, momentum=0.9, weight_decay=1e-3)
    ens = ft.train_ensemble(mf, moons, 3, seed=5, backend=backend, **kw)
    assert ens.config["backend"] == ("bmm" if backend == "auto" else "vmap")
    assert list(ens.seeds) == [5, 6, 7]
    for i, (m, h) in enumerate(_loop(mf, moons, ens.seeds, **kw)):
        for k, p in m.named_parameters():
            np.testing.assert_allclose(ens.params[k][i].numpy(), p.detach().numpy(),
                                       atol=2e-5, rtol=1e-4, err_msg=k)
        for k, b in m.named_buffers():
            np.testing.assert_allclose(ens.buffers[k][i].double().numpy(),
                                       b.double().numpy(), atol=2e-5, rtol=1e-4, err_msg=k)
        np.testing.assert_allclose(ens.loss[i], h.loss, atol=1e-5, rtol=1e-5)
        assert ens.train_loss[i] == pytest.approx(h.final["train_loss"], abs=1e-5)
        assert ens.train_accuracy[i] == pytest.approx(h.final["train_accuracy"])
        assert ens.test_accuracy[i] == pytest.approx(h.final["test_accuracy"])
        np.testing.assert_allclose(ens.predict(moons.x_test)[i].numpy(),
                                   ens.member(i)(torch.as_tensor(moons.x_test)).detach().numpy(),
                                   atol=1e-5)


def test_adam_equals_loop_across_epochs(moons):
    mf = lambda s: ft.mlp(2, 2, width=8, depth=1, batch_norm=False, seed=s)  # noqa: E731
    kw = dict(lr=1e-2, batch_size=50, epochs=3, optimizer="adam", drop_last=False)
    ens = ft.train_ensemble(mf, moons, 2, seeds=[11, 3], **kw)
    for i, (m, h) in enumerate(_loop(mf, moons, [11, 3], **kw)):
        assert ens.steps == h.steps == len(h.loss)
        for k, p in m.named_parameters():
            np.testing.assert_allclose(ens.params[k][i].numpy(), p.detach().numpy(),
                                       atol=2e-5, rtol=1e-4, err_msg=k)


def test_adam_with_batchnorm_same_training_losses(moons):
    # Adam normalizes the float noise of the (exactly zero) gradient of the biases in front of
    # BatchNorm, so those biases (and the running means that track them) differ between the
    # batched and the looped kernels; the training-mode function does not (BatchNorm removes
    # them): the minibatch losses of every step agree.
    mf = lambda s: ft.mlp(2, 2, width=8, depth=2, seed=s)  # noqa: E731
    kw = dict(lr=1e-2, batch_size=16, steps=20, optimizer="adam")
    ens = ft.train_ensemble(mf, moons, 2, **kw)
    for i, (m, h) in enumerate(_loop(mf, moons, ens.seeds, **kw)):
        np.testing.assert_allclose(ens.loss[i], h.loss, atol=1e-5)
        for k, p in m.named_parameters():
            if not (k.startswith("fc") and k.endswith("bias")):
                np.testing.assert_allclose(ens.params[k][i].numpy(), p.detach().numpy(),
                                           atol=1e-4, rtol=1e-3, err_msg=k)


def test_recording_and_displacement(moons, tmp_path):
    mf = lambda s: ft.mlp(2, 2, width=4, depth=1, seed=s)  # noqa: E731
    ens = ft.train_ensemble(mf, moons, 3, lr=0.1, batch_size=40, steps=12,
                            record=tmp_path / "ens", record_every=4)
    D = ens.n_params
    with fd.open_store(tmp_path / "ens") as st:
        X = np.asarray(st[:])
        assert X.shape == (4, 3 * D)  # steps 0, 4, 8, 12
        assert st.meta["n_models"] == 3 and st.meta["n_params_per_member"] == D
    final = ens.flat_params()
    for i in range(3):
        np.testing.assert_allclose(X[-1, i * D:(i + 1) * D], final[i], atol=1e-6)
        init = np.concatenate([p.detach().numpy().ravel()
                               for p in mf(int(ens.seeds[i])).parameters()])
        np.testing.assert_allclose(X[0, i * D:(i + 1) * D], init, atol=1e-6)
        assert ens.displacement_steps[-1] == 12
        assert ens.displacement[i, -1] == pytest.approx(np.linalg.norm(final[i] - init),
                                                        rel=1e-4)
    assert ens.displacement[:, 0].max() == 0.0
    s = ens.summary()
    assert s["n_models"] == 3 and 0 <= s["train_accuracy"]["mean"] <= 1


def test_mse_loss_runs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5])).astype(np.float32)
    ens = ft.train_ensemble(lambda s: torch.nn.Linear(3, 1), (x, y), 4, lr=0.1,
                            batch_size=16, steps=200, loss="mse")
    assert ens.train_loss.max() < 1e-3
    assert np.isnan(ens.train_accuracy).all()


def test_bad_input(moons):
    mf = lambda s: ft.mlp(2, 2, width=4, depth=1, seed=s)  # noqa: E731
    kw = dict(lr=0.1, batch_size=8, steps=2)
    with pytest.raises(ValueError, match="n_models must be >= 2"):
        ft.train_ensemble(mf, moons, 1, **kw)
    with pytest.raises(ValueError, match="differ in architecture"):
        ft.train_ensemble(lambda s: ft.mlp(2, 2, width=4 + s, depth=1), moons, 2, **kw)
    with pytest.raises(ValueError, match="distinct"):
        ft.train_ensemble(mf, moons, 2, seeds=[1, 1], **kw)
    with pytest.raises(ValueError, match="momentum"):
        ft.train_ensemble(mf, moons, 2, optimizer="adam", momentum=0.9, **kw)
    with pytest.raises(ValueError, match="exactly one"):
        ft.train_ensemble(mf, moons, 2, lr=0.1, batch_size=8)
    with pytest.raises(ValueError, match="lr"):
        ft.train_ensemble(mf, moons, 2, lr=0.0, batch_size=8, steps=1)
    with pytest.raises(ValueError, match="larger than"):
        ft.train_ensemble(mf, moons, 2, lr=0.1, batch_size=10**6, steps=1)
    with pytest.raises(TypeError, match="nn.Module"):
        ft.train_ensemble(lambda s: None, moons, 2, **kw)
    y3 = np.asarray(moons.y_train).copy()
    y3[0] = 2
    with pytest.raises(ValueError, match="y_train holds class label 2 but the model has 2"):
        ft.train_ensemble(mf, (moons.x_train, y3), 2, **kw)
    with pytest.raises(ValueError, match="backend='bmm' needs"):
        ft.train_ensemble(lambda s: torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()),
                          moons, 2, backend="bmm", **kw)
