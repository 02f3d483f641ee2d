'use strict';
// Controls mapping and evidence: the spec's three calls, run verbatim
// against a real `thetazero serve`.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startServer } = require('./_server');
const { SecureAgent, SDKError } = require('..');

let server;

before(async () => {
  server = await startServer();
  // The spec's constructor takes only `compliance`: the key and the server
  // come from the environment, as the SDK documents.
  process.env.THETAZERO_API_KEY = server.apiKey;
  process.env.THETAZERO_BASE_URL = server.baseUrl;
});
after(async () => {
  delete process.env.THETAZERO_API_KEY;
  delete process.env.THETAZERO_BASE_URL;
  if (server) await server.stop();
});

test("the spec's compliance calls, verbatim", async () => {
  // Apply compliance frameworks at configure() time
  const agent = new SecureAgent({
    compliance: ['eu_ai_act', 'soc2', 'nist_ai_rmf'],
  });
  await agent.configure(); // evaluates immediately
  // Get current compliance status
  const status = await agent.getComplianceStatus();
  // Generate evidence package for compliance team review
  const evidence = await agent.getEvidencePackage('eu_ai_act', 'markdown');
  // → controls-mapped evidence document — audit-prepared, not a certification
  // Export full compliance coverage report (JSON)
  const report = await agent.exportComplianceReport('json');

  assert.deepEqual(status.frameworks.map((f) => f.id), ['eu_ai_act', 'soc2', 'nist_ai_rmf']);
  assert.equal(status.scope.agent.id, agent.agentId);
  assert.equal(status.disclaimer, 'audit-prepared evidence — not a certification or compliance score');
  const art12 = status.frameworks[0].controls.find((c) => c.id === 'Art. 12(1)');
  assert.equal(art12.coverage, 'partial');
  assert.equal(art12.result, 'satisfied');
  const org = status.frameworks[0].controls.find((c) => c.id === 'Art. 10');
  assert.equal(org.coverage, 'organizational');
  assert.equal(org.result, null);
  assert.ok(agent.complianceStatus && agent.complianceStatus.frameworks.length === 3);

  assert.equal(evidence.media_type, 'application/zip');
  assert.match(evidence.filename, /^thetazero-evidence-eu_ai_act-agent-\d+-\d+\.zip$/);
  assert.ok(Buffer.isBuffer(evidence.bytes) && evidence.bytes.length > 1000);
  assert.equal(evidence.sha256, crypto.createHash('sha256').update(evidence.bytes).digest('hex'));
  assert.match(evidence.markdown, /not a certification or compliance score/);
  assert.match(evidence.markdown, /\| \[Art\. 14\(4\)\(e\)\]/);
  assert.equal(typeof evidence.auditLeafIndex, 'number');
  const logged = await agent.getAuditLog({ actionTypes: ['compliance_package_generated'] });
  assert.ok(logged.events.some((e) => e.description.includes(evidence.sha256)));

  assert.equal(report.schema, 'thetazero.compliance-report/v1');
  assert.deepEqual(report.frameworks.map((f) => f.id), ['eu_ai_act', 'soc2', 'nist_ai_rmf']);
  for (const c of report.catalogs) assert.match(c.sha256, /^[0-9a-f]{64}$/);
  assert.ok(report.not_covered.length > 0);
});

test('configure resolves with a not_satisfied status instead of throwing', async () => {
  const agent = new SecureAgent({
    name: 'too-mighty',
    permissions: 'FULL',
    compliance: ['owasp_llm_top10'],
  });
  const rec = await agent.configure();
  assert.equal(rec.name, 'too-mighty');
  const llm06 = rec.compliance.frameworks[0].controls.find((c) => c.id === 'LLM06');
  assert.equal(llm06.result, 'not_satisfied');
  assert.match(llm06.reasons.join(' '), /FULL preset/);
});

test('unknown frameworks are refused naming them; the drill is recorded', async () => {
  const agent = new SecureAgent({ name: 'plain', compliance: ['soc2'] });
  await agent.configure();
  await assert.rejects(() => agent.getEvidencePackage('hipaa', 'markdown'), (e) => {
    assert.ok(e instanceof SDKError);
    assert.equal(e.code, 'invalid_request');
    assert.equal(e.status, 400);
    assert.match(e.message, /hipaa/);
    return true;
  });
  await assert.rejects(() => agent.getComplianceStatus({ frameworks: ['gdpr'] }), { code: 'invalid_request' });
  await assert.rejects(() => agent.exportComplianceReport('xml'), { code: 'INVALID_OPTION' });
  const bad = new SecureAgent({ name: 'bad', compliance: ['made_up'] });
  await assert.rejects(() => bad.configure(), { code: 'invalid_request' });

  const before = await agent.getComplianceStatus({ frameworks: ['eu_ai_act'] });
  assert.equal(before.checks.find((c) => c.id === 'killswitch.drill').status, 'fail');
  const drill = await agent.runComplianceDrill();
  assert.equal(drill.drill.confirmed, true);
  const afterDrill = await agent.getComplianceStatus({ frameworks: ['eu_ai_act'] });
  assert.equal(afterDrill.checks.find((c) => c.id === 'killswitch.drill').status, 'pass');
  const stop = afterDrill.frameworks[0].controls.find((c) => c.id === 'Art. 14(4)(e)');
  assert.equal(stop.result, 'satisfied');
});
