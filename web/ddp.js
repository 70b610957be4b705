// A small client for roomd's DDP protocol (protocol/README.md): connect,
// answer the server's pings and probe a silent server, calls as promises with
// a timeout, stream subscriptions, and reconnection with backoff.
//
// It keeps no session across reconnects: after every `connected` event the
// application signs in, rejoins and resubscribes as it sees fit (roomd has no
// session resumption, and a room checks membership when a `sub` arrives, so
// the order — login, join, sub — is the application's to choose).
//
// Events (EventTarget, `detail` holds the payload):
//   status     {state: "connecting" | "connected" | "reconnecting" | "closed", attempt, delay}
//   connected  {reconnect: bool}   after each DDP `connected`
//   changed    {collection, eventName, args}   a stream event
//   nosub      {id, error}   a subscription ended by the server
//   closed     {code, reason}   the socket closed (a reconnect may follow)

/** A refused call: `error` is roomd's code ("error-room-locked", 403, …). */
export class DDPError extends Error {
  constructor(error, reason, details = {}) {
    super(reason || String(error));
    this.name = "DDPError";
    this.error = error;
    this.reason = reason || String(error);
    this.details = details || {};
  }
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
const MAX_BACKOFF_MS = 5000;

export class DDPClient extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// URL of /websocket
   * @param {object} [opts]
   * @param {number} [opts.callTimeoutMs]  reject a call unanswered this long
   * @param {number} [opts.idleMs]  probe the server after this much silence
   * @param {number} [opts.probeTimeoutMs]  give up on a silent server after this
   */
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this.callTimeoutMs = opts.callTimeoutMs ?? 15000;
    this.idleMs = opts.idleMs ?? 20000;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 10000;
    this.ws = null;
    this.state = "closed";
    this.nextId = 1;
    this.pending = new Map(); // call id -> {resolve, reject, timer, method}
    this.subs = new Map(); // sub id -> {resolve, reject, timer}
    this.attempt = 0;
    this.everConnected = false;
    this.wanted = false; // false once close() was called
    this.retryTimer = null;
    this.idleTimer = null;
    this.probeTimer = null;
    this.onOnline = () => {
      if (this.state === "reconnecting") this.retryNow();
    };
  }

  /** Opens the connection; resolves on the first `connected`. */
  connect() {
    this.wanted = true;
    if (typeof window !== "undefined") window.addEventListener("online", this.onOnline);
    if (this.state === "connected") return Promise.resolve();
    const ready = new Promise((resolve, reject) => {
      const ok = () => {
        this.removeEventListener("connected", ok);
        this.removeEventListener("status", fail);
        resolve();
      };
      const fail = (e) => {
        if (e.detail.state === "closed") {
          this.removeEventListener("connected", ok);
          this.removeEventListener("status", fail);
          reject(new DDPError("closed", "The connection was closed"));
        }
      };
      this.addEventListener("connected", ok);
      this.addEventListener("status", fail);
    });
    if (!this.ws) this.open();
    return ready;
  }

  /** Closes for good: no reconnect; pending calls are rejected. */
  close() {
    this.wanted = false;
    if (typeof window !== "undefined") window.removeEventListener("online", this.onOnline);
    clearTimeout(this.retryTimer);
    this.stopTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "bye");
    this.failAll("closed", "The connection was closed");
    this.setState("closed");
  }

  /**
   * Calls `method` with positional `params`; resolves with the result
   * (undefined when the server sent none) or rejects with a DDPError.
   * Fails at once with error "disconnected" while not connected.
   */
  call(method, ...params) {
    if (this.state !== "connected") {
      return Promise.reject(new DDPError("disconnected", "Not connected to the server"));
    }
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DDPError("timeout", `No answer to ${method} in time`));
      }, this.callTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      this.send({ msg: "method", id, method, params });
    });
  }

  /**
   * Subscribes to stream `name` with `params`; resolves with the sub id on
   * `ready`, rejects with a DDPError on `nosub`. Events arrive as `changed`.
   * Subscriptions die with the connection: subscribe again after `connected`.
   */
  subscribe(name, params = []) {
    if (this.state !== "connected") {
      return Promise.reject(new DDPError("disconnected", "Not connected to the server"));
    }
    const id = `s${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.subs.delete(id);
        reject(new DDPError("timeout", `No answer to the ${name} subscription in time`));
      }, this.callTimeoutMs);
      this.subs.set(id, { resolve: () => resolve(id), reject, timer });
      this.send({ msg: "sub", id, name, params });
    });
  }

  unsubscribe(id) {
    if (this.state === "connected") this.send({ msg: "unsub", id });
  }

  // --- internals -----------------------------------------------------------

  open() {
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.send({ msg: "connect", version: "1", support: ["1", "pre2", "pre1"] });
      this.touch();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.touch();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopTimers();
      this.failAll("disconnected", "The connection to the server was lost");
      this.emit("closed", { code: ev.code, reason: ev.reason });
      // 4400: the server refused our DDP version; retrying cannot help.
      if (this.wanted && ev.code !== 4400) {
        this.scheduleRetry();
      } else {
        this.wanted = false;
        this.setState("closed");
      }
    };
    ws.onerror = () => {
      // A close event always follows; reconnecting is handled there.
    };
  }

  handle(f) {
    switch (f.msg) {
      case "connected": {
        const reconnect = this.everConnected;
        this.everConnected = true;
        this.attempt = 0;
        this.setState("connected");
        this.emit("connected", { reconnect });
        break;
      }
      case "failed":
        this.wanted = false;
        if (this.ws) this.ws.close();
        break;
      case "ping":
        this.send(f.id === undefined ? { msg: "pong" } : { msg: "pong", id: f.id });
        break;
      case "result": {
        const p = this.pending.get(f.id);
        if (!p) break;
        this.pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.error) {
          const e = f.error;
          p.reject(new DDPError(e.error, e.reason || e.message, e.details));
        } else {
          p.resolve(f.result);
        }
        break;
      }
      case "ready":
        for (const id of f.subs || []) {
          const s = this.subs.get(id);
          if (!s) continue;
          this.subs.delete(id);
          clearTimeout(s.timer);
          s.resolve();
        }
        break;
      case "nosub": {
        const s = this.subs.get(f.id);
        if (s) {
          this.subs.delete(f.id);
          clearTimeout(s.timer);
          const e = f.error || {};
          s.reject(new DDPError(e.error ?? "nosub", e.reason || "Subscription refused", e.details));
        } else {
          this.emit("nosub", { id: f.id, error: f.error });
        }
        break;
      }
      case "changed":
      case "added":
        if (f.fields && f.fields.eventName !== undefined && Array.isArray(f.fields.args)) {
          this.emit("changed", {
            collection: f.collection,
            eventName: f.fields.eventName,
            args: f.fields.args,
          });
        }
        break;
      default:
        break; // "pong", "updated", "error": nothing to do
    }
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  // Any frame from the server proves it alive. After `idleMs` of silence we
  // ping; if nothing at all comes back within `probeTimeoutMs`, the socket
  // is treated as dead (a laptop lid, a dropped Wi-Fi) and replaced.
  touch() {
    clearTimeout(this.idleTimer);
    clearTimeout(this.probeTimer);
    this.probeTimer = null;
    this.idleTimer = setTimeout(() => {
      this.send({ msg: "ping", id: `p${this.nextId++}` });
      this.probeTimer = setTimeout(() => {
        if (this.ws) this.ws.close(4000, "server silent");
      }, this.probeTimeoutMs);
    }, this.idleMs);
  }

  stopTimers() {
    clearTimeout(this.idleTimer);
    clearTimeout(this.probeTimer);
  }

  scheduleRetry() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] ?? MAX_BACKOFF_MS;
    // Jitter spreads a crowd of clients reconnecting after a restart.
    const delay = Math.min(MAX_BACKOFF_MS, Math.round(base * (0.75 + Math.random() * 0.5)));
    this.attempt += 1;
    this.setState(this.everConnected ? "reconnecting" : "connecting", { delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  retryNow() {
    clearTimeout(this.retryTimer);
    if (!this.ws && this.wanted) this.open();
  }

  failAll(error, reason) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new DDPError(error, reason));
    }
    this.pending.clear();
    for (const [, s] of this.subs) {
      clearTimeout(s.timer);
      s.reject(new DDPError(error, reason));
    }
    this.subs.clear();
  }

  setState(state, extra = {}) {
    const changed = this.state !== state;
    this.state = state;
    if (changed || extra.delay !== undefined) {
      this.emit("status", { state, attempt: this.attempt, ...extra });
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The same-origin DDP endpoint of the page. */
export function sameOriginUrl(loc = location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/websocket`;
}
