// Audit verification in the browser, with the JavaScript SDK's own verifier
// (verify.js, loaded as a classic script). The verifier key is pinned in this
// browser's localStorage on first use, or supplied by the user; a server that
// later offers another key raises an alarm.

import { api } from './api.js';
import { clear, errorBox, h, kv, table } from './ui.js';

const PIN = 'thetazero.verifierKey';
const V = () => globalThis.thetazeroVerify;

function pinned() {
  try { return localStorage.getItem(PIN); } catch { return null; }
}

function pin(text) {
  localStorage.setItem(PIN, text);
}

// Which of the checks below a verifier error code comes from.
const FAILED_STEP = {
  MALFORMED: 0, LEAF_HASH_MISMATCH: 0,
  MALFORMED_NOTE: 1, BAD_SIGNATURE: 1, UNKNOWN_KEY: 1, MALFORMED_CHECKPOINT: 1,
  ORIGIN_MISMATCH: 2,
  INDEX_OUT_OF_RANGE: 3, INCLUSION_PROOF_INVALID: 3,
  CONSISTENCY_MISMATCH: 4, CONSISTENCY_PROOF_INVALID: 4,
};

export async function verifyPage(main) {
  main.append(h('h1', {}, 'Audit verification'),
    h('p', { class: 'panel', id: 'trust-note' },
      'These checks run in this browser with WebCrypto, using verify.js, the JavaScript SDK\'s verifier, ',
      h('strong', {}, 'served by this same server'),
      '. A server that wanted to hide tampering could also serve code that lies: for assurance independent of it, compare the key fingerprint below out of band, and verify with the SDK or `thetazero audit verify` on a machine you trust.'));
  const keyBox = h('section', { 'aria-labelledby': 'key-h' });
  const cpBox = h('section', { 'aria-labelledby': 'cp-h' });
  const recBox = h('section', { 'aria-labelledby': 'rec-h' });
  main.append(keyBox, cpBox, recBox);

  const offered = (await api('GET', '/api/v1/sdk/audit/key')).verifier_key;
  let key = null;

  async function renderKey() {
    clear(keyBox).append(h('h2', { id: 'key-h' }, 'Verifier key'));
    const current = pinned();
    if (!current) {
      const fp = await V().keyFingerprint(offered).catch(() => '(malformed)');
      keyBox.append(h('p', {}, 'No key is pinned in this browser. The server offers:'),
        h('pre', { class: 'wrap' }, offered), kv([['Fingerprint', h('code', { id: 'offered-fp' }, fp)]]),
        h('p', {}, h('button', { type: 'button', id: 'pin-offered', onclick: async () => { pin(offered); await start(); } }, 'Pin this key')));
    } else {
      const fp = await V().keyFingerprint(current).catch(() => '(malformed)');
      keyBox.append(h('pre', { class: 'wrap', id: 'pinned-key' }, current), kv([['Fingerprint', h('code', { id: 'pinned-fp' }, fp)]]));
      if (current !== offered) {
        const ofp = await V().keyFingerprint(offered).catch(() => '(malformed)');
        keyBox.append(h('div', { class: 'alarm', role: 'alert', id: 'key-alarm' },
          'Alarm: the server now offers a different verifier key than the one pinned in this browser. ',
          'Checkpoints it signs with the new key will not verify here. Unless the operator announced a key rotation that you confirmed out of band, treat its log as untrustworthy. ',
          `Offered key fingerprint: ${ofp}`));
      }
      try {
        key = await V().parseVerifierKey(current);
      } catch (e) {
        key = null;
        keyBox.append(errorBox(`The pinned key cannot be used: ${e.message}`));
      }
    }
    const input = h('textarea', { id: 'key-input', spellcheck: 'false' });
    const err = h('div', { role: 'alert' });
    keyBox.append(h('details', {}, h('summary', {}, 'Supply a key yourself'),
      h('form', { onsubmit: async (ev) => {
        ev.preventDefault();
        clear(err);
        try {
          await V().parseVerifierKey(input.value.trim());
          pin(input.value.trim());
          await start();
        } catch (e) { err.append(errorBox(e)); }
      } }, h('label', { for: 'key-input' }, 'Verifier key (name+id+key)'), input, err, h('p', {}, h('button', { type: 'submit' }, 'Pin key')))));
  }

  async function renderCheckpoint() {
    clear(cpBox).append(h('h2', { id: 'cp-h' }, 'Latest checkpoint'));
    const cp = await api('GET', '/api/v1/sdk/audit/checkpoint');
    if (!cp.checkpoint) { cpBox.append(h('p', {}, 'The log has no signed checkpoint yet.')); return; }
    let verdict;
    if (!key) verdict = h('span', {}, 'not checked: no usable key is pinned');
    else {
      try {
        const parsed = await V().openCheckpoint(cp.checkpoint, key, cp.origin);
        verdict = h('span', { class: 'status ok', id: 'cp-verdict' }, `signature verified: size ${parsed.size}`);
      } catch (e) {
        verdict = h('span', { class: 'status bad', id: 'cp-verdict' }, `rejected (${e.code}): ${e.message}`);
      }
    }
    cpBox.append(kv([['Log', cp.origin], ['Size', String(cp.size)], ['Signature', verdict]]), h('pre', { class: 'wrap' }, cp.checkpoint));
  }

  function renderRecord() {
    clear(recBox).append(h('h2', { id: 'rec-h' }, 'Verify a record'));
    const id = h('input', { id: 'record-id', type: 'number', min: 1, inputmode: 'numeric', required: true });
    const proofText = h('textarea', { id: 'proof-json', spellcheck: 'false', 'aria-describedby': 'proof-help' });
    const out = h('div', { id: 'verify-result', role: 'status' });
    recBox.append(
      h('form', { class: 'panel', onsubmit: async (ev) => {
        ev.preventDefault();
        clear(out);
        try {
          const proof = await api('GET', `/api/v1/sdk/audit/records/${Number(id.value)}/proof`);
          proofText.value = JSON.stringify(proof, null, 2);
          await check(proof);
        } catch (e) { out.append(errorBox(e)); }
      } }, h('label', { for: 'record-id' }, 'Audit record id'), h('div', { class: 'row' }, id, h('button', { type: 'submit' }, 'Fetch and verify'))),
      h('form', { class: 'panel', onsubmit: async (ev) => {
        ev.preventDefault();
        clear(out);
        let proof;
        try { proof = JSON.parse(proofText.value); } catch { out.append(errorBox('The proof is not valid JSON')); return; }
        await check(proof);
      } }, h('label', { for: 'proof-json' }, 'Proof (JSON)'),
      h('p', { id: 'proof-help', class: 'muted' }, 'The proof fetched above, or one you paste or edit: it is verified here exactly as it stands.'),
      proofText, h('p', {}, h('button', { type: 'submit', id: 'verify-pasted' }, 'Verify this proof'))),
      out);

    async function check(proof) {
      if (!key) { out.append(errorBox('Pin a verifier key first')); return; }
      const steps = [
        'the leaf bytes hash to leaf_hash (RFC 6962 leaf hash)',
        `the checkpoint is signed by the pinned key (Ed25519, ${key.name})`,
        'the checkpoint belongs to the record\'s log',
        'the inclusion proof leads from the leaf to the checkpoint\'s root',
        'the checkpoint is consistent with the latest signed checkpoint',
      ];
      try {
        const r = await V().verifyRecordProof(proof, key);
        out.append(h('div', { class: 'okbox', id: 'verdict', 'data-ok': 'true' },
          h('strong', {}, `Verified in this browser: record ${proof.record_id} is leaf ${proof.leaf_index} of ${proof.log_origin}.`),
          h('ul', { class: 'checks' }, steps.map((s) => h('li', {}, '✓ ', s))),
          kv([['Checkpoint size', String(r.checkpoint.size)], ['Latest size', String(r.latest.size)],
            ['Leaf', h('code', {}, new TextDecoder().decode(r.leaf).slice(0, 400))]])));
      } catch (e) {
        if (!(e instanceof V().VerifyError)) { out.append(errorBox(e)); return; }
        const failed = FAILED_STEP[e.code] ?? 0;
        out.append(h('div', { class: 'error', role: 'alert', id: 'verdict', 'data-ok': 'false', 'data-code': e.code },
          h('strong', {}, `Rejected (${e.code}): `), e.message,
          h('p', {}, 'The checks run in this order and stop at the first that fails:'),
          h('ul', { class: 'checks' }, steps.map((s, i) => h('li', {},
            i < failed ? '✓ passed: ' : i === failed ? '✗ failed: ' : 'not reached: ', s)))));
      }
      const anchors = proof.anchors || [];
      out.append(h('h3', {}, 'Anchors'), anchors.length
        ? table(['Checkpoint size', 'Kind', 'State', 'External reference'], anchors.map((a) => [String(a.checkpoint_size), a.kind, a.status, h('code', {}, a.external_ref || '—')]), 'Anchors')
        : h('p', { class: 'muted' }, 'No anchors: the deployment signs checkpoints but anchors them nowhere else.'));
    }
  }

  async function start() {
    await renderKey();
    await renderCheckpoint();
    if (!recBox.firstChild) renderRecord();
  }
  await start();
  return null;
}

