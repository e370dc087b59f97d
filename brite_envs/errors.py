"""Errors raised by brite_envs. Every message names the bad value and the fix."""

from __future__ import annotations


class BriteEnvError(Exception):
    """Base class of every error raised by brite_envs."""


class UnknownTaskError(BriteEnvError, KeyError):
    """A task name or alias that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"unknown task {name!r}; registered tasks are: {', '.join(sorted(known))}. "
            "Register your own with brite_envs.register_task(...) or the 'brite.tasks' entry point."
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:
        return (type(self), (self.name, self.known))


class DataNotAvailableError(BriteEnvError, FileNotFoundError):
    """Neither a local copy nor the Hugging Face hub could provide a dataset."""


class MalformedRecordError(BriteEnvError, ValueError):
    """A dataset record lacks a field or has one of the wrong type."""

    def __init__(self, file: str, line: int, field: str, problem: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(
            f"{file}:{line}: field {field!r} {problem}. Fix or remove this record; "
            "brite never drops malformed records silently."
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str]]:
        return (type(self), (self.file, self.line, self.field, self.problem))


class ProblemNotFoundError(BriteEnvError, KeyError):
    """An index or problem id that the task does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


class EnvConfigError(BriteEnvError, ValueError):
    """An environment was configured with an invalid value."""


class EpisodeStateError(BriteEnvError, RuntimeError):
    """step() was called before reset() or after the episode ended."""
