"""Built-in data sets, all offline: two moons, 8x8 digits, and MNIST from local IDX files.

Nothing is downloaded. Two moons and digits come from scikit-learn (the generator and the
digits bundled with it; scikit-learn is imported only when they are asked for); MNIST is read
from IDX files the user already has.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_int, check_number, check_open_fraction

__all__ = ["Dataset", "digits", "load_dataset", "load_idx", "mnist", "two_moons"]


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test parts (numpy arrays).

    Attributes
    ----------
    name : str
    x_train, x_test : numpy.ndarray of float32, shape (n, n_features)
    y_train, y_test : numpy.ndarray of int64, shape (n,)
        Class labels 0..n_classes-1.
    n_classes : int
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"n_classes={self.n_classes})"
        )


def _sklearn(what: str) -> Any:
    try:
        import sklearn.datasets
        import sklearn.model_selection  # noqa: F401
    except ImportError:
        raise ImportError(
            f"{what} needs scikit-learn (it ships the generator/data, nothing is downloaded): "
            f"pip install scikit-learn"
        ) from None
    return sklearn


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           n_classes: int) -> Dataset:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    test, train = order[:n_test], order[n_test:]
    return Dataset(
        name,
        np.ascontiguousarray(x[train], dtype=np.float32),
        np.ascontiguousarray(y[train], dtype=np.int64),
        np.ascontiguousarray(x[test], dtype=np.float32),
        np.ascontiguousarray(y[test], dtype=np.int64),
        n_classes,
    )


def two_moons(
    n_samples: int = 1000, *, noise: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Two interleaving half circles (scikit-learn's ``make_moons``), 2 features, 2 classes.

    Parameters
    ----------
    n_samples : int, default 1000
        Total number of points (train + test), >= 4.
    noise : float, default 0.1
        Standard deviation of Gaussian noise added to the points.
    test_fraction : float, default 0.2
    seed : int, default 0
        Seeds both the generator and the split.

    Returns
    -------
    Dataset
    """
    sk = _sklearn("two_moons")
    check_int(n_samples, "n_samples", minimum=4)
    noise = check_number(noise, "noise", minimum=0.0)
    x, y = sk.datasets.make_moons(n_samples=int(n_samples), noise=float(noise),
                                  random_state=int(seed))
    return _split("moons", x, y, check_open_fraction(test_fraction, "test_fraction"), seed, 2)


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's handwritten digits: 1797 images of 8x8 pixels, 10 classes.

    The MNIST-like default: it ships with scikit-learn, so nothing is downloaded. Pixels
    (0..16) are scaled to [0, 1].

    Parameters
    ----------
    test_fraction : float, default 0.2
    seed : int, default 0
        Seeds the train/test split.

    Returns
    -------
    Dataset
    """
    sk = _sklearn("digits")
    bunch = sk.datasets.load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    fraction = check_open_fraction(test_fraction, "test_fraction")
    return _split("digits", x, bunch.target, fraction, seed, 10)


_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    numpy.ndarray
        In native byte order, with the file's dimensions.

    Raises
    ------
    ValueError
        Not an IDX file, or its size does not match its header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    n = int(np.prod(shape)) if shape else 1
    if len(raw) - head != n * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({n * dtype.itemsize} bytes of data) but "
            f"the file holds {len(raw) - head} bytes after the header"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (folder / cand).is_file():
            return folder / cand
    return None


def mnist(path: str | os.PathLike, *, limit_train: int | None = None) -> Dataset:
    """MNIST from the four IDX files in a local folder (nothing is downloaded).

    Parameters
    ----------
    path : str or os.PathLike
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``; the
        ``train-images.idx3-ubyte`` spelling is accepted too).
    limit_train : int, optional
        Keep only the first ``limit_train`` training images.

    Returns
    -------
    Dataset
        784 features scaled to [0, 1], 10 classes.

    Raises
    ------
    FileNotFoundError
        The folder or one of the files is missing (the message lists the expected names).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"path={str(folder)!r} is not a folder; mnist() reads the four MNIST IDX files "
            f"from a local folder ({', '.join(_MNIST_FILES.values())}, raw or .gz) and "
            f"downloads nothing"
        )
    arrays = {}
    for key, stem in _MNIST_FILES.items():
        found = _find(folder, stem)
        if found is None:
            raise FileNotFoundError(
                f"MNIST file {stem} (or {stem}.gz) not found in {folder}; mnist() needs "
                f"{', '.join(_MNIST_FILES.values())} and downloads nothing"
            )
        arrays[key] = load_idx(found)
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"MNIST {part} files disagree: images {x.shape}, labels {y.shape}"
            )
    x_train = arrays["x_train"].reshape(len(arrays["x_train"]), -1)
    y_train = arrays["y_train"]
    if limit_train is not None:
        x_train, y_train = x_train[: int(limit_train)], y_train[: int(limit_train)]
    return Dataset(
        "mnist",
        np.ascontiguousarray(x_train, dtype=np.float32) / 255.0,
        y_train.astype(np.int64),
        np.ascontiguousarray(arrays["x_test"].reshape(len(arrays["x_test"]), -1),
                             dtype=np.float32) / 255.0,
        arrays["y_test"].astype(np.int64),
        10,
    )


def load_dataset(name: str | Dataset, **kwargs: Any) -> Dataset:
    """A built-in data set by name: ``"moons"``, ``"digits"`` or ``"mnist"`` (needs ``path=``).

    A :class:`Dataset` is returned unchanged.

    Parameters
    ----------
    name : str or Dataset
        ``"moons"`` (or ``"two_moons"``), ``"digits"`` or ``"mnist"``; or a :class:`Dataset`.
    **kwargs
        Passed to the loader: :func:`two_moons`, :func:`digits` or :func:`mnist`.

    Returns
    -------
    Dataset
    """
    if isinstance(name, Dataset):
        return name
    loaders = {"moons": two_moons, "two_moons": two_moons, "digits": digits, "mnist": mnist}
    if name not in loaders:
        raise ValueError(f"data set name must be one of {sorted(loaders)}, got {name!r}")
    return loaders[name](**kwargs)
