"""Errors raised by the agents package; messages name the bad value and the fix."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error raised by agents."""


class ConfigError(AgentError, ValueError):
    """A bad configuration value or override."""


class ModelLoadError(AgentError, OSError):
    """A model could not be loaded from the given preset or path."""


class EvalDataError(AgentError, ValueError):
    """Evaluation data (samples.jsonl, run.json, metrics.json) that is missing or malformed;
    the message names the file and line and says how to fix it."""
