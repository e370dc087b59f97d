"""Errors raised by the verifiers package. A grading *failure* is a Verdict, not an exception;
these are for misuse: unknown names, bad configuration."""

from __future__ import annotations


class VerifierError(Exception):
    """Base class of every error raised by verifiers."""


class UnknownVerifierError(VerifierError, KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(
            f"unknown verifier {name!r}; known verifiers are: {', '.join(sorted(known))}. "
            "Add one with verifiers.register(name, factory) or the 'brite.verifiers' entry point."
        )

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:
        # Picklable, so the error survives crossing process and Ray actor boundaries.
        return (type(self), (self.name, self.known))


class VerifierConfigError(VerifierError, ValueError):
    """A verifier was built with an invalid option."""
