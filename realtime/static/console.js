// The agent console: a human agent's live view of its team's conversations, over the
// `/ws/console` protocol (docs/protocol.md, "The agent console"). A plain ES module: no
// framework, no build step. The page's Content-Security-Policy allows no inline script or
// style, so the page is built here with createElement, and everything a visitor or a model
// wrote goes into it as text (textContent / text nodes), never as HTML.

const BASE_TITLE = "Agent console";
const STORAGE_KEY = "realtime.console";
const LIST_REFRESH_MS = 30000; // conversations.list, a safety net: conversation.assigned is live
const LIVE_REFRESH_MS = 5000; // conversations.live, while the page is visible
const LIVE_MINUTES = 30; // how far back the live list goes
const LIVE_SOON_MS = 300; // a refresh that events ask for waits this long for others
const LOGOUT_TIMEOUT_MS = 4000; // signing out does not wait longer for the server
const TYPING_IDLE_MS = 3000; // our "typing" goes off after this long without a keystroke
const TYPING_REFRESH_MS = 5000; // and is sent again while we keep typing
const REMOTE_TYPING_TTL_MS = 8000; // someone else's indicator fades if no "off" arrives
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 30000;
const MAX_SAVED_CONTEXTS = 40;

const STATUS_TEXT = {
  bot: "With the bot",
  pending_human: "Waiting in the queue",
  with_human: "With a person",
  closed: "Closed",
};
const REASON_TEXT = {
  button: "asked for a person",
  message: "asked for a person in a message",
  model: "the bot asked for a person",
  auto: "the bot could not answer",
};
const ERROR_TEXT = {
  already_claimed: "Another agent claimed this conversation first.",
  already_yours: "This conversation is already yours.",
  capacity_reached: "No room: that would be more conversations than allowed at once.",
  not_queued: "This conversation is not waiting for a person any more.",
  conversation_not_found: "There is no such conversation in your team.",
  not_yours: "This conversation is not yours (any more).",
  agent_not_found: "That agent does not exist any more.",
  too_many_subscriptions: "You follow too many conversations: stop watching some first.",
  forbidden: "This bot lets only the visitor confirm its actions.",
  unauthorized: "Your session has ended: sign in again.",
  confirmation_not_pending: "That action was already decided.",
  confirmation_not_found: "That action is not waiting any more.",
  confirmation_expired: "That action waited too long and expired.",
  content_too_long: "The message is too long.",
  rate_limited: "Too many messages: wait a moment.",
  disconnected: "Not connected right now: try again in a moment.",
  shutting_down: "The server is restarting: try again in a moment.",
  internal_error: "The server failed: try again.",
};

class CommandError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

function describe(error) {
  if (error instanceof CommandError) return ERROR_TEXT[error.code] || error.message;
  return String(error?.message || error);
}

// -- DOM helpers ----------------------------------------------------------------------------

/** An element: `props` are attributes (`class`, `text`, `dataset`, `on<event>` handlers,
 * booleans); children are nodes or strings (strings become text nodes, never markup). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "hidden") el.hidden = true;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) el.append(child);
  }
  return el;
}

function setText(el, text) {
  const value = text == null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

/** Make `list`'s children match `items` (keyed by `data-key`), reusing existing elements so
 * that focus and scroll positions survive updates. */
function reconcile(list, items, keyOf, build, update) {
  const existing = new Map();
  for (const child of list.children) existing.set(child.dataset.key, child);
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = build(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== el) list.insertBefore(el, expected);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

function timeOf(iso) {
  const t = Date.parse(iso ?? "");
  return Number.isFinite(t) ? t : Date.now();
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function clockTime(ms) {
  return clock.format(new Date(ms));
}

function since(ms) {
  const minutes = Math.floor((Date.now() - ms) / 60000);
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${minutes % 60} min`;
}

function shortId(id) {
  return String(id).slice(0, 8);
}

function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// -- state ----------------------------------------------------------------------------------

const state = {
  phase: "signed-out", // signed-out | connecting | ready (the root's data-state)
  auth: null, // {token, expires_at, agent}
  agent: null, // this agent, from welcome
  presence: "online",
  team: new Map(), // agent id -> {label, name, status}, from welcome's agents_info and presence
  labels: new Map(), // id -> label, as events name agents
  queue: new Map(), // conversation id -> queue item
  fresh: new Set(), // queue items that arrived since the last look
  handed: new Map(), // conversation id -> who transferred it to us, until we look at it
  live: new Map(), // conversation id -> {conversation, active_run}, from conversations.live
  liveLoaded: false,
  convs: new Map(), // conversation id -> Conv (the ones we follow or list)
  watched: new Set(), // conversation ids the agent chose to watch
  contexts: {}, // conversation id -> handoff.context packet for us
  openId: null,
  connection: "", // what the header says about the link
  signInError: "",
};

function isMine(c) {
  return Boolean(c && state.agent && c.status === "with_human" && c.agentId === state.agent.id);
}

function labelOf(agentId) {
  if (state.agent && agentId === state.agent.id) return state.agent.label || "You";
  return state.team.get(agentId)?.label || state.labels.get(agentId) || `Agent ${shortId(agentId)}`;
}

/** How the console names a colleague to the agent: their full name, else their label. */
function nameOf(agentId) {
  return state.team.get(agentId)?.name || labelOf(agentId);
}

function learnAgent(agent) {
  if (agent && agent.id && agent.label) state.labels.set(agent.id, agent.label);
}

/** The team from welcome: `agents_info` (labels, names, presence), else the bare `agents`. */
function learnTeam(frame) {
  const team = new Map();
  const info = frame.agents_info && typeof frame.agents_info === "object" ? frame.agents_info : {};
  for (const [id, agent] of Object.entries(info)) {
    if (!agent || typeof agent !== "object") continue;
    team.set(id, { label: agent.label || "", name: agent.name || "", status: agent.status });
  }
  for (const [id, status] of Object.entries(frame.agents || {})) {
    const known = team.get(id);
    if (known) known.status = status;
    else team.set(id, { label: "", name: "", status });
  }
  state.team = team;
}

function conversation(cid) {
  let c = state.convs.get(cid);
  if (!c) {
    c = {
      id: cid,
      title: null,
      status: null,
      agentId: null,
      items: new Map(), // key -> {kind: message | note | step, time, n, v, ...}
      order: 0,
      lastSeq: 0,
      epoch: null,
      run: null, // {id, content, stage}
      pending: null, // the pending write, as history / confirmation.requested give it
      pendingNote: "",
      pendingBusy: false,
      unread: 0,
      visitorTypingAt: 0,
      otherTyping: null, // {label, at}
      followed: false, // subscribed on the current connection
      following: null, // a watch in flight
      loaded: false,
      outgoing: new Map(), // our messages on their way: key -> {content, time, messageId}
      draft: "",
    };
    state.convs.set(cid, c);
  }
  return c;
}

function titleOf(c) {
  const wire = state.queue.get(c.id)?.conversation || state.live.get(c.id)?.conversation;
  return c.title || wire?.title || `Conversation ${shortId(c.id)}`;
}

function putItem(c, key, kind, time, data) {
  const old = c.items.get(key);
  c.items.set(key, {
    ...data,
    key,
    kind,
    time: old ? old.time : time,
    n: old ? old.n : ++c.order,
    v: (old ? old.v : 0) + 1,
  });
  return !old;
}

function addMessage(c, message) {
  if (!message || !message.id) return false;
  learnAgent(message.agent);
  for (const [key, out] of c.outgoing) {
    if (out.messageId === message.id) c.outgoing.delete(key);
  }
  return putItem(c, `m:${message.id}`, "message", timeOf(message.created_at), { message });
}

let localSerial = 0;

function addNote(c, frame, text) {
  const key = frame && typeof frame.seq === "number" ? `n:${frame.seq}` : `n:l${++localSerial}`;
  putItem(c, key, "note", frame?.ts ?? Date.now(), { text });
}

function applyHistory(c, history) {
  const wire = history.conversation || {};
  if (wire.title) c.title = wire.title;
  if (wire.status) c.status = wire.status;
  c.agentId = wire.agent_id ?? null;
  for (const [key, item] of c.items) {
    if (item.kind === "message") c.items.delete(key);
  }
  for (const message of history.messages || []) addMessage(c, message);
  c.lastSeq = history.last_seq ?? 0;
  c.epoch = history.epoch ?? null;
  const active = history.active_run;
  c.run = active ? { id: active.run_id, content: active.content || "", stage: null } : null;
  c.pending = history.pending_confirmation || null;
  c.loaded = true;
}

// -- session storage ------------------------------------------------------------------------

function loadSaved() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function persist() {
  try {
    if (!state.auth) {
      sessionStorage.removeItem(STORAGE_KEY);
      return;
    }
    const ids = Object.keys(state.contexts);
    for (const cid of ids.slice(0, Math.max(0, ids.length - MAX_SAVED_CONTEXTS))) {
      delete state.contexts[cid];
    }
    sessionStorage.setItem(
      STORAGE_KEY,
      JSON.stringify({
        auth: state.auth,
        open: state.openId,
        watched: [...state.watched],
        contexts: state.contexts,
      }),
    );
  } catch {
    // storage full or disabled: the console still works, it just forgets on reload
  }
}

// -- the WebSocket --------------------------------------------------------------------------

let socket = null;
let nextId = 1;
const inflight = new Map(); // command id -> {resolve, reject}
let retries = 0;
let retryTimer = null;
let retryAt = 0;
let listTimer = null;
let liveTimer = null;
let liveSoonTimer = null;
let liveBusy = false;

function request(type, fields = {}) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      reject(new CommandError("disconnected"));
      return;
    }
    const id = `c${nextId++}`;
    inflight.set(id, { resolve, reject });
    socket.send(JSON.stringify({ type, id, ...fields }));
  });
}

/** A command whose reply nobody waits for (typing). */
function tell(type, fields) {
  if (socket && socket.readyState === WebSocket.OPEN && state.phase === "ready") {
    socket.send(JSON.stringify({ type, ...fields }));
  }
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (!state.auth) return;
  setPhase("connecting");
  state.connection = "Connecting…";
  changed();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws/console`);
  socket = ws;
  ws.addEventListener("open", () => {
    if (socket !== ws) return;
    request("hello", { token: state.auth.token }).then(welcomed, (error) => {
      if (socket !== ws) return;
      if (error.code === "unauthorized") signOut("Your session has expired: sign in again.");
    });
  });
  ws.addEventListener("message", (event) => {
    if (socket === ws) receive(event.data);
  });
  ws.addEventListener("close", (event) => {
    if (socket === ws) disconnected(event);
  });
}

function disconnected(event) {
  socket = null;
  for (const { reject } of inflight.values()) reject(new CommandError("disconnected"));
  inflight.clear();
  stopTimers();
  stopTyping(false);
  for (const c of state.convs.values()) {
    c.followed = false;
    c.following = null;
    c.visitorTypingAt = 0;
    c.otherTyping = null;
  }
  if (!state.auth) return;
  setPhase("connecting");
  let delay = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** retries);
  delay = Math.round(delay * (0.7 + Math.random() * 0.6));
  if (event.code === 1013) delay = Math.max(delay, 5000); // too many connections: wait
  retries += 1;
  retryAt = Date.now() + delay;
  retryTimer = setTimeout(connect, delay);
  updateRetryText();
}

function updateRetryText() {
  if (!retryTimer) return;
  const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  state.connection = seconds ? `Connection lost: retrying in ${seconds} s` : "Reconnecting…";
  changed();
}

function receive(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return;
  }
  if (!frame || typeof frame !== "object") return;
  const kind = frame.type;
  if (frame.id != null && ["ack", "error", "welcome", "pong"].includes(kind)) {
    const waiting = inflight.get(String(frame.id));
    if (waiting) {
      inflight.delete(String(frame.id));
      if (kind === "error") waiting.reject(new CommandError(frame.code, frame.message));
      else waiting.resolve(frame);
      return;
    }
  }
  switch (kind) {
    case "error":
      toast(ERROR_TEXT[frame.code] || frame.message || frame.code, "error");
      return;
    case "queue.added":
      queueAdded(frame.item);
      return;
    case "queue.removed":
      state.queue.delete(frame.conversation_id);
      state.fresh.delete(frame.conversation_id);
      // Withdrawn or timed out: back with the bot, so on the live list again.
      if (frame.reason !== "claimed") refreshLiveSoon();
      changed();
      return;
    case "presence.updated":
      presenceUpdated(frame.agent_id, frame.status, frame.label);
      return;
    case "conversation.assigned":
      conversationAssigned(frame);
      return;
    case "history.reset":
      historyReset(frame.conversation_id);
      return;
    default:
      if (typeof frame.conversation_id === "string") conversationEvent(frame);
  }
}

async function welcomed(frame) {
  retries = 0;
  state.agent = frame.agent;
  learnAgent(frame.agent);
  if (state.auth) state.auth.agent = frame.agent;
  state.presence = frame.presence || "online";
  learnTeam(frame);
  state.connection = "";
  setPhase("ready");
  persist();
  changed();
  try {
    const queued = await request("queue.subscribe");
    state.queue = new Map((queued.queue || []).map((item) => [item.conversation.id, item]));
    changed();
  } catch (error) {
    if (error.code !== "disconnected") toast(describe(error), "error");
  }
  resumeFollowing();
  refreshLive();
  await refreshMine();
  if (state.phase !== "ready") return; // the link dropped meanwhile
  stopTimers();
  listTimer = setInterval(refreshMine, LIST_REFRESH_MS);
  liveTimer = setInterval(refreshLive, LIVE_REFRESH_MS);
}

function stopTimers() {
  clearInterval(listTimer);
  clearInterval(liveTimer);
  clearTimeout(liveSoonTimer);
  listTimer = liveTimer = liveSoonTimer = null;
}

/** Follow again, after a reconnect or a reload, what we followed before. */
function resumeFollowing() {
  for (const cid of state.watched) conversation(cid);
  if (state.openId) conversation(state.openId);
  for (const c of [...state.convs.values()]) {
    if (c.followed || c.following || !wanted(c)) continue;
    if (c.loaded) {
      // Resume: the events after the last one we applied, with no gap (or a history.reset).
      const fields = { conversation_id: c.id, after_seq: c.lastSeq };
      if (c.epoch != null) fields.epoch = c.epoch;
      const done = request("subscribe", fields).then(() => {
        c.followed = true;
      });
      track(c, done).catch((error) => dropIfGone(c, error));
    } else {
      follow(c).catch((error) => dropIfGone(c, error));
    }
  }
}

function dropIfGone(c, error) {
  if (error.code === "conversation_not_found") {
    forget(c);
    toast(`Conversation ${shortId(c.id)}: ${describe(error)}`, "error");
  }
}

function forget(c) {
  state.convs.delete(c.id);
  state.watched.delete(c.id);
  delete state.contexts[c.id];
  if (state.openId === c.id) state.openId = null;
  persist();
  changed();
}

/** Watch (or claim / take over) a conversation: its history, then its live events. */
function follow(c, action = "watch") {
  if (action === "watch" && c.following) return c.following;
  const done = request(`conversation.${action}`, { conversation_id: c.id }).then((ack) => {
    applyHistory(c, ack.history || {});
    ackContext(c, ack);
    c.followed = true;
    changed();
    return ack;
  });
  return track(c, done);
}

/** Remember that `c` is being (re)followed, so that nothing forgets it meanwhile. */
function track(c, promise) {
  c.following = promise;
  const settled = () => {
    if (c.following === promise) c.following = null;
  };
  promise.then(settled, settled);
  return promise;
}

function historyReset(cid) {
  const c = state.convs.get(cid);
  if (!c || !wanted(c)) return;
  follow(c).catch((error) => dropIfGone(c, error));
}

/** Whether the console should follow `c` (it owns it, watches it, or has it open). */
function wanted(c) {
  return isMine(c) || state.watched.has(c.id) || state.openId === c.id;
}

/** Stop following what nobody looks at any more. */
function tidy() {
  for (const c of [...state.convs.values()]) {
    if (wanted(c)) continue;
    if (c.followed) request("conversation.unwatch", { conversation_id: c.id }).catch(() => {});
    if (!c.following) state.convs.delete(c.id);
  }
}

async function refreshMine() {
  if (state.phase !== "ready") return;
  let ack;
  try {
    ack = await request("conversations.list");
  } catch {
    return;
  }
  for (const { conversation: wire, unread } of ack.conversations || []) {
    const c = conversation(wire.id);
    if (wire.title) c.title = wire.title;
    if (!c.followed) {
      c.status = wire.status;
      c.agentId = wire.agent_id;
    }
    if (c.id !== state.openId || document.hidden) c.unread = unread || 0;
    if (!c.followed && !c.following) {
      follow(c).catch((error) => dropIfGone(c, error));
    }
  }
  changed();
}

/** The tenant's conversations with the bot that moved lately (what the agent may watch). */
async function refreshLive() {
  clearTimeout(liveSoonTimer);
  liveSoonTimer = null;
  if (state.phase !== "ready" || document.hidden || liveBusy) return;
  liveBusy = true;
  try {
    const ack = await request("conversations.live", { minutes: LIVE_MINUTES });
    state.live = new Map(
      (ack.conversations || [])
        .filter((item) => item && item.conversation && item.conversation.id)
        .map((item) => [item.conversation.id, item]),
    );
    state.liveLoaded = true;
    changed();
  } catch {
    // disconnected: the next welcome refreshes it
  } finally {
    liveBusy = false;
  }
}

/** Refresh the live list shortly: something we heard of moved a conversation to the bot. */
function refreshLiveSoon() {
  if (liveSoonTimer || state.phase !== "ready") return;
  liveSoonTimer = setTimeout(refreshLive, LIVE_SOON_MS);
}

// -- events -----------------------------------------------------------------------------------

function queueAdded(item) {
  if (!item || !item.conversation) return;
  const cid = item.conversation.id;
  const isNew = !state.queue.has(cid);
  state.queue.set(cid, item);
  state.live.delete(cid); // not with the bot any more
  if (isNew) {
    state.fresh.add(cid);
    announce(`New conversation waiting: ${item.conversation.title || shortId(cid)}`);
  }
  changed();
}

function presenceUpdated(agentId, status, label) {
  if (!agentId || !status) return;
  const known = state.team.get(agentId);
  if (known) {
    known.status = status;
    if (label) known.label = label;
  } else state.team.set(agentId, { label: label || "", name: "", status });
  if (state.agent && agentId === state.agent.id && status !== "offline") state.presence = status;
  changed();
}

/** A conversation was transferred from one agent to another. When it is to us, it is ours
 * already: keep the handoff.context packet the event carries (the conversation's own packet
 * comes before the events we follow it from), follow it for its live events, and say so. */
function conversationAssigned(frame) {
  const cid = frame.conversation_id;
  const me = state.agent?.id;
  if (typeof cid !== "string" || !me) return;
  state.live.delete(cid);
  if (frame.agent_id !== me) {
    changed(); // the conversations we follow hear of it themselves (conversation.updated)
    return;
  }
  const c = conversation(cid);
  if (!c.followed) {
    c.status = "with_human";
    c.agentId = me;
  }
  const packet = frame.context && typeof frame.context === "object" ? frame.context : null;
  if (packet) {
    contextEvent(c, { ...packet, ts: frame.ts, seq: null });
    if (!c.loaded && "pending_confirmation" in packet) c.pending = packet.pending_confirmation;
  }
  const looking = state.openId === cid && !document.hidden;
  if (!looking && frame.from_agent_id !== me) state.handed.set(cid, frame.from_agent_id || null);
  const from = frame.from_agent_id ? labelOf(frame.from_agent_id) : "Someone";
  const told = () => {
    const text = `${from} transferred “${titleOf(c)}” to you.`;
    toast(text);
    announce(text);
  };
  changed();
  if (c.followed || c.following) {
    Promise.resolve(c.following).then(told, told);
    if (looking) markRead(c);
    return;
  }
  follow(c).then(
    () => {
      told();
      if (state.openId === cid && !document.hidden) markRead(c);
    },
    (error) => {
      told();
      dropIfGone(c, error);
    },
  );
}

function conversationEvent(frame) {
  const c = state.convs.get(frame.conversation_id);
  if (!c) return;
  if (frame.type === "typing") {
    typingEvent(c, frame);
    return;
  }
  if (typeof frame.seq === "number") {
    if (frame.seq <= c.lastSeq) return;
    c.lastSeq = frame.seq;
  }
  const me = state.agent?.id;
  switch (frame.type) {
    case "message.created": {
      const message = frame.message || {};
      const isNew = addMessage(c, message);
      if (message.role === "user") {
        c.visitorTypingAt = 0;
        if (isNew && isMine(c)) {
          if (c.id === state.openId && !document.hidden) markRead(c);
          else c.unread += 1;
        }
      }
      if (message.role === "agent" && message.agent && message.agent.id !== me) {
        c.otherTyping = null;
      }
      break;
    }
    case "run.started":
      c.run = { id: frame.run_id, content: "", stage: null };
      break;
    case "run.status":
      if (c.run && c.run.id === frame.run_id) c.run.stage = frame.stage;
      break;
    case "run.token":
      if (!c.run || c.run.id !== frame.run_id) c.run = { id: frame.run_id, content: "" };
      c.run.content += frame.delta || "";
      break;
    case "run.step":
      putItem(c, `s:${frame.run_id}:${frame.step}`, "step", frame.ts ?? Date.now(), {
        action: frame.action,
        params: frame.params,
        observation: frame.observation,
      });
      break;
    case "run.completed":
      c.run = null;
      addMessage(c, frame.message);
      break;
    case "run.failed":
      c.run = null;
      if (frame.partial) addMessage(c, frame.partial);
      addNote(c, frame, `The bot's answer failed (${frame.code}).`);
      break;
    case "run.cancelled":
      c.run = null;
      if (frame.message) addMessage(c, frame.message);
      break;
    case "confirmation.requested":
      c.pending = {
        tool_call_id: frame.tool_call_id,
        run_id: frame.run_id,
        tool: frame.tool,
        params: frame.params,
        step: frame.step,
        status: "pending",
        expires_at: frame.expires_at,
      };
      c.pendingNote = "";
      break;
    case "confirmation.resolved":
      if (c.pending && c.pending.tool_call_id === frame.tool_call_id) c.pending = null;
      addNote(c, frame, `The action was ${frame.decision} (by ${frame.by}).`);
      break;
    case "handoff.requested":
      c.status = "pending_human";
      addNote(c, frame, `Handed off: ${REASON_TEXT[frame.reason] || frame.reason}.`);
      break;
    case "handoff.accepted":
      learnAgent(frame.agent);
      addNote(
        c,
        frame,
        frame.take_over
          ? `${labelOf(frame.agent?.id)} took the conversation over from the bot.`
          : `${labelOf(frame.agent?.id)} took the conversation.`,
      );
      break;
    case "handoff.transferred": {
      learnAgent(frame.from_agent);
      learnAgent(frame.agent);
      const from = labelOf(frame.from_agent?.id);
      let text;
      if (frame.agent) text = `${from} transferred the conversation to ${labelOf(frame.agent.id)}.`;
      else if (frame.reason === "agent_offline") text = `${from} went offline: back to the queue.`;
      else text = `${from} put the conversation back in the queue.`;
      addNote(c, frame, text);
      break;
    }
    case "handoff.released": {
      const texts = {
        agent: `${labelOf(frame.agent?.id)} handed the conversation back to the bot.`,
        cancelled: "The visitor withdrew the request: back to the bot.",
        timeout: "Nobody took it in time: back to the bot.",
      };
      learnAgent(frame.agent);
      addNote(c, frame, texts[frame.reason] || "The bot has the conversation again.");
      break;
    }
    case "handoff.context":
      contextEvent(c, frame);
      break;
    case "conversation.updated":
      learnAgent(frame.agent);
      c.status = frame.status;
      c.agentId = frame.agent?.id ?? null;
      if (frame.status === "bot") refreshLiveSoon();
      else state.live.delete(c.id);
      if (!isMine(c)) state.handed.delete(c.id);
      if (frame.status === "closed") {
        addNote(c, frame, `${labelOf(frame.agent?.id)} closed the conversation.`);
      }
      if (!isMine(c)) {
        c.unread = 0;
        if (c.id !== state.openId) tidy();
      }
      break;
    case "lead.captured": {
      const fields = Object.entries(frame.visitor || {}).map(([k, v]) => `${k}: ${v}`);
      addNote(c, frame, `The visitor left their details: ${fields.join(", ")}`);
      break;
    }
    case "notice":
      addNote(c, frame, frame.message || frame.code);
      break;
    default:
      return;
  }
  changed();
}

/** A handoff.context packet: the conversation's event (with its `seq`), or the `context` of
 * a conversation.assigned (no `seq`, the event's `ts`). Kept when it is for us and not older
 * than the one we have. */
function contextEvent(c, frame) {
  const known = state.contexts[c.id];
  if (known && olderContext(frame, known)) return; // an older packet
  keepContext(c, frame);
}

/** The `context` of the ack of a watch, claim or take_over: the owner's packet as it is at
 * the history's `last_seq` (what a new tab or a fresh sign-in knows the conversation by).
 * It replaces what we kept, unless an event after that `last_seq` brought a newer one. */
function ackContext(c, ack) {
  const packet = ack.context && typeof ack.context === "object" ? ack.context : null;
  if (!packet) return;
  const last = ack.history?.last_seq;
  const seq = typeof last === "number" ? last : null;
  const known = state.contexts[c.id];
  if (known && seq !== null && typeof known.seq === "number" && known.seq > seq) return;
  // No `ts`: a conversation.assigned that comes later (ours again) replaces it.
  keepContext(c, { ...packet, seq, ts: null });
}

/** Keep a packet for the conversation, if it is for us. */
function keepContext(c, frame) {
  if (!state.agent || frame.agent?.id !== state.agent.id) return;
  learnAgent(frame.agent);
  state.contexts[c.id] = {
    summary: frame.summary,
    visitor: frame.visitor,
    ts: frame.ts,
    seq: typeof frame.seq === "number" ? frame.seq : null,
    // Whether this agent may approve or reject the visitor's pending writes (null: unknown).
    agent_confirmations:
      typeof frame.agent_confirmations === "boolean" ? frame.agent_confirmations : null,
  };
  persist();
  changed();
}

/** Whether packet `a` is older than `b`: by `seq` when both have one, else by `ts`. */
function olderContext(a, b) {
  if (typeof a.seq === "number" && typeof b.seq === "number") return a.seq < b.seq;
  return (a.ts ?? 0) < (b.ts ?? 0);
}

function typingEvent(c, frame) {
  if (frame.who === "visitor") c.visitorTypingAt = frame.on ? Date.now() : 0;
  else if (frame.who === "agent" && frame.agent?.id !== state.agent?.id) {
    learnAgent(frame.agent);
    c.otherTyping = frame.on ? { label: labelOf(frame.agent?.id), at: Date.now() } : null;
  }
  changed();
}

// -- actions ----------------------------------------------------------------------------------

function run(promise, success) {
  return Promise.resolve(promise).then(
    (value) => {
      if (success) toast(success);
      return value;
    },
    (error) => {
      toast(describe(error), "error");
      return undefined;
    },
  );
}

async function signIn(tenant, email, password) {
  let answer;
  try {
    answer = await fetch("/realtime/v1/agents/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ tenant, email, password }),
      credentials: "same-origin",
    });
  } catch {
    throw new Error("The server cannot be reached. Check your connection and try again.");
  }
  let body = {};
  try {
    body = await answer.json();
  } catch {
    body = {};
  }
  if (!answer.ok || !body.token) {
    if (answer.status === 401) throw new Error("Wrong email or password.");
    throw new Error(body?.error?.message || `Sign-in failed (HTTP ${answer.status}).`);
  }
  state.auth = { token: body.token, expires_at: body.expires_at, agent: body.agent };
  state.agent = body.agent;
  state.signInError = "";
  persist();
  connect();
}

/** The Sign out button: the server forgets the token (so that it opens nothing any more),
 * then this page does. Signing out here does not wait long for an unreachable server. */
async function logOut() {
  const token = state.auth?.token;
  if (!token) {
    signOut();
    return;
  }
  ui.signOut.disabled = true;
  stopTyping(true);
  let message = "";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), LOGOUT_TIMEOUT_MS);
  try {
    const answer = await fetch("/realtime/v1/agents/logout", {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      credentials: "same-origin",
      signal: abort.signal,
    });
    // 401: the token had expired or was revoked already, which is what we wanted.
    if (!answer.ok && answer.status !== 401) {
      message = `Signed out here, but the server did not end the session (HTTP ${answer.status}).`;
    }
  } catch {
    message = "Signed out here, but the server could not be reached to end the session.";
  } finally {
    clearTimeout(timer);
    ui.signOut.disabled = false;
  }
  if (state.auth?.token === token) signOut(message);
}

/** Forget the session on this page (the token, what it followed) and show the sign-in form. */
function signOut(message = "") {
  stopTyping(true);
  state.auth = null;
  const ws = socket;
  socket = null;
  if (ws) ws.close(1000, "signed out");
  for (const { reject } of inflight.values()) reject(new CommandError("disconnected"));
  inflight.clear();
  clearTimeout(retryTimer);
  retryTimer = null;
  stopTimers();
  retries = 0;
  Object.assign(state, {
    agent: null,
    team: new Map(),
    queue: new Map(),
    fresh: new Set(),
    handed: new Map(),
    live: new Map(),
    liveLoaded: false,
    convs: new Map(),
    watched: new Set(),
    contexts: {},
    openId: null,
    connection: "",
    signInError: message,
  });
  persist();
  setPhase("signed-out");
  changed();
}

function openConversation(cid) {
  if (!cid) return;
  const previous = state.openId ? state.convs.get(state.openId) : null;
  if (previous && previous.id !== cid) previous.draft = ui.reply.value;
  stopTyping(true);
  state.openId = cid;
  state.fresh.delete(cid);
  state.handed.delete(cid);
  const c = conversation(cid);
  c.unread = 0;
  ui.reply.value = c.draft || "";
  persist();
  tidy();
  viewChanged = true;
  changed();
  if (!c.followed && state.phase === "ready") {
    follow(c).then(
      () => {
        if (isMine(c)) markRead(c);
      },
      (error) => {
        toast(describe(error), "error");
        if (error.code === "conversation_not_found") forget(c);
      },
    );
  } else if (isMine(c)) {
    markRead(c);
  }
}

function closeView() {
  const c = openConv();
  if (c) c.draft = ui.reply.value;
  stopTyping(true);
  state.openId = null;
  persist();
  tidy();
  changed();
}

const readTimers = new Map();

function markRead(c) {
  c.unread = 0;
  if (readTimers.has(c.id)) return;
  readTimers.set(
    c.id,
    setTimeout(() => {
      readTimers.delete(c.id);
      if (isMine(c)) request("conversation.read", { conversation_id: c.id }).catch(() => {});
    }, 250),
  );
}

async function claim(cid) {
  const c = conversation(cid);
  try {
    await follow(c, "claim");
  } catch (error) {
    toast(describe(error), "error");
    if (!wanted(c) && !c.followed) state.convs.delete(cid);
    changed();
    return;
  }
  state.queue.delete(cid);
  state.fresh.delete(cid);
  openConversation(cid);
  ui.reply.focus();
}

async function takeOver(cid) {
  const c = conversation(cid);
  const ack = await run(follow(c, "take_over"));
  if (!ack) return;
  state.watched.delete(cid);
  state.live.delete(cid);
  openConversation(cid);
  ui.reply.focus();
}

function watch(cid) {
  const wire = state.live.get(cid)?.conversation;
  if (wire?.title && !state.convs.get(cid)?.title) conversation(cid).title = wire.title;
  state.watched.add(cid);
  persist();
  openConversation(cid);
}

function unwatch(cid) {
  state.watched.delete(cid);
  if (state.openId === cid) state.openId = null;
  persist();
  tidy();
  changed();
}

async function transfer(c, toAgentId) {
  const fields = { conversation_id: c.id };
  if (toAgentId) fields.to_agent_id = toAgentId;
  stopTyping(true);
  const where = toAgentId ? nameOf(toAgentId) : "the queue";
  await run(request("conversation.transfer", fields), `Transferred to ${where}.`);
}

async function release(c) {
  stopTyping(true);
  await run(request("conversation.release", { conversation_id: c.id }), "Handed back to the bot.");
}

async function closeConversation(c) {
  stopTyping(true);
  await run(request("conversation.close", { conversation_id: c.id }), "Conversation closed.");
}

async function decide(c, decision) {
  const pending = c.pending;
  if (!pending || c.pendingBusy) return;
  c.pendingBusy = true;
  c.pendingNote = "";
  changed();
  try {
    await request("confirmation.resolve", {
      conversation_id: c.id,
      tool_call_id: pending.tool_call_id,
      decision,
    });
  } catch (error) {
    c.pendingNote = describe(error);
  } finally {
    c.pendingBusy = false;
    changed();
  }
}

async function sendReply() {
  const c = openConv();
  const content = ui.reply.value;
  if (!c || !isMine(c) || !content.trim()) return;
  ui.reply.value = "";
  c.draft = "";
  stopTyping(true);
  const key = `o:${++localSerial}`;
  const out = { content, time: Date.now(), messageId: null };
  c.outgoing.set(key, out);
  changed();
  try {
    const ack = await request("conversation.send", { conversation_id: c.id, content });
    out.messageId = ack.message_id;
    if (c.items.has(`m:${ack.message_id}`)) c.outgoing.delete(key);
  } catch (error) {
    c.outgoing.delete(key);
    if (!ui.reply.value && state.openId === c.id) ui.reply.value = content;
    toast(describe(error), "error");
  }
  changed();
}

// Our typing indicator: on with the first keystroke, again every few seconds while typing,
// off after a pause, on send, on leaving the conversation.
let typingConv = null;
let typingSentAt = 0;
let typingTimer = null;

function typed() {
  const c = openConv();
  if (!c || !isMine(c) || !ui.reply.value.trim()) {
    stopTyping(true);
    return;
  }
  if (typingConv !== c.id) stopTyping(true);
  if (typingConv !== c.id || Date.now() - typingSentAt > TYPING_REFRESH_MS) {
    typingConv = c.id;
    typingSentAt = Date.now();
    tell("typing", { conversation_id: c.id, on: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
}

function stopTyping(send) {
  clearTimeout(typingTimer);
  typingTimer = null;
  if (typingConv && send) {
    const c = state.convs.get(typingConv);
    if (c && isMine(c)) tell("typing", { conversation_id: typingConv, on: false });
  }
  typingConv = null;
}

function openConv() {
  return state.openId ? state.convs.get(state.openId) || null : null;
}

// -- the page -------------------------------------------------------------------------------

const ui = {};

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.state = phase;
  if (ui.root) ui.root.dataset.state = phase;
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", { class: "field-label", text: label }), input);
}

function buildSignIn() {
  ui.tenant = h("input", {
    name: "tenant",
    value: "default",
    required: true,
    autocomplete: "organization",
    spellcheck: "false",
  });
  ui.email = h("input", {
    name: "email",
    type: "email",
    required: true,
    autocomplete: "username",
    spellcheck: "false",
  });
  ui.password = h("input", {
    name: "password",
    type: "password",
    required: true,
    autocomplete: "current-password",
  });
  ui.signInError = h("p", { class: "form-error", role: "alert", id: "signin-error" });
  ui.signInButton = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h(
    "form",
    { class: "signin-form", "aria-labelledby": "signin-title", novalidate: true },
    h("h1", { id: "signin-title", text: "Agent console" }),
    h("p", { class: "muted", text: "Sign in to answer the conversations handed to your team." }),
    field("Team (tenant)", ui.tenant),
    field("Email", ui.email),
    field("Password", ui.password),
    ui.signInError,
    ui.signInButton,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tenant = ui.tenant.value.trim();
    const email = ui.email.value.trim();
    const password = ui.password.value;
    if (!tenant || !email || !password) {
      state.signInError = "Fill in your team, email and password.";
      changed();
      return;
    }
    ui.signInButton.disabled = true;
    state.signInError = "";
    changed();
    try {
      await signIn(tenant, email, password);
      ui.password.value = "";
    } catch (error) {
      state.signInError = describe(error);
      ui.password.select();
    } finally {
      ui.signInButton.disabled = false;
      changed();
    }
  });
  return h("section", { class: "signin", "aria-label": "Sign in" }, form);
}

function buildHeader() {
  ui.me = h("span", { class: "me-name" });
  ui.presence = h(
    "select",
    { id: "presence", "aria-label": "Your status" },
    h("option", { value: "online", text: "Online" }),
    h("option", { value: "away", text: "Away" }),
  );
  ui.presence.addEventListener("change", async () => {
    const wanted = ui.presence.value;
    try {
      const ack = await request("presence.set", { status: wanted });
      state.presence = ack.status || wanted;
    } catch (error) {
      toast(describe(error), "error");
    }
    changed();
  });
  ui.connection = h("span", { class: "connection", role: "status" });
  ui.signOut = h("button", { type: "button", class: "quiet", text: "Sign out" });
  ui.signOut.addEventListener("click", logOut);
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "skip", href: "#conversation", text: "Skip to the conversation" }),
    h("span", { class: "brand", text: BASE_TITLE }),
    ui.connection,
    h(
      "div",
      { class: "me" },
      h("span", { class: "presence-dot", "aria-hidden": "true" }),
      ui.me,
      h(
        "label",
        { class: "presence-field" },
        h("span", { class: "sr-only", text: "Status" }),
        ui.presence,
      ),
      ui.signOut,
    ),
  );
}

function buildSidebar() {
  ui.queueList = h("ul", {
    class: "conv-list",
    id: "queue-list",
    "aria-labelledby": "queue-title",
  });
  ui.queueCount = h("span", { class: "count", "aria-label": "waiting" });
  ui.queueEmpty = h("p", { class: "empty", text: "Nobody is waiting." });
  ui.mineList = h("ul", { class: "conv-list", id: "mine-list", "aria-labelledby": "mine-title" });
  ui.mineCount = h("span", { class: "count" });
  ui.mineEmpty = h("p", { class: "empty", text: "Claim a conversation from the queue." });
  ui.liveList = h("ul", {
    class: "conv-list",
    id: "live-list",
    "aria-labelledby": "live-title",
  });
  ui.liveCount = h("span", { class: "count" });
  ui.liveEmpty = h("p", { class: "empty" });
  return h(
    "nav",
    { class: "sidebar", "aria-label": "Conversations" },
    h(
      "section",
      { class: "side-section" },
      h("h2", { id: "queue-title" }, "Queue ", ui.queueCount),
      ui.queueList,
      ui.queueEmpty,
    ),
    h(
      "section",
      { class: "side-section" },
      h("h2", { id: "mine-title" }, "My conversations ", ui.mineCount),
      ui.mineList,
      ui.mineEmpty,
    ),
    h(
      "section",
      { class: "side-section" },
      h("h2", { id: "live-title" }, "Live bot conversations ", ui.liveCount),
      ui.liveList,
      ui.liveEmpty,
    ),
  );
}

function buildConversation() {
  ui.convTitle = h("h2", { id: "conv-title", class: "conv-title" });
  ui.convStatus = h("span", { class: "status-pill" });
  ui.convMeta = h("span", { class: "conv-meta" });
  ui.claimButton = h("button", { type: "button", class: "primary", text: "Claim" });
  ui.claimButton.addEventListener("click", () => claim(state.openId));
  ui.takeOverButton = h("button", { type: "button", class: "primary", text: "Take over" });
  ui.takeOverButton.addEventListener("click", () => takeOver(state.openId));
  ui.watchButton = h("button", { type: "button", text: "Watch" });
  ui.watchButton.addEventListener("click", () => {
    if (state.watched.has(state.openId)) unwatch(state.openId);
    else watch(state.openId);
  });
  ui.transferSelect = h("select", { id: "transfer-to", "aria-label": "Transfer to" });
  ui.transferButton = h("button", { type: "button", text: "Transfer" });
  ui.transferButton.addEventListener("click", () => {
    const c = openConv();
    if (c) transfer(c, ui.transferSelect.value);
  });
  ui.transferGroup = h(
    "div",
    { class: "transfer", role: "group", "aria-label": "Transfer" },
    ui.transferSelect,
    ui.transferButton,
  );
  ui.releaseButton = h("button", { type: "button", text: "Release to bot" });
  ui.releaseButton.addEventListener("click", () => {
    const c = openConv();
    if (c) release(c);
  });
  ui.closeButton = h("button", { type: "button", class: "danger", text: "Close" });
  ui.closeButton.addEventListener("click", () => {
    const c = openConv();
    if (c) closeConversation(c);
  });
  ui.backButton = h("button", {
    type: "button",
    class: "quiet back",
    text: "Back",
    "aria-label": "Back to the list",
  });
  ui.backButton.addEventListener("click", closeView);

  ui.contextSummary = h("p", { class: "context-summary" });
  ui.contextVisitor = h("dl", { class: "context-visitor" });
  // Open by default; an agent on a small screen may fold it away.
  ui.context = h(
    "details",
    { class: "context", open: true },
    h("summary", {}, h("h3", { id: "context-title", text: "Handoff context" })),
    ui.contextSummary,
    ui.contextVisitor,
  );

  ui.pendingLead = h("span", { class: "pending-lead" });
  ui.pendingTool = h("strong", { class: "pending-tool" });
  ui.pendingParams = h("pre", { class: "pending-params" });
  ui.pendingExpires = h("span", { class: "muted" });
  ui.pendingNote = h("p", { class: "pending-note", role: "status" });
  ui.approveButton = h("button", { type: "button", class: "primary", text: "Approve" });
  ui.approveButton.addEventListener("click", () => decide(openConv(), "approve"));
  ui.rejectButton = h("button", { type: "button", class: "danger", text: "Reject" });
  ui.rejectButton.addEventListener("click", () => decide(openConv(), "reject"));
  ui.pendingActions = h("div", { class: "actions" }, ui.approveButton, ui.rejectButton);
  ui.pending = h(
    "section",
    { class: "pending", "aria-labelledby": "pending-title" },
    h("h3", { id: "pending-title" }, ui.pendingLead, ui.pendingTool),
    ui.pendingParams,
    ui.pendingExpires,
    ui.pendingActions,
    ui.pendingNote,
  );

  ui.log = h("ol", { class: "log", "aria-label": "Messages", "aria-live": "polite" });
  ui.log.addEventListener("scroll", followLogScroll, { passive: true });
  ui.typing = h("p", { class: "typing", "aria-live": "polite" });
  ui.reply = h("textarea", {
    id: "reply",
    rows: "3",
    placeholder: "Write a reply… (Enter to send, Shift+Enter for a new line)",
  });
  ui.reply.addEventListener("input", typed);
  ui.reply.addEventListener("blur", () => stopTyping(true));
  ui.reply.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendReply();
    }
  });
  ui.sendButton = h("button", { type: "submit", class: "primary", text: "Send" });
  ui.replyHint = h("p", { class: "reply-hint muted" });
  ui.replyForm = h(
    "form",
    { class: "reply-form", "aria-label": "Reply" },
    h("label", { class: "sr-only", for: "reply", text: "Your reply" }),
    ui.reply,
    ui.sendButton,
  );
  ui.replyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sendReply();
  });

  ui.convView = h(
    "div",
    { class: "conv-view" },
    h(
      "header",
      { class: "conv-header" },
      ui.backButton,
      h(
        "div",
        { class: "conv-heading" },
        ui.convTitle,
        h("p", { class: "conv-sub" }, ui.convStatus, ui.convMeta),
      ),
      h(
        "div",
        { class: "actions conv-actions" },
        ui.claimButton,
        ui.takeOverButton,
        ui.transferGroup,
        ui.releaseButton,
        ui.closeButton,
        ui.watchButton,
      ),
    ),
    ui.context,
    ui.pending,
    ui.log,
    ui.typing,
    ui.replyHint,
    ui.replyForm,
  );
  ui.placeholder = h(
    "div",
    { class: "placeholder" },
    h("h2", { text: "No conversation open" }),
    h("p", {
      text: "Pick one from the lists on the left. Alt+↑ and Alt+↓ move between them.",
    }),
  );
  return h(
    "main",
    { class: "conversation", id: "conversation", tabindex: "-1", "aria-label": "Conversation" },
    ui.placeholder,
    ui.convView,
  );
}

function buildPage() {
  ui.root = document.getElementById("app") || document.body.appendChild(h("div", { id: "app" }));
  ui.root.classList.add("app");
  ui.signIn = buildSignIn();
  ui.header = buildHeader();
  ui.workspace = h("div", { class: "workspace" }, buildSidebar(), buildConversation());
  ui.console = h("div", { class: "console" }, ui.header, ui.workspace);
  ui.toasts = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
  ui.announcer = h("div", { class: "sr-only", "aria-live": "assertive" });
  ui.root.replaceChildren(ui.signIn, ui.console, ui.toasts, ui.announcer);
  document.addEventListener("keydown", globalKeys);
  document.addEventListener("visibilitychange", () => {
    const c = openConv();
    if (!document.hidden && c) state.handed.delete(c.id);
    if (!document.hidden && c && isMine(c) && c.unread) markRead(c);
    if (!document.hidden) refreshLive();
    changed();
  });
  window.addEventListener("online", () => {
    if (retryTimer) connect();
  });
  setInterval(tick, 1000);
}

let toastSerial = 0;

function toast(text, kind = "info") {
  const item = h(
    "p",
    { class: `toast toast-${kind}`, dataset: { toast: String(++toastSerial) } },
    text,
  );
  ui.toasts.append(item);
  while (ui.toasts.children.length > 4) ui.toasts.firstChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

function announce(text) {
  ui.announcer.textContent = "";
  setTimeout(() => {
    ui.announcer.textContent = text;
  }, 50);
}

function globalKeys(event) {
  if (state.phase === "signed-out") return;
  if (event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
    const ids = sidebarOrder();
    if (!ids.length) return;
    event.preventDefault();
    const at = ids.indexOf(state.openId);
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = at < 0 ? (step > 0 ? 0 : ids.length - 1) : (at + step + ids.length) % ids.length;
    openConversation(ids[next]);
    const key = CSS.escape(ids[next]);
    const button = ui.workspace.querySelector(`.conv-item[data-key="${key}"] .conv-open`);
    if (button) button.focus();
  } else if (event.key === "Escape" && document.activeElement === ui.reply && state.openId) {
    ui.reply.blur();
  }
}

function sidebarOrder() {
  return [
    ...queueItems().map((item) => item.conversation.id),
    ...mineConvs().map((c) => c.id),
    ...liveEntries().map((entry) => entry.id),
  ];
}

function queueItems() {
  return [...state.queue.values()].sort(
    (a, b) =>
      timeOf(a.queued_at) - timeOf(b.queued_at) ||
      (a.queue_position ?? 0) - (b.queue_position ?? 0),
  );
}

function mineConvs() {
  return [...state.convs.values()].filter(isMine).sort((a, b) => lastTime(b) - lastTime(a));
}

/** The "Live bot conversations" list: the last conversations.live answer (less what we heard
 * left the bot since), and the conversations the agent watches, most recently moved first. */
function liveEntries() {
  const entries = new Map();
  for (const [cid, item] of state.live) {
    const c = state.convs.get(cid);
    if (c && c.status && c.status !== "bot" && !state.watched.has(cid)) continue;
    entries.set(cid, { id: cid, c, item });
  }
  for (const cid of state.watched) {
    const c = state.convs.get(cid);
    if (c && !entries.has(cid)) entries.set(cid, { id: cid, c, item: null });
  }
  const list = [...entries.values()].filter((entry) => !isMine(entry.c));
  for (const entry of list) {
    const moved = entry.item ? timeOf(entry.item.conversation.updated_at) : 0;
    entry.time = Math.max(moved, entry.c ? lastTime(entry.c) : 0);
  }
  return list.sort((a, b) => b.time - a.time);
}

function lastTime(c) {
  let last = 0;
  for (const item of c.items.values()) if (item.time > last) last = item.time;
  return last;
}

function lastMessage(c) {
  let best = null;
  for (const item of c.items.values()) {
    if (item.kind === "message" && item.message.content && (!best || item.time >= best.time)) {
      best = item;
    }
  }
  return best ? best.message : null;
}

// -- rendering ------------------------------------------------------------------------------

let renderQueued = false;
let viewChanged = false;

function changed() {
  updateTitle();
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function updateTitle() {
  let count = state.auth ? state.queue.size : 0;
  for (const c of state.convs.values()) {
    if (isMine(c)) count += c.unread || (state.handed.has(c.id) ? 1 : 0);
  }
  const title = count ? `(${count}) ${BASE_TITLE}` : BASE_TITLE;
  if (document.title !== title) document.title = title;
}

function tick() {
  let dirty = false;
  const now = Date.now();
  for (const c of state.convs.values()) {
    if (c.visitorTypingAt && now - c.visitorTypingAt > REMOTE_TYPING_TTL_MS) {
      c.visitorTypingAt = 0;
      dirty = true;
    }
    if (c.otherTyping && now - c.otherTyping.at > REMOTE_TYPING_TTL_MS) {
      c.otherTyping = null;
      dirty = true;
    }
  }
  if (retryTimer) updateRetryText();
  if (dirty || now % 30000 < 1000) changed();
}

function render() {
  const signedOut = state.phase === "signed-out";
  show(ui.signIn, signedOut);
  show(ui.console, !signedOut);
  setText(ui.signInError, state.signInError);
  show(ui.signInError, Boolean(state.signInError));
  if (signedOut) return;
  renderHeader();
  renderSidebar();
  renderConversation();
}

function renderHeader() {
  const agent = state.agent || state.auth?.agent;
  setText(ui.me, agent ? agent.name || agent.label : "");
  if (ui.presence.value !== state.presence) ui.presence.value = state.presence;
  ui.presence.disabled = state.phase !== "ready";
  ui.header.dataset.presence = state.phase === "ready" ? state.presence : "offline";
  setText(ui.connection, state.phase === "ready" ? "" : state.connection || "Connecting…");
  show(ui.connection, state.phase !== "ready");
}

function renderSidebar() {
  const queue = queueItems();
  setText(ui.queueCount, queue.length ? String(queue.length) : "");
  show(ui.queueEmpty, !queue.length);
  reconcile(ui.queueList, queue, (item) => item.conversation.id, buildQueueItem, updateQueueItem);

  const mine = mineConvs();
  setText(ui.mineCount, mine.length ? String(mine.length) : "");
  show(ui.mineEmpty, !mine.length);
  reconcile(ui.mineList, mine, (c) => c.id, buildConvItem, updateConvItem);

  const live = liveEntries();
  setText(ui.liveCount, live.length ? String(live.length) : "");
  setText(
    ui.liveEmpty,
    state.liveLoaded
      ? `No conversation with the bot in the last ${LIVE_MINUTES} minutes.`
      : "Loading…",
  );
  show(ui.liveEmpty, !live.length);
  reconcile(ui.liveList, live, (entry) => entry.id, buildLiveItem, updateLiveItem);
}

function buildQueueItem(item) {
  const cid = item.conversation.id;
  const refs = {
    title: h("span", { class: "conv-name" }),
    summary: h("span", { class: "conv-summary" }),
    meta: h("span", { class: "conv-when" }),
  };
  const open = h(
    "button",
    { type: "button", class: "conv-open" },
    refs.title,
    refs.summary,
    refs.meta,
  );
  open.addEventListener("click", () => openConversation(cid));
  const claimButton = h("button", { type: "button", class: "primary small claim", text: "Claim" });
  claimButton.addEventListener("click", () => claim(cid));
  const li = h(
    "li",
    { class: "conv-item queue-item", dataset: { conversationId: cid } },
    open,
    claimButton,
  );
  li.refs = { ...refs, open, claimButton };
  return li;
}

function updateQueueItem(li, item) {
  const cid = item.conversation.id;
  const title = item.conversation.title || `Conversation ${shortId(cid)}`;
  setText(li.refs.title, title);
  setText(li.refs.summary, item.summary || "");
  const reason = REASON_TEXT[item.reason] || item.reason || "";
  setText(li.refs.meta, `Waiting ${since(timeOf(item.queued_at))}${reason ? ` · ${reason}` : ""}`);
  li.classList.toggle("is-new", state.fresh.has(cid));
  li.classList.toggle("is-open", state.openId === cid);
  if (state.openId === cid) li.refs.open.setAttribute("aria-current", "true");
  else li.refs.open.removeAttribute("aria-current");
  li.refs.claimButton.setAttribute("aria-label", `Claim ${title}`);
  li.refs.claimButton.disabled = state.phase !== "ready";
}

function buildConvItem(c) {
  const refs = {
    title: h("span", { class: "conv-name" }),
    summary: h("span", { class: "conv-summary" }),
    meta: h("span", { class: "conv-when" }),
    unread: h("span", { class: "unread", dataset: { unread: "" } }),
  };
  const open = h(
    "button",
    { type: "button", class: "conv-open" },
    refs.title,
    refs.summary,
    refs.meta,
  );
  open.addEventListener("click", () => openConversation(c.id));
  const li = h("li", { class: "conv-item", dataset: { conversationId: c.id } }, open, refs.unread);
  li.refs = { ...refs, open };
  return li;
}

function updateConvItem(li, c) {
  setText(li.refs.title, titleOf(c));
  const last = lastMessage(c);
  let summary = last ? `${whoSaid(last)}: ${last.content}` : "";
  if (c.run) summary = `Bot: ${c.run.content || "…"}`;
  setText(li.refs.summary, summary);
  const handed = state.handed.get(c.id);
  const from = handed ? ` · transferred by ${labelOf(handed)}` : "";
  setText(li.refs.meta, `${statusText(c)}${state.handed.has(c.id) ? from || " · new" : ""}`);
  li.classList.toggle("is-new", state.handed.has(c.id));
  setText(li.refs.unread, c.unread ? String(c.unread) : "");
  li.refs.unread.dataset.unread = String(c.unread || 0);
  li.refs.unread.setAttribute("aria-label", `${c.unread} unread`);
  show(li.refs.unread, c.unread > 0);
  li.classList.toggle("is-open", state.openId === c.id);
  if (state.openId === c.id) li.refs.open.setAttribute("aria-current", "true");
  else li.refs.open.removeAttribute("aria-current");
}

function buildLiveItem(entry) {
  const cid = entry.id;
  const refs = {
    dot: h("span", { class: "live-dot", role: "img", "aria-label": "The bot is answering" }),
    title: h("span", { class: "conv-name" }),
    summary: h("span", { class: "conv-summary" }),
    time: h("time", { class: "conv-time" }),
    meta: h("span", { class: "conv-state" }),
  };
  const open = h(
    "button",
    { type: "button", class: "conv-open" },
    h("span", { class: "conv-line" }, refs.dot, refs.title, refs.time),
    refs.summary,
    h("span", { class: "conv-when" }, refs.meta),
  );
  open.addEventListener("click", () => watch(cid));
  const li = h("li", { class: "conv-item live-item", dataset: { conversationId: cid } }, open);
  li.refs = { ...refs, open };
  return li;
}

function updateLiveItem(li, entry) {
  const { c, item } = entry;
  const cid = entry.id;
  const followed = Boolean(c && c.loaded);
  const active = followed ? Boolean(c.run) : Boolean(item?.active_run);
  const title = c ? titleOf(c) : item?.conversation?.title || `Conversation ${shortId(cid)}`;
  setText(li.refs.title, title);
  show(li.refs.dot, active);
  if (entry.time) {
    const iso = new Date(entry.time).toISOString();
    if (li.refs.time.dateTime !== iso) li.refs.time.dateTime = iso;
    setText(li.refs.time, clockTime(entry.time));
  } else setText(li.refs.time, "");
  let summary = "";
  if (followed) {
    const last = lastMessage(c);
    if (last) summary = `${whoSaid(last)}: ${last.content}`;
    if (c.run) summary = `Bot: ${c.run.content || "…"}`;
  }
  setText(li.refs.summary, summary);
  show(li.refs.summary, Boolean(summary));
  const watching = state.watched.has(cid);
  let meta = c && c.status && c.status !== "bot" ? statusText(c) : "";
  if (!meta) meta = active ? "The bot is answering" : "With the bot";
  setText(li.refs.meta, watching ? `${meta} · watching` : meta);
  li.classList.toggle("is-live", active);
  li.classList.toggle("is-watched", watching);
  li.classList.toggle("is-open", state.openId === cid);
  if (state.openId === cid) li.refs.open.setAttribute("aria-current", "true");
  else li.refs.open.removeAttribute("aria-current");
  li.refs.open.setAttribute("aria-label", `Watch ${title}`);
}

function statusText(c) {
  if (!c.status) return "Loading…";
  if (c.status === "with_human") {
    return isMine(c) ? "With you" : `With ${labelOf(c.agentId)}`;
  }
  if (c.status === "bot" && c.run) return "The bot is answering";
  return STATUS_TEXT[c.status] || c.status;
}

function whoSaid(message) {
  switch (message.role) {
    case "user":
      return "Visitor";
    case "assistant":
      return "Bot";
    case "agent":
      return message.agent && state.agent && message.agent.id === state.agent.id
        ? "You"
        : message.agent?.label || "Agent";
    case "system":
      return "Notice";
    default:
      return message.role;
  }
}

function renderConversation() {
  const c = openConv();
  show(ui.placeholder, !c);
  show(ui.convView, Boolean(c));
  ui.workspace.classList.toggle("has-open", Boolean(c));
  if (!c) return;
  const mine = isMine(c);
  const ready = state.phase === "ready";
  ui.convView.dataset.conversationId = c.id;
  ui.convView.dataset.status = c.status || "";
  setText(ui.convTitle, titleOf(c));
  setText(ui.convStatus, statusText(c));
  ui.convStatus.dataset.status = c.status || "";
  const ctx = state.contexts[c.id];
  const visitor = ctx?.visitor || state.queue.get(c.id)?.visitor;
  setText(ui.convMeta, `${visitor ? `Visitor ${visitor.id} · ` : ""}ID ${c.id}`);

  show(ui.claimButton, c.status === "pending_human");
  show(ui.takeOverButton, c.status === "bot");
  show(ui.transferGroup, mine);
  show(ui.releaseButton, mine);
  show(ui.closeButton, mine);
  show(ui.watchButton, !mine);
  setText(ui.watchButton, state.watched.has(c.id) ? "Stop watching" : "Watch");
  const actions = [ui.claimButton, ui.takeOverButton, ui.transferButton, ui.releaseButton];
  for (const button of [...actions, ui.closeButton]) button.disabled = !ready;
  if (mine) renderTransferOptions();

  // The handoff context packet, at the top of a conversation we own.
  const summary = ctx?.summary || (state.queue.get(c.id)?.summary ?? "");
  show(ui.context, Boolean(mine && ctx) || (c.status === "pending_human" && Boolean(summary)));
  setText(ui.contextSummary, summary);
  renderVisitor(visitor);

  // A write waiting for a decision.
  const pending = c.pending;
  show(ui.pending, Boolean(pending));
  if (pending) {
    setText(ui.pendingTool, pending.tool);
    setText(ui.pendingParams, pretty(pending.params));
    const expires = pending.expires_at ? clockTime(timeOf(pending.expires_at)) : "";
    setText(ui.pendingExpires, expires ? `Expires at ${expires}` : "");
    // The handoff context packet says whether the bot lets this agent decide: the buttons
    // show only when it says so (the owner always has one, from its claim or watch).
    const agentsDecide = ctx?.agent_confirmations ?? null;
    const canDecide = mine && agentsDecide === true;
    ui.pending.dataset.decides = canDecide ? "agent" : "visitor";
    setText(ui.pendingLead, canDecide ? "Waiting for approval: " : "Waiting for the visitor: ");
    show(ui.pendingActions, canDecide);
    ui.approveButton.disabled = !ready || c.pendingBusy;
    ui.rejectButton.disabled = !ready || c.pendingBusy;
    let note = c.pendingNote;
    if (!note && !mine) note = "Claim the conversation to decide, if the bot allows agents to.";
    if (!note && mine && agentsDecide === false) {
      note = "The visitor decides: this bot lets only the visitor approve or reject its actions.";
    }
    setText(ui.pendingNote, note);
    show(ui.pendingNote, Boolean(note));
  }

  renderLog(c);

  let typing = "";
  if (c.visitorTypingAt) typing = "The visitor is typing…";
  else if (c.otherTyping) typing = `${c.otherTyping.label} is typing…`;
  else if (c.run && c.run.stage === "executing_tool") typing = "The bot is using a tool…";
  setText(ui.typing, typing);
  ui.typing.dataset.typing = c.visitorTypingAt ? "visitor" : c.otherTyping ? "agent" : "";

  ui.reply.disabled = !mine;
  ui.sendButton.disabled = !mine || !ready;
  let hint = "";
  if (!mine) {
    if (c.status === "pending_human") hint = "Claim the conversation to reply.";
    else if (c.status === "bot") hint = "The bot is answering. Take over to reply yourself.";
    else if (c.status === "with_human") hint = `${labelOf(c.agentId)} is answering.`;
    else if (c.status === "closed") hint = "This conversation is closed.";
  } else if (!ready) hint = "Offline: your reply can be sent once the console reconnects.";
  setText(ui.replyHint, hint);
  show(ui.replyHint, Boolean(hint));
  show(ui.replyForm, mine);
}

function renderVisitor(visitor) {
  const rows = [];
  if (visitor) {
    rows.push(["Visitor", `${visitor.id}${visitor.kind === "user" ? " (signed-in user)" : ""}`]);
    const info = visitor.info;
    if (info && typeof info === "object") {
      for (const [key, value] of Object.entries(info)) {
        rows.push([key, typeof value === "object" ? pretty(value) : String(value)]);
      }
    } else if (info != null) rows.push(["Info", String(info)]);
  }
  ui.contextVisitor.replaceChildren(
    ...rows.flatMap(([term, detail]) => [h("dt", { text: term }), h("dd", { text: detail })]),
  );
}

/** Transfer to: the queue, or a colleague who is online or away (by name). */
function renderTransferOptions() {
  const others = [...state.team.entries()]
    .filter(([id, agent]) => {
      if (state.agent && id === state.agent.id) return false;
      return agent.status === "online" || agent.status === "away";
    })
    .map(([id, agent]) => [id, nameOf(id), agent.status])
    .sort((a, b) => a[1].localeCompare(b[1]));
  const wanted = [
    ["", "Back to the queue"],
    ...others.map(([id, name, status]) => [id, `${name}${status === "away" ? " (away)" : ""}`]),
  ];
  const current = ui.transferSelect.value;
  const options = ui.transferSelect.options;
  const same =
    options.length === wanted.length &&
    wanted.every(([value, text], i) => options[i].value === value && options[i].text === text);
  if (!same) {
    const fresh = wanted.map(([value, text]) => h("option", { value, text }));
    ui.transferSelect.replaceChildren(...fresh);
    if (wanted.some(([value]) => value === current)) ui.transferSelect.value = current;
  }
}

// Whether the log follows its newest entry: true unless the agent scrolled up to read.
let stickToBottom = true;

function followLogScroll() {
  const log = ui.log;
  stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function renderLog(c) {
  const log = ui.log;
  const entries = [...c.items.values()]
    .filter((item) => item.kind !== "message" || item.message.content)
    .sort((a, b) => a.time - b.time || a.n - b.n);
  if (c.run && c.run.content) {
    const content = c.run.content;
    entries.push({ key: `r:${c.run.id}`, kind: "run", v: content.length, content });
  }
  for (const [key, out] of c.outgoing) {
    entries.push({ key, kind: "outgoing", v: 1, content: out.content, time: out.time });
  }
  reconcile(log, entries, (item) => item.key, buildEntry, updateEntry);
  if (viewChanged) stickToBottom = true;
  if (stickToBottom) log.scrollTop = log.scrollHeight;
  viewChanged = false;
}

function buildEntry(item) {
  if (item.kind === "note") return h("li", { class: "note", dataset: { role: "event" } });
  if (item.kind === "step") {
    return h(
      "li",
      { class: "step", dataset: { role: "step" } },
      h("span", { class: "step-action" }),
      h("code", { class: "step-params" }),
      h("span", { class: "step-result" }),
    );
  }
  const li = h(
    "li",
    { class: "msg" },
    h(
      "div",
      { class: "msg-meta" },
      h("span", { class: "msg-who" }),
      h("time", { class: "msg-time" }),
    ),
    h("p", { class: "msg-body" }),
  );
  return li;
}

function updateEntry(li, item) {
  if (li.dataset.v === String(item.v)) return;
  li.dataset.v = String(item.v);
  if (item.kind === "note") {
    setText(li, item.text);
    return;
  }
  if (item.kind === "step") {
    setText(li.children[0], `Tool: ${item.action}`);
    setText(li.children[1], pretty(item.params).replace(/\s+/g, " "));
    setText(li.children[2], item.observation ? `→ ${item.observation}` : "waiting for approval");
    return;
  }
  const [meta, body] = li.children;
  const [who, time] = meta.children;
  let role;
  let speaker;
  let content;
  let when = null;
  if (item.kind === "run") {
    role = "assistant";
    speaker = "Bot (answering…)";
    content = item.content;
    li.dataset.streaming = "true";
  } else if (item.kind === "outgoing") {
    role = "agent";
    speaker = "You (sending…)";
    content = item.content;
    when = item.time;
    li.dataset.pending = "true";
  } else {
    const message = item.message;
    role = message.role;
    speaker = whoSaid(message);
    content = message.content;
    when = timeOf(message.created_at);
    li.dataset.messageId = message.id;
    if (message.role === "agent" && state.agent && message.agent?.id === state.agent.id) {
      li.classList.add("msg-own");
    }
    if (message.status && message.status !== "completed") li.dataset.messageStatus = message.status;
  }
  li.dataset.role = role;
  li.classList.add(`msg-${role}`);
  setText(who, speaker);
  if (when) {
    time.dateTime = new Date(when).toISOString();
    setText(time, clockTime(when));
  } else setText(time, "");
  setText(body, content);
}

// -- start ----------------------------------------------------------------------------------

function start() {
  buildPage();
  const saved = loadSaved();
  const auth = saved.auth;
  const expired = auth && auth.expires_at && Date.parse(auth.expires_at) <= Date.now();
  if (auth && auth.token && !expired) {
    state.auth = auth;
    state.agent = auth.agent || null;
    state.openId = saved.open || null;
    state.watched = new Set(Array.isArray(saved.watched) ? saved.watched : []);
    state.contexts = saved.contexts && typeof saved.contexts === "object" ? saved.contexts : {};
    if (state.openId) viewChanged = true;
    connect();
  } else {
    if (expired) state.signInError = "Your session has expired: sign in again.";
    setPhase("signed-out");
    persist();
  }
  changed();
  if (state.phase === "signed-out") ui.email.focus();
}

start();
