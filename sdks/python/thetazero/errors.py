"""The one exception type of the SDK."""

import json
from typing import Any, Optional


class ThetazeroError(RuntimeError):
    """An error from the server (its `code`, `message` and `request_id`) or
    from the SDK (codes such as NETWORK_ERROR, EXECUTION_FAILED,
    PERMISSION_DENIED). A RuntimeError, so `raise_for_status()` keeps the
    spec's contract."""

    def __init__(
        self,
        code: str,
        message: str,
        request_id: Optional[str] = None,
        status: Optional[int] = None,
        details: Any = None,
    ) -> None:
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = status
        self.details = details

    @classmethod
    def from_http(cls, status: int, body: bytes, request_id: Optional[str]) -> "ThetazeroError":
        try:
            err = json.loads(body)["error"]
            return cls(err["code"], err["message"], err.get("request_id") or request_id, status)
        except (ValueError, KeyError, TypeError):
            text = body[:200].decode("utf-8", "replace")
            return cls("HTTP_%d" % status, text or "HTTP %d" % status, request_id, status)

    def __repr__(self) -> str:
        return "ThetazeroError(code=%r, message=%r, request_id=%r, status=%r)" % (
            self.code, self.message, self.request_id, self.status)
