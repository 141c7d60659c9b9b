"""The main job end to end: `fractaldiff run --quick`, resume, determinism, jobs, analyze."""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fractaldiff.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from test_cli import TINY, write  # noqa: E402

QUICK_LIMIT_S = 90  # the target for --quick on 2 cores


@functools.lru_cache(maxsize=1)
def quick_run(root: str) -> tuple[Path, float]:
    """`fractaldiff run --quick` once per session (the report tests read it too)."""
    out = Path(root) / "quick"
    t0 = time.perf_counter()
    code = main(["run", "--quick", "--out", str(out), "--no-progress"])
    seconds = time.perf_counter() - t0
    assert code in (0, 1), code
    return out, seconds


@pytest.fixture(scope="session")
def quick(tmp_path_factory) -> tuple[Path, dict]:
    out, seconds = quick_run(str(tmp_path_factory.getbasetemp()))
    res = json.loads((out / "results.json").read_text())
    print(f"\nfractaldiff run --quick: {seconds:.1f} s wall ({out})")
    return out, res


def _numbers_have_errors(d, path="") -> list[str]:
    """Paths of result entries that have a value but no uncertainty field."""
    bad = []
    if isinstance(d, dict):
        if "value" in d and d["value"] is not None and not any(
                k in d for k in ("stderr", "sd", "ci")):
            bad.append(path)
        for k, v in d.items():
            bad += _numbers_have_errors(v, f"{path}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            bad += _numbers_have_errors(v, f"{path}[{i}]")
    return bad


def test_quick_run_covers_every_section(quick):
    out, res = quick
    assert res["errors"] == {}, res["errors"]
    assert (out / "config.toml").is_file() and (out / "report.html").is_file()
    assert res["config"]["moons"]["n_models"] == 4  # the --quick config, resolved
    assert res["timings"]["total_wall"] < 3 * QUICK_LIMIT_S  # shared machines are slower
    # (a) moons: mean R(t) with early and late fits
    m = res["moons"]
    assert len(m["mean_R"]) == len(m["t_normalized"]) > 20
    assert {"early", "late"} <= set(m["fits"])
    for f in m["fits"].values():
        assert f["stderr"] is not None and f["stderr"] > 0
    # (b) digits: both optimizers with d_s, λ̄, accuracy
    t4 = res["digits"]["table4"]
    assert set(t4) == {"sgd", "adam"}
    for opt in t4.values():
        assert opt["test_accuracy"]["value"] > 0.5
    # (c) CNN and LM rows
    labels = [r["label"] for r in res["beyond"]["rows"]]
    assert any("CNN" in s for s in labels) and any("transformer" in s for s in labels)
    # (e) Table-1 rows: exponents with errors, dimensions, bound
    for row in res["summary"]:
        de = row["displacement_exponent"]
        assert de["value"] is not None and de["stderr"] > 0 and 0 <= de["r2"] <= 1
        assert row["late_window"]["rule"]
        assert "value" in row["msd_exponent"] or "error" in row["msd_exponent"]
        if row["llc"] is not None:
            assert row["llc"]["stderr"] is not None
            assert row["spectral_dimension"]["value"] == pytest.approx(
                2 * row["llc"]["value"] * de["value"], rel=1e-9)
            assert isinstance(row["bound"]["holds"], bool)
        else:
            assert row["llc_reason"]
    assert any(v for v in res["per_layer"].values())
    # (d) posterior: numbers or an explicit reason, never placeholders
    p = res["posterior"]
    assert p.get("available") or p.get("reason")
    assert _numbers_have_errors(res["summary"]) == []
    assert res["claims"] and all("evidence" in c for c in res["claims"])
    assert res["build_info"]["version"] == res["versions"]["fractaldiff"]


def test_rerun_resumes_from_cache(quick, tmp_path):
    src, _ = quick
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    # simulate a run killed in the middle of one unit: its folder without result.json
    victim = next(p for p in sorted((out / "cache").iterdir()) if p.name.startswith("digits-"))
    (victim / "result.json").unlink()
    (victim / "junk.partial").write_text("half written")
    t0 = time.perf_counter()
    assert main(["run", "--quick", "--out", str(out), "--no-progress"]) in (0, 1)
    seconds = time.perf_counter() - t0
    res = json.loads((out / "results.json").read_text())
    cached = {n: u["cached"] for n, u in res["timings"]["units"].items()}
    assert cached.pop(victim.name.rsplit("-", 1)[0]) is False
    assert all(cached.values()), cached
    assert not (victim / "junk.partial").exists()
    print(f"\nresume with one unit to redo: {seconds:.1f} s")


def test_deterministic_with_a_seed(tmp_path):
    cfg = write(tmp_path / "tiny.toml", TINY)
    nums = []
    for name in ("a", "b"):
        assert main(["run", str(cfg), "--out", str(tmp_path / name), "--no-progress"]) == 0
        res = json.loads((tmp_path / name / "results.json").read_text())
        row = res["summary"][0]
        nums.append((row["displacement_exponent"]["value"], row["total_displacement"],
                     row["test_accuracy"]))
    assert nums[0] == nums[1]
    cfg2 = write(tmp_path / "tiny2.toml", TINY.replace("seed = 3", "seed = 4"))
    assert main(["run", str(cfg2), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["summary"][0]["total_displacement"] != nums[0][1]


def test_jobs_run_in_parallel_processes_with_the_same_results(tmp_path):
    text = TINY.replace('sgd_lrs = [0.05]', 'sgd_lrs = [0.05, 0.1]')
    cfg = write(tmp_path / "two.toml", text)
    res = {}
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        assert main(["run", str(cfg), "--out", str(out), "--jobs", str(jobs),
                     "--no-progress"]) == 0
        res[jobs] = json.loads((out / "results.json").read_text())
    assert len(res[2]["summary"]) == 2
    for a, b in zip(res[1]["summary"], res[2]["summary"]):
        assert a["name"] == b["name"]
        assert a["total_displacement"] == b["total_displacement"]


def _record_readme_run(path: Path):
    """The README's Recorder example, shortened."""
    from fractaldiff.train import Recorder, mlp, train, two_moons

    data = two_moons(400, noise=0.1, seed=0)
    model = mlp(2, 2, width=16, depth=2, seed=0)
    train(model, data, optimizer="sgd", lr=0.05, batch_size=32, steps=300, seed=0,
          recorder=Recorder(model, path, every=1), device="cpu")
    return data


def test_analyze_a_recorded_store(tmp_path, monkeypatch):
    store = tmp_path / "moons.fdstore"
    _record_readme_run(store)
    assert main(["analyze", str(store)]) == 0
    out = tmp_path / "moons.fdstore.report"
    res = json.loads((out / "results.json").read_text())
    row = res["summary"][0]
    assert res["run_kind"] == "store" and row["n_params"] > 0
    assert row["llc"] is None and "no --model/--data" in row["llc_reason"]
    assert row["displacement_exponent"]["stderr"] > 0
    assert set(res["per_layer"][store.name]) >= {"fc1.weight", "out.bias"}
    html = (out / "report.html").read_text()
    assert "not available" in html and 'id="summary-table"' in html

    # with model and data factories: the LLC, d_s and the bound
    write(tmp_path / "readme_factories.py", """
from fractaldiff.train import mlp, two_moons

def model():
    return mlp(2, 2, width=16, depth=2, seed=0)

def data():
    return two_moons(400, noise=0.1, seed=0)
""")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out2 = tmp_path / "with_llc"
    assert main(["analyze", str(store), "--out", str(out2), "--model",
                 "readme_factories:model", "--data", "readme_factories:data"]) == 0
    row = json.loads((out2 / "results.json").read_text())["summary"][0]
    from fractaldiff.pipeline.llc import bayes_status

    if bayes_status("estimate_llc")[0]:
        assert row["llc"]["value"] > 0 and row["llc"]["stderr"] is not None
        assert row["spectral_dimension"]["value"] > 0
        assert isinstance(row["bound"]["holds"], bool)
    else:
        assert row["llc"] is None and "not available" in row["llc_reason"]


def test_analyze_npy_with_manual_window(tmp_path):
    rng = np.random.default_rng(5)
    W = np.cumsum(rng.standard_normal((400, 30)), axis=0)  # Brownian: alpha = 1/2
    np.save(tmp_path / "walk.npy", W)
    out = tmp_path / "rep"
    assert main(["analyze", str(tmp_path / "walk.npy"), "--out", str(out),
                 "--late-window", "0.5,1"]) == 0
    row = json.loads((out / "results.json").read_text())["summary"][0]
    assert "configured window" in row["late_window"]["rule"]
    assert abs(row["msd_exponent"]["value"] - 1.0) < 0.25
    # a second analyze into the same folder replaces the results
    assert main(["analyze", str(tmp_path / "walk.npy"), "--out", str(out)]) == 0
    rule = json.loads((out / "results.json").read_text())["summary"][0]["late_window"]["rule"]
    assert "configured" not in rule


def test_analyze_a_checkpoint_folder(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    rng = np.random.default_rng(2)
    w = {"fc.weight": torch.zeros(6, 5), "fc.bias": torch.zeros(6)}
    for step in range(0, 400, 10):  # a random walk, one checkpoint every 10 steps
        for v in w.values():
            v += 0.01 * torch.as_tensor(rng.standard_normal(v.shape), dtype=torch.float32)
        torch.save({k: v.clone() for k, v in w.items()}, folder / f"step_{step}.pt")
    out = tmp_path / "rep"
    assert main(["analyze", str(folder), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["run_kind"] == "checkpoint folder"
    row = res["summary"][0]
    assert row["n_params"] == 36
    assert set(res["per_layer"]["ckpts"]) == {"fc.weight", "fc.bias"}
    assert 0.3 < row["displacement_exponent"]["value"] < 0.7  # Brownian: 1/2


def test_text_corpus_is_deterministic_and_local():
    from fractaldiff.train.text import VOCAB, decode, stdlib_corpus

    a = stdlib_corpus(5000, seq_len=32)
    b = stdlib_corpus(5000, seq_len=32)
    assert np.array_equal(a.x_train, b.x_train) and a.files == b.files
    assert a.vocab_size == len(VOCAB) + 1
    assert np.array_equal(a.x_train[:, 1:], a.y_train[:, :-1])
    assert "import" in decode(np.concatenate([a.x_train.ravel(), a.x_test.ravel()]))


def test_models_run_under_vmap():
    from torch.func import functional_call, stack_module_state, vmap

    from fractaldiff.train.models import char_transformer, cnn

    for make, x in ((lambda s: cnn(seed=s), torch.rand(5, 64)),
                    (lambda s: char_transformer(20, d_model=16, n_heads=2, n_layers=1, seed=s),
                     torch.randint(0, 20, (5, 12)))):
        ms = [make(s) for s in (0, 1)]
        params, bufs = stack_module_state(ms)
        out = vmap(lambda p, b: functional_call(ms[0], (p, b), (x,)))(params, bufs)
        ref = torch.stack([m(x) for m in ms])
        assert torch.allclose(out, ref, atol=1e-5)
    m = char_transformer(20, d_model=16, n_heads=2, n_layers=1, seed=0)
    x = torch.randint(0, 20, (2, 10))
    y1 = m(x)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 20  # changing the last token changes no earlier output
    assert torch.allclose(m(x2)[:, :-1], y1[:, :-1], atol=1e-6)
