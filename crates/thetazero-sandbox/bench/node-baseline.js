// The spec's Phase 1.1 design, for comparison only: one worker_thread per
// execution with resourceLimits, and a fresh vm.createContext inside it.
// Usage: node bench/node-baseline.js <executions> <lanes>
// Prints one JSON line: {execs_per_sec, p50_ms, p99_ms, lanes, executions}.
"use strict";
const { Worker } = require("node:worker_threads");

const AGENT = "await thetazero.log('hi'); return {ok: true}";

const WORKER_SRC = `
const { parentPort, workerData } = require("node:worker_threads");
const vm = require("node:vm");
const logs = [];
let result;
const sandbox = vm.createContext({
  input: JSON.parse(workerData.input),
  thetazero: {
    log: (msg, level = "info") => { logs.push({ level, msg: String(msg) }); },
    write_result: (out) => { result = JSON.parse(JSON.stringify(out)); },
    agentName: "bench", agentVersion: "1.0.0", executionId: 1,
  },
});
const script = new vm.Script("(async () => {\\n" + workerData.code + "\\n})()");
Promise.resolve(script.runInContext(sandbox, { timeout: 30000 }))
  .then((out) => parentPort.postMessage({ ok: true, output: out === undefined ? result : out, logs: logs.length }))
  .catch((e) => parentPort.postMessage({ ok: false, error: String(e) }));
`;

function runOnce() {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SRC, {
      eval: true,
      workerData: { code: AGENT, input: "{}" },
      resourceLimits: { maxOldGenerationSizeMb: 128 },
    });
    w.once("message", (m) => { w.terminate().then(() => resolve(m)); });
    w.once("error", reject);
  });
}

async function main() {
  const total = Number(process.argv[2] || 200);
  const lanes = Number(process.argv[3] || 1);
  const latencies = [];
  let next = 0;
  const start = process.hrtime.bigint();
  async function lane() {
    while (next < total) {
      next++;
      const t = process.hrtime.bigint();
      const m = await runOnce();
      if (!m.ok || !m.output || m.output.ok !== true) throw new Error("bad result " + JSON.stringify(m));
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  await Promise.all(Array.from({ length: lanes }, lane));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(JSON.stringify({
    execs_per_sec: total / secs, p50_ms: pct(0.5), p99_ms: pct(0.99), lanes, executions: total,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
