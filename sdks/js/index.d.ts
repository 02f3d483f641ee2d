// Type declarations for @thetazero/agent-sdk.

export type Scope =
  | 'compute:read' | 'compute:write' | 'inference:call' | 'data:read' | 'data:write'
  | 'network:outbound' | 'storage:read' | 'storage:write' | 'agents:read' | 'agents:write';

export type PresetName = 'READONLY' | 'WRITER' | 'RESEARCHER' | 'CODER' | 'ANALYST' | 'FULL';

export interface Limits {
  /** → config.memory_limit_mb */
  maxMemoryMb?: number;
  /** → config.cpu_time_limit_ms (seconds × 1000) */
  maxExecutionTimeSec?: number;
  /** → config.max_api_calls_per_run */
  maxApiCallsPerRun?: number;
  /** → config.max_api_calls_per_minute */
  maxApiCallsPerMinute?: number;
  /** → config.allow_network */
  allowNetwork?: boolean;
  /** → config.allowed_domains */
  allowedDomains?: string[];
  /** → config.content_safety (may be false only with the DEV template) */
  contentSafety?: boolean;
}

export interface SecureAgentOptions {
  /** Defaults to the THETAZERO_API_KEY environment variable. */
  apiKey?: string;
  /** Defaults to THETAZERO_BASE_URL, else http://127.0.0.1:8420. */
  baseUrl?: string;
  /** Agent name; registering again with the same name replaces the agent. Default 'secure-agent'. */
  name?: string;
  version?: string;
  description?: string;
  /** JavaScript run in the sandbox. Without it, a built-in task agent passes `task` and `data` to `thetazero.inference`. */
  entryCode?: string;
  permissions?: readonly Scope[] | PresetName;
  limits?: Limits;
  /** Sandbox template: 'STRICT' | 'STANDARD' | 'DEV'. */
  sandbox?: 'STRICT' | 'STANDARD' | 'DEV' | string;
  /** Raw REST AgentConfig fields (snake_case), merged over `limits`. */
  config?: Record<string, unknown>;
  /** Compliance frameworks, e.g. ['eu_ai_act', 'soc2', 'nist_ai_rmf']: sent at configure(), which evaluates them at once. */
  compliance?: string[];
  /** Attach to an already registered agent. */
  agentId?: number;
  /** Audit verifier key to pin (C2SP form). Without it, the server's key is fetched once and pinned. */
  verifierKey?: string;
  /** Where the largest checkpoint per log origin is remembered; share one Map between instances to share that state. */
  checkpointStore?: Map<string, { size: number; root: string }>;
  /** Per-request timeout (ms), default 120000. */
  timeoutMs?: number;
  /** A fetch implementation (default: the global one). */
  fetch?: (input: any, init?: any) => Promise<any>;
}

export class SDKError extends Error {
  /** The server's error code (e.g. 'not_found', 'missing_scope') or an SDK code (e.g. 'PERMISSION_DENIED', 'EXECUTION_FAILED', 'NETWORK_ERROR'). */
  code: string;
  requestId: string | null;
  /** HTTP status, when the error came from a response. */
  status: number | null;
  details?: unknown;
  /** For a run that did not complete: the execution. */
  execution?: ExecutionResult;
}

export interface ResourceUsage {
  cpu_ms: number;
  memory_mb: number;
  api_calls: number;
  host_calls: number;
  [k: string]: unknown;
}

export interface ExecutionResult {
  executionId: number;
  agentId: number;
  agentVersion: string;
  /** 'completed' | 'failed' | 'timed_out' | 'killed' | 'limit_exceeded' | 'blocked' | 'running' */
  status: string;
  output: unknown;
  error: { type: string; message: string; stack?: string; code?: string } | null;
  limit: string | null;
  durationMs: number;
  resourceUsage: ResourceUsage;
  hostCallAudit?: Array<{ fn: string; allowed: boolean; duration_ms: number; [k: string]: unknown }>;
  logs?: unknown[];
  violationCount: number;
  wasTerminated: boolean;
  leafIndex: number | null;
  leafHash: string | null;
  codeSha256: string;
  startedAt: string;
  finishedAt: string | null;
  /** Absolute URL of this execution's audit events. */
  auditTrailUrl: string | null;
  /** The server's snake_case execution view. */
  raw: Record<string, unknown>;
}

export interface AuditFilters {
  from?: string | Date;
  to?: string | Date;
  actionTypes?: string[] | string;
  violationsOnly?: boolean;
  limit?: number;
  agentId?: number;
  executionId?: number;
  /** Only events after this leaf index. */
  cursor?: number;
}

export interface AuditEvent {
  id: number;
  leaf_index: number;
  leaf_hash: string;
  timestamp: string;
  agent_id: number | null;
  execution_id: number | null;
  action_type: string;
  action_category: string;
  description: string;
  is_violation: boolean;
  [k: string]: unknown;
}

export interface AuditLog {
  events: AuditEvent[];
  total: number;
  anchored: boolean;
}

export interface AuditRecordVerification {
  /** This client's verdict, computed locally. */
  chain_valid: boolean;
  anchor_tx_hash: string | null;
  verified_at: string;
  record_id: number;
  log_origin: string;
  leaf_index: number;
  leaf_hash: string;
  anchors: unknown[];
  verifier_key: string;
  /** The server's own claim; not trusted. */
  server_chain_valid: boolean;
  checkpoint_size?: number;
  latest_checkpoint_size?: number;
  /** The leaf's canonical JSON. */
  leaf?: string;
  /** Why verification failed, when chain_valid is false. */
  failure?: { code: string; message: string };
}

export interface ExecutionVerification {
  tee_mode: string;
  attestation_id: string;
  chain_valid: boolean;
  receipt: string;
  /** Receipt signature, checkpoint and audit range checked locally. */
  receipt_verified: boolean;
  failure?: { code: string; message: string };
  [k: string]: unknown;
}

export interface KillResult {
  agent_id: number;
  status: 'killed';
  /** Executions that were running and were stopped. */
  terminated: number;
  /** Whether every one of them confirmed it stopped. */
  confirmed: boolean;
  elapsed_ms: number;
  [k: string]: unknown;
}

export interface HaltResult {
  halted: boolean;
  scope: 'account' | 'deployment';
  terminated: number;
  confirmed: boolean;
  elapsed_ms: number;
  [k: string]: unknown;
}

export interface StreamHandle {
  close(): void;
  readonly lastEventId: string;
  /** Settles when the stream stops for good. */
  done: Promise<void>;
}

export interface StreamFilters {
  executionId?: number;
  agentId?: number;
  since?: string | Date;
  /** Resume after this leaf index. */
  after?: number;
}

export interface PermissionRequestOptions {
  permissions: Record<string, unknown> | string[];
  justification: string;
  timeoutMs?: number;
  pollIntervalMs?: number;
}

export type ComplianceFramework = 'eu_ai_act' | 'soc2' | 'nist_ai_rmf' | 'iso_42001' | 'owasp_llm_top10';

export interface ComplianceOptions {
  /** Default: the frameworks given to the constructor, else every framework. */
  frameworks?: ComplianceFramework[] | string;
  /** The whole account instead of this agent. */
  account?: boolean;
  from?: string | Date;
  to?: string | Date;
}

export interface ComplianceControl {
  id: string;
  coverage: 'automated' | 'partial' | 'organizational' | 'not_applicable';
  result: 'satisfied' | 'not_satisfied' | 'not_assessed' | null;
  reasons: string[];
  evidence: string[];
}

export interface ComplianceStatus {
  success: boolean;
  schema: 'thetazero.compliance-report/v1';
  disclaimer: string;
  scope: { account: { id: number; name: string }; agent: { id: number; name: string } | null };
  checks: { id: string; title: string; status: 'pass' | 'fail' | 'error'; reasons: string[]; evidence_file: string }[];
  frameworks: { id: ComplianceFramework; catalog_version: string; catalog_sha256: string; summary: Record<string, unknown>; controls: ComplianceControl[] }[];
  summary: Record<string, unknown>;
}

export interface EvidencePackage {
  filename: string;
  media_type: 'application/zip';
  bytes: Buffer;
  /** Hex SHA-256 of `bytes`. */
  sha256: string;
  /** The package's summary page. */
  markdown: string;
  /** Where generating it was recorded in the audit log. */
  auditLeafIndex: number | null;
}

export class SecureAgent {
  constructor(opts?: SecureAgentOptions);
  static readonly permissions: Readonly<Record<PresetName, readonly Scope[]>>;
  static readonly SCOPES: readonly Scope[];
  static readonly TASK_AGENT_CODE: string;

  apiKey: string;
  baseUrl: string;
  name: string;
  agentId: number | null;
  agent: Record<string, unknown> | null;
  config: Record<string, unknown>;
  compliance: string[];
  checkpoints: Map<string, { size: number; root: string }>;

  configure(): Promise<Record<string, unknown>>;
  run(input?: unknown): Promise<ExecutionResult>;
  getAgent(): Promise<Record<string, unknown>>;
  listAgents(opts?: { page?: number; limit?: number }): Promise<{ agents: Record<string, unknown>[]; total: number; [k: string]: unknown }>;
  update(fields: Record<string, unknown>): Promise<Record<string, unknown>>;
  delete(): Promise<unknown>;
  executions(opts?: { page?: number; limit?: number; status?: string }): Promise<ExecutionResult[]>;
  getExecution(executionId: number): Promise<ExecutionResult>;

  getAuditLog(filters?: AuditFilters): Promise<AuditLog>;
  exportAuditLog(format?: 'csv' | 'bundle', opts?: { from?: string | Date; to?: string | Date; actionTypes?: string[] | string; violationsOnly?: boolean }): Promise<string>;
  getVerifierKey(): Promise<string>;
  verifyAuditRecord(recordId: number): Promise<AuditRecordVerification>;
  verifyExecution(executionId: number): Promise<ExecutionVerification>;

  /** The last status configure() evaluated, when frameworks were given. */
  complianceStatus: ComplianceStatus | null;
  getComplianceStatus(opts?: ComplianceOptions): Promise<ComplianceStatus>;
  getEvidencePackage(framework: ComplianceFramework, format?: 'markdown', opts?: Omit<ComplianceOptions, 'frameworks'>): Promise<EvidencePackage>;
  exportComplianceReport(format?: 'json', opts?: ComplianceOptions): Promise<Record<string, unknown>>;
  runComplianceDrill(): Promise<{ success: boolean; drill: Record<string, unknown>; leaf_index: number; leaf_hash: string }>;

  stop(reason?: string): Promise<KillResult>;
  setGlobalHalt(halted: boolean, reason?: string, opts?: { scope?: 'account' | 'deployment' }): Promise<HaltResult>;
  getGlobalHalt(): Promise<{ halted: boolean; scope?: string; reason?: string; since?: string; [k: string]: unknown }>;
  streamAuditLog(filters: StreamFilters, onEvent: (type: string, data: any) => void): StreamHandle;
  requestPermission(opts: PermissionRequestOptions): Promise<Record<string, unknown>>;
}

export const permissions: typeof SecureAgent.permissions;
export const SCOPES: readonly Scope[];
export const VERSION: string;
export const verify: {
  /** Every function that hashes or checks a signature uses WebCrypto and resolves asynchronously. */
  parseVerifierKey(text: string): Promise<unknown>;
  /** Checks a verifier key's form only (synchronous); throws BAD_VERIFIER_KEY. */
  checkVerifierKeyText(text: string): { text: string; name: string };
  /** SHA-256 of the key's text in hex, grouped by four, for comparison out of band. */
  keyFingerprint(text: string): Promise<string>;
  openNote(note: string, key: unknown): Promise<string>;
  /** Opens a signed checkpoint note with a parsed verifier key; rejects on a bad or unknown signature. */
  openCheckpoint(note: string, key: unknown, origin?: string): Promise<{ origin: string; size: number; root: Uint8Array }>;
  verifyInclusion(path: Uint8Array[], size: number, root: Uint8Array, index: number, leaf: Uint8Array): Promise<boolean>;
  verifyConsistency(path: Uint8Array[], size1: number, root1: Uint8Array, size2: number, root2: Uint8Array): Promise<boolean>;
  leafHash(bytes: Uint8Array): Promise<Uint8Array>;
  [k: string]: unknown;
};

declare const sdk: {
  SecureAgent: typeof SecureAgent;
  SDKError: typeof SDKError;
  permissions: typeof permissions;
  SCOPES: typeof SCOPES;
  VERSION: typeof VERSION;
  verify: typeof verify;
};
export default sdk;
