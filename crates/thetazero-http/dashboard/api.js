// The dashboard's only way to the server: same-origin requests carrying the
// session cookie (HttpOnly: scripts never see it) and, on every
// state-changing request, the session's CSRF token.

export const session = { key: null, csrf: null, deploymentOwner: false };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(fn) { onSignedOut = fn; }

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = session.csrf || '';
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    if (res.status === 401 && session.key && path !== '/api/v1/session') {
      session.key = null;
      onSignedOut(err.message || 'the session has ended');
    }
    throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText);
  }
  return data;
}

/** A request whose answer is not JSON (downloads): the Response, or ApiError. */
export async function apiRaw(method, path, body) {
  const headers = { Accept: '*/*' };
  if (method !== 'GET') headers['X-CSRF-Token'] = session.csrf || '';
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let err = {};
    try { err = (await res.json()).error || {}; } catch { err = {}; }
    throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText);
  }
  return res;
}

export async function signIn(apiKey) {
  const data = await api('POST', '/api/v1/session', { api_key: apiKey });
  adopt(data);
  return data;
}

export async function resume() {
  try {
    adopt(await api('GET', '/api/v1/session'));
    return true;
  } catch (e) {
    if (e.status === 401) return false;
    throw e;
  }
}

export async function signOut() {
  try { await api('DELETE', '/api/v1/session'); } finally { session.key = null; session.csrf = null; }
}

function adopt(data) {
  session.key = data.key;
  session.csrf = data.csrf_token;
  session.deploymentOwner = !!data.deployment_owner;
}

/** Whether the signed-in key holds a scope (owner keys hold all). */
export function can(scope) {
  return !!session.key && (session.key.is_owner || session.key.scopes.includes(scope));
}

/** A query string from the defined values of an object. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}
