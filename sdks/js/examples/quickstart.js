// The spec's Quick Start. The API key and the server come from the
// environment (THETAZERO_API_KEY, THETAZERO_BASE_URL); `churnDataset` is a
// small sample so that the example runs, and CommonJS needs the awaits inside
// an async function.
const { SecureAgent } = require('@thetazero/agent-sdk');

const churnDataset = [
  { id: 1, plan: 'basic', tenureMonths: 2, supportTickets: 5, churned: true },
  { id: 2, plan: 'pro', tenureMonths: 30, supportTickets: 0, churned: false },
  { id: 3, plan: 'basic', tenureMonths: 4, supportTickets: 3, churned: true },
];

async function main() {
  const agent = new SecureAgent({
    apiKey: process.env.THETAZERO_API_KEY,
    permissions: SecureAgent.permissions.CODER,
    limits: { maxMemoryMb: 512, maxExecutionTimeSec: 300 },
    sandbox: 'STANDARD',
  });

  await agent.configure();

  const result = await agent.run({
    task: 'Analyze the user churn data and identify top 3 risk factors',
    data: { users: churnDataset },
  });

  console.log(result.output);
  // ↳ executionId, status, output, durationMs, auditTrailUrl
}

main().catch((err) => {
  console.error(`${err.name} [${err.code}]: ${err.message}`);
  process.exitCode = 1;
});
