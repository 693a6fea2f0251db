"""zoo's exception types. Each message names the file or value at fault and what would be valid.

They derive from the built-in type a caller would otherwise catch (``RuntimeError``, ``ValueError``),
so code written against those keeps working.
"""

from __future__ import annotations

__all__ = ["DataError", "IntegrityError", "NotPublishedError", "OfflineError", "WeightsError"]


class WeightsError(RuntimeError):
    """Weights could not be obtained or do not fit the model."""


class IntegrityError(WeightsError):
    """A file's size or SHA-256 differs from the one it must have."""


class OfflineError(WeightsError):
    """Offline mode is on and the weights are not cached."""


class NotPublishedError(WeightsError):
    """The manifest lists the weights, but their file has not been published yet."""


class DataError(ValueError):
    """A dataset is missing, unreadable or not in a layout zoo knows."""
