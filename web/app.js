// The meeting-room web app: sign in (host), create and run a room, or join one
// as a guest at /r/<code>. Plain DOM, no framework; every piece of user text is
// set with textContent, never parsed as HTML.

import { DDPClient, DDPError, sameOriginUrl } from "./ddp.js";

const TOKEN_KEY = "roomd.token";
const HOST_ROOM_KEY = "roomd.hostRoom";
const seatKey = (code) => `roomd.seat.${code}`;

const client = new DDPClient(sameOriginUrl());
// For debugging from the console (and the browser tests): the live client.
window.roomd = { client };

const main = document.getElementById("main");
const connEl = document.getElementById("conn");
const accountEl = document.getElementById("account");

// ---------------------------------------------------------------------------
// Small helpers

/** Builds an element: h("button", {class: "x", onclick: f}, "text", child). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

/** The first user-perceived character of `text` (a whole emoji such as 👩‍💻, never half of one), for avatars. */
function firstGrapheme(text) {
  const t = text.trim();
  if (!t) return "";
  if (typeof Intl !== "undefined" && Intl.Segmenter) {
    for (const { segment } of new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(t)) return segment;
  }
  return [...t][0]; // a whole code point at least
}

/** Guest names: at most 50 Unicode characters (code points, as the server counts; `maxlength` counts UTF-16 units). */
const MAX_GUEST_NAME = 50;

/**
 * A meeting code from what someone typed or pasted: "abc-def-ghi", "ABC DEF GHI", "abcdefghi", a whole share link, or a
 * link with a sentence's punctuation glued on ("…/r/abc-def-ghi)."). Returns "abc-def-ghi", or null when no code is there.
 */
function parseCode(text) {
  let t = String(text);
  const at = t.lastIndexOf("/r/");
  if (at >= 0) t = t.slice(at + 3);
  // Punctuation and spaces around the code, then the separators inside it.
  t = t.replace(/^[^A-Za-z]+|[^A-Za-z]+$/g, "").replace(/[\s\-_.·]+/g, "");
  if (!/^[A-Za-z]{9}$/.test(t)) return null;
  t = t.toLowerCase();
  return `${t.slice(0, 3)}-${t.slice(3, 6)}-${t.slice(6, 9)}`;
}

/** A labelled form field: returns [wrapper, input]. */
function field(label, inputProps, hint) {
  const id = nextId("f");
  const hintId = hint ? `${id}-hint` : undefined;
  const input = h("input", { id, "aria-describedby": hintId, ...inputProps });
  const wrap = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
  return [wrap, input];
}

/** Shows `text` in `el` (an alert region), or clears it. */
function say(el, text, kind = "error") {
  el.textContent = text || "";
  el.className = text ? `notice ${kind}` : "notice";
  el.hidden = !text;
}

function decodeJwtPayload(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

const dateOf = (d) => (d && typeof d === "object" && "$date" in d ? new Date(d.$date) : new Date(d));
const timeOf = (d) => dateOf(d).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** One human sentence for every refusal the server can give. */
function sentence(e) {
  if (!(e instanceof DDPError)) return "Something went wrong. Please try again.";
  const d = e.details || {};
  switch (e.error) {
    case "error-room-not-found":
      return "Room not found. Check the link: no meeting has this code.";
    case "error-room-locked":
      return "Room is locked. The host is not letting anyone in right now.";
    case "error-room-full":
      return "Room is full. Try again when someone leaves.";
    case "error-room-inactive":
      return "This meeting has ended.";
    case "error-room-archived":
      return "This room is archived; nobody can join it.";
    case "error-not-allowed":
      return e.reason === "Guests are not allowed in this room"
        ? "Guests are not allowed in this room. Ask the host to allow guests, or sign in."
        : "You are not allowed to do that in this room.";
    case "too-many-requests":
      return `Too many attempts. Please wait ${d.seconds ?? "a few"} seconds and try again.`;
    case "error-duplicate-channel-name":
      return `A room named “${d.channel_name ?? ""}” already exists. Pick another name.`;
    case "error-invalid-room-name":
    case "error-invalid-name":
      return "Room names use letters, digits, “-”, “_” and “.” only (at most 100).";
    case "error-invalid-user":
      return "Please sign in first.";
    case "error-action-not-allowed":
      return `${e.reason}.`;
    case "error-invalid-settings":
      return "That value is not valid.";
    case "error-message-size-exceeded":
      return `That message is too long (at most ${d.maxLength ?? 5000} characters).`;
    case "error-user-not-in-room":
      return "You are no longer in this room.";
    case "error-you-are-last-owner":
      return "You are the host: end the meeting rather than leave it.";
    case "disconnected":
    case "closed":
      return "No connection to the server. It reconnects by itself; try again in a moment.";
    case "timeout":
      return "The server did not answer in time. Please try again.";
    case 400:
      if (d.field === "guestName") {
        // The server names the refused character: "free of … (found U+202E)".
        const found = /found (U\+[0-9A-F]{4,6})/.exec(d.expected ?? "");
        if (found) {
          return `Your name contains an invisible or control character (${found[1]}) that could disguise it. Please remove it.`;
        }
        return `Please enter a name of 1 to ${MAX_GUEST_NAME} characters.`;
      }
      return e.reason;
    case 403:
      return `That sign-in token does not work: ${e.reason}`;
    default:
      return e.reason || "Something went wrong. Please try again.";
  }
}

/** What a system message says, for the chat log. */
function systemText(m) {
  const who = (m.u && (m.u.name || m.u.username)) || "Someone";
  switch (m.t) {
    case "uj":
      return `${m.msg || who} joined`;
    case "ul":
      return `${m.msg || who} left`;
    case "au":
      return `${who} added ${m.msg}`;
    case "ru":
      return `${who} removed ${m.msg}`;
    case "room-ended":
      return `${who} ended the meeting`;
    case "room-locked":
      return `${who} locked the room`;
    case "room-unlocked":
      return `${who} unlocked the room`;
    case "room-max-participants-changed":
      return m.msg ? `${who} set the capacity to ${m.msg}` : `${who} removed the capacity limit`;
    case "room-guest-access-changed":
      return m.msg === "true" ? `${who} allowed guests` : `${who} turned guest access off`;
    case "room-guest-chat-changed":
      return m.msg === "true" ? `${who} opened the chat to guests` : `${who} closed the chat to guests`;
    case "r":
      return `${who} renamed the room to ${m.msg}`;
    default:
      return `${who}: ${m.t}${m.msg ? ` (${m.msg})` : ""}`;
  }
}

// ---------------------------------------------------------------------------
// Connection status and views

const connText = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};
client.addEventListener("status", (e) => {
  const { state, delay } = e.detail;
  connEl.dataset.state = state;
  connEl.textContent =
    state === "reconnecting" && delay ? `Reconnecting… (retry in ${Math.ceil(delay / 1000)} s)` : connText[state];
});

/** The current view: replaced as a whole on navigation. */
let view = null;
function show(next) {
  if (view && view.stop) view.stop();
  main.replaceChildren();
  view = next;
}

client.addEventListener("connected", (e) => {
  if (e.detail.reconnect && view && view.resume) view.resume();
});

function connected() {
  // The first connect may wait on retries; the call that follows would
  // report "disconnected" anyway, so cap the wait.
  return Promise.race([
    client.connect(),
    new Promise((_, reject) =>
      setTimeout(() => reject(new DDPError("disconnected", "Not connected to the server")), 10000),
    ),
  ]);
}

// ---------------------------------------------------------------------------
// A room's live state: participants, status and messages, from
// `<rid>/participants` and `stream-room-messages`, plus getRoomParticipants.

class RoomLive {
  constructor(rid, { me, onChange, onMessage, onGone }) {
    this.rid = rid;
    this.me = me; // my participant id
    this.people = new Map();
    this.room = null;
    this.subIds = [];
    this.onChange = onChange;
    this.onMessage = onMessage;
    this.onGone = onGone;
    this.listener = (e) => this.event(e.detail);
    this.nosub = (e) => {
      if (this.subIds.includes(e.detail.id) && this.onGone) this.onGone("nosub");
    };
    client.addEventListener("changed", this.listener);
    client.addEventListener("nosub", this.nosub);
  }

  /** Subscribes, then reads the snapshot. */
  async start() {
    this.subIds = [
      await client.subscribe("stream-notify-room", [`${this.rid}/participants`, false]),
      await client.subscribe("stream-room-messages", [this.rid, false]),
    ];
    await this.snapshot();
  }

  // Events that arrive while the snapshot is on its way may be older or
  // newer than it: they are held and replayed on top of it. Replaying an
  // older one changes nothing (joined/left are keyed by participant id, and
  // the last room-updated before a snapshot equals it), so the result is
  // always the newest state.
  async snapshot() {
    this.held = [];
    try {
      const v = await client.call("getRoomParticipants", this.rid);
      this.room = v.room;
      this.people = new Map(v.participants.map((p) => [p.id, p]));
      const held = this.held;
      this.held = null;
      for (const ev of held) this.apply(ev);
      this.onChange(this);
    } finally {
      this.held = null;
    }
  }

  refreshSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      // On failure the list keeps the id; the next snapshot fixes it.
      this.snapshot().catch(() => {});
    }, 200);
  }

  stop() {
    clearTimeout(this.refreshTimer);
    client.removeEventListener("changed", this.listener);
    client.removeEventListener("nosub", this.nosub);
    for (const id of this.subIds) client.unsubscribe(id);
  }

  event({ collection, eventName, args }) {
    if (collection === "stream-notify-room" && eventName === `${this.rid}/participants`) {
      if (this.held) this.held.push(args);
      else if (this.room) {
        this.apply(args);
        this.onChange(this);
      }
      // Before the first snapshot is asked for: it will include this.
    } else if (collection === "stream-room-messages" && eventName === this.rid) {
      this.onMessage(args[0]);
    }
  }

  apply([kind, body]) {
    if (kind === "joined") {
      const p = { ...this.people.get(body.id), ...body };
      this.people.set(body.id, p);
      // Events carry a user's id, not their name; a snapshot has it.
      if (p.name === undefined && p.userId !== null) this.refreshSoon();
    } else if (kind === "left") {
      this.people.delete(body.id);
      if (body.id === this.me && this.onGone) this.onGone("left");
    } else if (kind === "room-updated") {
      Object.assign(this.room, {
        locked: body.isLocked,
        active: body.isActive,
        maxParticipants: body.maxParticipants,
        participantCount: body.participantCount,
      });
    }
  }

  get full() {
    const r = this.room;
    return !!r && r.maxParticipants !== null && r.participantCount >= r.maxParticipants;
  }
}

const displayName = (p) => p.name ?? p.guestName ?? p.userId ?? "?";

/** The participants card: a count and a list, marking the host and "you". */
function participantsPanel() {
  const count = h("span", { class: "count", "data-testid": "participant-count" });
  // "2 / 2 — full", "3 / 2 — full, over capacity" (the host lowered the capacity below the count): words, not just
  // numbers, so "3 / 2" does not read as a glitch.
  const badge = h("span", { class: "badge warn", "data-testid": "capacity-state" });
  const fullness = h("span", { hidden: true }, " — ", badge);
  const list = h("ul", { class: "people", "aria-label": "Participants" });
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "people-h" },
    h("h2", { id: "people-h" }, "People ", count, fullness),
    list,
  );
  function render(live) {
    const r = live.room;
    count.textContent = r.maxParticipants === null ? `${r.participantCount}` : `${r.participantCount} / ${r.maxParticipants}`;
    count.setAttribute("aria-label", r.maxParticipants === null ? `${r.participantCount} in the room` : `${r.participantCount} of ${r.maxParticipants} seats taken`);
    fullness.hidden = !live.full;
    badge.textContent = r.maxParticipants !== null && r.participantCount > r.maxParticipants ? "full, over capacity" : "full";
    const people = [...live.people.values()].sort((a, b) => (a.joinedAt < b.joinedAt ? -1 : a.joinedAt > b.joinedAt ? 1 : 0));
    list.replaceChildren(
      ...people.map((p) =>
        h(
          "li",
          {},
          h("span", { class: "avatar", "aria-hidden": "true" }, firstGrapheme(displayName(p)).toUpperCase() || "?"),
          h("span", { class: "name" }, displayName(p)),
          p.isHost ? h("span", { class: "tag" }, "host") : null,
          p.guestName !== null && !p.isHost ? h("span", { class: "tag muted" }, "guest") : null,
          p.id === live.me ? h("span", { class: "tag you" }, "you") : null,
        ),
      ),
    );
  }
  return { el, render };
}

/** The chat card. `send(text)` posts; `setEnabled` shows or hides the composer (ended room, guest chat off). */
function chatPanel(send) {
  const log = h("ol", { class: "chat-log", role: "log", "aria-live": "polite", "aria-label": "Chat messages" });
  const seen = new Set();
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  let form = null;
  if (send) {
    const id = nextId("msg");
    const input = h("input", { id, autocomplete: "off", maxlength: 5000, required: true, placeholder: "Say something…" });
    const button = h("button", { type: "submit" }, "Send");
    form = h(
      "form",
      {
        class: "chat-form",
        onsubmit: async (ev) => {
          ev.preventDefault();
          const text = input.value.trim();
          if (!text) return;
          button.disabled = true;
          try {
            const m = await send(text);
            add(m);
            input.value = "";
            say(err, "");
          } catch (e) {
            say(err, sentence(e));
          } finally {
            button.disabled = false;
            input.focus();
          }
        },
      },
      h("label", { for: id, class: "visually-hidden" }, "Message"),
      input,
      button,
    );
  }
  // The newest `ts` shown: where a catch-up after a reconnect starts.
  let latest = null;
  function add(m) {
    if (!m || seen.has(m._id)) return;
    seen.add(m._id);
    const ts = dateOf(m.ts).getTime();
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    const item = m.t
      ? h("li", { class: "sys" }, systemText(m))
      : h(
          "li",
          { class: "msg" },
          h("span", { class: "who" }, (m.u && (m.u.name || m.u.username)) || "?"),
          h("time", { datetime: dateOf(m.ts).toISOString() }, timeOf(m.ts)),
          h("p", {}, m.msg),
        );
    item.dataset.ts = String(ts);
    // Missed messages fetched after a reconnect can be older than live ones that came first: keep `ts` order
    // (strictly increasing per room on the server).
    if (latest === null || ts >= latest) {
      log.append(item);
      latest = ts;
    } else {
      const later = [...log.children].find((li) => Number(li.dataset.ts) > ts);
      log.insertBefore(item, later ?? null);
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  const closed = h("p", { class: "hint", hidden: true });
  const el = h(
    "section",
    { class: "card chat", "aria-labelledby": "chat-h" },
    h("h2", { id: "chat-h" }, "Chat"),
    log,
    form,
    closed,
    err,
  );
  // Off (an ended room, guest chat turned off): the composer goes away rather than sitting there disabled, and
  // `why` says so.
  function setEnabled(on, why = "The meeting has ended; the chat is read-only.") {
    if (!form) return;
    form.hidden = !on;
    closed.hidden = on;
    closed.textContent = why;
  }
  return { el, add, setEnabled, latest: () => latest };
}

/**
 * After a reconnect: every message of room `rid` after `since` (ms; what the chat showed last, or when we joined)
 * that the chat has not shown, through Rocket.Chat's `loadMissedMessages`. Joins and leaves come along as system
 * messages; the chat drops what it already has and keeps `ts` order. One answer holds at most the newest 1000 (or
 * fewer under its byte cap): a signed-in user pages back from its oldest with `loadHistory` until `since`; a guest
 * may not, so it returns false when the answer may have left older ones out. Also false when the call fails.
 */
async function catchUp(rid, since, chat, { signedIn }) {
  if (since === null || since === undefined) return true;
  const tsOf = (m) => dateOf(m.ts).getTime();
  try {
    const missed = await client.call("loadMissedMessages", rid, { $date: since });
    if (!Array.isArray(missed) || missed.length === 0) return true;
    missed.forEach(chat.add);
    if (!signedIn) return missed.length < 1000;
    let oldest = Math.min(...missed.map(tsOf));
    for (let pages = 0; pages < 50 && oldest > since + 1; pages++) {
      const { messages } = await client.call("loadHistory", rid, { $date: oldest }, 100, null);
      const gap = messages.filter((m) => tsOf(m) > since);
      gap.forEach(chat.add);
      if (gap.length < messages.length || messages.length === 0) return true;
      oldest = Math.min(...messages.map(tsOf));
    }
    return true;
  } catch {
    // The room goes on live; only the gap stays empty, and the caller says so.
    return false;
  }
}

const MISSED_UNKNOWN = "Reconnected, but some messages sent while you were away could not be loaded.";

/** A banner for connection trouble inside a room view. */
function connectionBanner() {
  const el = h("p", { class: "banner", role: "status", hidden: true });
  const onStatus = (e) => {
    const s = e.detail.state;
    if (s === "reconnecting" || s === "connecting") {
      el.hidden = false;
      el.textContent = "Connection lost. Reconnecting… your seat is kept for a few seconds.";
    }
  };
  client.addEventListener("status", onStatus);
  return {
    el,
    hide: () => (el.hidden = true),
    note: (text) => {
      el.hidden = false;
      el.textContent = text;
    },
    stop: () => client.removeEventListener("status", onStatus),
  };
}

// ---------------------------------------------------------------------------
// Sign-in

function takeTokenFromFragment() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (!m) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  // The token must not linger in the address bar, history or bookmarks.
  history.replaceState(null, "", location.pathname + location.search);
}

function renderAccount(token) {
  if (!token) {
    accountEl.replaceChildren();
    return;
  }
  const claims = decodeJwtPayload(token);
  accountEl.replaceChildren(
    h("span", { class: "who" }, claims.name || claims.username || claims.sub || "signed in"),
    h(
      "button",
      {
        class: "link",
        type: "button",
        onclick: async () => {
          try {
            if (client.state === "connected") await client.call("logout");
          } catch {
            // Signing out locally is what matters.
          }
          localStorage.removeItem(TOKEN_KEY);
          localStorage.removeItem(HOST_ROOM_KEY);
          renderAccount(null);
          signInPage();
        },
      },
      "Sign out",
    ),
  );
}

function signInPage(message) {
  show({});
  document.title = "roomd — meetings";
  renderAccount(null);
  const [tokenField, tokenInput] = field(
    "Access token",
    { name: "token", autocomplete: "off", spellcheck: "false", required: true },
    "Open the link roomd prints at startup, or paste a token from “roomd token --user-id you --username you”.",
  );
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        button.disabled = true;
        try {
          const token = tokenInput.value.trim();
          await connected();
          await client.call("login", { resume: token });
          localStorage.setItem(TOKEN_KEY, token);
          hostPage();
        } catch (e) {
          say(err, sentence(e));
          button.disabled = false;
        }
      },
    },
    tokenField,
    button,
  );
  const errBox = err;
  if (message) say(errBox, message);
  main.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "signin-h" },
      h("h1", { id: "signin-h" }, "Host a meeting"),
      h("p", { class: "lead" }, "Sign in to create a room and share its link."),
      form,
      errBox,
    ),
    joinCard("h2", "Join a meeting", "Got a code? No account needed."),
  );
}

/**
 * "Join a meeting": a code field that takes the code however it is typed or pasted (spaces, no dashes, capitals, the
 * whole link), then opens its share link.
 */
function joinCard(heading, title, lead) {
  const [codeField, codeInput] = field(
    "Meeting code",
    { name: "code", placeholder: "abc-def-ghi", autocomplete: "off", spellcheck: "false", required: true },
    "Nine letters, like abc-def-ghi (spaces and dashes optional).",
  );
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  const joinForm = h(
    "form",
    {
      onsubmit: (ev) => {
        ev.preventDefault();
        const c = parseCode(codeInput.value);
        if (!c) return say(err, "A meeting code has nine letters, like abc-def-ghi. Please check it.");
        location.assign(`/r/${c}`);
      },
    },
    codeField,
    h("button", { type: "submit", class: "secondary" }, "Go to meeting"),
  );
  const hid = nextId("h");
  return h(
    "section",
    { class: "card narrow", "aria-labelledby": hid },
    h(heading, { id: hid }, title),
    h("p", { class: "lead" }, lead),
    joinForm,
    err,
  );
}

/** A share link with no code in it (`/r`, `/r/`, a mangled link): said kindly, with a way on. */
function noCodePage() {
  show({});
  renderAccount(localStorage.getItem(TOKEN_KEY));
  document.title = "roomd — room not found";
  main.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "nocode-h" },
      h("h1", { id: "nocode-h" }, "Room not found"),
      h(
        "p",
        { class: "lead" },
        "This link does not contain a meeting code. Check the link you were sent, or type the code below.",
      ),
      h("p", {}, h("a", { href: "/" }, "Go to the start page")),
    ),
    joinCard("h2", "Join a meeting", "Meeting codes look like abc-def-ghi."),
  );
}

// ---------------------------------------------------------------------------
// Host

async function hostPage() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return signInPage();
  show({});
  renderAccount(token);
  document.title = "roomd — host";
  const wait = h("p", { class: "card narrow lead", role: "status" }, "Signing in…");
  main.append(wait);
  try {
    await connected();
    await client.call("login", { resume: token });
  } catch (e) {
    if (e instanceof DDPError && (e.error === 403 || e.error === 400)) {
      localStorage.removeItem(TOKEN_KEY);
      return signInPage(sentence(e));
    }
    wait.textContent = sentence(e);
    wait.append(" ", h("button", { type: "button", class: "secondary", onclick: () => hostPage() }, "Retry"));
    return;
  }
  const rid = localStorage.getItem(HOST_ROOM_KEY);
  if (rid) {
    try {
      const v = await client.call("getRoomParticipants", rid);
      if (v.room.active) return hostRoom(rid);
    } catch {
      // Gone or no longer ours: offer a new room.
    }
    localStorage.removeItem(HOST_ROOM_KEY);
  }
  createRoomForm();
}

/** After a reconnect: the new connection signs in again. */
function relogin() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) client.call("login", { resume: token }).catch(() => {});
}

function createRoomForm(message) {
  show({ resume: relogin });
  document.title = "roomd — new meeting";
  const [nameField, nameInput] = field(
    "Room name",
    { name: "name", required: true, maxlength: 100, autocomplete: "off", placeholder: "weekly-sync" },
    "Letters, digits, “-”, “_” and “.”; spaces become “-”.",
  );
  const [capField, capInput] = field(
    "Capacity",
    { name: "capacity", type: "number", min: 1, step: 1, inputmode: "numeric", placeholder: "Unlimited" },
    "Most people at once, you included. Leave empty for no limit.",
  );
  const guestsId = nextId("f");
  const guests = h("input", { id: guestsId, type: "checkbox", name: "guests", checked: true });
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  if (message) say(err, message, "info");
  const button = h("button", { type: "submit" }, "Create room");
  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const name = nameInput.value.trim().replace(/\s+/g, "-");
        const cap = capInput.value.trim();
        if (cap && !(Number.isInteger(Number(cap)) && Number(cap) >= 1)) {
          return say(err, "Capacity must be a whole number of at least 1, or empty.");
        }
        button.disabled = true;
        try {
          const doc = await client.call("createPrivateGroup", name, [], false, {}, {
            maxParticipants: cap ? Number(cap) : null,
            guestAccess: guests.checked,
            // A meeting's guests take part in its chat.
            guestChat: true,
          });
          localStorage.setItem(HOST_ROOM_KEY, doc._id);
          hostRoom(doc._id);
        } catch (e) {
          say(err, sentence(e));
          button.disabled = false;
        }
      },
    },
    nameField,
    capField,
    h("div", { class: "field check" }, guests, h("label", { for: guestsId }, "Let guests join with the link (no account)")),
    button,
  );
  main.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "create-h" },
      h("h1", { id: "create-h" }, "New meeting room"),
      form,
      err,
    ),
  );
  nameInput.focus();
}

async function hostRoom(rid) {
  const banner = connectionBanner();
  const title = h("h1", { id: "room-h" }, "…");
  const state = h("span", { class: "badge" });
  const link = h("input", { id: "share-link", readonly: true, "aria-label": "Share link", "data-testid": "share-link" });
  const copyMsg = h("span", { class: "hint", role: "status" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(link.value);
          copyMsg.textContent = "Link copied";
        } catch {
          link.select();
          copyMsg.textContent = "Select and copy the link (Ctrl+C / ⌘C)";
        }
      },
    },
    "Copy link",
  );
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  const lockBtn = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Lock room");
  const [capField, capInput] = field("Capacity", { type: "number", min: 1, step: 1, inputmode: "numeric", placeholder: "Unlimited" });
  const capBtn = h("button", { type: "submit", class: "secondary" }, "Set capacity");
  const capForm = h("form", { class: "inline" }, capField, capBtn);
  const endBtn = h("button", { type: "button", class: "danger" }, "End meeting");
  const confirmBox = h(
    "div",
    { class: "confirm", hidden: true, role: "group", "aria-label": "Confirm ending" },
    h("span", {}, "End the meeting for everyone?"),
  );
  const people = participantsPanel();
  const chat = chatPanel((text) => client.call("sendMessage", { rid, msg: text }));
  // Shown once the room is known to take guests; a members-only room says so instead.
  const share = h(
    "div",
    { class: "share", hidden: true },
    h("label", { for: "share-link" }, "Share this link with guests"),
    h("div", { class: "row" }, link, copy),
    copyMsg,
  );
  const membersOnly = h(
    "p",
    { class: "hint", hidden: true, "data-testid": "members-only" },
    "Guests cannot join this room: it is for signed-in members only.",
  );
  let live = null;
  let ended = false;
  // From the room document (getRoomParticipants does not carry it); null until known.
  let guestAccess = null;

  async function act(button, fn) {
    button.disabled = true;
    try {
      await fn();
      say(err, "");
    } catch (e) {
      say(err, sentence(e));
    } finally {
      button.disabled = ended;
    }
  }

  lockBtn.addEventListener("click", () =>
    act(lockBtn, () => client.call("saveRoomSettings", rid, { locked: !(live && live.room.locked) })),
  );
  capForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = capInput.value.trim();
    if (v && !(Number.isInteger(Number(v)) && Number(v) >= 1)) {
      return say(err, "Capacity must be a whole number of at least 1, or empty for no limit.");
    }
    act(capBtn, () => client.call("saveRoomSettings", rid, { maxParticipants: v ? Number(v) : null }));
  });
  const yes = h("button", { type: "button", class: "danger" }, "End for everyone");
  const no = h("button", { type: "button", class: "secondary" }, "Cancel");
  confirmBox.append(yes, no);
  endBtn.addEventListener("click", () => {
    confirmBox.hidden = false;
    endBtn.hidden = true;
    no.focus();
  });
  no.addEventListener("click", () => {
    confirmBox.hidden = true;
    endBtn.hidden = false;
    endBtn.focus();
  });
  yes.addEventListener("click", () =>
    act(yes, async () => {
      await client.call("endRoom", rid);
      confirmBox.hidden = true;
    }),
  );

  const newRoom = h(
    "button",
    {
      type: "button",
      hidden: true,
      onclick: async () => {
        // Leaving lets an ended room empty and be released.
        try {
          await client.call("leaveRoom", rid);
        } catch {
          // Guests may still be seated; the room empties when they go.
        }
        localStorage.removeItem(HOST_ROOM_KEY);
        createRoomForm();
      },
    },
    "New meeting",
  );

  function render(l) {
    const r = l.room;
    document.title = `roomd — ${r.name}`;
    title.textContent = r.name;
    link.value = `${location.origin}/r/${r.code}`;
    ended = !r.active;
    state.textContent = ended ? "Ended" : r.locked ? "Locked" : "Open";
    state.className = `badge ${ended ? "" : r.locked ? "warn" : "ok"}`;
    lockBtn.textContent = r.locked ? "Unlock room" : "Lock room";
    lockBtn.setAttribute("aria-pressed", String(r.locked));
    if (document.activeElement !== capInput) capInput.value = r.maxParticipants ?? "";
    // An ended room has nothing left to control or share: the controls go, "New meeting" stays.
    for (const b of [lockBtn, capBtn, endBtn, copy, capInput]) b.disabled = ended;
    lockBtn.hidden = ended;
    capForm.hidden = ended;
    endBtn.hidden = ended || !confirmBox.hidden;
    newRoom.hidden = !ended;
    share.hidden = ended || guestAccess !== true;
    membersOnly.hidden = ended || guestAccess !== false;
    chat.setEnabled(!ended);
    if (ended) confirmBox.hidden = true;
    people.render(l);
  }

  const controls = h(
    "section",
    { class: "card", "aria-labelledby": "room-h" },
    h("div", { class: "title-row" }, title, state),
    share,
    membersOnly,
    h("div", { class: "controls" }, lockBtn, capForm, endBtn, confirmBox, newRoom),
    err,
  );
  show({
    stop: () => {
      banner.stop();
      if (live) live.stop();
    },
    resume: async () => {
      // A new connection: sign in again, then watch the room again.
      try {
        await client.call("login", { resume: localStorage.getItem(TOKEN_KEY) });
        if (live) live.stop();
        const since = chat.latest();
        await start();
        if (await catchUp(rid, since, chat, { signedIn: true })) banner.hide();
        else banner.note(MISSED_UNKNOWN);
      } catch (e) {
        banner.note(sentence(e));
      }
    },
  });
  main.append(banner.el, controls, h("div", { class: "grid" }, people.el, chat.el));

  /** A message for the chat; a change of guest access also changes what the share box shows. */
  function onMessage(m) {
    if (m && m.t === "room-guest-access-changed") {
      guestAccess = m.msg === "true";
      if (live && live.room) render(live);
    }
    chat.add(m);
  }

  async function start() {
    try {
      guestAccess = (await client.call("getRoomById", rid)).guestAccess === true;
    } catch {
      // Unknown: the share box stays hidden rather than offer a link that may not work.
      guestAccess = null;
    }
    live = new RoomLive(rid, { me: null, onChange: render, onMessage });
    await live.start();
    const mine = [...live.people.values()].find((p) => p.isHost);
    live.me = mine ? mine.id : null;
    render(live);
    try {
      const h0 = await client.call("loadHistory", rid, null, 50, null);
      h0.messages
        .slice()
        .sort((a, b) => dateOf(a.ts) - dateOf(b.ts))
        .forEach(chat.add);
    } catch {
      // History is a nicety; live messages still arrive.
    }
  }
  try {
    await start();
  } catch (e) {
    localStorage.removeItem(HOST_ROOM_KEY);
    createRoomForm(sentence(e));
  }
}

// ---------------------------------------------------------------------------
// Guest

function loadSeat(code) {
  try {
    return JSON.parse(sessionStorage.getItem(seatKey(code)) || "null");
  } catch {
    return null;
  }
}

function guestPage(code) {
  show({});
  renderAccount(null);
  document.title = `roomd — join ${code}`;
  const [nameField, nameInput] = field("Your name", {
    name: "guestName",
    required: true,
    // `maxlength` counts UTF-16 units: 👩‍💻 is 5 of them but 3 of the server's 50. Twice the limit lets every name
    // the server takes be typed; the length is checked below in code points.
    maxlength: 2 * MAX_GUEST_NAME,
    autocomplete: "name",
    placeholder: "Jane Smith",
  });
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  const button = h("button", { type: "submit" }, "Join");
  let joining = false;
  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        // One join at a time: a double click must not take two seats.
        if (joining) return;
        const guestName = nameInput.value.trim();
        if (!guestName || [...guestName].length > MAX_GUEST_NAME) {
          return say(err, `Please enter a name of 1 to ${MAX_GUEST_NAME} characters.`);
        }
        joining = true;
        button.disabled = true;
        button.textContent = "Joining…";
        say(err, "");
        try {
          await connected();
          const p = await client.call("join-room", { code, guestName });
          sessionStorage.setItem(seatKey(code), JSON.stringify({ guestName, guestToken: p.guestToken, id: p.id, rid: p.roomId }));
          guestRoom(code, p);
        } catch (e) {
          say(err, sentence(e));
          joining = false;
          button.disabled = false;
          button.textContent = "Join";
        }
      },
    },
    nameField,
    button,
  );
  main.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "guest-h" },
      h("h1", { id: "guest-h" }, "Join the meeting"),
      h("p", { class: "lead" }, "Meeting code ", h("code", {}, code)),
      form,
      err,
    ),
  );
  const seat = loadSeat(code);
  if (seat) {
    // A reload: take the same seat back if it is still held.
    nameInput.value = seat.guestName;
    joining = true;
    button.disabled = true;
    button.textContent = "Rejoining…";
    connected()
      .then(() => client.call("join-room", { code, guestName: seat.guestName, guestToken: seat.guestToken }))
      .then((p) => {
        sessionStorage.setItem(seatKey(code), JSON.stringify({ ...seat, guestToken: p.guestToken, id: p.id }));
        guestRoom(code, p);
      })
      .catch((e) => {
        sessionStorage.removeItem(seatKey(code));
        say(err, sentence(e));
        joining = false;
        button.disabled = false;
        button.textContent = "Join";
      });
  } else {
    nameInput.focus();
  }
}

function guestRoom(code, participant) {
  let seat = loadSeat(code);
  const rid = participant.roomId;
  const banner = connectionBanner();
  const title = h("h1", { id: "room-h" }, "Meeting");
  const state = h("span", { class: "badge" });
  const err = h("p", { class: "notice", role: "alert", hidden: true });
  const people = participantsPanel();
  // Guests post where the room's `guestChat` is on (the composer follows it).
  const chat = chatPanel((text) => client.call("sendMessage", { rid, msg: text }));
  let live = null;
  let over = false;
  let leaving = false;

  const leave = h(
    "button",
    {
      type: "button",
      class: "danger",
      onclick: async () => {
        leave.disabled = true;
        // Our own "left" event arrives before the call's result.
        leaving = true;
        try {
          await client.call("leaveRoom", rid);
        } catch {
          // Already gone (ended and left, or expired): leaving is done.
        }
        finish("You left the meeting.", true);
      },
    },
    "Leave",
  );

  function render(l) {
    const r = l.room;
    document.title = `roomd — ${r.name}`;
    title.textContent = r.name;
    state.textContent = r.active ? (r.locked ? "Locked" : "Live") : "Ended";
    state.className = `badge ${r.active ? (r.locked ? "warn" : "ok") : ""}`;
    chat.setEnabled(r.guestChat === true, "The host has not opened the chat to guests; you can read it.");
    people.render(l);
    if (!r.active) {
      // Give the seat back so the ended room can empty.
      client.call("leaveRoom", rid).catch(() => {});
      finish("This meeting has ended. The host closed the room.", false);
    }
  }

  /** Replaces the room with a closing card. */
  function finish(text, canRejoin) {
    if (over) return;
    over = true;
    sessionStorage.removeItem(seatKey(code));
    if (live) live.stop();
    banner.stop();
    show({});
    main.append(
      h(
        "section",
        { class: "card narrow", "aria-labelledby": "end-h" },
        h("h1", { id: "end-h" }, text),
        canRejoin
          ? h("button", { type: "button", onclick: () => guestPage(code) }, "Join again")
          : h("p", { class: "lead" }, "You can close this page."),
      ),
    );
  }

  async function start() {
    live = new RoomLive(rid, {
      me: participant.id,
      onChange: render,
      onMessage: (m) => {
        // The setting's only live signal is its system message.
        if (m && m.t === "room-guest-chat-changed" && live && live.room) {
          live.room.guestChat = m.msg === "true";
          render(live);
        }
        chat.add(m);
      },
      onGone: (why) => {
        if (!leaving && why === "left") finish("You are no longer in this meeting.", true);
      },
    });
    await live.start();
  }

  show({
    stop: () => {
      banner.stop();
      if (live) live.stop();
    },
    resume: async () => {
      // A new connection: reclaim the seat with its token (the server keeps
      // it for the guest grace period), then watch the room again.
      if (live) live.stop();
      try {
        const p = await client.call("join-room", { code, guestName: seat.guestName, guestToken: seat.guestToken });
        const same = p.id === participant.id;
        // What the chat showed last; nothing shown yet: everything since we joined.
        const since = chat.latest() ?? dateOf(participant.joinedAt).getTime();
        participant = p;
        seat = { ...seat, guestToken: p.guestToken, id: p.id };
        sessionStorage.setItem(seatKey(code), JSON.stringify(seat));
        await start();
        const caughtUp = await catchUp(rid, since, chat, { signedIn: false });
        if (!caughtUp) banner.note(MISSED_UNKNOWN);
        else if (same) banner.hide();
        else banner.note("Your seat had expired; you joined again as a new participant.");
      } catch (e) {
        finish(`You were disconnected and could not get back in. ${sentence(e)}`, true);
      }
    },
  });
  main.append(
    banner.el,
    h(
      "section",
      { class: "card", "aria-labelledby": "room-h" },
      h("div", { class: "title-row" }, title, state),
      h("p", { class: "lead" }, "You joined as ", h("strong", {}, participant.guestName ?? "yourself"), "."),
      h("div", { class: "controls" }, leave),
      err,
    ),
    h("div", { class: "grid" }, people.el, chat.el),
  );
  start().catch((e) => say(err, sentence(e)));
}

// ---------------------------------------------------------------------------

/**
 * A share link, `/r/<code>` as the server serves it for anything under `/r`: the code is read leniently (a trailing
 * `/`, `.` or `)` from a sentence, capitals, no dashes) and the address bar corrected; no code at all gets a kind page.
 */
function shareLink() {
  let path = location.pathname;
  try {
    path = decodeURIComponent(path);
  } catch {
    // A malformed escape: read the raw path.
  }
  const code = parseCode(path);
  if (!code) return noCodePage();
  if (location.pathname !== `/r/${code}`) history.replaceState(null, "", `/r/${code}${location.search}`);
  if (localStorage.getItem(TOKEN_KEY)) return openAsSignedIn(code);
  return guestPage(code);
}

/**
 * A signed-in person opening a share link: the host of that room goes straight into it (no guest-name form). Anyone
 * else gets the guest page. The lookup runs on a connection of its own, so the page's connection stays a guest one.
 */
async function openAsSignedIn(code) {
  show({});
  const token = localStorage.getItem(TOKEN_KEY);
  renderAccount(token);
  main.append(h("p", { class: "card narrow lead", role: "status" }, "Opening the meeting…"));
  const probe = new DDPClient(sameOriginUrl());
  let mine = null;
  try {
    await Promise.race([probe.connect(), new Promise((_, reject) => setTimeout(reject, 10000))]);
    const me = await probe.call("login", { resume: token });
    const rooms = await probe.call("rooms/get");
    mine = (Array.isArray(rooms) ? rooms : []).find((r) => r.code === code && r.hostId === me.id) ?? null;
  } catch {
    // Token refused or no answer: the guest page still works.
  } finally {
    probe.close();
  }
  if (!mine) return guestPage(code);
  localStorage.setItem(HOST_ROOM_KEY, mine._id);
  try {
    await connected();
    await client.call("login", { resume: token });
  } catch (e) {
    return signInPage(sentence(e));
  }
  hostRoom(mine._id);
}

function route() {
  takeTokenFromFragment();
  if (location.pathname === "/r" || location.pathname.startsWith("/r/")) return shareLink();
  if (localStorage.getItem(TOKEN_KEY)) return hostPage();
  return signInPage();
}

route();
