'use strict';
// @thetazero/agent-sdk: the JavaScript client of a thetazero server.
// Zero runtime dependencies: global fetch (Node >= 18) and WebCrypto.

const crypto = require('node:crypto');
const verify = require('./verify');
const { SSEParser } = require('./sse');

const VERSION = '0.1.0';
const DEFAULT_BASE_URL = 'http://127.0.0.1:8420';

/** Every failure the SDK reports: server errors keep the server's code, message and request id. */
class SDKError extends Error {
  constructor(code, message, { requestId = null, status = null, details, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SDKError';
    this.code = code;
    this.requestId = requestId;
    this.status = status;
    if (details !== undefined) this.details = details;
  }
}

const SCOPES = Object.freeze([
  'compute:read', 'compute:write', 'inference:call', 'data:read', 'data:write',
  'network:outbound', 'storage:read', 'storage:write', 'agents:read', 'agents:write',
]);

const permissions = Object.freeze({
  READONLY: Object.freeze(['compute:read', 'data:read', 'storage:read']),
  WRITER: Object.freeze(['inference:call', 'data:read']),
  RESEARCHER: Object.freeze(['network:outbound', 'inference:call', 'data:read', 'agents:read']),
  CODER: Object.freeze(['compute:read', 'compute:write', 'inference:call', 'data:read', 'network:outbound']),
  ANALYST: Object.freeze(['compute:read', 'inference:call', 'data:read', 'data:write', 'storage:read', 'storage:write', 'agents:read']),
  FULL: SCOPES,
});

// The agent the Quick Start runs when no entryCode is given: it hands `task`
// and `data` to the model through the inference host call and returns the
// answer. It needs the `inference:call` permission.
const TASK_AGENT_CODE = `const task = typeof input.task === "string" ? input.task : JSON.stringify(input.task ?? "");
const messages = [
  { role: "system", content: "You are a governed agent. Complete the task using only the data provided." },
  { role: "user", content: input.data === undefined ? task : task + "\\n\\nData (JSON):\\n" + JSON.stringify(input.data) },
];
const answer = await thetazero.inference({ messages });
return answer !== null && typeof answer === "object" && "content" in answer ? answer.content : answer;
`;

// camelCase `limits` option -> the REST AgentConfig field it sets.
const LIMIT_FIELDS = {
  maxMemoryMb: ['memory_limit_mb', (v) => v],
  maxExecutionTimeSec: ['cpu_time_limit_ms', (v) => Math.round(v * 1000)],
  maxApiCallsPerRun: ['max_api_calls_per_run', (v) => v],
  maxApiCallsPerMinute: ['max_api_calls_per_minute', (v) => v],
  allowNetwork: ['allow_network', (v) => v],
  allowedDomains: ['allowed_domains', (v) => [...v]],
  contentSafety: ['content_safety', (v) => v],
};

function configFromOptions(limits, sandbox) {
  const config = {};
  for (const [k, v] of Object.entries(limits || {})) {
    if (v === undefined) continue;
    const field = LIMIT_FIELDS[k];
    if (!field) throw new SDKError('INVALID_OPTION', `unknown limits option ${JSON.stringify(k)} (known: ${Object.keys(LIMIT_FIELDS).join(', ')})`);
    config[field[0]] = field[1](v);
  }
  if (sandbox) config.sandbox_template = String(sandbox).toUpperCase();
  return config;
}

// The server answers with the execution's fields next to `success`.
function executionOf(res) {
  const { success, ...e } = res;
  return e;
}

function dateParam(v) {
  return v instanceof Date ? v.toISOString() : String(v);
}

function camelExecution(e, baseUrl) {
  return {
    executionId: e.execution_id,
    agentId: e.agent_id,
    agentVersion: e.agent_version,
    status: e.status,
    output: e.output,
    error: e.error ?? null,
    limit: e.limit ?? null,
    durationMs: e.duration_ms,
    resourceUsage: e.resource_usage,
    hostCallAudit: e.host_call_audit,
    logs: e.logs,
    violationCount: e.violation_count,
    wasTerminated: e.was_terminated,
    leafIndex: e.leaf_index ?? null,
    leafHash: e.leaf_hash ?? null,
    codeSha256: e.code_sha256,
    startedAt: e.started_at,
    finishedAt: e.finished_at ?? null,
    auditTrailUrl: e.audit_trail_url ? new URL(e.audit_trail_url, baseUrl + '/').toString() : null,
    raw: e,
  };
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

class SecureAgent {
  /**
   * @param {object} [opts] see index.d.ts for every option.
   */
  constructor(opts = {}) {
    const env = (typeof process !== 'undefined' && process.env) || {};
    this.apiKey = opts.apiKey || env.THETAZERO_API_KEY;
    if (!this.apiKey) throw new SDKError('MISSING_API_KEY', 'no API key: pass apiKey or set THETAZERO_API_KEY');
    this.baseUrl = String(opts.baseUrl || env.THETAZERO_BASE_URL || DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.name = opts.name || 'secure-agent';
    this.version = opts.version || '1.0.0';
    this.description = opts.description;
    this.entryCode = opts.entryCode || TASK_AGENT_CODE;
    this.permissions = opts.permissions === undefined ? undefined : opts.permissions;
    this.limits = { ...(opts.limits || {}) };
    this.sandbox = opts.sandbox;
    this.config = { ...configFromOptions(this.limits, this.sandbox), ...(opts.config || {}) };
    // Compliance frameworks: sent at configure(), which evaluates them at once.
    this.compliance = opts.compliance ? [...opts.compliance] : [];
    this.complianceStatus = null;
    this.agentId = opts.agentId ?? null;
    this.agent = null;
    this._fetch = opts.fetch || globalThis.fetch;
    if (typeof this._fetch !== 'function') throw new SDKError('NO_FETCH', 'global fetch is missing: use Node >= 18 or pass opts.fetch');
    this._timeoutMs = opts.timeoutMs ?? 120_000;
    // Pinned verifier key: given here, or fetched on first use and then kept
    // for this instance's lifetime (trust on first use).
    this._verifierKeyText = opts.verifierKey || null;
    // Its form is checked here; its id and key when first used.
    if (this._verifierKeyText) this._verifierKeyText = verify.checkVerifierKeyText(this._verifierKeyText).text;
    this._verifierKey = null;
    // Largest checkpoint accepted per log origin; pass a shared Map to carry
    // it across instances (or persist it yourself).
    this.checkpoints = opts.checkpointStore || new Map();
  }

  // ---- HTTP ---------------------------------------------------------------

  async _request(method, path, { query, body, raw = false, headers = {}, signal, timeoutMs } = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    const h = { Authorization: `Bearer ${this.apiKey}`, Accept: 'application/json', 'User-Agent': `thetazero-js/${VERSION}`, ...headers };
    const init = { method, headers: h };
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const timeout = AbortSignal.timeout(timeoutMs ?? this._timeoutMs);
    init.signal = signal ? anySignal([signal, timeout]) : timeout;
    let res;
    try {
      res = await this._fetch(url, init);
    } catch (e) {
      if (timeout.aborted) throw new SDKError('TIMEOUT', `${method} ${path} timed out`, { cause: e });
      if (signal && signal.aborted) throw new SDKError('ABORTED', `${method} ${path} was aborted`, { cause: e });
      throw new SDKError('NETWORK_ERROR', `${method} ${url.origin}${path}: ${e.cause?.message || e.message}`, { cause: e });
    }
    if (!res.ok) throw await errorFromResponse(res);
    if (raw) return res;
    const text = await res.text();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new SDKError('INVALID_RESPONSE', `${method} ${path} answered with non-JSON`, { status: res.status, requestId: res.headers.get('x-request-id') });
    }
  }

  _requireAgent() {
    if (this.agentId == null) throw new SDKError('NOT_CONFIGURED', 'call configure() first: this agent is not registered yet');
    return this.agentId;
  }

  // ---- Agents and executions ---------------------------------------------

  /** Registers the agent, or replaces the one with the same name. Returns the agent record. */
  async configure() {
    const body = { name: this.name, version: this.version, entry_code: this.entryCode, status: 'ready', config: this.config };
    if (this.description !== undefined) body.description = this.description;
    if (this.permissions !== undefined) body.permissions = Array.isArray(this.permissions) ? [...this.permissions] : this.permissions;
    if (this.compliance.length) body.compliance = [...this.compliance];
    const res = await this._request('POST', '/api/v1/sdk/agents', { body });
    this.agent = res.agent;
    this.agentId = res.agent.id;
    // Frameworks are evaluated at once; the status rides on the record. A
    // control that is not satisfied is information, never an exception.
    if (this.compliance.length) {
      this.complianceStatus = await this.getComplianceStatus();
      res.agent.compliance = this.complianceStatus;
    }
    return res.agent;
  }

  // ---- Compliance -----------------------------------------------------------

  _complianceQuery({ frameworks, account = false, from, to } = {}) {
    const list = frameworks || (this.compliance.length ? this.compliance : undefined);
    return {
      frameworks: list && list.length ? (Array.isArray(list) ? list.join(',') : list) : undefined,
      agentId: account ? undefined : (this.agentId ?? undefined),
      from: from === undefined ? undefined : dateParam(from),
      to: to === undefined ? undefined : dateParam(to),
    };
  }

  /**
   * Coverage and result per framework and control for this agent (or, with
   * `{account: true}` or before configure(), the whole account). Audit-prepared
   * evidence, not a certification or a score.
   */
  async getComplianceStatus(opts = {}) {
    return this._request('GET', '/api/v1/sdk/compliance/status', { query: this._complianceQuery(opts) });
  }

  /**
   * The signed evidence package of one framework, as a zip:
   * `{filename, media_type: 'application/zip', bytes, sha256, markdown}`,
   * where `markdown` is its summary page.
   */
  async getEvidencePackage(framework, format = 'markdown', { account = false, from, to } = {}) {
    if (format !== 'markdown') throw new SDKError('INVALID_OPTION', `evidence packages come as 'markdown', not ${JSON.stringify(format)}`);
    const body = { format };
    if (!account && this.agentId != null) body.agent_id = this.agentId;
    if (from !== undefined) body.from = dateParam(from);
    if (to !== undefined) body.to = dateParam(to);
    const res = await this._request('POST', `/api/v1/sdk/compliance/packages/${encodeURIComponent(framework)}`, {
      body, raw: true, headers: { Accept: 'application/zip, application/json' },
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
    const stated = res.headers.get('x-content-sha256');
    if (stated && stated !== sha256) throw new SDKError('INVALID_RESPONSE', 'the evidence package does not match the digest the server stated');
    const disposition = res.headers.get('content-disposition') || '';
    const filename = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `thetazero-evidence-${framework}.zip`;
    const summary = readZipEntry(bytes, 'summary.md');
    if (!summary) throw new SDKError('INVALID_RESPONSE', 'the evidence package has no summary.md');
    const leaf = res.headers.get('x-audit-leaf-index');
    return {
      filename,
      media_type: 'application/zip',
      bytes,
      sha256,
      markdown: summary.toString('utf8'),
      auditLeafIndex: leaf == null ? null : Number(leaf),
    };
  }

  /** The full report (`thetazero.compliance-report/v1`), parsed. */
  async exportComplianceReport(format = 'json', opts = {}) {
    if (format !== 'json') throw new SDKError('INVALID_OPTION', `the compliance report comes as 'json', not ${JSON.stringify(format)}`);
    return this._request('GET', '/api/v1/sdk/compliance/report', { query: { ...this._complianceQuery(opts), format } });
  }

  /** Kill-switch drill in the caller's account (needs compliance and killswitch). */
  async runComplianceDrill() {
    return this._request('POST', '/api/v1/sdk/compliance/drill');
  }

  /**
   * Runs the agent synchronously. Resolves with the execution when it
   * completed; rejects with SDKError otherwise (the execution is on
   * `error.execution`).
   */
  async run(input = {}) {
    if (this.agentId == null) await this.configure();
    const res = await this._request('POST', `/api/v1/sdk/agents/${this.agentId}/execute`, {
      body: { input },
      timeoutMs: Math.max(this._timeoutMs, (this.config.cpu_time_limit_ms || 0) + 30_000),
    });
    const result = camelExecution(executionOf(res), this.baseUrl);
    if (result.status !== 'completed') throw executionError(result);
    return result;
  }

  async getAgent() {
    const res = await this._request('GET', `/api/v1/sdk/agents/${this._requireAgent()}`);
    this.agent = res.agent;
    return res.agent;
  }

  async listAgents({ page, limit } = {}) {
    return this._request('GET', '/api/v1/sdk/agents', { query: { page, limit } });
  }

  /** Patches the agent: `{entry_code, config, permissions, status, version, description}` (REST names). */
  async update(fields) {
    const res = await this._request('PATCH', `/api/v1/sdk/agents/${this._requireAgent()}`, { body: fields });
    this.agent = res.agent;
    return res.agent;
  }

  async delete() {
    const res = await this._request('DELETE', `/api/v1/sdk/agents/${this._requireAgent()}`);
    this.agentId = null;
    this.agent = null;
    return res;
  }

  async executions({ page, limit, status } = {}) {
    const res = await this._request('GET', `/api/v1/sdk/agents/${this._requireAgent()}/executions`, { query: { page, limit, status } });
    return res.executions.map((e) => camelExecution(e, this.baseUrl));
  }

  async getExecution(executionId) {
    const res = await this._request('GET', `/api/v1/sdk/agents/${this._requireAgent()}/executions/${executionId}`);
    return camelExecution(executionOf(res), this.baseUrl);
  }

  // ---- Audit ---------------------------------------------------------------

  /** The spec's filters: from, to, actionTypes, violationsOnly, limit, agentId, executionId, cursor. */
  async getAuditLog(filters = {}) {
    const known = ['from', 'to', 'actionTypes', 'violationsOnly', 'limit', 'agentId', 'executionId', 'cursor'];
    for (const k of Object.keys(filters)) {
      if (!known.includes(k)) throw new SDKError('INVALID_OPTION', `unknown audit filter ${JSON.stringify(k)} (known: ${known.join(', ')})`);
    }
    const res = await this._request('GET', '/api/v1/sdk/audit', { query: auditQuery(filters) });
    return { events: res.events, total: res.total, anchored: res.anchored };
  }

  /** `format` is 'csv' (for review) or 'bundle' (JSON Lines for offline verification). Resolves with the text. */
  async exportAuditLog(format = 'csv', { from, to, actionTypes, violationsOnly } = {}) {
    const res = await this._request('GET', '/api/v1/sdk/audit/export', {
      query: { format, ...auditQuery({ from, to, actionTypes, violationsOnly }) },
      raw: true,
      headers: { Accept: '*/*' },
    });
    return res.text();
  }

  /** The pinned verifier key (C2SP form), fetching and pinning it on first use. */
  async getVerifierKey() {
    if (!this._verifierKey) {
      let text = this._verifierKeyText;
      if (!text) text = (await this._request('GET', '/api/v1/sdk/audit/key')).verifier_key;
      this._verifierKey = await verify.parseVerifierKey(text);
      this._verifierKeyText = this._verifierKey.text;
    }
    return this._verifierKeyText;
  }

  /**
   * Fetches a record's proof and verifies it here: leaf hash, checkpoint
   * signature against the pinned key, inclusion, consistency to the latest
   * checkpoint, and consistency with the largest checkpoint this client
   * accepted before. `chain_valid` is this client's verdict; the server's
   * own claim is only reported as `server_chain_valid`.
   */
  async verifyAuditRecord(recordId) {
    await this.getVerifierKey();
    const proof = await this._request('GET', `/api/v1/sdk/audit/records/${encodeURIComponent(recordId)}/proof`);
    const result = {
      record_id: proof.record_id,
      log_origin: proof.log_origin,
      leaf_index: proof.leaf_index,
      leaf_hash: proof.leaf_hash,
      chain_valid: false,
      anchor_tx_hash: proof.anchor_tx_hash ?? null,
      anchors: proof.anchors || [],
      verified_at: new Date().toISOString(),
      verifier_key: this._verifierKeyText,
      server_chain_valid: proof.chain_valid,
    };
    try {
      const v = await verify.verifyRecordProof(proof, this._verifierKey);
      await this._reconcile(proof.log_origin, v.checkpoint, v.latest);
      result.chain_valid = true;
      result.checkpoint_size = v.checkpoint.size;
      result.latest_checkpoint_size = v.latest.size;
      result.leaf = new TextDecoder().decode(v.leaf);
    } catch (e) {
      if (!(e instanceof verify.VerifyError)) throw e;
      result.failure = { code: e.code, message: e.message };
    }
    return result;
  }

  // Requires every checkpoint we accept to extend the largest one seen
  // before for that log, fetching a consistency proof when the proof
  // material does not already link them; then remembers the larger one.
  async _reconcile(origin, cp, latest) {
    const seen = this.checkpoints.get(origin);
    if (seen && seen.size > 0) {
      const known = [cp, latest].find((c) => c.size === seen.size);
      const seenRoot = Buffer.from(seen.root, 'base64');
      if (known) {
        if (!verify.bytesEqual(known.root, seenRoot)) throw new verify.VerifyError('FORK', `log forked: the checkpoint seen before at size ${seen.size} has another root`);
      } else {
        const [a, b] = seen.size < latest.size ? [{ size: seen.size, root: seenRoot }, latest] : [latest, { size: seen.size, root: seenRoot }];
        let res;
        try {
          res = await this._request('GET', '/api/v1/sdk/audit/consistency', { query: { from: a.size, to: b.size } });
        } catch (e) {
          // A server that cannot prove a size it signed before has lost or
          // rewritten part of its log.
          if (e instanceof SDKError && e.status === 400) throw new verify.VerifyError('FORK', `the server cannot prove consistency between sizes ${a.size} and ${b.size}: ${e.message}`);
          throw e;
        }
        const path = verify.decodeHashes(res.proof, 'consistency proof');
        if (res.from !== a.size || res.to !== b.size || !(await verify.verifyConsistency(path, a.size, a.root, b.size, b.root))) {
          throw new verify.VerifyError('FORK', `the checkpoint seen before (size ${seen.size}) is not consistent with the latest (size ${latest.size})`);
        }
      }
      if (seen.size >= latest.size) return;
    }
    this.checkpoints.set(origin, { size: latest.size, root: verify.b64encode(latest.root) });
  }

  /**
   * The signed receipt of an execution (`tee_mode`, `attestation_id`,
   * `chain_valid`, `receipt`). The receipt's signature, its checkpoint and
   * the audit range are checked here too: `receipt_verified`.
   */
  async verifyExecution(executionId) {
    await this.getVerifierKey();
    const res = await this._request('GET', `/api/v1/sdk/executions/${encodeURIComponent(executionId)}/verify`);
    const out = { ...res };
    delete out.success;
    try {
      await checkReceipt(res, this._verifierKey);
      out.receipt_verified = true;
    } catch (e) {
      if (!(e instanceof verify.VerifyError)) throw e;
      out.receipt_verified = false;
      out.failure = { code: e.code, message: e.message };
    }
    return out;
  }

  // ---- Kill switch, live stream, permission requests (spec paths) ---------

  /**
   * Stops this agent: running executions are cancelled and new ones are
   * refused (409 `agent_killed`) until it is set ready again. Resolves with
   * `{agent_id, status: 'killed', terminated, confirmed, elapsed_ms}`.
   */
  async stop(reason = 'stopped from the SDK') {
    return this._request('POST', `/api/sdk/agents/${this._requireAgent()}/kill`, { body: { reason } });
  }

  /**
   * Global kill switch: `halted: true` stops every running execution of the
   * account (or, with `scope: 'deployment'` and the deployment owner's key,
   * of every account) and refuses new ones (503 `global_halt`) until
   * cleared with `halted: false`.
   */
  async setGlobalHalt(halted, reason = halted ? 'halted from the SDK' : 'cleared from the SDK', { scope } = {}) {
    const body = { halted, reason };
    if (scope !== undefined) body.scope = scope;
    return this._request('POST', '/api/sdk/kill-switch/global', { body });
  }

  /** The halt in force, if any: `{halted, scope, reason, since}`. */
  async getGlobalHalt() {
    return this._request('GET', '/api/sdk/kill-switch/global');
  }

  /**
   * Live audit events over SSE. `onEvent(type, data)` receives `connected`,
   * `audit`, `checkpoint`, `keepalive`, `timeout`, and `error` (an SDKError;
   * the stream stops after errors that retrying cannot fix, such as 401 or
   * 404). The stream reconnects by itself, resuming after the last event id.
   */
  streamAuditLog(filters = {}, onEvent = () => {}) {
    const controller = new AbortController();
    let lastEventId = filters.after != null ? String(filters.after) : '';
    let closed = false;
    const query = {
      executionId: filters.executionId,
      agentId: filters.agentId,
      since: filters.since === undefined ? undefined : dateParam(filters.since),
    };
    const emit = (type, data) => {
      try { onEvent(type, data); } catch (e) { queueMicrotask(() => { throw e; }); }
    };

    const loop = async () => {
      let delay = 500;
      while (!closed) {
        let retryable = true;
        try {
          const headers = { Accept: 'text/event-stream', 'Cache-Control': 'no-cache' };
          if (lastEventId) headers['Last-Event-ID'] = lastEventId;
          const res = await this._request('GET', '/api/sdk/audit/stream', {
            query, raw: true, headers, signal: controller.signal, timeoutMs: 2 ** 31 - 1,
          });
          delay = 500;
          let timedOut = false;
          const parser = new SSEParser((m) => {
            lastEventId = m.id;
            let data = m.data;
            try { data = JSON.parse(m.data); } catch { /* keep text */ }
            // `timeout` names the position to resume from, which can be past
            // the last event this filter let through.
            if (m.type === 'timeout') {
              timedOut = true;
              if (data && Number.isSafeInteger(data.resume_after)) lastEventId = parser.lastEventId = String(data.resume_after);
            }
            emit(m.type, data);
          });
          if (lastEventId) parser.lastEventId = lastEventId;
          const decoder = new TextDecoder();
          for await (const chunk of res.body) {
            parser.push(decoder.decode(chunk, { stream: true }));
            if (parser.retry !== undefined) delay = parser.retry;
          }
          // The server ends a stream with `timeout` at its time limit or when
          // this client lags: resume at once.
          if (timedOut) continue;
        } catch (e) {
          if (closed) return;
          const err = e instanceof SDKError ? e : new SDKError('STREAM_ERROR', e.message, { cause: e });
          // Client errors other than 408/429 will not heal by retrying.
          retryable = !(err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429);
          emit('error', err);
        }
        if (closed || !retryable) return;
        await sleep(delay, controller.signal);
        delay = Math.min(delay * 2, 30_000);
      }
    };
    const done = loop();
    return {
      close() {
        closed = true;
        controller.abort();
      },
      get lastEventId() { return lastEventId; },
      done,
    };
  }

  /**
   * Asks the account owner for elevated permissions and waits for the
   * decision. Resolves with the approved request; rejects with SDKError
   * PERMISSION_DENIED, PERMISSION_EXPIRED or PERMISSION_TIMEOUT.
   */
  async requestPermission({ permissions: wanted, justification, timeoutMs = 120_000, pollIntervalMs = 1000 } = {}) {
    const body = { agent_id: this._requireAgent(), permissions: wanted, justification, timeout_ms: timeoutMs };
    const created = await this._request('POST', '/api/sdk/permission-requests', { body });
    let request = created.request || created.permission_request || created;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = request.status;
      if (status === 'approved') return request;
      if (status === 'denied') throw new SDKError('PERMISSION_DENIED', `permission request ${request.id} was denied${request.reason ? ': ' + request.reason : ''}`, { details: request });
      if (status === 'expired') throw new SDKError('PERMISSION_EXPIRED', `permission request ${request.id} expired before a decision`, { details: request });
      if (Date.now() >= deadline) throw new SDKError('PERMISSION_TIMEOUT', `no decision on permission request ${request.id} within ${timeoutMs} ms`, { details: request });
      await sleep(Math.min(pollIntervalMs, Math.max(0, deadline - Date.now())));
      const res = await this._request('GET', `/api/sdk/permission-requests/${request.id}`);
      request = res.request || res.permission_request || res;
    }
  }
}

SecureAgent.permissions = permissions;
SecureAgent.SCOPES = SCOPES;
SecureAgent.TASK_AGENT_CODE = TASK_AGENT_CODE;

function auditQuery({ from, to, actionTypes, violationsOnly, limit, agentId, executionId, cursor } = {}) {
  return {
    from: from === undefined ? undefined : dateParam(from),
    to: to === undefined ? undefined : dateParam(to),
    actionTypes: Array.isArray(actionTypes) ? actionTypes.join(',') : actionTypes,
    violationsOnly,
    limit,
    agentId,
    executionId,
    cursor,
  };
}

// One entry of a zip archive (stored or deflated), or null. Enough for the
// evidence packages the server writes; no dependency needed.
function readZipEntry(buf, name) {
  const zlib = require('node:zlib');
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) return null;
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let n = 0; n < count && p + 46 <= buf.length; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) return null;
    const method = buf.readUInt16LE(p + 10);
    const size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const entry = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    if (entry === name) {
      if (buf.readUInt32LE(local) !== 0x04034b50) return null;
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      const data = buf.subarray(start, start + size);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return zlib.inflateRawSync(data);
      return null;
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  return null;
}

async function errorFromResponse(res) {
  const requestId = res.headers.get('x-request-id');
  let text = '';
  try { text = await res.text(); } catch { /* body unreadable */ }
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.code) {
      return new SDKError(body.error.code, body.error.message, { requestId: body.error.request_id || requestId, status: res.status });
    }
  } catch { /* not JSON */ }
  return new SDKError(`HTTP_${res.status}`, `${res.status} ${res.statusText}${text ? ': ' + text.slice(0, 200) : ''}`, { requestId, status: res.status });
}

// A run that did not complete: the code says how it ended (for a failed run,
// the stable code it failed with when there is one: PERMISSION_DENIED,
// WORKER_STOPPED, ...), the message is the error the sandbox reported.
function executionError(result) {
  const e = result.error || {};
  const code = (result.status === 'failed' && e.code) || `EXECUTION_${String(result.status).toUpperCase()}`;
  const detail = e.message
    ? `${e.type ? e.type + ': ' : ''}${e.message}`
    : (result.limit ? `limit: ${result.limit}` : 'no error reported');
  const message = `execution ${result.executionId} ${result.status}: ${detail}`;
  const err = new SDKError(code, message, { details: result.error || undefined });
  err.execution = result;
  return err;
}

// Checks a signed execution receipt: note signature with the pinned key,
// canonical body, the embedded checkpoint, and that the audit range lies
// inside that checkpoint.
async function checkReceipt(res, key) {
  if (typeof res.receipt !== 'string') throw new verify.VerifyError('MALFORMED', 'no receipt note');
  const text = await verify.openNote(res.receipt, key);
  let body;
  try { body = JSON.parse(text); } catch { throw new verify.VerifyError('MALFORMED', 'receipt body is not JSON'); }
  if (body.type !== 'tz.execution-receipt.v1') throw new verify.VerifyError('MALFORMED', 'receipt has the wrong type');
  const cp = verify.parseCheckpoint(await verify.openNote(body.checkpoint, key));
  if (!(body.audit_first_leaf <= body.audit_last_leaf && body.audit_last_leaf < cp.size)) {
    throw new verify.VerifyError('RANGE_NOT_COVERED', `audit range ${body.audit_first_leaf}..${body.audit_last_leaf} is not inside the checkpoint of size ${cp.size}`);
  }
  const id = verify.toHex(await verify.sha256(new TextEncoder().encode(text)));
  if (res.attestation_id !== undefined && res.attestation_id !== id) {
    throw new verify.VerifyError('MALFORMED', 'attestation_id is not the hash of the receipt body');
  }
  return body;
}

// AbortSignal.any arrived in Node 20; this keeps Node 18 working.
function anySignal(signals) {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(signals);
  const c = new AbortController();
  for (const s of signals) {
    if (s.aborted) { c.abort(s.reason); break; }
    s.addEventListener('abort', () => c.abort(s.reason), { once: true });
  }
  return c.signal;
}

module.exports = { SecureAgent, SDKError, permissions, SCOPES, VERSION, verify };
// So that `require(...).default` matches the ES module's default export.
module.exports.default = module.exports;
