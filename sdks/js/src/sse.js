'use strict';
// A minimal Server-Sent Events parser (WHATWG HTML "event stream
// interpretation"), fed with decoded text chunks. It keeps `lastEventId`
// across events so a reconnect can send it as Last-Event-ID.

class SSEParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = '';
    this.lastEventId = '';
    this.retry = undefined;
    this._reset();
  }

  _reset() {
    this.event = '';
    this.data = [];
    this.sawData = false;
  }

  push(text) {
    this.buffer += text;
    // Lines end in CRLF, LF or CR; a trailing CR may be the first half of a
    // CRLF split across chunks, so keep it for the next push.
    for (;;) {
      const m = /\r\n|\n|\r(?!$)/.exec(this.buffer);
      if (!m) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this._line(line);
    }
  }

  _line(line) {
    if (line === '') {
      if (this.sawData) {
        this.onMessage({ type: this.event || 'message', data: this.data.join('\n'), id: this.lastEventId });
      }
      this._reset();
      return;
    }
    if (line.startsWith(':')) return; // comment, e.g. ": keepalive"
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') {
      this.data.push(value);
      this.sawData = true;
    } else if (field === 'id') {
      if (!value.includes('\0')) this.lastEventId = value;
    } else if (field === 'retry') {
      if (/^\d+$/.test(value)) this.retry = Number(value);
    }
  }
}

module.exports = { SSEParser };
