"""thetazero: Python SDK for a thetazero server, standard library only."""

from ._verify import VerifyError
from .client import SCOPES, TASK_AGENT_CODE, ExecutionResult, Permissions, SecureAgent, __version__
from .errors import ThetazeroError

__all__ = [
    "SecureAgent",
    "ExecutionResult",
    "Permissions",
    "ThetazeroError",
    "VerifyError",
    "SCOPES",
    "TASK_AGENT_CODE",
    "__version__",
]
