#!/usr/bin/env python3
"""Where a running server spends its CPU per execution, thread by thread.

Starts `thetazero serve` on a fresh SQLite data directory, registers the
trivial agent, drives executions over keep-alive connections, and divides
each thread's CPU time (from /proc/<pid>/task/*/schedstat, Linux only) by the
number of executions; prints the server's peak resident memory too. Threads are grouped by name (sqlite-writer, the sandbox
workers, tokio's workers). Compare two builds by running it on each.

Run: cargo build --release -p thetazero
     python3 crates/thetazero/bench/server_cpu.py [binary] [executions] [clients]
"""

import glob
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

AGENT = "await thetazero.log('hi'); return {ok: true}"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/thetazero"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "bench.toml")
        with open(config, "w") as f:
            f.write("[rate_limits]\nexecutions_per_key_per_minute = 0\n")
        server = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", d, "--config", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "THETAZERO_LOG": "error"},
            text=True,
        )
        try:
            run(server, total, clients)
        finally:
            server.terminate()
            server.wait()


def run(server, total, clients):
    key = next(l for l in server.stdout if l.startswith("owner API key: ")).split(": ", 1)[1].strip()
    url = next(l for l in server.stderr if l.startswith("thetazero listening on "))
    host, port = re.search(r"//([^:/]+):(\d+)", url).groups()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", "/api/v1/sdk/agents", json.dumps({"name": "trivial", "entry_code": AGENT}), headers)
    agent = json.loads(conn.getresponse().read())["agent"]["id"]
    latencies = []

    def drive(n):
        c = http.client.HTTPConnection(host, int(port))
        for _ in range(n):
            started = time.perf_counter()
            c.request("POST", f"/api/v1/sdk/agents/{agent}/execute", json.dumps({"input": {}}), headers)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"execute answered {r.status}")
            latencies.append(time.perf_counter() - started)

    def cpu():
        by_name = {}
        for task in glob.glob(f"/proc/{server.pid}/task/*"):
            with open(f"{task}/comm") as f:
                name = f.read().strip().rstrip("0123456789-")
            with open(f"{task}/schedstat") as f:
                by_name[name] = by_name.get(name, 0) + int(f.read().split()[0])
        return by_name

    drive(300)  # warm up
    latencies.clear()
    before, started = cpu(), time.perf_counter()
    threads = [threading.Thread(target=drive, args=(total // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, after = time.perf_counter() - started, cpu()
    done = len(latencies)
    latencies.sort()
    print(f"{done} executions from {clients} clients: {done / elapsed:.0f}/s, "
          f"p50 {latencies[done // 2] * 1e6:.0f} µs as this client sees it")
    print("server CPU per execution, by thread (µs):")
    overall = 0.0
    for name in sorted(after):
        spent = (after[name] - before.get(name, 0)) / done / 1000
        overall += spent
        if spent >= 0.5:
            print(f"  {name:<24} {spent:7.1f}")
    print(f"  {'all threads':<24} {overall:7.1f}")
    with open(f"/proc/{server.pid}/status") as f:
        peak = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    print(f"server peak resident memory: {int(peak) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
