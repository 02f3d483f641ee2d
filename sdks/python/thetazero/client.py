"""SecureAgent: the Python client of a thetazero server (standard library only)."""

import base64
import datetime
import hashlib
import io
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, MutableMapping, Optional, Sequence, Tuple, Union

from . import _verify
from ._sse import SSEParser
from .errors import ThetazeroError

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8420"

SCOPES = (
    "compute:read", "compute:write", "inference:call", "data:read", "data:write",
    "network:outbound", "storage:read", "storage:write", "agents:read", "agents:write",
)


class Permissions:
    """The spec's permission presets, as scope tuples (immutable, so that
    extending one for an agent cannot change it for the others)."""

    READONLY = ("compute:read", "data:read", "storage:read")
    WRITER = ("inference:call", "data:read")
    RESEARCHER = ("network:outbound", "inference:call", "data:read", "agents:read")
    CODER = ("compute:read", "compute:write", "inference:call", "data:read", "network:outbound")
    ANALYST = ("compute:read", "inference:call", "data:read", "data:write", "storage:read", "storage:write", "agents:read")
    FULL = SCOPES


# The agent deployed when no entry code is given: it hands `task` and `data`
# to the model through the inference host call and returns the answer.
TASK_AGENT_CODE = """const task = typeof input.task === "string" ? input.task : JSON.stringify(input.task ?? "");
const messages = [
  { role: "system", content: "You are a governed agent. Complete the task using only the data provided." },
  { role: "user", content: input.data === undefined ? task : task + "\\n\\nData (JSON):\\n" + JSON.stringify(input.data) },
];
const answer = await thetazero.inference({ messages });
return answer !== null && typeof answer === "object" && "content" in answer ? answer.content : answer;
"""

# Fields `deploy` and `update` send as-is; anything else is an AgentConfig field.
_AGENT_FIELDS = ("name", "version", "entry_code", "description", "status", "config", "permissions", "compliance")


class ExecutionResult:
    """One execution as the server reports it. Unknown fields stay in `raw`."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.raw: Dict[str, Any] = dict(data)
        self.execution_id: int = data.get("execution_id")  # type: ignore[assignment]
        self.agent_id: Optional[int] = data.get("agent_id")
        self.status: str = data.get("status", "")
        self.output: Any = data.get("output")
        self.error: Optional[Dict[str, Any]] = data.get("error")
        self.limit: Optional[str] = data.get("limit")
        self.resource_usage: Dict[str, Any] = data.get("resource_usage") or {}
        self.host_call_audit: List[Dict[str, Any]] = data.get("host_call_audit") or []
        self.logs: List[Any] = data.get("logs") or []
        self.duration_ms: Optional[int] = data.get("duration_ms")
        self.violation_count: int = data.get("violation_count", 0)
        self.was_terminated: bool = data.get("was_terminated", False)
        self.leaf_index: Optional[int] = data.get("leaf_index")
        self.leaf_hash: Optional[str] = data.get("leaf_hash")
        self.audit_trail_url: Optional[str] = data.get("audit_trail_url")

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def raise_for_status(self) -> "ExecutionResult":
        """Raises ThetazeroError (a RuntimeError) unless the execution completed."""
        if not self.ok:
            err = self.error or {}
            detail = err.get("message") or ("limit: %s" % self.limit if self.limit else "no error reported")
            if err.get("type"):
                detail = "%s: %s" % (err["type"], detail)
            raise ThetazeroError(
                (self.status == "failed" and err.get("code")) or "EXECUTION_%s" % self.status.upper(),
                "execution %s %s: %s" % (self.execution_id, self.status, detail),
                details=self,
            )
        return self

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __repr__(self) -> str:
        return "ExecutionResult(execution_id=%r, status=%r, output=%r)" % (self.execution_id, self.status, self.output)


def _param(v: Any) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        # An empty list names nothing: the parameter is left out.
        return ",".join(str(x) for x in v) if v else None
    return str(v)


class SecureAgent:
    """A governed agent on a thetazero server.

    The audit verifier key is pinned: pass `verifier_key`, or the server's key
    is fetched on first use and kept for this instance's lifetime (trust on
    first use). `checkpoint_store` (a dict) remembers the largest checkpoint
    accepted per log origin; share one between instances to share that state.
    """

    permissions = Permissions

    def __init__(
        self,
        api_key: Optional[str] = None,
        name: str = "secure-agent",
        description: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        version: str = "1.0.0",
        permissions: Optional[Union[Sequence[str], str]] = None,
        config: Optional[Mapping[str, Any]] = None,
        agent_id: Optional[int] = None,
        verifier_key: Optional[str] = None,
        checkpoint_store: Optional[MutableMapping[str, Dict[str, Any]]] = None,
        timeout: float = 120.0,
        compliance: Optional[Sequence[str]] = None,
    ) -> None:
        self.compliance: List[str] = list(compliance or [])
        self.compliance_status: Optional[Dict[str, Any]] = None
        self.api_key = api_key or os.environ.get("THETAZERO_API_KEY")
        if not self.api_key:
            raise ThetazeroError("MISSING_API_KEY", "no API key: pass api_key or set THETAZERO_API_KEY")
        self.base_url = (base_url or os.environ.get("THETAZERO_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.name = name
        self.description = description
        self.version = version
        self.permissions_granted = permissions
        self.config: Dict[str, Any] = dict(config or {})
        self.agent_id = agent_id
        self.agent: Optional[Dict[str, Any]] = None
        self.timeout = timeout
        self._verifier_key = _verify.parse_verifier_key(verifier_key) if verifier_key else None
        self.checkpoints: MutableMapping[str, Dict[str, Any]] = checkpoint_store if checkpoint_store is not None else {}

    # ---- HTTP ------------------------------------------------------------

    def _open(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        url = self.base_url + path
        params = {k: _param(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        h = {
            "Authorization": "Bearer %s" % self.api_key,
            "Accept": "application/json",
            "User-Agent": "thetazero-python/%s" % __version__,
        }
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=h, method=method)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise ThetazeroError.from_http(e.code, e.read(), e.headers.get("x-request-id")) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise ThetazeroError("NETWORK_ERROR", "%s %s: %s" % (method, url, reason)) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        with self._open(method, path, **kwargs) as res:
            text = res.read()
            if not text:
                return {}
            try:
                data: Dict[str, Any] = json.loads(text)
                return data
            except ValueError:
                raise ThetazeroError(
                    "INVALID_RESPONSE", "%s %s answered with non-JSON" % (method, path),
                    status=res.status, request_id=res.headers.get("x-request-id"),
                ) from None

    def _require_agent(self) -> int:
        if self.agent_id is None:
            raise ThetazeroError("NOT_DEPLOYED", "call deploy() first: this agent is not registered yet")
        return self.agent_id

    # ---- Agents and executions --------------------------------------------

    def deploy(self, entry_code: Optional[str] = None, **kwargs: Any) -> Dict[str, Any]:
        """Registers the agent, or replaces the one with the same name; returns
        the agent record. Keyword arguments are agent fields (`version`,
        `description`, `status`, `config`, `permissions`) or AgentConfig
        fields (`memory_limit_mb=256`, `allow_network=True`, ...). Without entry
        code, a built-in task agent is deployed that hands `task` and `data` to
        `thetazero.inference`."""
        body: Dict[str, Any] = {
            "name": kwargs.pop("name", self.name),
            "version": kwargs.pop("version", self.version),
            "entry_code": entry_code or kwargs.pop("entry_code", None) or TASK_AGENT_CODE,
        }
        config = dict(self.config)
        config.update(kwargs.pop("config", None) or {})
        for k in list(kwargs):
            if k not in _AGENT_FIELDS:
                config[k] = kwargs.pop(k)
        if config:
            body["config"] = config
        description = kwargs.pop("description", self.description)
        if description is not None:
            body["description"] = description
        permissions = kwargs.pop("permissions", self.permissions_granted)
        if permissions is not None:
            body["permissions"] = permissions if isinstance(permissions, str) else list(permissions)
        compliance = kwargs.pop("compliance", None)
        if compliance is not None:
            self.compliance = list(compliance)
        if self.compliance:
            body["compliance"] = list(self.compliance)
        body.update(kwargs)
        res = self._request("POST", "/api/v1/sdk/agents", body=body)
        self.agent = res["agent"]
        self.agent_id = self.agent["id"]
        self.name = self.agent["name"]
        # Frameworks are evaluated at once; a control that is not satisfied
        # is information on the record, never an exception.
        if self.compliance:
            self.compliance_status = self.get_compliance_status()
            self.agent["compliance"] = self.compliance_status
        return self.agent

    configure = deploy

    # ---- Compliance ----------------------------------------------------------

    def _compliance_query(
        self, frameworks: Optional[Sequence[str]] = None, account: bool = False,
        since: Any = None, until: Any = None,
    ) -> Dict[str, Any]:
        chosen = list(frameworks) if frameworks is not None else (self.compliance or None)
        return {
            "frameworks": chosen,
            "agentId": None if account else self.agent_id,
            "from": since,
            "to": until,
        }

    def get_compliance_status(
        self, frameworks: Optional[Sequence[str]] = None, account: bool = False,
        since: Any = None, until: Any = None,
    ) -> Dict[str, Any]:
        """Coverage and result per framework and control for this agent (or
        the whole account): audit-prepared evidence, not a certification or a
        score."""
        return self._request("GET", "/api/v1/sdk/compliance/status",
                             query=self._compliance_query(frameworks, account, since, until))

    def get_evidence_package(self, framework: str, format: str = "markdown", account: bool = False) -> Dict[str, Any]:
        """The signed evidence package of one framework (a zip):
        `{filename, media_type, bytes, sha256, markdown, audit_leaf_index}`."""
        if format != "markdown":
            raise ThetazeroError("INVALID_OPTION", "evidence packages come as 'markdown', not %r" % (format,))
        body: Dict[str, Any] = {"format": format}
        if not account and self.agent_id is not None:
            body["agent_id"] = self.agent_id
        path = "/api/v1/sdk/compliance/packages/%s" % urllib.parse.quote(framework, safe="")
        with self._open("POST", path, body=body, headers={"Accept": "application/zip, application/json"}) as res:
            data = res.read()
            headers = res.headers
        digest = hashlib.sha256(data).hexdigest()
        stated = headers.get("x-content-sha256")
        if stated and stated != digest:
            raise ThetazeroError("INVALID_RESPONSE", "the evidence package does not match the digest the server stated")
        disposition = headers.get("content-disposition") or ""
        filename = "thetazero-evidence-%s.zip" % framework
        if 'filename="' in disposition:
            filename = disposition.split('filename="', 1)[1].split('"', 1)[0]
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                markdown = z.read("summary.md").decode("utf-8")
        except (zipfile.BadZipFile, KeyError):
            raise ThetazeroError("INVALID_RESPONSE", "the evidence package is not a zip with summary.md") from None
        leaf = headers.get("x-audit-leaf-index")
        return {
            "filename": filename,
            "media_type": "application/zip",
            "bytes": data,
            "sha256": digest,
            "markdown": markdown,
            "audit_leaf_index": int(leaf) if leaf is not None else None,
        }

    def export_compliance_report(
        self, format: str = "json", frameworks: Optional[Sequence[str]] = None, account: bool = False,
    ) -> Dict[str, Any]:
        """The full report (`thetazero.compliance-report/v1`), parsed."""
        if format != "json":
            raise ThetazeroError("INVALID_OPTION", "the compliance report comes as 'json', not %r" % (format,))
        query = self._compliance_query(frameworks, account)
        query["format"] = format
        return self._request("GET", "/api/v1/sdk/compliance/report", query=query)

    def run_compliance_drill(self) -> Dict[str, Any]:
        """Kill-switch drill in the caller's account (needs the compliance and
        killswitch scopes): a canary is started, killed and deleted."""
        return self._request("POST", "/api/v1/sdk/compliance/drill")

    def run(self, input: Any = None) -> ExecutionResult:
        """Executes the agent synchronously. A run that did not complete is
        still returned: check `status` or call `raise_for_status()`."""
        agent_id = self._require_agent()
        limit_ms = (self.agent or {}).get("config", {}).get("cpu_time_limit_ms", 0) or 0
        res = self._request(
            "POST", "/api/v1/sdk/agents/%d/execute" % agent_id,
            body={"input": {} if input is None else input},
            timeout=max(self.timeout, limit_ms / 1000 + 30),
        )
        return ExecutionResult(_execution_of(res))

    def executions(self, page: Optional[int] = None, limit: Optional[int] = None, status: Optional[str] = None) -> List[Dict[str, Any]]:
        res = self._request(
            "GET", "/api/v1/sdk/agents/%d/executions" % self._require_agent(),
            query={"page": page, "limit": limit, "status": status},
        )
        executions: List[Dict[str, Any]] = res["executions"]
        return executions

    def get_execution(self, execution_id: int) -> Dict[str, Any]:
        res = self._request("GET", "/api/v1/sdk/agents/%d/executions/%d" % (self._require_agent(), execution_id))
        return _execution_of(res)

    def get_agent(self) -> Dict[str, Any]:
        res = self._request("GET", "/api/v1/sdk/agents/%d" % self._require_agent())
        self.agent = res["agent"]
        return self.agent

    def list_agents(self, page: Optional[int] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        agents: List[Dict[str, Any]] = self._request("GET", "/api/v1/sdk/agents", query={"page": page, "limit": limit})["agents"]
        return agents

    def update(self, **kwargs: Any) -> Dict[str, Any]:
        """Patches agent fields: entry_code, config (merged), permissions, status, version, description."""
        res = self._request("PATCH", "/api/v1/sdk/agents/%d" % self._require_agent(), body=kwargs)
        self.agent = res["agent"]
        return self.agent

    def delete(self) -> Dict[str, Any]:
        """Deletes the agent and its executions' payloads; its audit records stay."""
        res = self._request("DELETE", "/api/v1/sdk/agents/%d" % self._require_agent())
        self.agent_id = None
        self.agent = None
        return res

    # ---- Audit --------------------------------------------------------------

    def get_audit_log(
        self,
        from_: Optional[Union[str, datetime.date]] = None,
        to: Optional[Union[str, datetime.date]] = None,
        action_types: Optional[Union[List[str], str]] = None,
        violations_only: Optional[bool] = None,
        limit: Optional[int] = None,
        agent_id: Optional[int] = None,
        execution_id: Optional[int] = None,
        cursor: Optional[int] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Audit events: `{events, total, anchored}`. `from` is a keyword in
        Python, so pass `from_=` (or `**{"from": ...}`)."""
        if "from" in kwargs:
            from_ = kwargs.pop("from")
        if kwargs:
            raise TypeError("unknown audit filter(s): %s" % ", ".join(sorted(kwargs)))
        res = self._request("GET", "/api/v1/sdk/audit", query={
            "from": from_, "to": to, "actionTypes": action_types, "violationsOnly": violations_only,
            "limit": limit, "agentId": agent_id, "executionId": execution_id, "cursor": cursor,
        })
        return {"events": res["events"], "total": res["total"], "anchored": res["anchored"]}

    def export_audit_log(
        self,
        format: str = "csv",
        from_: Optional[Union[str, datetime.date]] = None,
        to: Optional[Union[str, datetime.date]] = None,
        action_types: Optional[Union[List[str], str]] = None,
        violations_only: Optional[bool] = None,
        **kwargs: Any,
    ) -> str:
        """`csv` for review, `bundle` (JSON Lines) for offline verification; returns the text."""
        if "from" in kwargs:
            from_ = kwargs.pop("from")
        if kwargs:
            raise TypeError("unknown export filter(s): %s" % ", ".join(sorted(kwargs)))
        query = {"format": format, "from": from_, "to": to, "actionTypes": action_types, "violationsOnly": violations_only}
        with self._open("GET", "/api/v1/sdk/audit/export", query=query, headers={"Accept": "*/*"}) as res:
            text: str = res.read().decode("utf-8")
            return text

    def get_verifier_key(self) -> str:
        """The pinned verifier key (C2SP form), fetching and pinning it on first use."""
        if self._verifier_key is None:
            res = self._request("GET", "/api/v1/sdk/audit/key")
            self._verifier_key = _verify.parse_verifier_key(res["verifier_key"])
        return self._verifier_key.text

    def verify_audit_record(self, record_id: int) -> Dict[str, Any]:
        """Fetches a record's proof and verifies it locally: leaf hash,
        checkpoint signature against the pinned key, inclusion, consistency to
        the latest checkpoint and to the largest checkpoint seen before.
        `chain_valid` is this client's verdict; the server's claim is only
        reported as `server_chain_valid`. When it is False, `failure` says why."""
        self.get_verifier_key()
        assert self._verifier_key is not None
        proof = self._request("GET", "/api/v1/sdk/audit/records/%s/proof" % urllib.parse.quote(str(record_id)))
        result: Dict[str, Any] = {
            "record_id": proof.get("record_id"),
            "log_origin": proof.get("log_origin"),
            "leaf_index": proof.get("leaf_index"),
            "leaf_hash": proof.get("leaf_hash"),
            "chain_valid": False,
            "anchor_tx_hash": proof.get("anchor_tx_hash"),
            "anchors": proof.get("anchors") or [],
            "verified_at": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "verifier_key": self._verifier_key.text,
            "server_chain_valid": proof.get("chain_valid"),
        }
        try:
            v = _verify.verify_record_proof(proof, self._verifier_key)
            self._reconcile(proof["log_origin"], v.checkpoint, v.latest)
        except _verify.VerifyError as e:
            result["failure"] = {"code": e.code, "message": e.message}
            return result
        result.update(
            chain_valid=True,
            checkpoint_size=v.checkpoint.size,
            latest_checkpoint_size=v.latest.size,
            leaf=v.leaf.decode("utf-8", "replace"),
        )
        return result

    def _reconcile(self, origin: str, cp: _verify.Checkpoint, latest: _verify.Checkpoint) -> None:
        # Every accepted checkpoint must extend the largest one seen before
        # for this log; fetch a consistency proof when the proof material
        # does not already link them, then remember the larger one.
        seen = self.checkpoints.get(origin)
        if seen and seen["size"] > 0:
            seen_root = _verify.b64decode(seen["root"], "remembered root")
            known = [c for c in (cp, latest) if c.size == seen["size"]]
            if known:
                if known[0].root != seen_root:
                    raise _verify.VerifyError("FORK", "log forked: the checkpoint seen before at size %d has another root" % seen["size"])
            else:
                a, b = (seen["size"], seen_root), (latest.size, latest.root)
                if a[0] > b[0]:
                    a, b = b, a
                try:
                    res = self._request("GET", "/api/v1/sdk/audit/consistency", query={"from": a[0], "to": b[0]})
                except ThetazeroError as e:
                    # A server that cannot prove a size it signed before has
                    # lost or rewritten part of its log.
                    if e.status == 400:
                        raise _verify.VerifyError(
                            "FORK", "the server cannot prove consistency between sizes %d and %d: %s" % (a[0], b[0], e.message)) from None
                    raise
                path = _verify.decode_hashes(res.get("proof"), "consistency proof")
                if res.get("from") != a[0] or res.get("to") != b[0] or not _verify.verify_consistency(path, a[0], a[1], b[0], b[1]):
                    raise _verify.VerifyError(
                        "FORK", "the checkpoint seen before (size %d) is not consistent with the latest (size %d)" % (seen["size"], latest.size))
            if seen["size"] >= latest.size:
                return
        self.checkpoints[origin] = {"size": latest.size, "root": base64.b64encode(latest.root).decode()}

    def verify_execution(self, execution_id: int) -> Dict[str, Any]:
        """The signed receipt of an execution (`tee_mode`, `attestation_id`,
        `chain_valid`, `receipt`); its signature, checkpoint and audit range
        are checked here too (`receipt_verified`)."""
        self.get_verifier_key()
        assert self._verifier_key is not None
        res = self._request("GET", "/api/v1/sdk/executions/%d/verify" % execution_id)
        res.pop("success", None)
        try:
            _check_receipt(res, self._verifier_key)
            res["receipt_verified"] = True
        except _verify.VerifyError as e:
            res["receipt_verified"] = False
            res["failure"] = {"code": e.code, "message": e.message}
        return res

    # ---- Kill switch, live stream, permission requests (spec paths) -------

    def stop(self, reason: str = "stopped from the SDK") -> Dict[str, Any]:
        """Kills this agent: running executions are cancelled and new ones are
        refused (409 `agent_killed`) until it is set ready again. Returns
        `{agent_id, status, terminated, confirmed, elapsed_ms}`."""
        return self._request("POST", "/api/sdk/agents/%d/kill" % self._require_agent(), body={"reason": reason})

    def set_global_halt(self, halted: bool, reason: Optional[str] = None, scope: Optional[str] = None) -> Dict[str, Any]:
        """Global kill switch: `halted=True` stops every running execution of
        the account (or, with `scope="deployment"` and the deployment owner's
        key, of every account) and refuses new ones (503 `global_halt`) until
        cleared with `halted=False`."""
        body: Dict[str, Any] = {"halted": halted, "reason": reason or ("halted from the SDK" if halted else "cleared from the SDK")}
        if scope is not None:
            body["scope"] = scope
        return self._request("POST", "/api/sdk/kill-switch/global", body=body)

    def get_global_halt(self) -> Dict[str, Any]:
        """The halt in force, if any: `{halted, scope, reason, since}`."""
        return self._request("GET", "/api/sdk/kill-switch/global")

    def stream_audit_log(
        self,
        execution_id: Optional[int] = None,
        agent_id: Optional[int] = None,
        since: Optional[Union[str, datetime.datetime]] = None,
        after: Optional[int] = None,
        reconnect: bool = True,
        read_timeout: float = 60.0,
    ) -> Iterator[Tuple[str, Any]]:
        """Yields `(type, data)` for live audit events (`connected`, `audit`,
        `checkpoint`, `keepalive`, `timeout`). Reconnects by itself after a
        dropped connection or a `timeout` event, resuming after the last event
        id (Last-Event-ID), so no event is lost or repeated. Errors that
        retrying cannot fix (401, 404, ...) are raised. Stop by breaking out
        of the loop or calling `.close()` on the generator."""
        last_id = "" if after is None else str(after)
        query = {"executionId": execution_id, "agentId": agent_id, "since": since}
        delay = 0.5
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                res = self._open("GET", "/api/sdk/audit/stream", query=query, headers=headers, timeout=read_timeout)
            except ThetazeroError as e:
                if not reconnect or not _retryable(e):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            parser = SSEParser()
            parser.last_event_id = last_id
            timed_out = False
            try:
                with res:
                    while True:
                        try:
                            line = res.readline()
                        except (socket.timeout, OSError):
                            break
                        if not line:
                            break
                        for msg in parser.feed_line(line.decode("utf-8").rstrip("\r\n")):
                            last_id = msg.id
                            try:
                                data: Any = json.loads(msg.data)
                            except ValueError:
                                data = msg.data
                            # `timeout` names the position to resume from,
                            # which can be past the last event this filter
                            # let through.
                            if msg.type == "timeout":
                                timed_out = True
                                resume = data.get("resume_after") if isinstance(data, dict) else None
                                if isinstance(resume, int) and not isinstance(resume, bool):
                                    last_id = parser.last_event_id = str(resume)
                            yield msg.type, data
                        if parser.retry_ms is not None:
                            delay = parser.retry_ms / 1000
            finally:
                last_id = parser.last_event_id or last_id
            if not reconnect:
                return
            # The server ends a stream with `timeout` at its time limit or when
            # this client lags: resume at once.
            if not timed_out:
                time.sleep(delay)

    def request_permission(
        self,
        permissions: Union[Mapping[str, Any], List[str]],
        justification: str,
        timeout_ms: int = 120_000,
        poll_interval: float = 1.0,
    ) -> Dict[str, Any]:
        """Asks the account owner for elevated permissions and waits for the
        decision. Returns the approved request; raises ThetazeroError with
        code PERMISSION_DENIED, PERMISSION_EXPIRED or PERMISSION_TIMEOUT."""
        body = {"agent_id": self._require_agent(), "permissions": permissions, "justification": justification, "timeout_ms": timeout_ms}
        created = self._request("POST", "/api/sdk/permission-requests", body=body)
        request = created.get("request") or created.get("permission_request") or created
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            status = request.get("status")
            rid = request.get("id")
            if status == "approved":
                return request
            if status == "denied":
                raise ThetazeroError("PERMISSION_DENIED", "permission request %s was denied" % rid, details=request)
            if status == "expired":
                raise ThetazeroError("PERMISSION_EXPIRED", "permission request %s expired before a decision" % rid, details=request)
            if time.monotonic() >= deadline:
                raise ThetazeroError("PERMISSION_TIMEOUT", "no decision on permission request %s within %d ms" % (rid, timeout_ms), details=request)
            time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))
            res = self._request("GET", "/api/sdk/permission-requests/%s" % rid)
            request = res.get("request") or res.get("permission_request") or res


def _execution_of(res: Dict[str, Any]) -> Dict[str, Any]:
    # The server answers with the execution's fields next to `success`.
    return {k: v for k, v in res.items() if k != "success"}


def _retryable(e: ThetazeroError) -> bool:
    # Client errors other than 408/429 will not heal by retrying.
    return e.status is None or not (400 <= e.status < 500 and e.status not in (408, 429))


def _check_receipt(res: Mapping[str, Any], key: _verify.VerifierKey) -> Dict[str, Any]:
    note = res.get("receipt")
    if not isinstance(note, str):
        raise _verify.VerifyError("MALFORMED", "no receipt note")
    text = _verify.open_note(note, key)
    try:
        body: Dict[str, Any] = json.loads(text)
    except ValueError:
        raise _verify.VerifyError("MALFORMED", "receipt body is not JSON") from None
    if not isinstance(body, dict):
        raise _verify.VerifyError("MALFORMED", "receipt body is not a JSON object")
    if body.get("type") != "tz.execution-receipt.v1":
        raise _verify.VerifyError("MALFORMED", "receipt has the wrong type")
    cp = _verify.parse_checkpoint(_verify.open_note(body.get("checkpoint"), key))
    first, last = body.get("audit_first_leaf"), body.get("audit_last_leaf")
    if not (isinstance(first, int) and isinstance(last, int) and first <= last < cp.size):
        raise _verify.VerifyError("RANGE_NOT_COVERED", "audit range %r..%r is not inside the checkpoint of size %d" % (first, last, cp.size))
    if "attestation_id" in res and res["attestation_id"] != hashlib.sha256(text.encode()).hexdigest():
        raise _verify.VerifyError("MALFORMED", "attestation_id is not the hash of the receipt body")
    return body
