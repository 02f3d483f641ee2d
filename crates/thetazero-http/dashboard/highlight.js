// A tiny JavaScript highlighter: one pass of a tokenizer over the code,
// producing spans with textContent (the code is never parsed as HTML).

const KEYWORDS = new Set(('await async break case catch class const continue default delete do else export extends ' +
  'finally for function if import in instanceof let new of return static super switch this throw try typeof var void while yield').split(' '));
const LITERALS = new Set(['true', 'false', 'null', 'undefined', 'input', 'thetazero']);

const TOKEN = /(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(\b\d[\d_]*(?:\.\d+)?(?:e[+-]?\d+)?\b|\b0x[0-9a-f]+\b)|([A-Za-z_$][\w$]*)/gi;

/** Splits code into [class, text] pairs; class is '' for plain text. */
export function tokens(code) {
  const out = [];
  let last = 0;
  for (const m of code.matchAll(TOKEN)) {
    if (m.index > last) out.push(['', code.slice(last, m.index)]);
    let cls = '';
    if (m[1]) cls = 'tok-c';
    else if (m[2]) cls = 'tok-s';
    else if (m[3]) cls = 'tok-n';
    else if (KEYWORDS.has(m[4])) cls = 'tok-k';
    else if (LITERALS.has(m[4])) cls = 'tok-t';
    out.push([cls, m[0]]);
    last = m.index + m[0].length;
  }
  if (last < code.length) out.push(['', code.slice(last)]);
  return out;
}

/** A <pre><code> element with the code highlighted. */
export function highlight(code, label) {
  const pre = document.createElement('pre');
  pre.setAttribute('tabindex', '0');
  if (label) pre.setAttribute('aria-label', label);
  const el = document.createElement('code');
  for (const [cls, text] of tokens(code)) {
    if (!cls) { el.append(document.createTextNode(text)); continue; }
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    el.append(span);
  }
  pre.append(el);
  return pre;
}
