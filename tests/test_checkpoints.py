"""CheckpointFolder: per-step safetensors / torch checkpoint files as a snapshot source."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractaldiff.io.checkpoints import CheckpointFolder, step_from_name

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SHAPES = {"fc1.weight": (4, 3), "fc1.bias": (4,), "fc2.weight": (2, 4), "fc2.bias": (2,)}
STEPS = [100, 5, 40, 1000, 0, 7]


def state(step, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(step)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def flat(sd, names):
    return np.concatenate([np.asarray(sd[n], dtype=np.float64).ravel() for n in names])


@pytest.fixture
def st_folder(tmp_path):
    """Six safetensors checkpoints, written out of order, plus an int buffer in each file."""
    for s in STEPS:
        sd = state(s)
        sd["bn.num_batches_tracked"] = np.array(s, dtype=np.int64)
        safetensors_numpy.save_file(sd, str(tmp_path / f"step_{s:05d}.safetensors"))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    return tmp_path


def reference(names=None, steps=STEPS, dtype=np.float32):
    names = sorted(SHAPES) if names is None else names
    return np.stack([flat(state(s), names) for s in sorted(steps)]).astype(dtype)


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,step",
    [
        ("step_000120.safetensors", 120),
        ("ckpt-epoch3-step1200.pt", 1200),
        ("checkpoint-500/model.safetensors", 500),
        ("model.v2.step7.pth", 7),
        ("run1/ckpt_0.pt", 0),
        ("final.pt", None),
    ],
)
def test_step_from_name(name, step):
    assert step_from_name(name) == step


def test_safetensors_order_layout_values(st_folder):
    src = CheckpointFolder(st_folder)
    assert src.steps.tolist() == sorted(STEPS)
    assert [f.name for f in src.files][0] == "step_00000.safetensors"
    assert src.shape == (6, 26) and len(src) == 6 and src.ndim == 2
    assert src.dtype == np.float32
    # parameter order: sorted names (safetensors keeps no writer order); int buffer skipped
    assert src.layout.names == sorted(SHAPES)
    assert [(e.name, e.offset, e.shape, e.dtype) for e in src.layout][:2] == [
        ("fc1.bias", 0, (4,), "float32"),
        ("fc1.weight", 4, (4, 3), "float32"),
    ]
    ref = reference()
    assert np.asarray(src).tobytes() == ref.tobytes()
    md = src.metadata
    assert md["step"].tolist() == sorted(STEPS) and md["file"][1] == "step_00005.safetensors"
    assert src.layout.slices(by="module") == {"fc1": slice(0, 16), "fc2": slice(16, 26)}
    assert "steps 0..1000" in repr(src)
    with src:
        pass


@pytest.mark.parametrize(
    "key",
    [
        0,
        -1,
        slice(1, 4),
        slice(None, None, -1),
        (slice(None), slice(3, 19)),
        (slice(2, 5), slice(0, 1)),
        (slice(None), [25, 0, 7, 7]),
        ([5, 0], slice(None)),
        (3, 17),
        (-2, -3),
        (slice(None), 4),
        (Ellipsis, slice(20, 26)),
        (slice(None), slice(None, None, 5)),
        (slice(None), slice(None, None, -3)),
        (slice(None), np.arange(26) % 4 == 1),
        (np.array([True, False, True, False, True, False]), slice(2, 9)),
        (slice(None), slice(10, 5)),
    ],
)
def test_slicing_matches_numpy(st_folder, key):
    src = CheckpointFolder(st_folder)
    ref = reference()
    got = src[key]
    want = ref[key]
    assert np.shape(got) == np.shape(want)
    assert np.array_equal(got, want)


def test_column_block(st_folder):
    src = CheckpointFolder(st_folder)
    ref = reference()
    for a, b in [(0, 26), (3, 5), (0, 1), (25, 26), (9, 9), (4, 16)]:
        blk = src.column_block(a, b)
        assert blk.shape == (6, b - a) and blk.flags.c_contiguous
        assert np.array_equal(blk, ref[:, a:b])
    out = np.empty((6, 10), np.float32)
    assert src.column_block(7, 17, out=out) is out and np.array_equal(out, ref[:, 7:17])
    assert np.array_equal(np.hstack([b for _, b in src.column_blocks(7)]), ref)
    with pytest.raises(IndexError, match="stop=27"):
        src.column_block(0, 27)
    with pytest.raises(IndexError, match="start=4, stop=2"):
        src.column_block(4, 2)
    with pytest.raises(TypeError, match="stop must be an integer"):
        src.column_block(0, 2.5)
    with pytest.raises(ValueError, match="out has shape"):
        src.column_block(0, 3, out=np.empty((6, 4), np.float32))
    with pytest.raises(IndexError):
        src[6]
    with pytest.raises(IndexError):
        src[0, 26]


def test_params_selection_and_dtype(st_folder):
    names = ["fc2.weight", "fc1.bias"]
    src = CheckpointFolder(st_folder, params=names)
    assert src.layout.names == names and src.shape == (6, 12)
    assert np.array_equal(np.asarray(src), reference(names))
    src = CheckpointFolder(st_folder, params=lambda n: n.endswith("weight"))
    assert src.layout.names == ["fc1.weight", "fc2.weight"]
    src = CheckpointFolder(st_folder, params=["bn.num_batches_tracked"], dtype="float64")
    assert src.dtype == np.float64 and src[:, 0].tolist() == sorted(STEPS)
    src = CheckpointFolder(st_folder, pattern="step_0000*.safetensors")
    assert src.steps.tolist() == [0, 5, 7]


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_float_dtypes(tmp_path, dtype):
    for s in (1, 2):
        safetensors_numpy.save_file(state(s, dtype), str(tmp_path / f"s{s}.safetensors"))
    src = CheckpointFolder(tmp_path)
    want = np.float64 if dtype == np.float64 else np.float32
    assert src.dtype == want
    assert src.layout["fc1.bias"].dtype == np.dtype(dtype).name
    ref = np.stack([flat(state(s, dtype), sorted(SHAPES)) for s in (1, 2)]).astype(want)
    assert np.array_equal(np.asarray(src), ref)  # float16 -> float32 is exact


def test_bfloat16_safetensors_without_torch_api(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    sds = {}
    for s in (3, 1):
        g = torch.Generator().manual_seed(s)
        sds[s] = {"w": torch.randn(5, 3, generator=g).to(torch.bfloat16), "b": torch.randn(3)}
        st_torch.save_file(sds[s], str(tmp_path / f"ckpt{s}.safetensors"))
    src = CheckpointFolder(tmp_path)
    assert src.dtype == np.float32 and src.layout["w"].dtype == "bfloat16"
    ref = np.stack([torch.cat([sds[s]["b"], sds[s]["w"].float().ravel()]).numpy() for s in (1, 3)])
    assert np.array_equal(np.asarray(src), ref)
    assert np.array_equal(src[:, 4:10], ref[:, 4:10])


def test_safetensors_needs_no_torch(st_folder):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from fractaldiff.io.checkpoints import CheckpointFolder
        src = CheckpointFolder({str(st_folder)!r})
        np.asarray(src)
        assert "torch" not in sys.modules, "torch was imported"
        assert "safetensors" not in sys.modules, "safetensors was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- torch files --------------------------------------------------------------------------------


@pytest.fixture
def torch_folder(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc2 = torch.nn.Linear(4, 3)  # registration order != name order
            self.bn = torch.nn.BatchNorm1d(3)
            self.fc1 = torch.nn.Linear(3, 2)

    vectors = {}
    for s in (20, 10, 30):
        torch.manual_seed(s)
        net = Net()
        net.bn.running_mean += s
        sd = net.state_dict()
        floats = [v for v in sd.values() if v.is_floating_point()]
        vectors[s] = torch.cat([v.reshape(-1) for v in floats]).numpy()
        if s == 30:  # a full training checkpoint: the state_dict sits under "model"
            torch.save({"model": sd, "step": s, "lr": 0.1}, tmp_path / f"ckpt_{s}.pt")
        else:
            torch.save(sd, tmp_path / f"ckpt_{s}.pt")
    names = [k for k, v in Net().state_dict().items() if v.is_floating_point()]
    return tmp_path, np.stack([vectors[s] for s in (10, 20, 30)]), names


def test_torch_state_dicts(torch_folder):
    path, ref, names = torch_folder
    src = CheckpointFolder(path)
    # state_dict order (= module registration order), int buffer num_batches_tracked skipped
    assert src.layout.names == names
    assert names[0] == "fc2.weight" and "bn.num_batches_tracked" not in names
    assert src.steps.tolist() == [10, 20, 30] and src.shape == ref.shape
    assert np.array_equal(np.asarray(src), ref)
    assert np.array_equal(src[:, 5:13], ref[:, 5:13])
    assert np.array_equal(src.column_block(13, ref.shape[1]), ref[:, 13:])


def test_torch_key_argument(torch_folder):
    path, ref, _ = torch_folder
    with pytest.raises(ValueError, match=r"ckpt_10.pt has no entry 'model'"):
        CheckpointFolder(path, key="model")
    for f in path.glob("ckpt_[12]0.pt"):
        f.unlink()
    src = CheckpointFolder(path, key="model")
    assert np.array_equal(np.asarray(src), ref[2:])


def test_torch_parameters_to_vector_order(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    vecs = []
    for s in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * s)
        vecs.append(torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
        torch.save(net.state_dict(), tmp_path / f"{s}.pth")
    assert np.array_equal(np.asarray(CheckpointFolder(tmp_path)), np.stack(vecs))


def test_mixed_formats(tmp_path):
    pytest.importorskip("torch")
    import torch

    safetensors_numpy.save_file(state(1), str(tmp_path / "a1.safetensors"))
    torch.save({k: torch.from_numpy(v) for k, v in state(2).items()}, tmp_path / "a2.pt")
    src = CheckpointFolder(tmp_path)
    assert np.array_equal(np.asarray(src), reference(steps=[1, 2]))


# --- bad input ----------------------------------------------------------------------------------


def test_folder_errors(tmp_path, st_folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CheckpointFolder(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        CheckpointFolder(st_folder / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint files matching .*pattern="):
        CheckpointFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint files matching \*.npz"):
        CheckpointFolder(st_folder, pattern="*.npz")
    with pytest.raises(TypeError, match="params must be a sequence"):
        CheckpointFolder(st_folder, params="fc1.bias")
    with pytest.raises(ValueError, match=r"step_00000.safetensors has no tensor 'nope'"):
        CheckpointFolder(st_folder, params=["fc1.bias", "nope"])
    with pytest.raises(ValueError, match="twice"):
        CheckpointFolder(st_folder, params=["fc1.bias", "fc1.bias"])
    with pytest.raises(TypeError, match="dtype must be one of"):
        CheckpointFolder(st_folder, dtype="int8")


def test_name_without_step_and_duplicate_steps(st_folder):
    safetensors_numpy.save_file(state(1), str(st_folder / "final.safetensors"))
    with pytest.raises(ValueError, match=r"final.safetensors: no step number in its name"):
        CheckpointFolder(st_folder)
    (st_folder / "final.safetensors").unlink()
    safetensors_numpy.save_file(state(1), str(st_folder / "ckpt-40.safetensors"))
    with pytest.raises(
        ValueError,
        match=r"ckpt-40.safetensors and .*step_00040.safetensors have "
        r"the same step number 40|step_00040.safetensors and "
        r".*ckpt-40.safetensors have the same step number 40",
    ):
        CheckpointFolder(st_folder)


def test_mismatched_shape_names_the_file(st_folder):
    shapes = dict(SHAPES, **{"fc2.weight": (4, 2)})
    safetensors_numpy.save_file(state(77, shapes=shapes), str(st_folder / "step_00077.safetensors"))
    with pytest.raises(
        ValueError,
        match=r"step_00077.safetensors: tensor 'fc2.weight' has shape "
        r"\[4, 2\] but .*step_00000.safetensors has \[2, 4\]",
    ):
        CheckpointFolder(st_folder)


def test_mismatched_keys_name_the_file(st_folder):
    shapes = {k: v for k, v in SHAPES.items() if k != "fc1.bias"}
    safetensors_numpy.save_file(state(77, shapes=shapes), str(st_folder / "step_00077.safetensors"))
    with pytest.raises(
        ValueError,
        match=r"step_00077.safetensors: its floating-point tensors "
        r"differ .*missing \['fc1.bias'\]",
    ):
        CheckpointFolder(st_folder)
    # selecting tensors all files have works
    src = CheckpointFolder(st_folder, params=["fc2.bias"])
    assert src.shape == (7, 2)
    extra = dict(SHAPES, extra=(3,))
    (st_folder / "step_00077.safetensors").unlink()
    safetensors_numpy.save_file(state(78, shapes=extra), str(st_folder / "step_00078.safetensors"))
    with pytest.raises(ValueError, match=r"step_00078.safetensors: .* extra \['extra'\]"):
        CheckpointFolder(st_folder)


def test_truncated_and_corrupt_safetensors(st_folder):
    f = st_folder / "step_00040.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-9])
    with pytest.raises(ValueError, match=r"step_00040.safetensors is truncated: tensor"):
        CheckpointFolder(st_folder)
    f.write_bytes(data[:5])
    with pytest.raises(ValueError, match=r"step_00040.safetensors is not a safetensors file"):
        CheckpointFolder(st_folder)
    f.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match=r"step_00040.safetensors is not a valid safetensors"):
        CheckpointFolder(st_folder)
    f.write_bytes((4).to_bytes(8, "little") + b"{x:1")
    with pytest.raises(
        ValueError, match=r"step_00040.safetensors has a corrupt safetensors header"
    ):
        CheckpointFolder(st_folder)


def test_truncated_torch_file(tmp_path):
    torch = pytest.importorskip("torch")
    for s in (1, 2):
        torch.save({"w": torch.ones(100) * s}, tmp_path / f"m{s}.pt")
    f = tmp_path / "m2.pt"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"could not load .*m2.pt"):
        CheckpointFolder(tmp_path)
    torch.save({"w": torch.ones(100), "opt": {"lr": 0.1}}, f)
    assert CheckpointFolder(tmp_path).shape == (2, 100)
    torch.save({"stuff": {"lr": 0.1}}, f)
    with pytest.raises(ValueError, match=r"m2.pt holds no tensors .* pass key="):
        CheckpointFolder(tmp_path)


# --- property test ------------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_blocks_and_indices_match_numpy(st_folder, data):
    src = CheckpointFolder(st_folder)
    ref = reference()
    a = data.draw(st.integers(0, 26))
    b = data.draw(st.integers(a, 26))
    assert np.array_equal(src.column_block(a, b), ref[:, a:b])
    rows = data.draw(st.lists(st.integers(-6, 5), max_size=8))
    cols = data.draw(st.lists(st.integers(-26, 25), max_size=30))
    key = (rows, cols)
    assert np.array_equal(src[key] if rows else src[[], cols], ref[rows][:, cols])


def test_pickle(st_folder):
    import pickle

    src = pickle.loads(pickle.dumps(CheckpointFolder(st_folder)))
    assert np.array_equal(src.column_block(2, 9), reference()[:, 2:9])
