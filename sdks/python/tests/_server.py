"""Starts a real `thetazero serve` on a free port with a fresh data directory,
for the tests. The binary comes from THETAZERO_BIN, else the repository's
own release build (../../target/release/thetazero from the SDK folder)."""

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import List, Optional

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("THETAZERO_BIN") or os.path.join(SDK_DIR, "..", "..", "target", "release", "thetazero"))


class Server:
    def __init__(self, inference_base_url: Optional[str] = None, inference_model: Optional[str] = None) -> None:
        if not os.path.exists(BIN):
            raise RuntimeError("thetazero binary not found at %s: build it (cargo build --release -p thetazero) or set THETAZERO_BIN" % BIN)
        self.data_dir = tempfile.mkdtemp(prefix="tz-py-test-")
        # Short stream keepalives and time limits, so that the tests see the
        # live stream end with `timeout` and the client resume within seconds.
        self.config_dir = tempfile.mkdtemp(prefix="tz-py-config-")
        config = os.path.join(self.config_dir, "thetazero.toml")
        with open(config, "w") as f:
            f.write("stream_keepalive_ms = 200\nstream_max_duration_ms = 2000\n")
        # The server's settings come from these flags alone, not from
        # whatever THETAZERO_* variables the developer's shell holds.
        env = {k: v for k, v in os.environ.items() if not k.startswith("THETAZERO_") or k == "THETAZERO_LOG"}
        env.setdefault("THETAZERO_LOG", "warn")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--config", config]
            + (["--inference-base-url", inference_base_url, "--inference-model", inference_model or ""] if inference_base_url else []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.api_key: Optional[str] = None
        self.base_url: Optional[str] = None
        self._output: List[str] = []
        ready = threading.Event()

        def read(stream, pattern, attr):  # type: ignore[no-untyped-def]
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                self._output.append(line)
                m = re.search(pattern, line)
                if m and getattr(self, attr) is None:
                    setattr(self, attr, m.group(1))
                    if self.api_key and self.base_url:
                        ready.set()

        for args in ((self.proc.stdout, r"owner API key: (tzk_\S+)", "api_key"),
                     (self.proc.stderr, r"listening on (http://\S+)", "base_url")):
            threading.Thread(target=read, args=args, daemon=True).start()
        deadline = time.monotonic() + 30
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("thetazero did not start:\n" + "".join(self._output))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.config_dir, ignore_errors=True)
