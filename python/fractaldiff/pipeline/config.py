"""The main job's configuration: TOML, validated against the built-in default.

Every key of a user's file must exist in the default (unknown keys are errors that name them),
with the default's type (an int is accepted where a float is expected) and, for the enumerated
keys, one of the allowed values. Keys a file leaves out take the default's value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from .errors import PipelineError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = ["DEFAULT_TOML", "QUICK", "default_config", "load_config", "validate_config",
           "config_hash", "section_hash", "to_toml"]

#: Bump when a change to the pipeline changes results: invalidates every cache entry.
PIPELINE_VERSION = 1

DEFAULT_TOML = """\
# fractaldiff run: the built-in default. Print it with `fractaldiff run --print-config`,
# edit, and pass the file: `fractaldiff run my.toml`. Keys left out keep these values.

seed = 0               # every run's seed derives from this one
threads_per_job = 1    # torch threads per training process (tiny models: 1 is fastest)

[analysis]
late_window = "auto"   # "auto": the last regime of R(t); or [lo, hi], fractions of the run
n_blocks = 8           # random parameter blocks whose spread gives calibrated standard errors
max_points_dimension = 600   # snapshots used for the box-counting / correlation dimensions

[llc]                  # localized SGLD (fractaldiff.bayes), lambda_bar over the late window
enabled = true
n_points = 4           # snapshots of the late window where lambda-hat is estimated and averaged
n_chains = 2
n_draws = 150          # SGLD steps per chain, burn-in included
n_burnin = 50
step_size = 1e-4
localization = 100.0
batch_size = 128

[moons]                # (a) paper Fig. 1: ensemble of MLPs on two moons, SGD
enabled = true
n_models = 32
n_samples = 1000
width = 32
depth = 2
optimizer = "sgd"
lr = 0.05
batch_size = 32
steps = 2000
record_every = 1

[digits]               # (b) paper Fig. 2, Table 4: ReLU+BatchNorm MLPs on 8x8 digits
enabled = true
optimizers = ["sgd", "adam"]
sgd_lrs = [0.01, 0.03, 0.1]
adam_lrs = [0.0003, 0.001, 0.003]
batch_sizes = [32, 128, 512]
width = 64
depth = 2
steps = 2000
record_every = 2

[cnn]                  # (c) small CNN on digits: Adam, then late low-LR SGD (recorded)
enabled = true
channels = [8, 16]
pretrain_optimizer = "adam"
pretrain_lr = 0.003
pretrain_steps = 600
finetune_lr = 0.01
finetune_steps = 1000
batch_size = 128
record_every = 1

[lm]                   # (c) character-level transformer on Python's own stdlib sources
enabled = true
n_chars = 100000
seq_len = 64
d_model = 48
n_heads = 4
n_layers = 2
pretrain_optimizer = "adam"
pretrain_lr = 0.003
pretrain_steps = 1500
finetune_lr = 0.05
finetune_steps = 800
batch_size = 32
record_every = 1

[posterior]            # (d) paper Figs. 3-4, Table 2: SGD solutions vs the local Bayesian posterior
enabled = true
n_models = 256
n_samples = 200
width = 4              # narrow nets: SGD finds several distinct solutions (clusters)
depth = 1
lr = 0.05
batch_size = 32
steps = 1500
# coarse-graining scales xi swept (Fig. 3)
xis = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0]
llc_members = 4        # members per cluster where lambda-hat is estimated
sgld_steps = 1000      # posterior SGLD chains (one per member): steps, burn-in
sgld_burnin = 500
n_bootstrap = 200      # resamples of the members for the intervals of Table 2
toy_check = true       # the toy singular model's exact grid check
"""

#: What ``--quick`` changes (about a minute on 2 cores).
QUICK: dict[str, dict[str, Any]] = {
    "analysis": {"max_points_dimension": 200},
    "llc": {"n_points": 2, "n_chains": 2, "n_draws": 40, "n_burnin": 10},
    "moons": {"n_models": 4, "steps": 400},
    "digits": {"sgd_lrs": [0.05], "adam_lrs": [0.003], "batch_sizes": [64], "steps": 400},
    "cnn": {"pretrain_steps": 150, "finetune_steps": 200},
    "lm": {"n_chars": 30000, "d_model": 32, "n_layers": 1, "pretrain_steps": 60,
           "finetune_steps": 80},
    "posterior": {"n_models": 16, "steps": 300, "xis": [0.1, 0.25, 0.5, 1.0, 2.0],
                  "llc_members": 2, "sgld_steps": 200, "sgld_burnin": 100, "n_bootstrap": 50},
}

#: Allowed values of the enumerated keys.
CHOICES: dict[str, tuple[str, ...]] = {
    "moons.optimizer": ("sgd", "adam"),
    "cnn.pretrain_optimizer": ("sgd", "adam"),
    "lm.pretrain_optimizer": ("sgd", "adam"),
    "digits.optimizers": ("sgd", "adam"),
}

#: Keys that must be > 0 (numbers) or >= 1 (ints); lists: each element.
_POSITIVE_EXCEPT = {"seed"}

#: Larger lower limits of some integer keys.
MINIMUM = {"moons.n_models": 2, "posterior.n_models": 2, "moons.n_samples": 8,
           "posterior.n_samples": 8, "lm.seq_len": 2, "lm.n_chars": 1000,
           "digits.steps": 20, "cnn.finetune_steps": 20, "lm.finetune_steps": 20,
           "moons.steps": 20, "posterior.steps": 2, "llc.n_draws": 2, "llc.n_points": 1}


def _toml() -> Any:
    if tomllib is None:  # pragma: no cover - Python < 3.11 without tomli
        raise PipelineError("reading TOML configs on Python < 3.11 needs tomli: "
                            "pip install 'fractaldiff[run]'")
    return tomllib


def default_config() -> dict[str, Any]:
    """The built-in default configuration (a fresh dict).

    Returns
    -------
    dict
        Parsed from :data:`DEFAULT_TOML`: top-level keys and one dict per ``[section]``.
    """
    return _toml().loads(DEFAULT_TOML)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _check_scalar(key: str, value: Any, ref: Any) -> Any:
    if isinstance(ref, bool):
        if not isinstance(value, bool):
            raise PipelineError(f"config key {key!r} must be true or false, got "
                                f"{_type_name(value)} ({value!r})")
        return value
    if isinstance(ref, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(f"config key {key!r} must be an integer, got "
                                f"{_type_name(value)} ({value!r})")
        if key.rsplit(".", 1)[-1] not in _POSITIVE_EXCEPT and value < 1:
            raise PipelineError(f"config key {key!r} must be >= 1, got {value}")
        if key in MINIMUM and value < MINIMUM[key]:
            raise PipelineError(f"config key {key!r} must be >= {MINIMUM[key]}, got {value}")
        if key == "seed" and value < 0:
            raise PipelineError(f"config key 'seed' must be >= 0, got {value}")
        return value
    if isinstance(ref, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PipelineError(f"config key {key!r} must be a number, got "
                                f"{_type_name(value)} ({value!r})")
        if not value > 0 or value != value or value == float("inf"):
            raise PipelineError(f"config key {key!r} must be a finite number > 0, got {value}")
        return float(value)
    if isinstance(ref, str):
        if not isinstance(value, str):
            raise PipelineError(f"config key {key!r} must be a string, got "
                                f"{_type_name(value)} ({value!r})")
        allowed = CHOICES.get(key)
        if allowed and value not in allowed:
            raise PipelineError(f"config key {key!r} must be one of "
                                f"{', '.join(map(repr, allowed))}; got {value!r}")
        return value
    raise PipelineError(f"config key {key!r}: unsupported value {value!r}")  # pragma: no cover


def _check_late_window(value: Any) -> Any:
    key = "analysis.late_window"
    if value == "auto":
        return value
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] < value[1] <= 1):
        return [float(v) for v in value]
    raise PipelineError(f"config key {key!r} must be \"auto\" or [lo, hi] with "
                        f"0 <= lo < hi <= 1 (fractions of the run's length); got {value!r}")


def validate_config(cfg: Any, *, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``cfg`` over ``base`` (default: the built-in default) and check every key.

    Parameters
    ----------
    cfg : dict
        A (partial) configuration, as parsed from TOML: top-level keys and ``[section]``
        tables.
    base : dict, optional
        The configuration to merge over (default: :func:`default_config`); not modified.

    Returns
    -------
    dict
        The merged, checked configuration (a new dict).

    Raises
    ------
    PipelineError
        An unknown key, a value of the wrong type or range, or inconsistent keys.
    """
    ref = default_config() if base is None else base
    if not isinstance(cfg, dict):
        raise PipelineError(f"config must be a TOML table, got {_type_name(cfg)}")
    out = copy.deepcopy(ref)
    for key, value in cfg.items():
        if key not in ref:
            raise PipelineError(f"unknown config key {key!r}; allowed top-level keys: "
                                f"{', '.join(sorted(ref))}")
        if isinstance(ref[key], dict):
            if not isinstance(value, dict):
                raise PipelineError(f"config key {key!r} must be a table ([{key}]), got "
                                    f"{_type_name(value)}")
            for sub, v in value.items():
                full = f"{key}.{sub}"
                if sub not in ref[key]:
                    raise PipelineError(f"unknown config key {full!r}; allowed keys in "
                                        f"[{key}]: {', '.join(sorted(ref[key]))}")
                out[key][sub] = _check_value(full, v, ref[key][sub])
        else:
            out[key] = _check_value(key, value, ref[key])
    _check_relations(out)
    return out


def _check_relations(cfg: dict[str, Any]) -> None:
    """Constraints between keys."""
    pairs = [("llc.n_draws", "llc.n_burnin", "SGLD steps per chain include the burn-in"),
             ("posterior.sgld_steps", "posterior.sgld_burnin", "the chains include the burn-in")]
    for big, small, why in pairs:
        a, b = (cfg[k.split(".")[0]][k.split(".")[1]] for k in (big, small))
        if a <= b:
            raise PipelineError(f"config key {big!r} ({a}) must be larger than {small!r} ({b}): "
                                f"{why}")
    if cfg["lm"]["d_model"] % cfg["lm"]["n_heads"]:
        raise PipelineError(f"config key 'lm.d_model' ({cfg['lm']['d_model']}) must be a multiple "
                            f"of 'lm.n_heads' ({cfg['lm']['n_heads']})")
    if cfg["lm"]["n_chars"] < 4 * (cfg["lm"]["seq_len"] + 1):
        raise PipelineError("config key 'lm.n_chars' must be at least 4 * (lm.seq_len + 1)")


def _check_value(key: str, value: Any, ref: Any) -> Any:
    if key == "analysis.late_window":
        return _check_late_window(value)
    if isinstance(ref, list):
        if not isinstance(value, list) or not value:
            raise PipelineError(f"config key {key!r} must be a non-empty list, got "
                                f"{_type_name(value)} ({value!r})")
        seen = [_check_scalar(key, v, ref[0]) for v in value]
        if len(set(map(repr, seen))) != len(seen):
            raise PipelineError(f"config key {key!r} has repeated values: {value!r}")
        return seen
    if isinstance(ref, dict):  # pragma: no cover - no nested tables in the default
        raise PipelineError(f"config key {key!r}: nested tables are not supported")
    return _check_scalar(key, value, ref)


def load_config(path: str | Path | None = None, *, quick: bool = False) -> dict[str, Any]:
    """The resolved configuration: default, then ``--quick`` reductions, then the file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A TOML config file (default: none, the built-in default).
    quick : bool, default False
        Apply the reduced sizes of ``--quick`` before the file.

    Returns
    -------
    dict
        The checked configuration (see :func:`validate_config`).

    Raises
    ------
    PipelineError
        The file is missing, not valid TOML, or holds a bad key or value.
    """
    base = default_config()
    if quick:
        for sec, vals in QUICK.items():
            base[sec].update(vals)
    if path is None:
        return base
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"config file {str(p)!r} does not exist")
    try:
        data = _toml().loads(p.read_text(encoding="utf-8"))
    except (_toml().TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    return validate_config(data, base=base)


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(cfg: dict[str, Any]) -> str:
    """Hash of a whole resolved config (identifies an output directory's results)."""
    return hashlib.sha256(_canon([PIPELINE_VERSION, cfg]).encode()).hexdigest()[:16]


def section_hash(*parts: Any) -> str:
    """Cache key of one unit of work: the config parts it depends on."""
    return hashlib.sha256(_canon([PIPELINE_VERSION, *parts]).encode()).hexdigest()[:16]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")  # pragma: no cover


def to_toml(cfg: dict[str, Any]) -> str:
    """A resolved config as TOML (round-trips through :func:`validate_config`)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
