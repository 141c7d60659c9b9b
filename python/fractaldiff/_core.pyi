"""Type stub for the compiled module fractaldiff._core (private API)."""

import numpy as np
import numpy.typing as npt

__version__: str
STATUS_OK: int
STATUS_NONFINITE: int
STATUS_OUT_OF_MEMORY: int
MAX_DIRECT_LAGS: int
STATUS_OUT_OF_RANGE: int
BOX_Q_LIMIT: float
BOX_KEY_MULT: int

class CudaError(RuntimeError): ...

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
def digest_uses_avx512() -> bool: ...
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
def box_key_seed(seed: int, grid: int) -> int: ...
def box_grid_offsets(
    columns: npt.NDArray[np.int64], coarsest: float, seed: int, grid: int
) -> npt.NDArray[np.float64]: ...
def box_keys(key_seed: int, col_start: int, n: int) -> npt.NDArray[np.uint64]: ...
def cuda_device_name(device: int = 0) -> str: ...
def cuda_box_minmax(
    ptr: int,
    dtype: str,
    n_rows: int,
    n_cols: int,
    row_stride: int,
    col_stride: int,
    device: int,
    mins: npt.NDArray[np.float64],
    maxs: npt.NDArray[np.float64],
    memory_limit: int = ...,
) -> int: ...

class _GpuFold:
    """The streaming methods every GPU fold kind shares (not a class of the module)."""

    def fold_host(self, x: npt.NDArray[np.floating]) -> None: ...
    def fold_device(
        self, ptr: int, dtype: str, n_rows: int, n_cols: int, row_stride: int, col_stride: int
    ) -> None: ...
    def synchronize(self) -> None: ...
    def device_bytes(self) -> int: ...

class GpuMsdFold(_GpuFold):
    def __init__(
        self, *, device: int, n_rows: int, n_direct: int, memory_limit: int = ...
    ) -> None: ...
    def finish(
        self,
        power: npt.NDArray[np.float64],
        sqnorm: npt.NDArray[np.float64],
        direct: npt.NDArray[np.float64],
    ) -> int: ...

class GpuLagsFold(_GpuFold):
    def __init__(
        self, *, device: int, n_rows: int, lags: npt.NDArray[np.int64], memory_limit: int = ...
    ) -> None: ...
    def finish(self, sums: npt.NDArray[np.float64]) -> int: ...

class GpuDisplacementFold(_GpuFold):
    def __init__(self, *, device: int, n_rows: int, ref: int, memory_limit: int = ...) -> None: ...
    def finish(self, sq: npt.NDArray[np.float64]) -> int: ...

class GpuBoxIdsFold(_GpuFold):
    def __init__(
        self,
        *,
        device: int,
        n_rows: int,
        n_scales: int,
        key_seed: int,
        eps0: float,
        memory_limit: int = ...,
    ) -> None: ...
    def set_block(self, col_start: int, origin: npt.NDArray[np.float64]) -> None: ...
    def finish(self, ids: npt.NDArray[np.uint64]) -> int: ...

class GpuGramFold(_GpuFold):
    def __init__(self, *, device: int, n_rows: int, memory_limit: int = ...) -> None: ...
    def finish(self, gram: npt.NDArray[np.float64]) -> int: ...

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
