"""Errors raised by the sandbox package. Code that fails, hangs or misbehaves inside the
sandbox is an ExecResult, not an exception; these are for misuse and broken hosts."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class of every error raised by the sandbox package."""


class SandboxConfigError(SandboxError, ValueError):
    """A job or backend was configured with an invalid value."""


class UnknownBackendError(SandboxError, KeyError):
    """A backend name that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown sandbox backend {name!r}; known backends are: {', '.join(sorted(known))}. "
            "Add one with sandbox.register_backend(name, factory)."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class IsolationUnavailableError(SandboxError, RuntimeError):
    """An isolation level was requested explicitly but this machine cannot provide it."""
