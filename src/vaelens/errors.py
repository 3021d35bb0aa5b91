"""Exception types shared by every layer of vaelens.

Each error message names the file, field or argument at fault and what was expected,
so that a user can fix the input without reading a traceback.
"""

from __future__ import annotations


class VaelensError(Exception):
    """Base class of every error vaelens raises on purpose."""


class DatasetError(VaelensError, ValueError):
    """A dataset file, name or factor array is missing, malformed or out of range."""


class DownloadError(VaelensError, RuntimeError):
    """A dataset could not be fetched (offline, wrong checksum, server error)."""


class ConfigError(VaelensError, ValueError):
    """A configuration file or argument is invalid."""


class CheckpointError(VaelensError, RuntimeError):
    """A checkpoint is missing, truncated or does not match the model."""


class TrainingDivergedError(VaelensError, RuntimeError):
    """A loss term became NaN or infinite during training."""


class ModelContractError(VaelensError, TypeError):
    """A model does not offer what the lens needs (``encode``/``decode``)."""
