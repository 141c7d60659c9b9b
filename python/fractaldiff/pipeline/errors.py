"""The pipeline's one error type: bad input the user can fix (the CLI exits with code 2)."""

from __future__ import annotations

__all__ = ["PipelineError"]


class PipelineError(ValueError):
    """Bad configuration, run path, factory or output directory; the message says what to fix."""
