"""Type stub for the compiled module fractaldiff._core (private API)."""

import numpy as np
import numpy.typing as npt

__version__: str
STATUS_OK: int
STATUS_NONFINITE: int
STATUS_OUT_OF_MEMORY: int
MAX_DIRECT_LAGS: int
STATUS_OUT_OF_RANGE: int

def msd_fft_length(n_rows: int) -> int: ...
def fold_msd_fft(
    x: npt.NDArray[np.floating],
    power: npt.NDArray[np.float64],
    sqnorm: npt.NDArray[np.float64],
    direct: npt.NDArray[np.float64],
    n_threads: int = 0,
) -> int: ...
def fold_msd_lags(
    x: npt.NDArray[np.floating],
    lags: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
    n_threads: int = 0,
) -> int: ...
def fold_displacement(
    x: npt.NDArray[np.floating], ref: int, out: npt.NDArray[np.float64], n_threads: int = 0
) -> int: ...
def simd_level() -> str: ...
def available_simd_levels() -> list[str]: ...
def set_simd_level(level: str) -> None: ...
def default_threads() -> int: ...
def openmp_enabled() -> bool: ...
def compiler() -> str: ...
def cuda_built() -> bool: ...
def cuda_device_count() -> int: ...
def cuda_runtime_version() -> str: ...
def cuda_self_test() -> str: ...
def digest_row(row: npt.NDArray[np.generic], n_threads: int = 0) -> tuple[int, int, int]: ...
def box_minmax(
    x: npt.NDArray[np.floating],
    mins: npt.NDArray[np.float64],
    maxs: npt.NDArray[np.float64],
    n_threads: int = 0,
) -> int: ...
def fold_box_ids(
    x: npt.NDArray[np.floating],
    col_start: int,
    origin: npt.NDArray[np.float64],
    eps0: float,
    n_scales: int,
    key_seed: int,
    ids: npt.NDArray[np.uint64],
    n_threads: int = 0,
) -> int: ...
def fold_gram(
    x: npt.NDArray[np.floating], gram: npt.NDArray[np.float64], n_threads: int = 0
) -> int: ...
def store_append(
    fd_data: int,
    row: npt.NDArray[np.generic],
    row_offset: int,
    fd_meta: int,
    meta: bytes,
    meta_offset: int,
    fd_commits: int,
    commit_offset: int,
    count: int,
    meta_end: int,
    checksum: bool,
    allow_nonfinite: bool,
    durable: bool,
) -> tuple[int, int, int, int]: ...
def crc32(data: bytes) -> int: ...
