"""Exception types shared by every layer of vaelens.

Each error message names the file, field or argument at fault and what was expected,
so that a user can fix the input without reading a traceback.

Imports from: nothing of vaelens (it sits beneath every package).
"""

from __future__ import annotations


class VaelensError(Exception):
    """Base class of every error vaelens raises on purpose."""


class DatasetError(VaelensError, ValueError):
    """A dataset file, name or factor array is missing, malformed or out of range."""


class DownloadError(VaelensError, RuntimeError):
    """A dataset could not be fetched (offline, wrong checksum, server error)."""


class ArgumentError(VaelensError, ValueError):
    """A bad argument value: out of range, of the wrong shape, or not among the choices."""


class ConfigError(ArgumentError):
    """A configuration field is invalid (a config field is an argument given in a file)."""


class CheckpointError(VaelensError, RuntimeError):
    """A checkpoint is missing, truncated or does not match the model."""


class TrainingDivergedError(VaelensError, RuntimeError):
    """A loss term became NaN or infinite during training."""


class ModelContractError(VaelensError, TypeError):
    """A model lacks what the lens needs: ``encode``/``decode``, or outputs of the right shape.

    Bad argument values passed alongside a model raise :class:`ArgumentError` instead.
    """


class StudyLockedError(VaelensError, RuntimeError):
    """A study directory is held by another running study driver."""
