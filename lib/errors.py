"""One error hierarchy: every error this package raises on purpose derives from ``DdcsMiError``.

Each class also derives from the built-in exception a caller would expect (``ValueError`` for a
bad argument, ``FileNotFoundError`` for missing inputs, ...), so ``except ValueError`` keeps
working; code that must tell errors apart does it by type, never by message text.
"""
from __future__ import annotations


class DdcsMiError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(DdcsMiError, ValueError):
    """A bad argument: wrong shape, unknown name, invalid value, NaN where numbers belong."""


class ConfigError(InputError):
    """An unknown profile or override key, or an override of the wrong type."""


class TooFewSamplesError(InputError):
    """A metric cannot be computed: fewer samples than its documented minimum."""


class SplitError(InputError):
    """A split invariant is broken: D, R, the public set or E's data overlap."""


class DataNotFoundError(DdcsMiError, FileNotFoundError):
    """A data set is not where we look for it."""


class DataCorruptError(DdcsMiError, ValueError):
    """A data file exists but its content is not the expected one."""


class FaceDataError(DataNotFoundError):
    """A face data folder or split file is missing or does not have the expected layout."""


class WeightsError(DdcsMiError, FileNotFoundError):
    """Pretrained weights that a profile needs are missing or fail their checksum."""


class ArtifactError(DdcsMiError, RuntimeError):
    """An artefact is missing, modified since it was written, or not what it claims to be."""


class RunnerError(DdcsMiError, RuntimeError):
    """The runner cannot start (bad arguments, wrong kernel, unknown run folder)."""
