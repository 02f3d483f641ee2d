"""stream_audit_log's reconnect logic and request_permission's waiting,
against minimal local endpoints (thetazero serves them in a later release;
this checks the client's side: Last-Event-ID resume, decisions to errors)."""

import json
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

from thetazero import SecureAgent, ThetazeroError


class _Fake(BaseHTTPRequestHandler):
    seen: List[Dict[str, Any]] = []
    decision = "approved"
    polls = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/api/sdk/audit/stream"):
            type(self).seen.append({"path": self.path, "last": self.headers.get("Last-Event-ID"), "auth": self.headers.get("Authorization")})
            after = int(self.headers.get("Last-Event-ID") or -1)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            body = ""
            if after < 0:
                body += 'retry: 10\nevent: connected\ndata: {"position":0}\n\n'
            body += ": keepalive\n\nid: %d\nevent: audit\ndata: %s\n\n" % (after + 1, json.dumps({"leaf_index": after + 1}))
            if after + 1 == 1:
                body += 'event: timeout\ndata: {"resume_after":1}\n\n'
            self.wfile.write(body.encode())
            return
        type(self).polls += 1
        status = "pending" if type(self).polls < 2 else type(self).decision
        self._json({"success": True, "request": {"id": 5, "status": status}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"success": True, "request": {"id": 5, "status": "pending"}})

    def _json(self, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StreamTest(unittest.TestCase):
    def setUp(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.agent = SecureAgent(api_key="tzk_test", base_url="http://127.0.0.1:%d" % self.httpd.server_port, agent_id=3)

    def tearDown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_resume_from_last_event_id(self) -> None:
        _Fake.seen = []
        events = []
        stream = self.agent.stream_audit_log(execution_id=7)
        for kind, data in stream:
            events.append((kind, data))
            if kind == "audit" and data["leaf_index"] == 2:
                break
        stream.close()
        self.assertEqual([d["leaf_index"] for k, d in events if k == "audit"], [0, 1, 2])
        self.assertEqual(events[0][0], "connected")
        self.assertIn("timeout", [k for k, _ in events])
        self.assertEqual([s["last"] for s in _Fake.seen], [None, "0", "1"])
        self.assertTrue(all(s["path"] == "/api/sdk/audit/stream?executionId=7" and s["auth"] == "Bearer tzk_test" for s in _Fake.seen))

    def test_permission_decisions(self) -> None:
        _Fake.decision, _Fake.polls = "approved", 0
        self.assertEqual(self.agent.request_permission({"allow_network": True}, "j", poll_interval=0.01)["status"], "approved")
        for decision, code in (("denied", "PERMISSION_DENIED"), ("expired", "PERMISSION_EXPIRED"), ("pending", "PERMISSION_TIMEOUT")):
            _Fake.decision, _Fake.polls = decision, 0
            with self.assertRaises(ThetazeroError) as cm:
                self.agent.request_permission({"allow_network": True}, "j", timeout_ms=100 if decision == "pending" else 5000, poll_interval=0.01)
            self.assertEqual(cm.exception.code, code)


if __name__ == "__main__":
    unittest.main()
