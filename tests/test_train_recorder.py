"""fractaldiff.train.Recorder: schedules, selection, layout, resume, NaN handling, errors."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fractaldiff as fd  # noqa: E402
from fractaldiff.train import NonFiniteLossError, Recorder, log_schedule  # noqa: E402
from fractaldiff.train.models import mlp  # noqa: E402


def _model(seed=0):
    return mlp(3, 2, width=4, depth=1, seed=seed)  # 16 + 8 + 10 = 34 params


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu().numpy().copy()


def _run(model, rec, n_steps, lr=0.1, losses=None, device="cpu"):
    """A hand-written loop; returns the flat parameters after each step (index = step)."""
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    states = [_flat(model)]
    for i in range(n_steps):
        x = torch.randn(8, 3, generator=g).to(device)
        y = (x[:, 0] > 0).long()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss if losses is None else losses[i]
        rec.step(loss=value, lr=lr, epoch=i // 4, batch_size=8)
        states.append(_flat(model))
    return states


@pytest.mark.parametrize("background", [True, False])
def test_every_step_values_metadata_layout(tmp_path, background):
    model = _model()
    with Recorder(model, tmp_path / "a.fdstore", background=background,
                  meta={"seed": 0}) as rec:
        states = _run(model, rec, 6)
        assert rec.n_snapshots == 7
    with fd.open_store(tmp_path / "a.fdstore") as s:
        assert s.shape == (7, 34) and s.dtype == np.float32
        np.testing.assert_array_equal(s[:], np.stack(states))
        assert list(s.steps) == list(range(7))
        md = s.metadata
        assert np.isnan(md["loss"][0]) and np.all(np.isfinite(md["loss"][1:]))
        assert list(md["epoch"][1:]) == [0, 0, 0, 0, 1, 1]
        assert np.all(md["lr"][1:] == 0.1) and np.all(md["batch_size"][1:] == 8)
        assert s.layout.names == ["fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias",
                                  "out.weight", "out.bias"]
        assert s.layout["fc1.weight"].shape == (4, 3)
        assert s.meta["seed"] == 0 and s.meta["model"] == "Sequential"


def test_every_and_log_schedule(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "e.fdstore", every=3) as rec:
        states = _run(model, rec, 10)
    with fd.open_store(tmp_path / "e.fdstore") as s:
        assert list(s.steps) == [0, 3, 6, 9]
        np.testing.assert_array_equal(s[:], np.stack(states)[[0, 3, 6, 9]])
    assert list(log_schedule(1000, 8)) == [0, 1, 3, 7, 19, 52, 139, 373, 1000]
    sched = log_schedule(20, 6)
    with Recorder(model, tmp_path / "l.fdstore", schedule=sched) as rec:
        _run(model, rec, 20)
    with fd.open_store(tmp_path / "l.fdstore") as s:
        assert list(s.steps) == list(sched)
    with Recorder(model, tmp_path / "c.fdstore", schedule=lambda t: t in (2, 5)) as rec:
        _run(model, rec, 6)
    with fd.open_store(tmp_path / "c.fdstore") as s:
        assert list(s.steps) == [2, 5]
    with pytest.raises(ValueError, match="either every= or schedule="):
        Recorder(model, tmp_path / "x.fdstore", every=2, schedule=[1, 2])
    with pytest.raises(ValueError, match="every"):
        Recorder(model, tmp_path / "x.fdstore", every=0)
    with pytest.raises(ValueError, match="schedule"):
        Recorder(model, tmp_path / "x.fdstore", schedule=[-1])
    with pytest.raises(ValueError, match="n_snapshots"):
        log_schedule(10, 1)


def test_params_selection(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "p.fdstore", params=["fc*.weight", "out.*"]) as rec:
        _run(model, rec, 2)
        assert rec.names == ["fc1.weight", "out.weight", "out.bias"]
    with fd.open_store(tmp_path / "p.fdstore") as s:
        assert s.shape == (3, 12 + 8 + 2)
        np.testing.assert_array_equal(s[-1, :12], model.fc1.weight.detach().numpy().ravel())
    with pytest.raises(ValueError, match="'conv\\*' matches no trainable parameter"):
        Recorder(model, tmp_path / "q.fdstore", params="conv*")
    with pytest.raises(TypeError, match="params"):
        Recorder(model, tmp_path / "q.fdstore", params=[1])


def test_no_trainable_params_and_bad_arguments(tmp_path):
    frozen = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Recorder(frozen, tmp_path / "f.fdstore")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Recorder("model", tmp_path / "f.fdstore")
    with pytest.raises(ValueError, match="on_nan"):
        Recorder(_model(), tmp_path / "f.fdstore", on_nan="explode")
    with pytest.raises(ValueError, match="keep nothing"):
        Recorder(_model(), None)
    with pytest.raises(TypeError, match="store"):
        Recorder(_model(), 3.5)
    assert not (tmp_path / "f.fdstore").exists()


def test_store_param_count_mismatch(tmp_path):
    other = fd.SnapshotStore.create(tmp_path / "o.fdstore", n_params=10)
    with pytest.raises(ValueError, match="n_params=10 values but the model's recorded "
                                         "parameters have 34"):
        Recorder(_model(), other)
    other.close()
    with pytest.raises(ValueError, match="n_params=10"):
        Recorder(_model(), tmp_path / "o.fdstore", resume=True)
    # the store is still usable (the recorder released its lock)
    with fd.open_store(tmp_path / "o.fdstore", "a") as s:
        s.append(np.zeros(10))


def test_existing_store_resume_and_open_store_object(tmp_path):
    path = tmp_path / "r.fdstore"
    model = _model()
    with Recorder(model, path, every=2) as rec:
        _run(model, rec, 5)  # snapshots 0, 2, 4
    with pytest.raises(FileExistsError, match="resume=True"):
        Recorder(model, path)
    with Recorder(model, path, every=2, resume=True) as rec:
        assert rec.step_count == 4
        _run(model, rec, 4)  # steps 5..8: snapshots 6, 8
    with fd.open_store(path) as s:
        assert list(s.steps) == [0, 2, 4, 6, 8]
    store = fd.open_store(path, "a")
    with Recorder(model, store, every=1, record_initial=False) as rec:
        _run(model, rec, 2)
    assert not store.closed and list(store.steps) == [0, 2, 4, 6, 8, 9, 10]
    store.close()
    with pytest.raises(ValueError, match="mode='a'"):
        Recorder(model, fd.open_store(path))


def test_nan_loss_warn_stop_ignore(tmp_path):
    nan = float("nan")
    losses = [0.5, nan, 0.4, 0.3]
    model = _model()
    with pytest.warns(RuntimeWarning, match="non-finite training at step 2"):
        with Recorder(model, tmp_path / "w.fdstore") as rec:
            _run(model, rec, 4, losses=losses)
            assert rec.nonfinite_steps == [2]
    with fd.open_store(tmp_path / "w.fdstore") as s:
        assert s.shape[0] == 5
        assert np.isnan(s.metadata["loss"][2]) and s.records[2]["nonfinite"] is True
        assert s.records[3].get("nonfinite", False) is False
    with Recorder(model, tmp_path / "s.fdstore", on_nan="stop") as rec:
        with pytest.raises(NonFiniteLossError, match="step 2") as info:
            _run(model, rec, 4, losses=losses)
        assert info.value.step == 2
    with fd.open_store(tmp_path / "s.fdstore") as s:
        assert list(s.steps) == [0, 1, 2]  # the bad step is recorded before stopping
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Recorder(model, tmp_path / "i.fdstore", on_nan="ignore") as rec:
            _run(model, rec, 4, losses=losses)
        assert rec.nonfinite_steps == [2]


def test_nonfinite_parameters_are_stored_and_flagged(tmp_path):
    model = _model()
    with pytest.warns(RuntimeWarning, match="parameters are not finite"):
        with Recorder(model, tmp_path / "n.fdstore") as rec:
            with torch.no_grad():
                model.out.bias.fill_(float("inf"))
            rec.step(loss=1.0)
    with fd.open_store(tmp_path / "n.fdstore") as s:
        assert np.isinf(s[1]).sum() == 2 and s.records[1]["nonfinite"] is True


def test_online_only_and_step_errors(tmp_path):
    model = _model()
    rec = Recorder(model, None, online=True)
    states = _run(model, rec, 5)
    rec.close()
    np.testing.assert_allclose(rec.online.displacement.values, fd.displacement(np.stack(states)),
                               rtol=1e-10)
    assert rec.store is None and rec.n_snapshots == 0
    with pytest.raises(RuntimeError, match="closed"):
        rec.step(loss=1.0)
    rec.close()  # idempotent
    with Recorder(model, tmp_path / "s.fdstore") as rec:
        rec.step(step=10)
        with pytest.raises(ValueError, match="larger than the previous step 10"):
            rec.step(step=10)
        with pytest.raises(ValueError, match="scalar"):
            rec.step(loss=torch.ones(3))


def test_float64_store_and_buffers(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "d.fdstore", dtype="float64", buffers=1) as rec:
        states = _run(model, rec, 3)
    with fd.open_store(tmp_path / "d.fdstore") as s:
        assert s.dtype == np.float64
        np.testing.assert_array_equal(s[:], np.stack(states))


@pytest.mark.parametrize("direct", [True, False])
def test_killed_run_leaves_valid_store_and_resumes(tmp_path, direct):
    path = tmp_path / "k.fdstore"
    script = textwrap.dedent(f"""
        import os, signal, torch
        from fractaldiff.train import Recorder
        from fractaldiff.train.models import mlp
        model = mlp(3, 2, width=4, depth=1, seed=0)
        rec = Recorder(model, {str(path)!r}, background=False, direct={direct})
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for i in range(5):
            loss = model(torch.ones(4, 3)).sum()
            opt.zero_grad(); loss.backward(); opt.step()
            rec.step(loss=loss)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), timeout=120)
    assert proc.returncode == -signal.SIGKILL
    with fd.open_store(path) as s:
        assert list(s.steps) == [0, 1, 2, 3, 4, 5]
    model = _model()
    with Recorder(model, path, resume=True) as rec:
        _run(model, rec, 3)
    with fd.open_store(path) as s:
        assert list(s.steps) == list(range(9)) and s.verify() == 9


def test_replaced_and_non_contiguous_parameters_are_read_fresh(tmp_path):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight = torch.nn.Parameter(torch.randn(3, 2).t())  # non-contiguous
    with Recorder(model, tmp_path / "v.fdstore", background=False) as rec:
        with torch.no_grad():
            model.weight.add_(1.0)
        rec.step()
        model.bias.data = torch.full((2,), 7.0)  # storage replaced
        rec.step()
    with fd.open_store(tmp_path / "v.fdstore") as s:
        np.testing.assert_array_equal(s[1, :6], model.weight.detach().reshape(-1).numpy())
        np.testing.assert_array_equal(s[2, 6:], [7.0, 7.0])


def test_module_doctests():
    import doctest

    from fractaldiff.train import online, recorder

    for mod in (online, recorder):
        assert doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_cuda_pinned_async_copies(tmp_path):
    if not torch.cuda.is_available():
        if os.environ.get("FRACTALDIFF_REQUIRE_GPU") == "1":
            pytest.fail("FRACTALDIFF_REQUIRE_GPU=1 but torch sees no CUDA device")
        pytest.skip("no CUDA device")
    model = mlp(3, 2, width=64, depth=2, seed=0).cuda()
    with Recorder(model, tmp_path / "g.fdstore", online=True) as rec:
        assert rec._slots[0].host.is_pinned()
        states = _run(model, rec, 30, device="cuda")
    with fd.open_store(tmp_path / "g.fdstore") as s:
        np.testing.assert_array_equal(s[:], np.stack(states))
        assert np.all(np.isfinite(s.metadata["loss"][1:]))
    np.testing.assert_allclose(rec.online.displacement.values,
                               fd.displacement(np.stack(states)), rtol=1e-10)
    # a NaN CUDA loss between snapshots is found on the device and flagged at the next one
    losses = [torch.tensor(v, device="cuda") for v in (0.5, 0.4, float("nan"), 0.3)]
    with pytest.warns(RuntimeWarning, match="step 4: a loss since the previous snapshot"):
        with Recorder(model, tmp_path / "n.fdstore", every=2) as rec:
            _run(model, rec, 4, losses=losses, device="cuda")
        assert rec.nonfinite_steps == [4]
    with fd.open_store(tmp_path / "n.fdstore") as s:
        assert list(s.steps) == [0, 2, 4] and s.records[2]["nonfinite"] is True
        assert s.records[1]["loss"] == pytest.approx(0.4) and "nonfinite" not in s.records[1]


@pytest.mark.parametrize("every", [1, 3])
def test_direct_and_copy_paths_write_the_same_store(tmp_path, every):
    """Direct writes (the CPU default) store what the copy paths store: same rows, same
    checksums, same metadata."""
    kinds = {"direct": {}, "thread": {"direct": False},
             "sync": {"direct": False, "background": False}}
    stores = {}
    for name, kw in kinds.items():
        model = _model()
        with Recorder(model, tmp_path / f"{name}.fdstore", every=every, **kw) as rec:
            assert rec._direct == (name == "direct")
            states = _run(model, rec, 7)
        stores[name] = fd.open_store(tmp_path / f"{name}.fdstore")
    want = np.stack(states)[::every]
    recs = {}
    for name, st in stores.items():
        np.testing.assert_array_equal(st[:], want)
        assert st.verify() == len(want)
        recs[name] = [{k: v for k, v in r.items() if k != "wall_time" and v is not False}
                      for r in st.records]
    assert recs["direct"] == recs["thread"] == recs["sync"]
    assert stores["direct"]._row_crcs == stores["sync"]._row_crcs
    assert stores["direct"].records[1]["nonfinite"] is False
    for st in stores.values():
        st.close()


def test_direct_metadata_lines(tmp_path):
    """The direct path's metadata: the usual keys from a template, anything else (numpy
    numbers, extra keys, a non-finite lr) through the store's JSON encoding."""
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with Recorder(model, tmp_path / "m.fdstore") as rec:
            rec.step(loss=0.25, lr=np.float32(0.5), epoch=np.int64(2), batch_size=8)
            rec.step(loss=torch.tensor(1.5), lr=1)
            rec.step(tag="a", note=[1, 2])
            rec.step(lr=float("inf"), loss=np.float64(2.0))
            rec.step(step=10, epoch=3)
    with fd.open_store(tmp_path / "m.fdstore") as s:
        r = [{k: v for k, v in x.items() if k != "wall_time"} for x in s.records]
        assert all(isinstance(x["wall_time"], float) for x in s.records)
    assert r == [
        {"step": 0, "nonfinite": False},
        {"step": 1, "epoch": 2, "lr": 0.5, "batch_size": 8, "loss": 0.25, "nonfinite": False},
        {"step": 2, "lr": 1.0, "loss": 1.5, "nonfinite": False},
        {"step": 3, "tag": "a", "note": [1, 2], "nonfinite": False},
        {"step": 4, "lr": float("inf"), "loss": 2.0, "nonfinite": False},
        {"step": 10, "epoch": 3, "nonfinite": False},
    ]


def test_direct_nonfinite_parameters_stop_at_once(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "p.fdstore", on_nan="stop") as rec:
        rec.step(loss=1.0)
        with torch.no_grad():
            model.fc1.weight[0, 0] = float("nan")
        with pytest.raises(NonFiniteLossError, match="step 2: the parameters are not finite"):
            rec.step(loss=1.0)
    with fd.open_store(tmp_path / "p.fdstore") as s:
        assert list(s.steps) == [0, 1, 2] and s.records[2]["nonfinite"] is True
        assert np.isnan(s[2, 0]) and s.verify() == 3


def test_direct_needs_cpu_store_only_recording(tmp_path):
    with pytest.raises(ValueError, match="direct=True"):
        Recorder(_model(), tmp_path / "o.fdstore", online=True, direct=True)
    with Recorder(_model(), tmp_path / "d.fdstore", dtype="float64") as rec:
        assert not rec._direct  # float32 parameters, float64 store: copied and converted
    model = _model().double()
    with Recorder(model, tmp_path / "e.fdstore", dtype="float64") as rec:
        assert rec._direct
        first = _flat(model)
        with torch.no_grad():
            model.fc1.weight.add_(1.0)
        rec.step()
    with fd.open_store(tmp_path / "e.fdstore") as s:
        assert s.dtype == np.float64
        np.testing.assert_array_equal(s[:], np.stack([first, _flat(model)]))


def test_nonfinite_marker_is_the_top_level_one(tmp_path):
    """A user's value may hold its own "nonfinite" key: NaN parameters flag the top-level
    key, on every compiled write path (direct, parts_writer, append_async)."""
    model = _model()
    with torch.no_grad():
        model.fc1.weight[0, 0] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with Recorder(model, tmp_path / "r.fdstore", record_initial=False) as rec:
            rec.step(info={"nonfinite": False, "text": '"nonfinite":false'})
    st = fd.SnapshotStore.create(tmp_path / "s.fdstore", n_params=3)
    row = np.array([1.0, np.nan, 2.0], np.float32)
    st.parts_writer([row]).append(step=0, info={"nonfinite": False})
    st.append_async(row, step=1, info={"nonfinite": False})
    st.close()
    for path in ("r.fdstore", "s.fdstore"):
        with fd.open_store(tmp_path / path) as s:
            for rec_ in s.records:
                assert rec_["nonfinite"] is True, (path, rec_)
                assert rec_["info"]["nonfinite"] is False, (path, rec_)
            lines = (tmp_path / path / "steps.jsonl").read_text().splitlines()
            assert all(line.startswith('{"step":') and ',"nonfinite":true ,' in line
                       for line in lines), lines


def test_direct_template_lines_match_the_json_encoding(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "a.fdstore", record_initial=False) as rec:
        rec.step(loss=0.5, lr=0.1, epoch=1, batch_size=8)  # template
        rec.step(loss=0.5, lr=0.1, epoch=1, batch_size=8, tag="x")  # JSON encoding
    lines = (tmp_path / "a.fdstore" / "steps.jsonl").read_text().splitlines()
    strip = [line.split(',"wall_time"')[0] for line in lines]
    assert strip[0] == '{"step":1,"nonfinite":false,"epoch":1,"lr":0.1,"batch_size":8,"loss":0.5'
    assert strip[1] == strip[0].replace('"step":1', '"step":2') + ',"tag":"x"'


def test_direct_step_must_fit_int64(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "b.fdstore") as rec:
        with pytest.raises(ValueError, match="does not fit in int64"):
            rec.step(step=2**63)
        rec.step(step=5)
    with fd.open_store(tmp_path / "b.fdstore") as s:
        assert list(s.steps) == [0, 5]


def test_dtype_change_mid_run_is_converted(tmp_path):
    model = _model()
    with Recorder(model, tmp_path / "c.fdstore") as rec:
        rec.step(loss=1.0)
        model.double()  # new float64 storage: the float32 store gets converted copies
        with torch.no_grad():
            model.fc1.weight.add_(1.0)
        rec.step(loss=1.0)
        want = _flat(model).astype(np.float32)
    with fd.open_store(tmp_path / "c.fdstore") as s:
        assert list(s.steps) == [0, 1, 2] and s.verify() == 3
        np.testing.assert_array_equal(s[2], want)
