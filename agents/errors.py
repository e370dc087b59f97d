"""Errors raised by the agents package; messages name the bad value and the fix."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error raised by agents."""


class ConfigError(AgentError, ValueError):
    """A bad configuration value or override."""


class ModelLoadError(AgentError, OSError):
    """A model could not be loaded from the given preset or path."""
