"""The SDK against a real `thetazero serve` (see _server.py for the binary)."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from typing import Any, Callable, Dict, List, Tuple

from thetazero import ExecutionResult, SecureAgent, ThetazeroError, _verify

from ._server import SDK_DIR, Server

HELLO = """
await thetazero.log("Hello from the sandbox!");
await thetazero.write_result({ message: "Hello, " + (input.name || "world") + "!" });
"""

server: Server


def setUpModule() -> None:
    global server
    server = Server()


def tearDownModule() -> None:
    server.stop()


def agent(name: str = "py-agent", **kwargs: Any) -> SecureAgent:
    kwargs.setdefault("api_key", server.api_key)
    return SecureAgent(name=name, base_url=server.base_url, **kwargs)


def get_json(path: str) -> Dict[str, Any]:
    with urllib.request.urlopen(server.base_url + path) as res:  # type: ignore[operator]
        return json.loads(res.read())


class TamperingAgent(SecureAgent):
    """Rewrites the server's proof JSON on its way in."""

    def __init__(self, edit: Callable[[Dict[str, Any]], None], **kwargs: Any) -> None:
        super().__init__(api_key=server.api_key, base_url=server.base_url, **kwargs)
        self._edit = edit

    def _request(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        res = super()._request(method, path, **kwargs)
        if path.endswith("/proof"):
            self._edit(res)
        return res


def resign_with_other_key(note: str) -> str:
    """The same checkpoint body signed by a key the client never pinned. The
    stdlib cannot sign Ed25519, so the signature is random bytes under a
    fresh key id: what matters is that no line is by the pinned key."""
    text = note[: note.rfind("\n\n") + 1]
    name = note.split("\n\u2014 ", 1)[1].split(" ", 1)[0]
    other = os.urandom(4) + os.urandom(64)
    return "%s\n\u2014 %s %s\n" % (text, name, base64.b64encode(other).decode())


class ServerTest(unittest.TestCase):
    def test_spec_example_runs_unchanged(self) -> None:
        env = dict(os.environ, THETAZERO_API_KEY=server.api_key, THETAZERO_BASE_URL=server.base_url,
                   PYTHONPATH=SDK_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, os.path.join(SDK_DIR, "examples", "hello.py")],
                             env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[0], "{'message': 'Hello, Alice!'}")
        usage = eval(lines[1], {})  # a printed dict
        self.assertEqual(set(usage) >= {"cpu_ms", "api_calls", "host_calls"}, True, lines[1])
        self.assertEqual(usage["api_calls"], 0)
        self.assertEqual(usage["host_calls"], 2)
        self.assertTrue(lines[2].startswith("completed {"), lines[2])

    def test_agent_lifecycle(self) -> None:
        a = agent("py-life", description="life")
        rec = a.deploy(entry_code=HELLO, memory_limit_mb=256, cpu_time_limit_ms=10_000, permissions="WRITER")
        self.assertEqual(rec["config"]["memory_limit_mb"], 256)
        self.assertEqual(rec["config"]["cpu_time_limit_ms"], 10_000)
        self.assertEqual(rec["permissions"], "WRITER")
        self.assertEqual(rec["description"], "life")
        result = a.run(input={"name": "Alice"})
        self.assertIsInstance(result, ExecutionResult)
        self.assertIs(result.raise_for_status(), result)
        self.assertEqual(result.output, {"message": "Hello, Alice!"})
        self.assertEqual(result.status, "completed")
        self.assertIsInstance(result.execution_id, int)
        self.assertIsInstance(result.leaf_index, int)
        self.assertEqual(result["execution_id"], result.execution_id)

        self.assertEqual(a.executions()[0]["execution_id"], result.execution_id)
        self.assertEqual(a.executions(page=1, limit=1, status="completed")[0]["status"], "completed")
        detail = a.get_execution(result.execution_id)
        self.assertEqual(detail["output"], {"message": "Hello, Alice!"})
        self.assertTrue(detail["logs"])
        self.assertEqual(a.get_agent()["id"], a.agent_id)
        self.assertIn(a.agent_id, [x["id"] for x in a.list_agents()])
        self.assertEqual(a.update(version="2.0.0", entry_code="return 42;")["version"], "2.0.0")
        self.assertEqual(a.run().output, 42)
        a.delete()
        self.assertIsNone(a.agent_id)
        with self.assertRaises(ThetazeroError) as cm:
            a.get_agent()
        self.assertEqual(cm.exception.code, "NOT_DEPLOYED")

    def test_errors(self) -> None:
        with self.assertRaises(ThetazeroError) as cm:
            agent("x", api_key="tzk_wrong").deploy(entry_code=HELLO)
        e = cm.exception
        self.assertEqual((e.code, e.status), ("unauthorized", 401))
        self.assertTrue(e.request_id.startswith("req_"))
        self.assertTrue(e.message)
        self.assertIsInstance(e, RuntimeError)
        with self.assertRaises(ThetazeroError) as cm:
            agent(agent_id=999999).get_agent()
        self.assertEqual((cm.exception.code, cm.exception.status), ("not_found", 404))
        with self.assertRaises(ThetazeroError) as cm:
            agent("too-big").deploy(entry_code=HELLO, memory_limit_mb=100000)
        self.assertEqual(cm.exception.code, "limit_above_ceiling")
        with self.assertRaises(ThetazeroError) as cm:
            SecureAgent(api_key="tzk_x", base_url="http://127.0.0.1:9").list_agents()
        self.assertEqual(cm.exception.code, "NETWORK_ERROR")

    def test_failed_run_and_raise_for_status(self) -> None:
        a = agent("py-thrower")
        a.deploy(entry_code='throw new TypeError("boom");')
        result = a.run({})
        self.assertEqual(result.status, "failed")
        with self.assertRaises(RuntimeError) as cm:
            result.raise_for_status()
        self.assertIsInstance(cm.exception, ThetazeroError)
        self.assertEqual(cm.exception.code, "EXECUTION_FAILED")
        self.assertIn("TypeError: boom", str(cm.exception))

    def test_timed_out_run(self) -> None:
        a = agent("py-looper")
        a.deploy(entry_code="while (true) {}", cpu_time_limit_ms=500)
        result = a.run()
        self.assertEqual((result.status, result.limit), ("timed_out", "cpu_time"))
        with self.assertRaises(ThetazeroError) as cm:
            result.raise_for_status()
        self.assertEqual(cm.exception.code, "EXECUTION_TIMED_OUT")
        self.assertIn("deadline of 500 ms reached", cm.exception.message)

    def test_task_agent_without_entry_code_reports_missing_inference(self) -> None:
        a = agent("py-task", permissions=SecureAgent.permissions.CODER)
        self.assertEqual(a.deploy()["permissions"], list(SecureAgent.permissions.CODER))
        result = a.run({"task": "say hi", "data": {"a": 1}})
        with self.assertRaises(ThetazeroError) as cm:
            result.raise_for_status()
        # The code the host call failed with, which the agent let escape.
        self.assertEqual(cm.exception.code, "HOST_REFUSED")
        # The server's own words: no inference provider is configured.
        self.assertRegex(cm.exception.message, r"^execution \d+ failed: Error: .*inference")
        self.assertEqual([c["fn"] for c in result.host_call_audit], ["inference"])

    def test_audit_log_and_export(self) -> None:
        a = agent("py-audited")
        a.deploy(entry_code=HELLO)
        ex = a.run({"name": "Bob"})
        log = a.get_audit_log(execution_id=ex.execution_id)
        self.assertGreaterEqual(log["total"], 2)
        self.assertIsInstance(log["anchored"], bool)
        self.assertTrue(all(e["execution_id"] == ex.execution_id for e in log["events"]))
        done = a.get_audit_log(**{"from": "2020-01-01"}, to="2099-12-31", action_types=["execution_completed"],
                               violations_only=False, limit=200, agent_id=a.agent_id)
        self.assertTrue(done["events"])
        self.assertTrue(all(e["action_type"] == "execution_completed" for e in done["events"]))
        self.assertEqual(len(a.get_audit_log(limit=1)["events"]), 1)
        with self.assertRaises(ThetazeroError) as cm:
            a.get_audit_log(limit=0)
        self.assertEqual(cm.exception.code, "invalid_request")
        csv = a.export_audit_log("csv", from_="2020-01-01", to="2099-12-31")
        self.assertTrue(csv.startswith("leaf_index,leaf_hash,"))
        self.assertIn("execution_completed", csv)
        bundle = a.export_audit_log("bundle")
        for line in bundle.strip().splitlines():
            json.loads(line)

    def _record(self, a: SecureAgent, name: str) -> Dict[str, Any]:
        ex = a.run({"name": name})
        return a.get_audit_log(execution_id=ex.execution_id, action_types="execution_completed")["events"][0]

    def test_verify_audit_record(self) -> None:
        a = agent("py-verified")
        a.deploy(entry_code=HELLO)
        event = self._record(a, "Carol")
        good = a.verify_audit_record(event["id"])
        self.assertTrue(good["chain_valid"], good.get("failure"))
        self.assertEqual(good["record_id"], event["id"])
        self.assertIn("anchor_tx_hash", good)
        self.assertIn('"type":"tz.audit.v1"', good["leaf"])
        key = get_json("/api/v1/sdk/audit/key")
        self.assertEqual(a.get_verifier_key(), key["verifier_key"])

        def leaf_swap(p: Dict[str, Any]) -> None:
            leaf = base64.b64decode(p["leaf_b64"]).replace(b"execution_completed", b"execution_started__")
            p["leaf_b64"] = base64.b64encode(leaf).decode()

        def bad_inclusion(p: Dict[str, Any]) -> None:
            if p["inclusion_proof"]:
                p["inclusion_proof"][0] = base64.b64encode(bytes(32)).decode()
            else:
                p["leaf_index"] += 1

        def bump_size(p: Dict[str, Any]) -> None:
            lines = p["checkpoint"].split("\n")
            lines[1] = str(int(lines[1]) + 1)
            p["checkpoint"] = "\n".join(lines)

        cases = {
            "LEAF_HASH_MISMATCH": leaf_swap,
            "INCLUSION_PROOF_INVALID": bad_inclusion,
            "BAD_SIGNATURE": bump_size,
            "UNKNOWN_KEY": lambda p: p.update(checkpoint=resign_with_other_key(p["checkpoint"])),
            "ORIGIN_MISMATCH": lambda p: p.update(log_origin=p["log_origin"] + "x"),
            "MALFORMED": lambda p: p.update(leaf_hash="not base64!"),
        }
        for code, edit in cases.items():
            r = TamperingAgent(edit, verifier_key=key["verifier_key"]).verify_audit_record(event["id"])
            self.assertFalse(r["chain_valid"], code)
            self.assertEqual(r["failure"]["code"], code, r["failure"])
            self.assertTrue(r["server_chain_valid"])

        # A pinned key that is not the server's: the real checkpoint is by an unknown key.
        raw = b"\x01" + hashlib.sha256(b"another key").digest()
        name = key["key_name"]
        kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
        other = agent(verifier_key="%s+%s+%s" % (name, kid, base64.b64encode(raw).decode()))
        r = other.verify_audit_record(event["id"])
        self.assertFalse(r["chain_valid"])
        self.assertEqual(r["failure"]["code"], "UNKNOWN_KEY")

    def test_verify_requires_consistency_with_seen_checkpoints(self) -> None:
        paths = []

        class Recording(SecureAgent):
            def _request(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
                paths.append((path, kwargs.get("query")))
                return super()._request(method, path, **kwargs)

        a = Recording(api_key=server.api_key, base_url=server.base_url, name="py-consistent")
        a.deploy(entry_code=HELLO)
        e1 = self._record(a, "Dan")
        self.assertTrue(a.verify_audit_record(e1["id"])["chain_valid"])
        (origin, seen1), = a.checkpoints.items()
        seen1 = dict(seen1)
        for i in range(3):
            a.run({"name": str(i)})
        e2 = a.get_audit_log(action_types="execution_completed", agent_id=a.agent_id, limit=1000)["events"][-1]
        second = a.verify_audit_record(e2["id"])
        self.assertTrue(second["chain_valid"], second.get("failure"))
        self.assertGreater(a.checkpoints[origin]["size"], seen1["size"])
        self.assertIn(("/api/v1/sdk/audit/consistency", {"from": seen1["size"], "to": a.checkpoints[origin]["size"]}), paths)
        self.assertTrue(a.verify_audit_record(e1["id"])["chain_valid"])

        size = a.checkpoints[origin]["size"]
        fake = base64.b64encode(bytes([9]) * 32).decode()
        forked = agent(checkpoint_store={origin: {"size": size, "root": fake}})
        r = forked.verify_audit_record(e1["id"])
        self.assertFalse(r["chain_valid"])
        self.assertEqual(r["failure"]["code"], "FORK")
        smaller = agent(checkpoint_store={origin: {"size": 2, "root": fake}})
        self.assertEqual(smaller.verify_audit_record(e2["id"])["failure"]["code"], "FORK")
        truncated = agent(checkpoint_store={origin: {"size": 100000, "root": fake}})
        t = truncated.verify_audit_record(e2["id"])
        self.assertFalse(t["chain_valid"])
        self.assertEqual(t["failure"]["code"], "FORK")
        self.assertIn("cannot prove consistency", t["failure"]["message"])

    def test_verify_execution(self) -> None:
        a = agent("py-receipt")
        a.deploy(entry_code=HELLO)
        ex = a.run({"name": "Eve"})
        proof = a.verify_execution(ex.execution_id)
        self.assertIsInstance(proof["tee_mode"], str)
        self.assertEqual(len(proof["attestation_id"]), 64)
        self.assertIsInstance(proof["chain_valid"], bool)
        self.assertTrue(proof["receipt_verified"], proof.get("failure"))
        with self.assertRaises(ThetazeroError) as cm:
            a.verify_execution(987654)
        self.assertEqual(cm.exception.code, "not_found")

    def test_stop_kills_the_agent(self) -> None:
        a = agent("py-killable")
        a.deploy(entry_code="while (true) {}", cpu_time_limit_ms=30_000)
        box: Dict[str, Any] = {}
        runner = threading.Thread(target=lambda: box.update(result=a.run()))
        runner.start()
        for _ in range(200):
            if a.executions(status="running"):
                break
            time.sleep(0.025)
        killed = a.stop("Suspicious output detected - halting for review")
        self.assertEqual((killed["status"], killed["agent_id"], killed["terminated"], killed["confirmed"]),
                         ("killed", a.agent_id, 1, True))
        runner.join(30)
        result = box["result"]
        self.assertEqual(result.status, "killed")
        with self.assertRaises(ThetazeroError) as cm:
            result.raise_for_status()
        self.assertEqual(cm.exception.code, "EXECUTION_KILLED")
        with self.assertRaises(ThetazeroError) as cm:
            a.run()
        self.assertEqual((cm.exception.code, cm.exception.status), ("agent_killed", 409))
        kinds = {e["action_type"] for e in a.get_audit_log(agent_id=a.agent_id, action_types=["agent_kill_requested", "agent_killed"])["events"]}
        self.assertEqual(kinds, {"agent_kill_requested", "agent_killed"})
        # The owner key holds the killswitch scope, so it may set the agent ready again.
        a.update(status="ready", entry_code="return 1;")
        self.assertEqual(a.run().output, 1)

    def test_global_halt(self) -> None:
        a = agent("py-halted")
        a.deploy(entry_code=HELLO)
        try:
            h = a.set_global_halt(True, "Emergency maintenance")
            self.assertEqual((h["halted"], h["scope"]), (True, "account"))
            now = a.get_global_halt()
            self.assertEqual((now["halted"], now["reason"]), (True, "Emergency maintenance"))
            with self.assertRaises(ThetazeroError) as cm:
                a.run({})
            self.assertEqual((cm.exception.code, cm.exception.status), ("global_halt", 503))
        finally:
            self.assertFalse(a.set_global_halt(False, "maintenance over")["halted"])
        self.assertEqual(a.run({"name": "Zed"}).output, {"message": "Hello, Zed!"})

    def test_stream_audit_log_live_and_resumed(self) -> None:
        a = agent("py-streamed")
        a.deploy(entry_code=HELLO)
        events: List[Tuple[str, Any]] = []
        stop = threading.Event()

        def consume() -> None:
            stream = a.stream_audit_log(agent_id=a.agent_id)
            for kind, data in stream:
                events.append((kind, data))
                if stop.is_set():  # keepalives arrive every 200 ms
                    break
            stream.close()

        def wait_for(pred: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + 15
            while not pred():
                self.assertLess(time.monotonic(), deadline, "no %s in %s" % (what, [k for k, _ in events]))
                time.sleep(0.02)

        def completed(eid: int) -> Callable[[], bool]:
            return lambda: any(k == "audit" and d["execution_id"] == eid and d["action_type"] == "execution_completed" for k, d in list(events))

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        try:
            wait_for(lambda: any(k == "connected" for k, _ in list(events)), "connected")
            first = a.run({"name": "S1"})
            wait_for(completed(first.execution_id), "first execution")
            # The test server ends every stream after 2 s with `timeout`; the
            # client reconnects and resumes where it stopped.
            wait_for(lambda: sum(k == "connected" for k, _ in list(events)) >= 2, "reconnect")
            second = a.run({"name": "S2"})
            wait_for(completed(second.execution_id), "second execution")
        finally:
            stop.set()
            consumer.join(10)
        audits = [d for k, d in events if k == "audit"]
        idx = [d["leaf_index"] for d in audits]
        self.assertEqual(idx, sorted(set(idx)), "in order, no duplicates")
        self.assertTrue(all(d["agent_id"] == a.agent_id for d in audits))
        self.assertIn("execution_started", [d["action_type"] for d in audits])
        kinds = {k for k, _ in events}
        self.assertTrue({"timeout", "keepalive", "checkpoint"} <= kinds, kinds)
        # Streamed checkpoints are signed by the key the client pins.
        key = _verify.parse_verifier_key(a.get_verifier_key())
        for d in (d for k, d in events if k == "checkpoint"):
            self.assertEqual(_verify.open_checkpoint(d["note"], key).size, d["size"])

        # `after` replays from the log.
        replay = []
        for kind, data in a.stream_audit_log(agent_id=a.agent_id, after=idx[0]):
            if kind == "audit":
                replay.append(data["leaf_index"])
                if len(replay) == len(idx) - 1:
                    break
        self.assertEqual(replay, idx[1:])

    def test_request_permission_waits_for_the_owners_decision(self) -> None:
        # The key that asks may not decide its own request: ask with an
        # author key, decide with the owner's.

        def call(method: str, path: str, body: Any = None) -> Dict[str, Any]:
            req = urllib.request.Request(server.base_url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": "Bearer " + server.api_key, "Content-Type": "application/json"})
            with urllib.request.urlopen(req) as resp:
                return json.loads(resp.read())

        author = call("POST", "/api/v1/keys", {"name": "py-author", "scopes": ["agents:read", "agents:write", "agents:execute"]})["secret"]
        a = agent("py-asker", api_key=author)
        a.deploy(entry_code=HELLO)

        def decide(verb: str) -> None:
            for _ in range(500):
                pending = [r for r in call("GET", "/api/sdk/permission-requests?status=pending")["requests"] if r["agent_id"] == a.agent_id]
                if pending:
                    call("POST", "/api/sdk/permission-requests/%d/%s" % (pending[0]["id"], verb), {"reason": "decided"})
                    return
                time.sleep(0.02)

        wanted = {"allow_network": True, "allow_external_apis": True, "max_api_calls_per_run": 500}
        t = threading.Thread(target=decide, args=("approve",))
        t.start()
        approved = a.request_permission(wanted, "Needs to call OpenWeatherMap for forecast data", timeout_ms=10_000, poll_interval=0.05)
        t.join()
        self.assertEqual(approved["status"], "approved")
        t = threading.Thread(target=decide, args=("deny",))
        t.start()
        with self.assertRaises(ThetazeroError) as cm:
            a.request_permission(wanted, "again", timeout_ms=10_000, poll_interval=0.05)
        t.join()
        self.assertEqual(cm.exception.code, "PERMISSION_DENIED")
        with self.assertRaises(ThetazeroError) as cm:
            a.request_permission(wanted, "nobody answers", timeout_ms=300, poll_interval=0.05)
        self.assertIn(cm.exception.code, ("PERMISSION_EXPIRED", "PERMISSION_TIMEOUT"))

if __name__ == "__main__":
    unittest.main()
