/*!
 * realtime chat widget: one plain file, no framework, no build step. Protocol: docs/protocol.md.
 *
 * Embed:  <script src="https://HOST/widget.js" data-bot="demo" async></script>
 *   The server is the origin of this script's src. Optional: data-position ("left"|"right"),
 *   data-title, data-session (a session id of your own), data-signed-context.
 * Laravel chatbot package: <chatbot-widget channel="BOT" signed-context="..."></chatbot-widget>
 *   plus this script (classic or type="module"). The element IS the widget: a floating launcher
 *   and panel (bottom-right; position="bottom-left" for the left), or, with position="inline",
 *   rendered inside the element itself, always open, with no launcher. Its hello sends the
 *   envelope (and bot = channel). A data-bot script adds no widget of its own when the page
 *   already has a <chatbot-widget>. Attribute server="https://..." overrides the server.
 * Styles: constructable stylesheets in an open shadow root, nothing inline, so pages under a
 *   strict CSP (style-src 'self') work. Theming: --chatbot-primary, --chatbot-on-primary,
 *   --chatbot-surface, --chatbot-on-surface, --chatbot-radius, --chatbot-font,
 *   --chatbot-shadow, --chatbot-z-index; parts launcher, panel, header, messages,
 *   message-user, message-assistant, input, send-button, tool-status.
 * State: session id and current conversation id in localStorage, per server, bot and user.
 * Test hooks: the host's data-state (connecting|ready|offline); messages have data-role and
 *   data-message-id; an answer being streamed has data-run-id and data-streaming.
 */
(() => {
  'use strict';
  const TAG = 'chatbot-widget';
  if (!window.customElements || customElements.get(TAG)) return;
  const SCRIPT =
    document.currentScript ||
    document.querySelector('script[data-bot][src*="widget.js"]') ||
    document.querySelector('script[src*="widget.js"]');
  const ORIGIN = new URL((SCRIPT && SCRIPT.src) || location.href, location.href).origin;
  const OFFLINE = "No one from our team is available right now. Stay here, or leave us a message: we'll get back to you.";
  const THANKS = "Thank you! We'll get back to you soon.";
  const FIELDS = [
    { name: 'name', label: 'Name', type: 'text', required: true },
    { name: 'email', label: 'Email', type: 'email', required: true },
    { name: 'message', label: 'Message', type: 'textarea', required: true },
  ];
  const STAGES = {
    retrieving: 'Searching the sources…',
    generating: 'Writing…',
    executing_tool: 'Working…',
    awaiting_confirmation: 'Waiting for your confirmation…',
  };
  const RETRY = new Set(['broker_unavailable', 'internal_error', 'shutting_down']);
  const DECIDED = { approved: 'Approved', rejected: 'Rejected', expired: 'Expired' };
  const NS = 'http://www.w3.org/2000/svg';
  const ICON = {
    chat: 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z',
    send: 'M3 20l18-8L3 4v6l12 2-12 2z',
    thumb: 'M2 10h4v11H2zM8 21h9.5a2 2 0 0 0 1.9-1.4l2.5-7A2 2 0 0 0 20 10h-5.5l.9-4.2A1.6 1.6 0 0 0 12.6 4L8 10z',
  };

  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
  const human = (tool) => String(tool || 'action').replace(/_/g, ' ');
  const json = (v) => JSON.stringify(v == null ? {} : v, null, 1);

  // Elements from data only: attributes with setAttribute, text as text nodes, never HTML.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (typeof v === 'function') el.addEventListener(k, v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    el.append(...kids.filter((k) => k != null && k !== false));
    return el;
  }
  function icon(d) {
    const s = document.createElementNS(NS, 'svg');
    const p = document.createElementNS(NS, 'path');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    p.setAttribute('d', d);
    s.append(p);
    return s;
  }
  function safeUrl(url, base) {
    try {
      const u = new URL(String(url), base || ORIGIN);
      return /^https?:$/.test(u.protocol) ? u.href : null;
    } catch {
      return null;
    }
  }
  const link = (href, text) => h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, text);
  const load = (k) => {
    try {
      return JSON.parse(localStorage.getItem(k)) || {};
    } catch {
      return {};
    }
  };
  const keep = (k, v) => {
    try {
      localStorage.setItem(k, JSON.stringify(v));
    } catch {}
  };

  // Markdown, safely: DOM nodes built from text; links only to http(s).
  const INLINE =
    /`([^`]+)`|\[([^\]]+)\]\(([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)\)|\*\*(?!\s)(.+?)(?<!\s)\*\*|(?<!\w)__(?!\s)(.+?)(?<!\s)__(?!\w)|\*(?![\s*])(.+?)(?<![\s*])\*|(?<!\w)_(?![\s_])(.+?)(?<![\s_])_(?!\w)|(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])/g;
  function inline(parent, text) {
    const re = new RegExp(INLINE);
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      parent.append(text.slice(last, m.index));
      last = re.lastIndex;
      let el;
      if (m[1] != null) el = h('code', 0, m[1]);
      else if (m[2] != null || m[8]) {
        const href = (m[8] || m[3]) && safeUrl(m[8] || m[3]);
        if (!href) {
          parent.append(m[0]);
          continue;
        }
        el = link(href);
        if (m[8]) el.append(m[8]);
        else inline(el, m[2]);
      } else {
        el = h(m[4] || m[5] ? 'strong' : 'em');
        inline(el, m[4] || m[5] || m[6] || m[7]);
      }
      parent.append(el);
    }
    parent.append(text.slice(last));
  }
  function md(src) {
    const out = document.createDocumentFragment();
    const lines = String(src || '').replace(/\r\n?/g, '\n').split('\n');
    let para = null;
    let list = null;
    let quote = null;
    let m;
    const end = () => (para = list = quote = null);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if ((m = /^\s*(`{3,}|~{3,})/.exec(line))) {
        const code = [];
        while (++i < lines.length && !lines[i].trimStart().startsWith(m[1])) code.push(lines[i]);
        out.append(h('pre', 0, h('code', 0, code.join('\n'))));
        end();
      } else if (!line.trim()) end();
      else if ((m = /^ {0,3}(#{1,6})\s+(.+)$/.exec(line))) {
        inline(out.appendChild(h('h' + Math.min(6, m[1].length + 2))), m[2]);
        end();
      } else if (/^ {0,3}([-*_])( *\1){2,} *$/.test(line)) {
        out.append(h('hr'));
        end();
      } else if ((m = /^\s*(?:[-*+]|(\d{1,9})[.)])\s+(.*)$/.exec(line))) {
        const tag = m[1] ? 'ol' : 'ul';
        if (!list || list.localName !== tag) {
          end();
          list = out.appendChild(h(tag, m[1] > 1 ? { start: m[1] } : 0));
        }
        inline(list.appendChild(h('li')), m[2]);
      } else if ((m = /^\s*>\s?(.*)$/.exec(line))) {
        if (quote) quote.append(h('br'));
        else (end(), (quote = out.appendChild(h('blockquote'))));
        inline(quote, m[1]);
      } else if (list && /^\s/.test(line)) {
        list.lastChild.append(' ');
        inline(list.lastChild, line.trim());
      } else {
        list = quote = null;
        if (para) para.append(h('br'));
        else para = out.appendChild(h('p'));
        inline(para, line);
      }
    }
    return out;
  }

  const STYLE = `
:host{all:initial;--p:var(--chatbot-primary,var(--rt-color,#2f6fed));--op:var(--chatbot-on-primary,#fff);--s:var(--chatbot-surface,#fff);--os:var(--chatbot-on-surface,#1f2937);--r:var(--chatbot-radius,12px);--sh:var(--chatbot-shadow,0 8px 32px rgba(0,0,0,.16));position:fixed;z-index:var(--chatbot-z-index,9999);right:20px;bottom:20px;font:14px/1.45 var(--chatbot-font,system-ui,sans-serif);color:var(--os)}
:host([data-position=left]){right:auto;left:20px}
:host([data-position=inline]){position:relative;display:block;right:auto;bottom:auto;z-index:auto}
*{box-sizing:border-box}[hidden]{display:none!important}
button{font:inherit;cursor:pointer}button:disabled{opacity:.55;cursor:default}
:focus-visible{outline:2px solid var(--p);outline-offset:2px}
svg{width:24px;height:24px;fill:currentColor}
.launcher{width:56px;height:56px;border:0;border-radius:50%;background:var(--p);color:var(--op);box-shadow:var(--sh);display:grid;place-items:center}
.panel{position:absolute;right:0;bottom:70px;width:min(380px,calc(100vw - 32px));height:min(600px,calc(100vh - 110px));display:flex;flex-direction:column;background:var(--s);border-radius:var(--r);box-shadow:var(--sh);overflow:hidden}
:host([data-position=left]) .panel{right:auto;left:0}
:host([data-position=inline]) .panel{position:static;width:100%;height:100%;min-height:420px;box-shadow:none;border:1px solid #d8dde3}
header{display:flex;align-items:center;gap:8px;padding:10px 12px;background:var(--p);color:var(--op)}
header h2{flex:1;margin:0;font-size:15px;font-weight:600}
header img{width:28px;height:28px;border-radius:50%;object-fit:cover}
.x{border:0;background:none;color:inherit;font-size:22px;line-height:1;padding:0 4px}
.conn,.banner{padding:6px 12px;font-size:12px;background:#fff6db;color:#5f4700}
.banner{background:#eaf1ff;color:#1d3b72}
.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}
.msgs,.intro{display:flex;flex-direction:column;gap:8px}
.msg{max-width:88%;padding:8px 11px;border-radius:var(--r);background:#f0f2f5;overflow-wrap:anywhere}
.msg[data-role=user]{align-self:flex-end;background:var(--p);color:var(--op)}
.msg[data-role=agent]{background:#e5f5ea}
.msg[data-role=user] .b,.msg[data-role=system] .b{white-space:pre-wrap}
.msg[data-role=system],.note{align-self:center;max-width:95%;background:none;color:#555;font-size:12px;text-align:center;padding:2px 8px}
.msg[data-pending]{opacity:.7}.err,.note.err{color:#b42318}
.who{font-size:11px;font-weight:600;opacity:.75}
.b>:first-child{margin-top:0}.b>:last-child{margin-bottom:0}
p,ul,ol,pre,blockquote,h3,h4,h5,h6{margin:0 0 6px}h3,h4,h5,h6{font-size:1em}
ul,ol{padding-left:20px}blockquote{border-left:3px solid #ccd;padding-left:8px;margin-left:0;color:#555}
pre{overflow-x:auto;padding:8px;border-radius:6px;background:#1f2937;color:#f3f4f6;white-space:pre}
code{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}:not(pre)>code{background:rgba(0,0,0,.07);padding:1px 4px;border-radius:4px}
a{color:inherit}
.chip,.typing{font-size:12px;color:#666;font-style:italic}.chip:empty{display:none}
.step{font-size:12px;color:#555}.step summary{cursor:pointer}
.step pre,.card pre{background:#f6f7f9;color:#333;white-space:pre-wrap;margin:4px 0 0}
.cites{font-size:12px;margin-top:6px;border-top:1px solid #dde;padding-top:4px}.cites ol{margin:2px 0 0;padding-left:18px}
.fb{display:flex;gap:4px;margin-top:4px}.fb button{border:0;background:none;color:#888;padding:2px}
.fb svg{width:16px;height:16px}.fb button+button svg{transform:scaleY(-1)}.fb [aria-pressed=true]{color:var(--p)}
.card{border:1px solid #d0d7de;border-radius:8px;padding:8px;margin-top:6px;background:var(--s);color:var(--os);display:flex;flex-direction:column;gap:6px}
.card[data-decision=approved] .st{color:#137333}
.acts,.sugg,.tools{display:flex;flex-wrap:wrap;gap:6px}.tools{padding:0 12px}.tools button{margin-top:6px}
.btn{border:1px solid var(--p);background:var(--s);color:var(--p);border-radius:16px;padding:4px 12px;font-size:13px}
.btn.pri{background:var(--p);color:var(--op)}
.link{border:0;background:none;color:inherit;text-decoration:underline;padding:0}
.compose{display:flex;gap:6px;align-items:flex-end;padding:8px;border-top:1px solid #e5e7eb}
textarea,input{flex:1;font:inherit;color:inherit;background:var(--s);border:1px solid #c9ced6;border-radius:8px;padding:7px 9px}
.compose textarea{resize:none;max-height:120px}
.compose button{border:0;border-radius:8px;background:var(--p);color:var(--op);padding:7px 9px;display:grid;place-items:center}
.contact label{font-size:12px;font-weight:600}[aria-invalid=true]{border-color:#b42318}.contact .err{font-size:12px}.err:empty{display:none}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:480px){:host(:not([data-position=inline])) .panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0}}
@media (prefers-reduced-motion:no-preference){.panel{animation:rtin .15s ease-out}}
@keyframes rtin{from{opacity:0;transform:translateY(8px)}}`;
  let sheet;

  class ChatbotWidget extends HTMLElement {
    connectedCallback() {
      if (!this.root) this.init();
      if (!this.awake) this.wake();
    }

    disconnectedCallback() {
      queueMicrotask(() => this.isConnected || this.stop());
    }

    init() {
      const a = (n) => this.getAttribute(n);
      this.server = ORIGIN;
      try {
        if (a('server')) this.server = new URL(a('server'), location.href).origin;
      } catch {}
      this.sc = a('signed-context') || null;
      this.bot = a('bot') || a('channel') || (this.sc ? null : 'default');
      let who = '';
      if (this.sc) {
        try {
          const body = JSON.parse(atob(this.sc.split('.')[0].replace(/-/g, '+').replace(/_/g, '/')));
          who = `${body.k || 'default'}/${body.c}:${body.u == null ? '' : body.u}`;
        } catch {}
      }
      this.key = `chatbot:${this.server}:${this.bot || ''}:${who}`;
      const saved = load(this.key);
      this.sid = a('session-id') || saved.sid || hex(16);
      this.cid = saved.cid || null;
      this.look = saved.look || {};
      this.inline = a('position') === 'inline';
      this.seq = 0;
      this.epoch = null;
      this.n = this.gen = this.attempt = 0;
      this.info = {};
      this.limits = {};
      this.hand = null;
      this.pend = new Map();
      this.outbox = new Map();
      this.byId = new Map();
      this.runs = new Map();
      this.cards = new Map();
      this.dirty = new Set();
      this.build();
      this.paintLook();
      this.save();
    }

    save() {
      keep(this.key, { sid: this.sid, cid: this.cid, look: this.look });
    }

    build() {
      const root = (this.root = this.attachShadow({ mode: 'open' }));
      if (!sheet) (sheet = new CSSStyleSheet()).replaceSync(STYLE);
      this.theme = new CSSStyleSheet();
      root.adoptedStyleSheets = [sheet, this.theme];
      const pos = this.getAttribute('position') || '';
      this.setAttribute('data-position', this.inline ? 'inline' : /left/.test(pos) ? 'left' : 'right');
      this.launcher = h(
        'button',
        { type: 'button', class: 'launcher', part: 'launcher', 'aria-label': 'Open chat', 'aria-expanded': 'false', 'aria-controls': 'panel', click: () => (this.panel.hidden ? this.open() : this.close()) },
        icon(ICON.chat),
      );
      this.logo = h('img', { alt: '', hidden: true });
      this.head = h('h2', { id: 'title' }, 'Chat');
      this.conn = h('div', { class: 'conn', role: 'status' });
      this.intro = h('div', { class: 'intro' });
      this.msgs = h('div', { class: 'msgs' });
      this.typingEl = h('div', { class: 'typing', hidden: true });
      this.log = h('div', { class: 'log', part: 'messages', tabindex: '0', 'aria-label': 'Conversation' }, this.intro, this.msgs, this.typingEl);
      this.banner = h('div', { class: 'banner', role: 'status', hidden: true });
      this.humanBtn = h('button', { type: 'button', class: 'btn', hidden: true, click: () => this.askHuman() }, 'Talk to a human');
      this.contactBtn = h('button', { type: 'button', class: 'btn', hidden: true, click: () => this.contact() }, 'Leave your contact details');
      this.input = h('textarea', {
        rows: '1',
        part: 'input',
        'aria-label': 'Your message',
        placeholder: 'Type your message…',
        input: () => this.typed(),
        keydown: (e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            this.form.requestSubmit();
          }
        },
      });
      this.form = h(
        'form',
        {
          class: 'compose',
          submit: (e) => {
            e.preventDefault();
            const text = this.input.value;
            if (this.submit(text)) {
              this.input.value = '';
              this.grow();
            }
          },
        },
        this.input,
        h('button', { type: 'submit', part: 'send-button', 'aria-label': 'Send message' }, icon(ICON.send)),
      );
      this.live = h('div', { class: 'sr', 'aria-live': 'polite' });
      this.panel = h(
        'section',
        {
          id: 'panel',
          class: 'panel',
          part: 'panel',
          role: this.inline ? 'region' : 'dialog',
          'aria-labelledby': 'title',
          hidden: !this.inline,
          keydown: (e) => {
            if (e.key === 'Escape' && !this.inline) {
              e.stopPropagation();
              this.close();
            }
          },
        },
        h('header', { part: 'header' }, this.logo, this.head, this.inline ? null : h('button', { type: 'button', class: 'x', 'aria-label': 'Close chat', click: () => this.close() }, '×')),
        this.conn,
        this.log,
        this.banner,
        h('div', { class: 'tools' }, this.humanBtn, this.contactBtn),
        this.form,
      );
      root.append(...(this.inline ? [] : [this.launcher]), this.panel, this.live);
    }

    paintLook() {
      const l = this.look;
      const title = this.getAttribute('heading') || this.getAttribute('title') || l.title || 'Chat';
      this.head.textContent = title;
      const c = l.color;
      this.theme.replaceSync(typeof c === 'string' && !/[;{}<\\]/.test(c) && CSS.supports('color', c) ? `:host{--rt-color:${c}}` : '');
      if (!this.getAttribute('position')) this.setAttribute('data-position', l.position === 'left' ? 'left' : 'right');
      const logo = typeof l.logo === 'string' && (/^data:image\/(png|gif|jpeg|webp);/.test(l.logo) ? l.logo : safeUrl(l.logo, this.server));
      this.logo.hidden = !logo;
      if (logo) this.logo.src = logo;
    }

    wake() {
      this.awake = true;
      this.stopped = false;
      this.net = (e) => (e.type === 'offline' ? this.drop() : ((this.attempt = 0), this.connect()));
      addEventListener('online', this.net);
      addEventListener('offline', this.net);
      this.beat = setInterval(() => {
        if (!this.ready) return;
        const idle = Date.now() - this.rx;
        if (idle > 45000) this.drop();
        else if (idle > 20000) this.put({ type: 'ping', id: 'ping' });
      }, 10000);
      this.start();
    }

    stop() {
      this.awake = false;
      this.stopped = true;
      clearTimeout(this.retryT);
      clearInterval(this.beat);
      removeEventListener('online', this.net);
      removeEventListener('offline', this.net);
      const ws = this.ws;
      this.ws = null;
      this.ready = false;
      if (ws) {
        ws.onclose = ws.onmessage = null;
        ws.close(1000);
      }
    }

    async start() {
      if (this.cid) {
        this.state('connecting');
        await this.history().catch(() => {});
      }
      this.connect();
    }

    open() {
      this.panel.hidden = false;
      this.launcher.setAttribute('aria-expanded', 'true');
      this.launcher.setAttribute('aria-label', 'Close chat');
      this.input.focus();
      this.bottom(true);
      this.connect();
    }

    close() {
      if (this.inline) return;
      this.panel.hidden = true;
      this.launcher.setAttribute('aria-expanded', 'false');
      this.launcher.setAttribute('aria-label', 'Open chat');
      this.launcher.focus();
    }

    state(s) {
      this.setAttribute('data-state', s);
      this.conn.hidden = s === 'ready';
      this.conn.textContent = s === 'connecting' ? 'Connecting…' : this.fatal || 'You are offline. Reconnecting…';
    }

    // -- the connection ----------------------------------------------------------------------

    connect() {
      clearTimeout(this.retryT);
      if (this.ws || this.stopped || this.fatal) return;
      this.state('connecting');
      const ws = (this.ws = new WebSocket(this.server.replace(/^http/, 'ws') + '/ws'));
      this.gen++;
      ws.onopen = () => this.hello();
      ws.onmessage = (e) => {
        this.rx = Date.now();
        let f;
        try {
          f = JSON.parse(e.data);
        } catch {
          return;
        }
        if (f && typeof f === 'object') this.frame(f);
      };
      ws.onclose = (e) => this.ws === ws && this.down(e.code);
    }

    hello() {
      const f = { type: 'hello', id: 'hello', session_id: this.sid };
      if (this.bot) f.bot = this.bot;
      if (this.sc) f.signed_context = this.sc;
      if (this.cid) {
        f.resume = { conversation_id: this.cid, after_seq: this.seq };
        if (this.epoch != null) f.resume.epoch = this.epoch;
      }
      this.put(f);
    }

    put(f) {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) return false;
      ws.send(JSON.stringify(f));
      return true;
    }

    // A command whose reply (ack or error) goes to cb; an error of its own when offline.
    request(f, cb) {
      f.id = `c${++this.n}`;
      this.pend.set(f.id, cb);
      if (!this.ready || !this.put(f)) {
        this.pend.delete(f.id);
        cb({ type: 'error', code: 'offline', message: 'You are offline; try again in a moment.' });
      }
    }

    drop() {
      const ws = this.ws;
      if (!ws) return;
      ws.onclose = ws.onmessage = null;
      ws.close();
      this.down(1006);
    }

    down(code) {
      this.ws = null;
      this.ready = false;
      this.typingOn = false;
      const pending = [...this.pend];
      this.pend.clear();
      for (const [id, cb] of pending) {
        if (!this.outbox.has(id)) cb({ type: 'error', code: 'offline', message: 'The connection was lost; try again.' });
      }
      if (this.stopped) return;
      this.state('offline');
      if (this.fatal || code === 1000 || code === 1009) return; // reconnects on the next send
      clearTimeout(this.retryT);
      if (!navigator.onLine) return; // the 'online' event reconnects
      const wait = code === 1013 ? (this.wait || 5) * 1000 : 0;
      const backoff = Math.min(30000, 500 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      this.retryT = setTimeout(() => this.connect(), Math.max(wait, backoff));
    }

    frame(f) {
      const t = f.type;
      if (t === 'welcome') return this.welcome(f);
      if (t === 'ack' || t === 'error' || t === 'pong') {
        if (t === 'error' && f.retry_after) this.wait = f.retry_after;
        if (f.id === 'hello' && t === 'error') return this.refused(f);
        const cb = this.pend.get(f.id);
        if (cb) this.pend.delete(f.id), cb(f);
        return;
      }
      if (t === 'history.reset') return this.reset(f);
      this.event(f);
    }

    refused(f) {
      if (f.code === 'conversation_not_found' && this.cid) {
        this.forget();
        return this.hello();
      }
      if (RETRY.has(f.code) || f.code === 'rate_limited') return this.ws.close(4000);
      this.fatal = /^envelope_expired$/.test(f.code)
        ? 'This chat session has expired: reload the page to continue.'
        : `The chat is unavailable (${f.code}).`;
      this.state('offline');
      this.ws.close(1000);
    }

    welcome(f) {
      this.ready = true;
      this.attempt = 0;
      this.rx = Date.now();
      const b = (this.info = f.bot || {});
      this.limits = f.limits || {};
      const w = b.widget_settings || {};
      this.look = { color: w.color, position: w.position, title: w.title || b.name, logo: w.logo };
      this.save();
      this.paintLook();
      this.intro.replaceChildren();
      if (b.welcome_message) {
        const el = h('div', { class: 'msg', 'data-role': 'welcome', part: 'message-assistant' }, h('div', { class: 'b' }, md(b.welcome_message)));
        this.intro.append(el);
      }
      const qs = b.suggested_questions || [];
      if (qs.length && !this.msgs.firstChild) {
        this.intro.append(h('div', { class: 'sugg', role: 'group', 'aria-label': 'Suggested questions' }, ...qs.map((q) => h('button', { type: 'button', class: 'btn', click: () => this.submit(q) }, q))));
      }
      this.setHand(this.hand);
      this.state('ready');
      this.pump();
    }

    // -- conversation events -----------------------------------------------------------------

    event(f) {
      if (!this.cid && this.starting) return void this.early.push(f);
      if (!this.cid || (f.conversation_id && f.conversation_id !== this.cid)) return;
      if (this.resetting) return void this.buf.push(f);
      if (f.seq != null) {
        if (f.seq <= this.seq) return; // already seen (resume overlap)
        this.seq = f.seq;
      }
      const agent = f.agent && f.agent.label;
      switch (f.type) {
        case 'message.created':
          // The offline message comes as a system message too: the banner already says it.
          if (f.message && f.message.role === 'system' && this.hand && f.message.content === this.offline) break;
          this.upsert(f.message, true);
          if (f.message && f.message.role === 'agent') this.typing(false);
          break;
        case 'run.started':
          this.run(f.run_id);
          break;
        case 'run.status':
          this.run(f.run_id).chip.textContent = STAGES[f.stage] || '';
          break;
        case 'run.step':
          this.step(this.run(f.run_id), f);
          break;
        case 'run.token': {
          const r = this.run(f.run_id);
          r.text += f.delta || '';
          r.chip.textContent = '';
          if (r.shown) this.later(r);
          else this.paint(r); // the first words at once, then once per frame
          break;
        }
        case 'run.completed':
          this.done(f.run_id, f.message);
          break;
        case 'run.failed':
          this.done(f.run_id, f.partial, f.message || 'Sorry, something went wrong.');
          break;
        case 'run.cancelled':
          this.done(f.run_id, f.message);
          break;
        case 'confirmation.requested':
          this.card(f);
          break;
        case 'confirmation.resolved':
          this.resolved(f);
          break;
        case 'handoff.requested': {
          const b = this.info;
          this.setHand({ s: 'pending', pos: f.queue_position, online: f.agents_online });
          if (f.agents_online === false && b.contact_form_enabled && /^(no_agent|both)$/.test(b.contact_form_trigger || 'both')) this.contact();
          break;
        }
        case 'handoff.accepted':
          this.setHand({ s: 'human', label: agent });
          break;
        case 'handoff.transferred':
          this.setHand(f.agent ? { s: 'human', label: agent } : { s: 'pending', pos: f.queue_position, online: f.reason !== 'agent_offline' });
          break;
        case 'handoff.released':
          this.setHand(null);
          break;
        case 'conversation.updated':
          if (f.status === 'with_human') this.setHand({ s: 'human', label: agent || (this.hand && this.hand.label) });
          else if (f.status === 'pending_human') this.hand || this.setHand({ s: 'pending' });
          else this.setHand(null);
          if (f.status === 'closed') this.note('The conversation was closed.');
          break;
        case 'typing':
          if (f.who === 'agent') this.typing(f.on !== false, agent);
          break;
        case 'notice':
          this.note(f.message);
      }
    }

    async reset(f) {
      if (f.conversation_id !== this.cid) return;
      this.resetting = true;
      this.buf = [];
      try {
        await this.history();
      } catch {
        if (f.epoch != null) this.epoch = f.epoch;
      }
      this.resetting = false;
      for (const e of this.buf.splice(0)) this.event(e);
    }

    async history() {
      const q = new URLSearchParams({ session_id: this.sid });
      if (this.sc) q.set('signed_context', this.sc);
      const res = await fetch(`${this.server}/realtime/v1/conversations/${encodeURIComponent(this.cid)}/messages?${q}`, { cache: 'no-store' });
      if (res.status === 404 || res.status === 403) return this.forget();
      if (!res.ok) throw new Error(`history: ${res.status}`);
      this.render(await res.json());
    }

    render(hist) {
      this.msgs.replaceChildren();
      for (const m of [this.byId, this.runs, this.cards, this.dirty]) m.clear();
      for (const m of hist.messages || []) this.upsert(m);
      const ar = hist.active_run;
      if (ar) {
        const r = this.run(ar.run_id);
        r.text = ar.content || '';
        this.paint(r);
      }
      const pc = hist.pending_confirmation;
      if (pc && pc.status === 'pending') this.card(pc);
      for (const o of this.outbox.values()) this.msgs.append(o.el);
      this.epoch = hist.epoch;
      this.seq = hist.last_seq || 0;
      const st = hist.conversation && hist.conversation.status;
      this.setHand(st === 'pending_human' ? { s: 'pending' } : st === 'with_human' ? { s: 'human' } : null);
      this.bottom(true);
    }

    forget() {
      this.cid = null;
      this.seq = 0;
      this.epoch = null;
      this.msgs.replaceChildren();
      for (const o of this.outbox.values()) this.msgs.append(o.el);
      this.setHand(null);
      this.save();
    }

    // -- messages ----------------------------------------------------------------------------

    bubble(role, label) {
      const b = h('div', { class: 'b' });
      const el = h('div', { class: 'msg', 'data-role': role, part: `message-${role}` }, label ? h('div', { class: 'who' }, label) : null, b);
      el.b = b;
      this.msgs.append(el);
      this.intro.querySelector('.sugg')?.remove();
      this.tools();
      return el;
    }

    upsert(m, live, el) {
      if (!m || !m.id) return el;
      const role = m.role || 'assistant';
      el = this.byId.get(m.id) || el || this.outbox.get(m.client_id)?.el || (m.run_id && this.runs.get(m.run_id)?.el);
      const label = role === 'agent' ? (m.agent && m.agent.label) || this.info.handoff_agent_label || 'Agent' : null;
      if (!el) el = this.bubble(role, label);
      el.setAttribute('data-message-id', m.id);
      this.byId.set(m.id, el);
      this.tools(); // an answer may bring the contact button ('after_response')
      if (role === 'user' || role === 'system') el.b.textContent = m.content || '';
      else el.b.replaceChildren(md(m.content));
      if (m.status) el.setAttribute('data-status', m.status);
      for (const x of el.querySelectorAll(':scope>.cites,:scope>.fb')) x.remove();
      if (role === 'assistant') {
        const seen = new Set();
        const items = [];
        for (const c of m.citations || []) {
          const url = safeUrl(c.url, this.server);
          const k = url || c.title;
          if (!k || seen.has(k)) continue;
          seen.add(k);
          items.push(h('li', Number.isInteger(c.marker) ? { value: c.marker } : 0, url ? link(url, c.title || url) : c.title));
        }
        if (items.length) el.append(h('div', { class: 'cites' }, 'Sources', h('ol', 0, ...items)));
        el.append(this.votes(m.id));
      }
      if (live && role !== 'user') this.announce(`${label || (role === 'assistant' ? this.info.name || 'Assistant' : '')}: ${m.content || ''}`);
      this.bottom(live);
      return el;
    }

    run(id) {
      let r = this.runs.get(id);
      if (r) return r;
      const el = this.bubble('assistant');
      el.setAttribute('data-run-id', id);
      el.setAttribute('data-streaming', 'true');
      r = { el, text: '', steps: h('div'), chip: h('div', { class: 'chip', part: 'tool-status', role: 'status' }), cards: h('div'), st: new Map() };
      el.b.before(r.steps);
      el.b.after(r.chip, r.cards);
      this.runs.set(id, r);
      this.bottom(true);
      return r;
    }

    paint(r) {
      r.el.b.replaceChildren(md(r.text));
      r.shown = true;
      this.bottom();
    }

    later(r) {
      this.dirty.add(r);
      this.raf ||= requestAnimationFrame(() => {
        this.raf = 0;
        for (const x of this.dirty) this.paint(x);
        this.dirty.clear();
      });
    }

    done(id, m, err) {
      const r = this.runs.get(id);
      this.runs.delete(id);
      let el = r && r.el;
      if (r) this.dirty.delete(r);
      if (m) el = this.upsert(m, true, el);
      else if (r && !r.text && !r.steps.firstChild && !r.cards.firstChild) (el.remove(), (el = null));
      else if (r) this.paint(r);
      if (r) r.chip.textContent = '';
      if (el) el.removeAttribute('data-streaming');
      if (err) (el || this.msgs).append(h('div', { class: 'note err', role: 'alert' }, err));
    }

    step(r, f) {
      const key = f.step ?? f.tool_call_id;
      let d = r.st.get(key);
      if (!d) {
        d = h('details', { class: 'step' }, h('summary'), h('pre'));
        r.st.set(key, d);
        r.steps.append(d);
      }
      const seen = f.observation != null;
      d.firstChild.textContent = `${seen ? '✓' : '…'} ${human(f.action)}`;
      d.lastChild.textContent = json(f.params) + (seen ? `\n→ ${f.observation}` : '');
    }

    card(f) {
      const id = f.tool_call_id;
      if (this.cards.has(id)) return;
      const decide = (d) => {
        for (const b of acts.children) b.disabled = true;
        st.textContent = '…';
        this.request({ type: 'confirmation.resolve', conversation_id: this.cid, tool_call_id: id, decision: d }, (x) => {
          if (x.type !== 'error') return void (st.textContent = d === 'approve' ? 'Approved' : 'Rejected');
          st.textContent = x.message || x.code;
          if (/not_pending|expired|not_found/.test(x.code)) acts.remove();
          else for (const b of acts.children) b.disabled = false;
        });
      };
      const acts = h(
        'div',
        { class: 'acts' },
        h('button', { type: 'button', class: 'btn pri', click: () => decide('approve') }, 'Approve'),
        h('button', { type: 'button', class: 'btn', click: () => decide('reject') }, 'Reject'),
      );
      const st = h('div', { class: 'st', role: 'status' });
      const c = h('div', { class: 'card', role: 'group', 'aria-label': 'Confirmation needed', 'data-tool-call-id': id }, h('strong', 0, `Confirm: ${human(f.tool)}`), h('pre', 0, json(f.params)), acts, st);
      c.acts = acts;
      c.st = st;
      const r = f.run_id && this.runs.get(f.run_id);
      (r ? r.cards : this.msgs).append(c);
      this.cards.set(id, c);
      this.announce(`Confirmation needed: ${human(f.tool)}`);
      this.bottom(true);
    }

    resolved(f) {
      const c = this.cards.get(f.tool_call_id);
      if (!c) return;
      c.acts.remove();
      c.setAttribute('data-decision', f.decision);
      c.st.textContent = DECIDED[f.decision] || f.decision;
    }

    votes(mid) {
      const box = h('div', { class: 'fb', role: 'group', 'aria-label': 'Was this answer helpful?' });
      const set = (v) => {
        box.value = v;
        for (const b of box.children) b.setAttribute('aria-pressed', String(b.value === v));
      };
      const vote = (v) => {
        const old = box.value || null;
        const next = old === v ? null : v; // pressing it again takes the vote back
        set(next);
        this.request({ type: 'feedback', conversation_id: this.cid, message_id: mid, value: next }, (x) => x.type === 'error' && set(old));
      };
      for (const [v, label] of [['positive', 'Helpful'], ['negative', 'Not helpful']]) {
        const b = h('button', { type: 'button', 'aria-label': label, 'aria-pressed': 'false', click: () => vote(v) }, icon(ICON.thumb));
        b.value = v;
        box.append(b);
      }
      return box;
    }

    // -- sending -----------------------------------------------------------------------------

    submit(text) {
      text = String(text || '').trim();
      if (!text) return false;
      const max = this.limits.max_message_chars || 10000;
      if (text.length > max) return this.note(`Your message is too long (at most ${max} characters).`, 'err'), false;
      this.untype();
      const el = this.bubble('user');
      el.b.textContent = text;
      el.setAttribute('data-pending', 'true');
      this.outbox.set(`m-${hex(10)}`, { text, el });
      this.bottom(true);
      this.connect();
      this.pump();
      return true;
    }

    // Sends what waits, in order; the same id again after a reconnect (the server dedupes).
    // Without a conversation yet, one at a time: the first ack names the conversation.
    pump() {
      if (!this.ready || (!this.cid && this.starting)) return;
      for (const [id, o] of this.outbox) {
        if (o.gen !== this.gen) {
          o.gen = this.gen;
          const f = { type: 'message.send', id, content: o.text };
          if (this.cid) f.conversation_id = this.cid;
          this.pend.set(id, (x) => this.sent(id, x));
          this.put(f);
        }
        if (!this.cid) break;
      }
    }

    sent(id, x) {
      const o = this.outbox.get(id);
      if (!o) return;
      if (x.type === 'error' && (RETRY.has(x.code) || x.code === 'rate_limited')) {
        o.gen = 0; // nothing was stored: the same frame again, a little later
        return void setTimeout(() => this.pump(), 1000 * (x.retry_after || 2));
      }
      this.outbox.delete(id);
      o.el.removeAttribute('data-pending');
      if (x.type === 'error') {
        o.el.setAttribute('data-failed', 'true');
        o.el.after(h('div', { class: 'note err', role: 'alert' }, x.message || x.code));
      } else {
        o.el.setAttribute('data-message-id', x.message_id);
        this.byId.set(x.message_id, o.el);
        if (this.adopt(x) && x.duplicate) this.put({ type: 'subscribe', conversation_id: this.cid, after_seq: 0 });
      }
      this.pump();
    }

    // The conversation an ack names, when it is new: kept like one started by a message.
    adopt(x) {
      const cid = x.conversation_id;
      if (!cid || cid === this.cid) return false;
      this.cid = cid;
      this.seq = 0;
      this.epoch = x.epoch ?? null;
      this.save();
      this.tools();
      return true;
    }

    // handoff.request and contact.submit: without a conversation yet, the server starts one
    // and the ack names it; its events may come before the ack (they wait in early), or
    // without one when the connection dropped (they name it then).
    begin(f, cb) {
      const cid = (f.conversation_id = this.cid);
      if (!cid) (delete f.conversation_id, (this.starting = true), (this.early = []));
      this.tools();
      this.request(f, (x) => {
        if (!cid) {
          this.starting = false;
          this.adopt(x.conversation_id ? x : this.early[0] || x); // no ack: the connection dropped
          for (const e of this.early.splice(0)) this.event(e);
          this.pump();
        }
        cb(x);
      });
    }

    typed() {
      this.grow();
      if (!this.cid || !this.ready) return;
      const now = Date.now();
      if (!this.typingOn || now - this.typedAt > 5000) {
        this.typingOn = this.put({ type: 'typing', conversation_id: this.cid, on: true });
        this.typedAt = now;
      }
      clearTimeout(this.typeT);
      this.typeT = setTimeout(() => this.untype(), 3000);
    }

    untype() {
      clearTimeout(this.typeT);
      if (this.typingOn) this.put({ type: 'typing', conversation_id: this.cid, on: false });
      this.typingOn = false;
    }

    grow() {
      const t = this.input;
      t.style.height = 'auto'; // CSSOM, which a strict CSP allows
      t.style.height = `${Math.min(t.scrollHeight + 2, 120)}px`;
    }

    // -- people ------------------------------------------------------------------------------

    tools() {
      const b = this.info;
      // Not while a first message or request is on its way (it starts the conversation).
      this.humanBtn.hidden = (!this.cid && (this.starting || this.outbox.size)) || !!this.hand || !(b.handoff_enabled && /^(button|both)$/.test(b.handoff_trigger));
      // 'after_response' (the default) waits for an answer.
      const shown = b.contact_form_button_display === 'always' || this.msgs.querySelector('[data-role=assistant][data-message-id],[data-role=agent]');
      this.contactBtn.hidden = !shown || !!this.cform || this.contacted || !(b.contact_form_enabled && /^(button|both)$/.test(b.contact_form_trigger || 'both'));
    }

    setHand(x) {
      this.hand = x;
      const b = this.info;
      const ban = this.banner;
      ban.replaceChildren();
      ban.hidden = !x;
      if (x) {
        let t;
        if (x.s === 'human') t = `You are chatting with ${x.label || b.handoff_agent_label || 'a person from our team'}.`;
        else {
          const off = x.online === false || (x.online == null && b.handoff_available === false);
          this.offline = b.handoff_offline_message || OFFLINE;
          t = off ? this.offline : 'Waiting for a person from our team…';
          if (x.pos) t += ` You are number ${x.pos} in the queue.`;
        }
        ban.append(t);
        if (x.s === 'pending') ban.append(' ', h('button', { type: 'button', class: 'link', click: () => this.request({ type: 'handoff.cancel', conversation_id: this.cid }, () => {}) }, 'Cancel'));
      }
      this.tools();
    }

    askHuman() {
      this.begin({ type: 'handoff.request' }, (x) => x.type === 'error' && this.note(x.message || x.code, 'err'));
    }

    typing(on, label) {
      clearTimeout(this.typingT);
      this.typingEl.hidden = !on;
      this.typingEl.textContent = `${label || this.info.handoff_agent_label || 'Agent'} is typing…`;
      if (on) {
        this.typingT = setTimeout(() => this.typing(false), 8000);
        this.bottom();
      }
    }

    contact() {
      if (this.cform || this.contacted) return;
      const given = this.info.contact_form_fields;
      const fields = Array.isArray(given) && given.length ? given : FIELDS;
      const err = h('div', { class: 'err', role: 'alert' });
      const send = h('button', { type: 'submit', class: 'btn pri' }, 'Send');
      const close = (msg) => {
        form.remove();
        this.cform = null;
        this.tools();
        if (msg) this.note(msg), this.announce(msg);
        this.input.focus();
      };
      const form = h('form', {
        class: 'card contact',
        'aria-label': 'Contact form',
        submit: (e) => {
          e.preventDefault();
          const values = {};
          for (const f of fields) values[f.name] = form.elements.namedItem(f.name).value.trim();
          send.disabled = true;
          err.textContent = '';
          this.begin({ type: 'contact.submit', fields: values }, (x) => {
            send.disabled = false;
            if (x.type !== 'error') return (this.contacted = true), close(this.info.contact_form_success_message || THANKS);
            // The error goes under the field at fault (the error's field), else under the form.
            const input = x.field && form.elements.namedItem(x.field);
            (input ? input.err : err).textContent = x.message || x.code;
            if (input) input.setAttribute('aria-invalid', 'true'), input.focus();
          });
        },
      });
      form.append(h('strong', 0, 'Leave us your details'));
      for (const f of fields) {
        const id = `cf-${f.name}`;
        const fix = (e) => (e.target.removeAttribute('aria-invalid'), (e.target.err.textContent = ''));
        const attrs = { id, name: f.name, required: !!f.required, 'aria-describedby': `${id}-e`, input: fix };
        const type = /^(email|tel|url|number)$/.test(f.type) ? f.type : 'text';
        const input = f.type === 'textarea' ? h('textarea', { ...attrs, rows: '3' }) : h('input', { ...attrs, type });
        input.err = h('div', { id: `${id}-e`, class: 'err', role: 'alert' });
        form.append(h('label', { for: id }, f.label || f.name), input, input.err);
      }
      form.append(err, h('div', { class: 'acts' }, send, h('button', { type: 'button', class: 'btn', click: () => close() }, 'Cancel')));
      this.cform = form;
      this.tools();
      this.msgs.append(form);
      this.bottom(true);
      form.querySelector('input,textarea').focus();
    }

    // -- small things ------------------------------------------------------------------------

    note(text, cls) {
      this.msgs.append(h('div', { class: `note ${cls || ''}`, role: cls ? 'alert' : null }, text));
      this.bottom(true);
    }

    announce(text) {
      this.live.textContent = String(text).slice(0, 600);
    }

    bottom(force) {
      const l = this.log;
      if (force || l.scrollHeight - l.scrollTop - l.clientHeight < 120) l.scrollTop = l.scrollHeight;
    }
  }

  customElements.define(TAG, ChatbotWidget);

  const auto = () => {
    const d = SCRIPT && SCRIPT.dataset;
    if (!d || !d.bot || document.querySelector(TAG)) return;
    const el = document.createElement(TAG);
    el.setAttribute('bot', d.bot);
    for (const [k, a] of [['session', 'session-id'], ['position', 'position'], ['title', 'heading'], ['signedContext', 'signed-context']]) {
      if (d[k]) el.setAttribute(a, d[k]);
    }
    document.body.append(el);
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', auto);
  else auto();
})();
