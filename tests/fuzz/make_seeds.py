"""Write the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/): real stores (empty,
small, with layout and metadata, torn, damaged, version 1), real safetensors files (every float
dtype, metadata, several tensors) and analysis calls. Run from the repository root:
``PYTHONPATH=python python tests/fuzz/make_seeds.py``."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness_safetensors  # noqa: E402
import harness_store  # noqa: E402

import fractaldiff as fd  # noqa: E402


def save(target: str, data: bytes) -> None:
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def store_files(path: Path) -> list[bytes]:
    return [(path / n).read_bytes() for n in
            ("manifest.json", "commits.bin", "steps.jsonl", "snapshots.bin")]


def store_seeds(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    specs = [
        dict(n=0, d=3, dtype="float32"),
        dict(n=3, d=4, dtype="float32"),
        dict(n=5, d=6, dtype="float64", layout=[("a.w", (2, 2)), ("a.b", (2,))],
             meta={"model": "mlp", "seed": 1, "nested": {"x": [1, 2]}}),
        dict(n=4, d=2, dtype="float16", checksum=False),
    ]
    for i, spec in enumerate(specs):
        p = tmp / f"s{i}"
        n = spec.pop("n")
        d = spec.pop("d")
        with fd.SnapshotStore.create(p, d, **spec) as s:
            for t in range(n):
                s.append(rng.standard_normal(d), step=2 * t, loss=float(t), lr=0.1,
                         tag=["x", {"y": None}])
        files = store_files(p)
        save("store", harness_store.pack(*files))
        save("store", harness_store.pack(*files, flags=0))
        if n:
            torn = files[1] + files[1][:11]
            save("store", harness_store.pack(files[0], torn, files[2], files[3]))
            bad = bytearray(files[1])
            bad[-5] ^= 0xFF
            save("store", harness_store.pack(files[0], bytes(bad), files[2], files[3], flags=1))
            save("store", harness_store.pack(files[0], files[1], files[2][:-3], files[3][:-1]))
            m = json.loads(files[0])
            m["format_version"] = 1
            m.pop("checksum")
            save("store", harness_store.pack(json.dumps(m).encode(), *files[1:], flags=0))


def st_file(tensors: dict, metadata: dict | None = None) -> bytes:
    header: dict = {}
    data = b""
    for name, (code, arr) in tensors.items():
        raw = arr.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds() -> None:
    rng = np.random.default_rng(1)
    f32 = st_file({"w": ("F32", rng.standard_normal((2, 3)).astype("<f4")),
                   "b": ("F32", rng.standard_normal(3).astype("<f4"))})
    f32b = st_file({"w": ("F32", rng.standard_normal((2, 3)).astype("<f4")),
                    "b": ("F32", rng.standard_normal(3).astype("<f4"))}, {"format": "pt"})
    f16 = st_file({"w": ("F16", rng.standard_normal((4,)).astype("<f2"))})
    f64 = st_file({"w": ("F64", rng.standard_normal((2, 2)).astype("<f8")),
                   "n": ("I64", np.arange(3, dtype="<i8"))})
    bf16 = st_file({"w": ("BF16", (rng.standard_normal(5).astype("<f4").view("<u4") >> 16)
                          .astype("<u2"))})
    empty = st_file({"w": ("F32", np.zeros((0, 3), "<f4")), "v": ("F32", np.ones(2, "<f4"))})
    for a, b, name in [(f32, f32b, b"step_2"), (f16, f16, b"ckpt-epoch3-step1200"),
                       (f64, f64, b"x_0009"), (bf16, bf16, b"step_7"), (empty, empty, b"s3"),
                       (f32, f16, b"step_2"), (f32, f32, b"step_" + b"9" * 30)]:
        save("safetensors", harness_safetensors.pack(a, b, name))
        save("safetensors", harness_safetensors.pack(a, b, name, flags=0))


def analysis_seeds() -> None:
    for i in range(40):
        rng = np.random.default_rng(100 + i)
        save("analysis", bytes(rng.integers(0, 256, size=16, dtype=np.uint8)))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        store_seeds(Path(tmp))
    safetensors_seeds()
    analysis_seeds()
    for t in ("store", "safetensors", "analysis"):
        print(t, len(os.listdir(HERE / "corpus" / t)))
