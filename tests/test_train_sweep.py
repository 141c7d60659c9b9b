"""fractaldiff.train.sweep: a small grid in two worker processes."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import fractaldiff as fd  # noqa: E402
from fractaldiff.train import sweep  # noqa: E402
from fractaldiff.train.sweeps import run_config  # noqa: E402


def test_grid_in_two_workers(tmp_path):
    kw = dict(lrs=[0.05, 0.2], batch_sizes=[32], seeds=[0, 1], steps=15, every=5,
              model={"width": 8, "depth": 1})
    res = sweep("digits", out_dir=tmp_path / "grid", n_workers=2, **kw)
    assert res.ok, res.table()
    assert [(r["lr"], r["seed"]) for r in res.rows] == [(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)]
    for r in res.rows:
        assert r["steps"] == 15 and r["n_snapshots"] == 4 and 0 <= r["test_accuracy"] <= 1
        with fd.open_store(r["store"]) as s:
            assert list(s.steps) == [0, 5, 10, 15]
            assert s.meta["lr"] == r["lr"] and s.meta["seed"] == r["seed"]
    assert "lr0.05_bs32_seed1" in res.table()
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert [s["name"] for s in summary] == [r["name"] for r in res.rows]
    assert (tmp_path / "grid" / "summary.csv").read_text().startswith("name,lr,batch_size")
    # the same runs in this process give the same trajectories (workers are deterministic)
    seq = sweep("digits", out_dir=tmp_path / "seq", n_workers=0, **kw)
    for a, b in zip(res.rows, seq.rows):
        assert a["final_loss"] == b["final_loss"]
        with fd.open_store(a["store"]) as sa, fd.open_store(b["store"]) as sb:
            np.testing.assert_array_equal(sa[:], sb[:])
    # seeds differ
    assert res.rows[0]["final_loss"] != res.rows[1]["final_loss"]
    with pytest.raises(FileExistsError, match="already exists"):
        sweep("digits", out_dir=tmp_path / "grid", n_workers=0, **kw)


def test_failed_run_is_reported_not_raised(tmp_path):
    cfg = dict(name="bad", store=str(tmp_path / "bad.fdstore"), lr=-1.0, batch_size=32, seed=0,
               data="digits", data_kwargs={}, model_kwargs={"width": 4, "depth": 1},
               optimizer="sgd", epochs=None, steps=2, momentum=0.0, weight_decay=0.0, every=1,
               torch_threads=1, recorder_kwargs={})
    row = run_config(cfg)
    assert row["status"].startswith("error: ValueError") and "lr" in row["status"]
    with pytest.raises(ValueError, match="exactly one of epochs= or steps="):
        sweep("digits", out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="lrs must not be empty"):
        sweep("digits", out_dir=tmp_path / "x", lrs=[], steps=1)
