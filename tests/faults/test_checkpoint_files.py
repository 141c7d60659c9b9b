"""Checkpoint folders with hostile names and headers: clear ValueErrors, never OverflowError,
RecursionError or a silently misread shape."""

import json
import os

import numpy as np
import pytest
from faultkit import watchdog

from fractaldiff.io.checkpoints import CheckpointFolder, step_from_name


def write_st(path, header, data=b""):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)


def good_header():
    return {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}


def test_forty_digit_step_in_a_file_name(tmp_path):
    write_st(tmp_path / ("step_" + "9" * 40 + ".safetensors"), good_header(), bytes(24))
    with pytest.raises(ValueError, match="step number 9{40} does not fit in int64"):
        CheckpointFolder(tmp_path)
    with pytest.raises(ValueError, match="does not fit in int64"):
        step_from_name("ckpt-" + "1" * 40)
    assert step_from_name("x_" + "0" * 40 + "7") == 7  # leading zeros are fine
    assert step_from_name(f"s{2**63 - 1}") == 2**63 - 1


@pytest.mark.parametrize(
    "shape", ["23", [2.9, 3.1], [-2, -3], [True, 6], None, 6, [[2], [3]]]
)
def test_safetensors_shape_must_be_a_list_of_ints(tmp_path, shape):
    h = good_header()
    h["w"]["shape"] = shape
    write_st(tmp_path / "step_1.safetensors", h, bytes(24))
    with pytest.raises(ValueError, match="has shape .* list of non-negative integers"):
        CheckpointFolder(tmp_path)


@pytest.mark.parametrize("offsets", [[0.0, 24.0], ["0", "24"], [24, 0], [-24, 0], [0], None])
def test_safetensors_data_offsets_must_be_two_ordered_ints(tmp_path, offsets):
    h = good_header()
    h["w"]["data_offsets"] = offsets
    write_st(tmp_path / "step_1.safetensors", h, bytes(24))
    with pytest.raises(ValueError, match="data_offsets"):
        CheckpointFolder(tmp_path)


@pytest.mark.parametrize("entry", [[1, 2], "F32", None])
def test_safetensors_entry_must_be_an_object(tmp_path, entry):
    write_st(tmp_path / "step_1.safetensors", {"w": entry}, bytes(24))
    with pytest.raises(ValueError, match="is not a JSON object"):
        CheckpointFolder(tmp_path)


def test_deeply_nested_safetensors_header(tmp_path):
    write_st(tmp_path / "step_1.safetensors", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        CheckpointFolder(tmp_path)
    write_st(tmp_path / "step_1.safetensors",
             b'{"__metadata__": ' + b"[" * 500 + b"]" * 500 + b"}")
    with pytest.raises(ValueError, match="nested too deeply"):
        CheckpointFolder(tmp_path)


def test_fifo_among_checkpoints_is_skipped_not_read(tmp_path):
    write_st(tmp_path / "step_1.safetensors", good_header(), np.arange(6, dtype="<f4").tobytes())
    os.mkfifo(tmp_path / "step_2.safetensors")
    with watchdog(10):
        f = CheckpointFolder(tmp_path)
        assert f.steps.tolist() == [1] and np.array_equal(f[0], np.arange(6, dtype=np.float32))
