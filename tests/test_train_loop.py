"""fractaldiff.train.train, the built-in data sets and models."""

import gzip
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fractaldiff as fd  # noqa: E402
from fractaldiff.train import TrainHistory, mlp, train  # noqa: E402
from fractaldiff.train.data import Dataset, load_dataset, load_idx, mnist  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from fractaldiff.train import digits

    return digits()


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_deterministic_under_seed(digits):
    runs = []
    for _ in range(2):
        model = mlp(64, 10, width=16, depth=2, seed=3)
        hist = train(model, digits, lr=0.05, batch_size=32, steps=30, seed=7, device="cpu")
        runs.append((hist.loss, _flat(model)))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    model = mlp(64, 10, width=16, depth=2, seed=3)
    other = train(model, digits, lr=0.05, batch_size=32, steps=30, seed=8, device="cpu")
    assert other.loss != runs[0][0]  # another batch order


def test_history_and_learning(digits):
    model = mlp(64, 10, width=32, depth=2, seed=0)
    hist = train(model, digits, lr=0.1, batch_size=32, epochs=3, seed=0, device="cpu")
    assert isinstance(hist, TrainHistory)
    per_epoch = digits.n_train // 32
    assert hist.steps == 3 * per_epoch == len(hist.loss) and hist.epochs == 3
    assert [e["epoch"] for e in hist.evals] == [0, 1, 2]
    assert [e["step"] for e in hist.evals] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert hist.test_accuracy > 0.85 and hist.train_accuracy > 0.85
    assert np.mean(hist.loss[-20:]) < np.mean(hist.loss[:20])
    assert hist.stopped is None and hist.seconds > 0 and hist.to_dict()["steps"] == hist.steps


def test_sgd_and_adam_and_recorder_path(digits, tmp_path):
    finals = {}
    for opt in ("sgd", "adam"):
        model = mlp(64, 10, width=8, depth=1, seed=0)
        hist = train(model, digits, optimizer=opt, lr=0.01, batch_size=64, steps=12, seed=0,
                     device="cpu", recorder=tmp_path / f"{opt}.fdstore", eval_every=5)
        assert [e["step"] for e in hist.evals] == [5, 10, 12]
        finals[opt] = _flat(model)
        with fd.open_store(tmp_path / f"{opt}.fdstore") as s:
            assert s.shape == (13, finals[opt].numel())
            np.testing.assert_array_equal(s[-1], finals[opt].numpy())
            assert s.meta["optimizer"] == opt and s.meta["lr"] == 0.01
            assert list(s.metadata["batch_size"][1:]) == [64] * 12
            np.testing.assert_allclose(s.metadata["loss"][1:], hist.loss, rtol=1e-6)
    assert not torch.equal(finals["sgd"], finals["adam"])
    model = mlp(64, 10, width=8, depth=1, seed=0)
    train(model, digits, lr=0.01, batch_size=64, steps=3, momentum=0.9, weight_decay=1e-3,
          device="cpu")


def test_tuple_data_steps_over_epochs_and_nan_stop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g)
    y = (x.sum(1) > 0).long()
    model = mlp(2, 2, width=4, depth=1, batch_norm=False, seed=0)
    hist = train(model, (x.numpy(), y.numpy()), lr=0.1, batch_size=16, steps=7, device="cpu")
    assert hist.steps == 7 and hist.epochs == 4 and "test_accuracy" not in hist.final
    model = mlp(2, 2, width=4, depth=1, batch_norm=False, seed=0)
    hist = train(model, (x * 1e30, y), lr=1e30, batch_size=8, steps=50, device="cpu")
    assert hist.stopped is not None and "non-finite" in hist.stopped
    assert hist.steps < 50 and not np.isfinite(hist.loss[-1])


def test_bad_input(digits):
    model = mlp(64, 10, width=4, depth=1, seed=0)
    kw = dict(lr=0.1, batch_size=32, steps=2, device="cpu")
    with pytest.raises(ValueError, match="lr"):
        train(model, digits, **{**kw, "lr": 0.0})
    with pytest.raises(ValueError, match="exactly one of epochs= or steps="):
        train(model, digits, epochs=1, **kw)
    with pytest.raises(ValueError, match="batch_size=5000"):
        train(model, digits, **{**kw, "batch_size": 5000})
    with pytest.raises(ValueError, match="optimizer"):
        train(model, digits, optimizer="lbfgs", **kw)
    with pytest.raises(ValueError, match="momentum"):
        train(model, digits, optimizer="adam", momentum=0.9, **kw)
    with pytest.raises(TypeError, match="data"):
        train(model, "digits", **kw)
    with pytest.raises(ValueError, match="as many rows as y_train"):
        train(model, (digits.x_train, digits.y_train[:-1]), **kw)
    # labels and model checked against each other before the first step
    before = [p.detach().clone() for p in model.parameters()]
    bad_y = digits.y_train.copy()
    bad_y[3] = 10
    with pytest.raises(ValueError, match="y_train holds class label 10 but the model has 10 "
                                         "outputs"):
        train(model, (digits.x_train, bad_y), **kw)
    bad_test = digits.y_test.copy()
    bad_test[0] = 12
    with pytest.raises(ValueError, match="y_test holds class label 12"):
        train(model, (digits.x_train, digits.y_train, digits.x_test, bad_test), **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.training
    with pytest.raises(ValueError, match="could not be applied to data x_train of shape"):
        train(mlp(32, 10, width=4, depth=1), digits, **kw)
    with pytest.raises(ValueError, match="class logits"):
        train(torch.nn.Sequential(torch.nn.Linear(64, 1), torch.nn.Flatten(0)), digits, **kw)
    with pytest.raises(TypeError, match="integer class labels"):
        train(model, (digits.x_train, digits.y_train.astype(float)), **kw)
    with pytest.raises(ValueError, match="NaN"):
        train(model, (np.full((4, 64), np.nan), np.zeros(4, int)), **{**kw, "batch_size": 2})
    with pytest.raises(TypeError, match="torch.nn.Module"):
        train(lambda x: x, digits, **kw)
    with pytest.raises(ValueError, match="different model"):
        from fractaldiff.train import Recorder

        with Recorder(mlp(64, 10, width=4, depth=1), None, online=True) as rec:
            train(model, digits, recorder=rec, **kw)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(model, digits, **{**kw, "device": "cuda"})


def test_datasets_and_models(tmp_path):
    pytest.importorskip("sklearn")
    from fractaldiff.train import two_moons

    moons = two_moons(200, noise=0.05, seed=1)
    assert moons.x_train.shape == (160, 2) and moons.x_test.shape == (40, 2)
    assert moons.x_train.dtype == np.float32 and set(np.unique(moons.y_train)) == {0, 1}
    assert np.array_equal(moons.x_train, two_moons(200, noise=0.05, seed=1).x_train)
    with pytest.raises(ValueError, match="test_fraction"):
        two_moons(100, test_fraction=1.5)
    dig = load_dataset("digits")
    assert dig.n_features == 64 and dig.n_classes == 10 and dig.x_train.max() <= 1.0
    assert dig.n_train + len(dig.x_test) == 1797
    with pytest.raises(ValueError, match="data set name"):
        load_dataset("cifar")
    model = mlp(784, 10, width=32, depth=3)
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias"]
    assert names[-2:] == ["out.weight", "out.bias"] and len(names) == 3 * 4 + 2
    assert len(mlp(5, 3, depth=0)) == 1
    state = torch.random.get_rng_state()
    a, b = mlp(4, 2, seed=5), mlp(4, 2, seed=5)
    assert torch.equal(_flat(a), _flat(b))
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="width"):
        mlp(4, 2, width=0)


def _write_idx(path, arr, code, gz):
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_mnist_from_local_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=12, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, 0x08, True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, 0x08, False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:4], 0x08, False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:4], 0x08, True)
    ds = mnist(tmp_path, limit_train=10)
    assert isinstance(ds, Dataset) and ds.x_train.shape == (10, 784)
    np.testing.assert_allclose(ds.x_train[3], imgs[3].ravel() / 255.0, rtol=1e-6)
    assert np.array_equal(ds.y_test, labels[:4])
    floats = rng.normal(size=(3, 2))
    _write_idx(tmp_path / "f.idx", floats, 0x0E, False)
    np.testing.assert_array_equal(load_idx(tmp_path / "f.idx"), floats)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(tmp_path / "bad.idx")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*downloads nothing"):
        mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        mnist(tmp_path / "nope")
