"""The built-in task agent (deploy() without entry code) end to end: a server
whose inference provider is a local stand-in for an OpenAI-compatible API."""

import json
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

from thetazero import SecureAgent

from ._server import Server

ANSWER = "Top 3 risk factors: short tenure, many support tickets, basic plan."


class _Provider(BaseHTTPRequestHandler):
    requests: List[Dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        type(self).requests.append({"path": self.path, "body": body})
        data = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "stand-in",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class InferenceTest(unittest.TestCase):
    def setUp(self) -> None:
        self.provider = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
        threading.Thread(target=self.provider.serve_forever, daemon=True).start()
        self.server = Server("http://127.0.0.1:%d/v1" % self.provider.server_port, "stand-in")

    def tearDown(self) -> None:
        self.server.stop()
        self.provider.shutdown()
        self.provider.server_close()

    def test_task_agent_returns_the_models_answer(self) -> None:
        agent = SecureAgent(api_key=self.server.api_key, base_url=self.server.base_url, name="task",
                            permissions=SecureAgent.permissions.CODER)
        agent.deploy()
        result = agent.run({"task": "Analyze the user churn data and identify top 3 risk factors",
                            "data": {"users": [{"id": 1, "tenureMonths": 2, "churned": True}]}})
        result.raise_for_status()
        self.assertEqual(result.output, ANSWER)
        (req,) = _Provider.requests
        self.assertEqual(req["path"], "/v1/chat/completions")
        self.assertEqual(req["body"]["model"], "stand-in")
        user = [m["content"] for m in req["body"]["messages"] if m["role"] == "user"][0]
        self.assertTrue(user.startswith("Analyze the user churn data"), user)
        self.assertIn('"tenureMonths":2', user)


if __name__ == "__main__":
    unittest.main()
