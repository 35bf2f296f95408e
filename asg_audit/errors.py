"""The errors asg_audit raises when a run cannot go on.

Audit problems (bad records, broken invariants, missing payments) are data: rejects and findings.
These exceptions are for the cases where the work itself cannot continue. Every one carries the
exit code the command line maps it to (DESIGN.md, "Command line")::

    AuditError                      base of everything asg_audit raises on purpose
    +-- ConfigError                 bad configuration or usage                      exit 2
    +-- InputError                  an input file cannot be read (names the file)   exit 2
    +-- StoreError                  the DuckDB store cannot be used                 exit 3
    |   +-- StoreBusyError          another writer holds the database
    |   +-- SchemaVersionError      the file comes from a newer asg_audit           exit 2
    +-- ApiError                    the ASG Gateway or the chain index failed us    exit 3
    |   +-- ApiTransientError       worth retrying (429, 5xx, timeouts, resets)
    |   +-- ApiStatusError          a terminal answer (401, 403, unexpected status)
    |       +-- AuthError           the key was refused: the run stops
    +-- IncompleteRunError          the run stopped before finishing (signal, deadline) exit 3
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ApiStatusError",
    "ApiTransientError",
    "AuditError",
    "AuthError",
    "ConfigError",
    "IncompleteRunError",
    "InputError",
    "SchemaVersionError",
    "StoreBusyError",
    "StoreError",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
# The reader of the output went away (`| head`): the status of a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 141


class AuditError(Exception):
    """Base of every error asg_audit raises on purpose."""

    exit_code: int = EXIT_INCOMPLETE


class ConfigError(AuditError):
    """The configuration, the environment or the command line is wrong."""

    exit_code = EXIT_USAGE


class InputError(AuditError):
    """An input file cannot be read at all (missing, unreadable, truncated archive)."""

    exit_code = EXIT_USAGE


class StoreError(AuditError):
    """The DuckDB store cannot be opened or written."""


class StoreFileError(StoreError):
    """The path is not a usable store: missing (for a reader), not a DuckDB file, or the
    database of another application. Retrying will not help: exit 2."""

    exit_code = EXIT_USAGE


class StoreBusyError(StoreError):
    """Another process holds the write lock of the database file."""


class SchemaVersionError(StoreError):
    """The database file was written by a newer asg_audit; refusing to touch it."""

    exit_code = EXIT_USAGE


class ApiError(AuditError):
    """A remote API (ASG Gateway, chain index) did not give a usable answer."""

    transient: bool = False


class ApiTransientError(ApiError):
    """A failure worth retrying: 429, 5xx, timeouts, dropped connections."""

    transient = True


class ApiStatusError(ApiError):
    """A terminal HTTP answer that retrying will not change."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthError(ApiStatusError):
    """The API refused the key (401/403): the run stops."""


class IncompleteRunError(AuditError):
    """The run stopped before it finished (interrupted, deadline reached)."""
