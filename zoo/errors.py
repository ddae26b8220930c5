"""The project's own exceptions: every bad input ends in one of these, with a message that
names the problem and the fix."""

from __future__ import annotations

import difflib


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose (the CLI prints it in one line)."""


class DataError(ZooError, ValueError):
    """Bad data: shapes, dtypes, non-finite values, label ranges, empty sets, bad files."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file could not be found in any of the places looked at."""


class ChecksumError(DataError):
    """A file's SHA-256 does not match the published checksum."""


class UnknownNameError(ZooError, KeyError):
    """An unknown dataset, model, framework or optimizer name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(ZooError, ValueError):
    """A bad hyperparameter or option (batch size, learning rate, epochs, ...)."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UnknownNameError:
    """An UnknownNameError that lists the known names and suggests the closest one."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(
        f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(sorted(known))}."
    )
