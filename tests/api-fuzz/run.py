#!/usr/bin/env python3
"""The property-based API tester: Schemathesis against a real `thetazero serve`.

Starts the server on a free port with a fresh data directory (SQLite) or a
database of its own on the local PostgreSQL server (created here and dropped
at the end), with the rate limits and per-account quotas off. The deployment
owner creates a dedicated account; its owner key drives the tests, after a
few objects (agents, an execution, a context value, a permission request, a
key) have been made so that generated ids find something. Then Schemathesis
runs, with every check on and a fixed number of examples per operation from
a fixed seed, in three phases:

1. every operation except the kill switch and the key lifecycle by id;
2. `POST /api/v1/accounts` with the deployment owner's key (the dedicated
   account may only be refused there);
3. last, the operations that stop things: killing agents, halting the
   account, revoking and re-scoping keys.

Exits 0 when no phase found a failure. Usage:

    tests/api-fuzz/run.py [--backend sqlite|postgres] [--examples N] [--seed N]

The binary comes from THETAZERO_BIN (default target/debug/thetazero), `st`
from THETAZERO_ST (default target/api-fuzz-venv/bin/st, which .ci/run
installs from tests/api-fuzz/requirements.txt).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Operations that stop or lock things out, run in the last phase so that
# they cannot starve the others: killing an agent, halting the account (and
# reading the halt), and a key's lifecycle by id (revocation, new scopes).
LAST_PHASE = r"(/kill$|/kill-switch/|^/api/v1/keys/\{id\}$)"
# Operations only the deployment owner may use with success.
DEPLOYMENT_OWNER = r"^/api/v1/accounts$"

CONFIG = """\
metrics_listen = "off"
# Audit streams end within a second, so that the tester does not wait on them.
stream_keepalive_ms = 200
stream_max_duration_ms = 1000

[quotas]
context_bytes_per_account = 0
storage_bytes_per_account = 0
concurrent_runs_per_account = 0
pending_requests_per_run = 0
pending_requests_per_agent = 0

[rate_limits]
executions_per_key_per_minute = 0
executions_per_account_per_minute = 0
code_updates_per_agent_per_hour = 0
swarm_executions_per_account_per_hour = 0
"""


def log(msg):
    print("api-fuzz: " + msg, flush=True)


class Postgres:
    """A database of its own on the local server, dropped at the end."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.name = "tz_api_fuzz_%d" % os.getpid()
        self._psql("DROP DATABASE IF EXISTS %s" % self.name)
        self._psql("CREATE DATABASE %s" % self.name)
        head, _, _ = base_url.rpartition("/")
        self.url = "%s/%s" % (head, self.name)

    def _psql(self, sql):
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.base_url, "-c", sql],
                       check=True, stdout=subprocess.DEVNULL)

    def drop(self):
        self._psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)


class Server:
    """`thetazero serve` on a free port; its settings come from the flags and
    the config file alone, not from the caller's THETAZERO_* variables."""

    def __init__(self, binary, database_url):
        self.dir = tempfile.mkdtemp(prefix="tz-api-fuzz-")
        config = os.path.join(self.dir, "thetazero.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        env = {k: v for k, v in os.environ.items() if not k.startswith("THETAZERO_")}
        env["THETAZERO_LOG"] = "warn"
        args = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
                "--config", config]
        if database_url:
            args += ["--database-url", database_url]
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.owner_key = None
        self.base_url = None
        self.output = []
        ready = threading.Event()

        def read(stream, pattern, attr):
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                self.output.append(line)
                m = re.search(pattern, line)
                if m and getattr(self, attr) is None:
                    setattr(self, attr, m.group(1))
                    if self.owner_key and self.base_url:
                        ready.set()

        for a in ((self.proc.stdout, r"owner API key: (tzk_\S+)", "owner_key"),
                  (self.proc.stderr, r"listening on (http://\S+)", "base_url")):
            threading.Thread(target=read, args=a, daemon=True).start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("thetazero did not start:\n" + "".join(self.output))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def call(base, key, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def must(result, *ok):
    status, body = result
    if status not in ok:
        raise RuntimeError("seeding failed: %s %s" % (status, body))
    return body


def seed(base, owner):
    """A dedicated account and a few objects for generated ids to find;
    answers the account's owner key and the ids of what it made."""
    account = must(call(base, owner, "POST", "/api/v1/accounts", {"name": "api-fuzz"}), 201)
    key = account["secret"]
    # The agents' permission requests come from a key of their own, so that
    # the account's owner key (the tester's) may decide them.
    asker = must(call(base, key, "POST", "/api/v1/keys",
                      {"name": "fuzz-agents", "scopes": ["agents:read", "agents:write"]}), 201)["secret"]
    ids = []
    made = []
    for name, code in (("fuzz-ok", "return {ok: true};"), ("fuzz-echo", "return thetazero.input;")):
        agent = must(call(base, key, "POST", "/api/v1/sdk/agents", {"name": name, "entry_code": code}), 200, 201)
        ids.append(agent["agent"]["id"])
    for agent_id in ids:
        run = must(call(base, key, "POST", "/api/v1/sdk/agents/%d/execute" % agent_id, {"input": {"n": 1}}), 200)
        must(call(base, key, "PUT", "/api/v1/sdk/agents/%d/context/note" % agent_id, {"seen": True}), 200)
        req = must(call(base, asker, "POST", "/api/v1/sdk/permission-requests",
                        {"agent_id": agent_id, "permissions": {"allow_network": True},
                         "justification": "fuzzing", "timeout_ms": 3_600_000}), 201)
        made += [run["execution_id"], req["request"]["id"]]
    keys = must(call(base, key, "GET", "/api/v1/keys"), 200)["keys"]
    events = must(call(base, key, "GET", "/api/v1/sdk/audit?limit=3"), 200)["events"]
    made += ids + [k["id"] for k in keys] + [e["id"] for e in events]
    return key, sorted(set(made))


def config_file(directory, ids):
    """tests/api-fuzz/schemathesis.toml, with the seeded ids offered to the
    generator for every id-like parameter half of the time."""
    with open(os.path.join(HERE, "schemathesis.toml")) as f:
        text = f.read()
    text += "\n# Written by run.py: the ids the seeding made.\n"
    text += "[dictionaries.ids]\nvalues = [%s]\n\n[parameters]\n" % ", ".join(str(i) for i in ids)
    for name in ("path.id", "path.eid", "query.agentId", "query.executionId", "query.agent_id",
                 "body.agent_id"):
        text += '"%s" = { dictionary = "ids", probability = 0.5 }\n' % name
    path = os.path.join(directory, "schemathesis.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def schemathesis(st, config, base, key, examples, seed_value, report_dir, name, include=None, exclude=None):
    # One worker: requests reach the server in the same order on every run
    # with the same seed (and the generator's threads cannot race each other).
    args = [st, "--config-file", config, "run", base + "/api/v1/openapi.json",
            "--url", base, "--header", "Authorization: Bearer " + key,
            "--checks", "all", "--max-examples", str(examples), "--seed", str(seed_value),
            "--workers", "1", "--request-timeout", "20", "--generation-database", "none", "--no-color", "--output-truncate", "true",
            "--report", "junit", "--report-junit-path", os.path.join(report_dir, name + ".xml")]
    if include:
        args += ["--include-path-regex", include]
    if exclude:
        args += ["--exclude-path-regex", exclude]
    log("phase %s: %s" % (name, " ".join(a if not a.startswith("Authorization") else "Authorization: [key]"
                                         for a in args[1:])))
    started = time.monotonic()
    # Run from the report folder: Hypothesis keeps its caches in the working
    # directory, which should not be the repository.
    rc = subprocess.run(args, cwd=report_dir).returncode
    log("phase %s: exit %d after %.0f s" % (name, rc, time.monotonic() - started))
    return rc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--examples", type=int, default=int(os.environ.get("THETAZERO_API_FUZZ_EXAMPLES", "25")),
                   help="examples per operation and phase (default 25)")
    p.add_argument("--seed", type=int, default=20261206)
    p.add_argument("--report-dir", default=os.path.join(ROOT, "target", "api-fuzz"))
    a = p.parse_args()

    binary = os.environ.get("THETAZERO_BIN") or os.path.join(ROOT, "target", "debug", "thetazero")
    st = os.environ.get("THETAZERO_ST") or os.path.join(ROOT, "target", "api-fuzz-venv", "bin", "st")
    for path, hint in ((binary, "cargo build -p thetazero"),
                       (st, "python3 -m venv target/api-fuzz-venv && target/api-fuzz-venv/bin/pip install "
                            "--require-hashes -r tests/api-fuzz/requirements.txt")):
        if not os.path.exists(path):
            sys.exit("api-fuzz: %s is missing: %s" % (path, hint))
    a.report_dir = os.path.abspath(a.report_dir)
    os.makedirs(a.report_dir, exist_ok=True)

    pg = None
    if a.backend == "postgres":
        pg = Postgres(os.environ.get("THETAZERO_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    server = None
    failed = []
    try:
        server = Server(binary, pg.url if pg else None)
        log("%s backend, server at %s" % (a.backend, server.base_url))
        key, ids = seed(server.base_url, server.owner_key)
        config = config_file(server.dir, ids)
        phases = [
            ("%s-main" % a.backend, key, None, LAST_PHASE + "|" + DEPLOYMENT_OWNER),
            ("%s-owner" % a.backend, server.owner_key, DEPLOYMENT_OWNER, None),
            ("%s-last" % a.backend, key, LAST_PHASE, None),
        ]
        for name, phase_key, include, exclude in phases:
            if schemathesis(st, config, server.base_url, phase_key, a.examples, a.seed, a.report_dir, name,
                            include, exclude) != 0:
                failed.append(name)
            if not server.alive():
                failed.append("server exited")
                break
    finally:
        if server:
            with open(os.path.join(a.report_dir, "%s-server.log" % a.backend), "w") as f:
                f.writelines(server.output)
            server.stop()
        if pg:
            pg.drop()
    if failed:
        log("failed: %s (server log in %s)" % (", ".join(failed), a.report_dir))
        return 1
    log("%s backend: no failures" % a.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
