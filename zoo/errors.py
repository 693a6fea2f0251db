"""zoo's exception types. A :class:`ZooError` is an expected failure (bad input, a broken file, a full disk): the
command line prints it as one line, ``zoo CMD: error: <what> — <what to do>``, exit code 2. Each also derives from
the built-in type a caller would otherwise catch (``ValueError``, ``RuntimeError``)."""

from __future__ import annotations


class ZooError(Exception):
    """An expected failure. ``hint`` says what to do; ``str()`` gives ``"<what> — <hint>"``."""

    def __init__(self, message: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} — {self.hint}" if self.hint else text


class WeightsError(ZooError, RuntimeError):
    """Weights could not be obtained or do not fit the model."""


class IntegrityError(WeightsError):
    """A file's size or SHA-256 differs from the one it must have."""


class OfflineError(WeightsError):
    """Offline mode is on and the weights are not cached."""


class NotPublishedError(WeightsError):
    """The manifest lists the weights, but their file has not been published yet."""


class WeightsFileError(WeightsError, ValueError):
    """A weights file is unusable: not safetensors (a pickle, a folder), a broken header, NaN/Inf values,
    tensors of the wrong dtype, or metadata (preprocessing, builder arguments) that cannot be right."""


class ManifestError(ZooError, ValueError):
    """The manifest (``weights/manifest.json``) or one of its entries is invalid; the message names the file."""


class DataError(ZooError, ValueError):
    """A dataset is missing, unreadable or not in a layout zoo knows."""


class RunError(ZooError, RuntimeError):
    """A training run folder cannot be used as asked: another process is writing to it, or a resume
    would continue it with another model, dataset, class set or settings."""


class ArgumentValueError(ZooError, ValueError):
    """An argument of a function or an option of a command outside the values it can take: a model
    configuration (``depth=19``, ``global_pool="max2"``), a benchmark or export setting, a weights name that
    does not belong to the model. The message names the argument and what would be valid."""


class ModelArgumentError(ZooError, TypeError):
    """A model was asked for with an argument its builder does not take (the message lists those it takes)."""


class DependencyError(ZooError, RuntimeError):
    """A feature needs an optional package that is not installed (the message says how to install it)."""


class DeviceError(ZooError, ValueError):
    """A ``--device`` that is not one zoo can use here (an unknown name, or a GPU that torch does not see)."""


class RecipeError(ZooError, ValueError):
    """A training recipe setting outside the values it can take (the message names the field and its range)."""


class OutputFolderError(ZooError, ValueError):
    """An output folder that zoo may not write into: it holds files zoo did not write (a data set, a home folder)."""


class TrainingDiverged(ZooError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class PublishError(ZooError, RuntimeError):
    """``zoo publish``: a check failed or the inputs are unusable; nothing was written."""
