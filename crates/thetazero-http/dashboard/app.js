// The dashboard's shell: sign-in, navigation by hash, the pending-requests
// badge kept current from the live audit stream, and the page in view.

import { api, can, resume, session, signIn, signOut, whenSignedOut } from './api.js';
import { announce, clear, errorBox, h } from './ui.js';
import * as pages from './pages.js';
import { verifyPage } from './verify-page.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let cleanup = null;
let badgeStream = null;
let badgeTimer = null;

const ROUTES = [
  [/^#\/overview$/, pages.overview, 'agents:read'],
  [/^#\/agents$/, pages.agents, 'agents:read'],
  [/^#\/agents\/(\d+)$/, pages.agent, 'agents:read'],
  [/^#\/agents\/(\d+)\/executions\/(\d+)$/, pages.execution, 'agents:read'],
  [/^#\/audit$/, pages.liveAudit, 'audit:read'],
  [/^#\/security\/requests$/, pages.requests, 'agents:read'],
  [/^#\/killswitch$/, pages.killSwitch, 'killswitch'],
  [/^#\/settings\/keys$/, pages.keys, 'keys'],
  [/^#\/verify$/, verifyPage, 'audit:read'],
  [/^#\/compliance$/, pages.compliance, 'compliance'],
];

function firstAllowed() {
  const li = [...nav.querySelectorAll('li')].find((l) => !l.hidden);
  return li ? li.querySelector('a').getAttribute('href') : null;
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* the page is gone anyway */ } cleanup = null; }
  if (!session.key) { showSignIn(); return; }
  let hash = location.hash || '#/overview';
  let found = ROUTES.find(([re]) => re.test(hash));
  if (!found || !can(found[2])) {
    const fallback = firstAllowed();
    if (fallback && fallback !== hash) { location.hash = fallback; return; }
    clear(main).append(h('h1', {}, 'Nothing to show'), h('p', {}, 'This API key holds no scope that a dashboard page uses.'));
    return;
  }
  for (const a of nav.querySelectorAll('a')) {
    const href = a.getAttribute('href');
    if (hash === href || hash.startsWith(href + '/')) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const [re, page] = found;
  const params = re.exec(hash).slice(1);
  clear(main);
  // Busy while the page loads its data: assistive technology waits, and
  // `data-page` names the page once it is drawn in full.
  main.setAttribute('aria-busy', 'true');
  delete main.dataset.page;
  try {
    cleanup = (await page(main, params)) || null;
  } catch (e) {
    main.append(errorBox(e));
  }
  if ((location.hash || '#/overview') === hash) {
    main.removeAttribute('aria-busy');
    main.dataset.page = hash;
  }
  const heading = main.querySelector('h1');
  if (heading) document.title = `${heading.textContent} · thetazero`;
}

function showSignIn(message) {
  nav.hidden = true;
  document.getElementById('who').hidden = true;
  stopBadge();
  document.title = 'Sign in · thetazero';
  const err = h('div', { role: 'alert' });
  if (message) err.append(errorBox(message));
  const input = h('input', { id: 'api-key', name: 'api_key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h('form', { class: 'panel', onsubmit: async (ev) => {
    ev.preventDefault();
    clear(err);
    try {
      await signIn(input.value.trim());
      input.value = '';
      signedIn();
    } catch (e) {
      err.append(errorBox(e));
    }
  } },
  h('label', { for: 'api-key' }, 'API key'),
  input,
  h('p', { class: 'muted' }, 'The key is exchanged for a session cookie that scripts cannot read; the key itself is not kept in this browser.'),
  h('button', { type: 'submit' }, 'Sign in'));
  clear(main).append(h('div', { class: 'signin' }, h('h1', {}, 'Sign in to thetazero'), err, form));
  input.focus();
}

function signedIn() {
  for (const li of nav.querySelectorAll('li')) li.hidden = !can(li.dataset.scope);
  nav.hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = `${session.key.name} (${session.key.prefix}…)`;
  startBadge();
  if (!location.hash || location.hash === '#' || location.hash === '#/signin') location.hash = '#/overview';
  else route();
}

// ---- The pending-requests badge ----------------------------------------

async function refreshBadge() {
  const badge = document.getElementById('pending-badge');
  if (!can('agents:read')) return;
  try {
    const res = await api('GET', '/api/v1/sdk/permission-requests?status=pending&limit=500');
    const n = res.requests.length;
    badge.hidden = n === 0;
    badge.textContent = String(n);
    badge.setAttribute('aria-label', `${n} pending`);
    badge.dataset.count = String(n);
  } catch { /* the next event or tick tries again */ }
}

function startBadge() {
  stopBadge();
  refreshBadge();
  // Real time from the audit stream where the key may read it; a slow poll
  // as well, for keys without audit:read and for decisions that expire.
  if (can('audit:read')) {
    badgeStream = new EventSource('/api/v1/sdk/audit/stream');
    badgeStream.addEventListener('audit', (ev) => {
      let e;
      try { e = JSON.parse(ev.data); } catch { return; }
      if (e.action_type && e.action_type.startsWith('permission_')) {
        refreshBadge();
        window.dispatchEvent(new CustomEvent('tz:permissions', { detail: e }));
      }
      window.dispatchEvent(new CustomEvent('tz:audit', { detail: e }));
    });
    badgeStream.addEventListener('error', () => {
      // A stream closed because the session ended: find out, and say so.
      if (badgeStream && badgeStream.readyState === EventSource.CLOSED) checkSession();
    });
  }
  badgeTimer = setInterval(() => { refreshBadge(); checkStream(); }, 10_000);
}

function checkStream() {
  if (badgeStream && badgeStream.readyState === EventSource.CLOSED && session.key) {
    badgeStream = null;
    startBadge();
  }
}

function stopBadge() {
  if (badgeStream) badgeStream.close();
  badgeStream = null;
  if (badgeTimer) clearInterval(badgeTimer);
  badgeTimer = null;
}

async function checkSession() {
  if (!session.key) return;
  if (!(await resume().catch(() => true))) {
    session.key = null;
    showSignIn('The session has ended (signed out, expired, or its key was revoked or changed). Sign in again.');
  }
}

whenSignedOut((why) => {
  if (cleanup) { try { cleanup(); } catch { /* gone */ } cleanup = null; }
  showSignIn(`The session has ended: ${why}. Sign in again.`);
});

document.getElementById('sign-out').addEventListener('click', async () => {
  if (cleanup) { try { cleanup(); } catch { /* gone */ } cleanup = null; }
  try { await signOut(); } catch { /* signed out either way */ }
  showSignIn();
  announce('Signed out');
});

// Focus moves to the page at once (so keyboard users start from it), never
// later: a page that loads slowly must not take focus from what the user
// has reached meanwhile.
window.addEventListener('hashchange', () => { main.focus({ preventScroll: true }); route(); });
window.addEventListener('tz:badge', refreshBadge);

(async () => {
  try {
    if (await resume()) signedIn(); else showSignIn();
  } catch (e) {
    showSignIn(e.message);
  }
})();
