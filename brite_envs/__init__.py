"""brite_envs: LLM reasoning benchmarks as Gymnasium environments.

Importing this package registers every built-in task with Gymnasium under the ``brite``
namespace (``brite/GSM8K-v0``, ``brite/Arith-v0``, ...); entry points are lazy, so nothing is
loaded until an env is made.
"""

from __future__ import annotations

from brite_envs.checker import CheckReport, EnvCheckError, check_env
from brite_envs.data import DATA_DIR_ENV, DataSource, HubSource
from brite_envs.env import ReasoningEnv
from brite_envs.errors import (
    BriteEnvError,
    DataNotAvailableError,
    EnvConfigError,
    EpisodeStateError,
    MalformedRecordError,
    ProblemNotFoundError,
    UnknownTaskError,
)
from brite_envs.registry import list_tasks, make_task, register_task, task_spec
from brite_envs.spaces import TokenBatch, TokenIds, TokenSequence, UnicodeText
from brite_envs.task import PromptTemplate, Task, TaskSpec
from brite_envs.tokens import ByteTokenizer, TokenCodec, load_tokenizer
from brite_envs.types import ChatMessage, Problem, ProblemMeta
from brite_envs.vector import TokenVectorEnv

__all__ = [
    "DATA_DIR_ENV",
    "BriteEnvError",
    "ByteTokenizer",
    "ChatMessage",
    "CheckReport",
    "DataNotAvailableError",
    "DataSource",
    "EnvCheckError",
    "EnvConfigError",
    "EpisodeStateError",
    "HubSource",
    "MalformedRecordError",
    "Problem",
    "ProblemMeta",
    "ProblemNotFoundError",
    "PromptTemplate",
    "ReasoningEnv",
    "Task",
    "TaskSpec",
    "TokenBatch",
    "TokenCodec",
    "TokenIds",
    "TokenSequence",
    "TokenVectorEnv",
    "UnicodeText",
    "UnknownTaskError",
    "check_env",
    "list_tasks",
    "load_tokenizer",
    "make_task",
    "register_task",
    "task_spec",
]
