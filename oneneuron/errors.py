"""The project's exceptions. CLIs turn them into one line and an exit code."""


class ToolkitError(Exception):
    """Base class for every error the toolkit raises on purpose."""

    exit_code = 2


class InputError(ToolkitError, ValueError):
    """A user-supplied value (flag, file, array) is not what was expected."""


class MissingArtifactError(ToolkitError, FileNotFoundError):
    """A file an earlier stage should have written is not there."""


class IntegrityError(ToolkitError):
    """An artifact's bytes or self-test do not match what the manifest promises."""

    exit_code = 1


class RollbackError(IntegrityError):
    """manifest.json is older (a lower `generation`) than a floor: --min-generation, or the newest
    a server has served. A rolled-back or stale directory (exit 1)."""


class SchemaError(IntegrityError):
    """manifest.json or training.json is not what this toolkit writes (a bad field, a path leaving the
    directory, a FIFO). An input error like a missing file: exit 2."""

    exit_code = 2


class LockTimeoutError(ToolkitError):
    """Another writer held the artifacts directory's lock for longer than --lock-timeout."""


class DivergenceError(ToolkitError):
    """Training blew up (loss became NaN/inf or grew by orders of magnitude)."""
