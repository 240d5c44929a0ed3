"""The package's exception hierarchy.

Every error a user can cause derives from :class:`TvdeployError`; the CLI maps
them to one clear message and an exit code, without a traceback.
"""

from __future__ import annotations


class TvdeployError(Exception):
    """Base class of all tvdeploy errors.

    ``hint`` is the way out (what to do instead), printed after the message.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UserInputError(TvdeployError):
    """Bad arguments: unknown model, bad option value, ..."""

    exit_code = 2


class UnknownModelError(UserInputError):
    """A model name that torchvision's registry does not know."""


class WeightsError(UserInputError):
    """Weights that cannot be resolved or fetched."""


class CheckpointError(UserInputError):
    """A checkpoint file that cannot be loaded into the architecture."""


class LabelsError(UserInputError):
    """A labels file that does not fit the model."""


class OutputExistsError(UserInputError):
    """The output directory exists and ``--force`` was not given."""


class ArtifactError(UserInputError):
    """A missing, tampered or incompatible artifact / manifest."""


class ImageError(UserInputError):
    """An input that is not a decodable, acceptable image."""


class ProviderError(UserInputError):
    """An execution provider that was asked for but is not available."""


class MissingDependencyError(TvdeployError):
    """An optional dependency (an extra) is not installed."""

    exit_code = 2


class ExportError(TvdeployError):
    """Every exporter available for a format failed."""

    exit_code = 4
