"""The main job as pure, cached steps: config -> training runs -> analyses -> results.json.

``fractaldiff run`` / ``analyze`` / ``report`` (see :mod:`fractaldiff.cli`) call
:func:`run_pipeline`, :func:`analyze_run` and :func:`fractaldiff.report.render_report`.
torch is imported only inside the steps that train.
"""

from __future__ import annotations

from .config import DEFAULT_TOML, default_config, load_config, validate_config
from .errors import PipelineError

__all__ = ["DEFAULT_TOML", "PipelineError", "analyze_run", "default_config", "load_config",
           "run_pipeline", "validate_config"]


def run_pipeline(*args, **kwargs):
    """See :func:`fractaldiff.pipeline.run.run_pipeline`."""
    from .run import run_pipeline as f

    return f(*args, **kwargs)


def analyze_run(*args, **kwargs):
    """See :func:`fractaldiff.pipeline.analyze.analyze_run`."""
    from .analyze import analyze_run as f

    return f(*args, **kwargs)
