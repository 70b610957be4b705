// Shared test harness for the roomd interop scenarios.
//
// Nothing in here talks DDP: every scenario drives the published client
// libraries (simpleddp, ddp.js) unmodified. The harness only provides
//   * a WebSocket class (subclass of `ws`) that records/logs raw frames, handed
//     to the libraries through their documented `SocketConstructor` option;
//   * step bookkeeping, per-step and overall timeouts, loud failure reports;
//   * a small "wait until an event matching X has been seen" helper.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import WebSocket from 'ws';

const DEBUG_FRAMES = process.env.DEBUG_FRAMES === '1';
const STEP_TIMEOUT_MS = Number(process.env.INTEROP_STEP_TIMEOUT_MS || 8000);
const OVERALL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS || 20000);
const FRAME_DUMP_LIMIT = Number(process.env.INTEROP_FRAME_DUMP || 60);

const t0 = Date.now();
const elapsed = () => `+${String(Date.now() - t0).padStart(5)}ms`;

/** Every frame seen by any socket of this process, in order. */
export const frames = [];

let scenarioName = '?';
let currentStep = '(setup)';
let finished = false;

/** Read a required environment variable. */
export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    throw new Error(`missing required environment variable ${name}`);
  }
  return v;
}

/** A short random suffix for room names, so reruns never collide. */
export function rand() {
  return Math.random().toString(36).slice(2, 10);
}

/**
 * Returns a WebSocket constructor (subclass of ws) whose instances record
 * every text frame under `label`. With DEBUG_FRAMES=1 frames are also printed
 * live on stderr.
 */
export function socketClass(label) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      record(label, '**', `open ${url}`);
      this.on('message', (data, isBinary) => {
        record(label, '<<', isBinary ? `<binary ${data.length} bytes>` : data.toString());
      });
      this.on('close', (code, reason) => {
        record(label, '**', `closed code=${code} reason=${reason.toString() || '-'}`);
      });
      this.on('error', (err) => {
        record(label, '**', `socket error: ${err.message}`);
      });
    }

    send(data, ...rest) {
      record(label, '>>', typeof data === 'string' ? data : String(data));
      return super.send(data, ...rest);
    }
  };
}

export function record(label, dir, text) {
  const entry = { at: elapsed(), label, dir, text };
  frames.push(entry);
  if (DEBUG_FRAMES) process.stderr.write(fmtFrame(entry) + '\n');
}

function fmtFrame(f) {
  return `  [frame ${f.at}] ${f.label.padEnd(6)} ${f.dir} ${f.text}`;
}

/** Raw inbound frames of one client, parsed as plain JSON (no EJSON). */
export function rawInbound(label) {
  const out = [];
  for (const f of frames) {
    if (f.label !== label || f.dir !== '<<') continue;
    try {
      out.push(JSON.parse(f.text));
    } catch {
      /* not JSON: ignore */
    }
  }
  return out;
}

/**
 * Collects events delivered by a client library's emitter and lets the test
 * wait for one matching a predicate (past or future).
 *
 *   const log = new EventLog('alice changed');
 *   server.on('changed', (m) => log.push(m));
 *   const m = await log.waitFor((m) => m.collection === 'x', 'a changed on x');
 */
export class EventLog {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) {
      if (safeMatch(w.pred, item)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(item);
      }
    }
  }

  /** Resolve with the first item (already seen or future) matching pred. */
  waitFor(pred, what, timeoutMs = STEP_TIMEOUT_MS) {
    const found = this.items.find((i) => safeMatch(pred, i));
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(
          new Error(
            `timed out after ${timeoutMs}ms waiting for ${what} on [${this.name}]; ` +
              `${this.items.length} event(s) seen there: ${inspect(this.items, { depth: 6, breakLength: 200 })}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

function safeMatch(pred, item) {
  try {
    return Boolean(pred(item));
  } catch {
    return false;
  }
}

/** Race a promise against the per-step timeout. */
export function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Run one named step; failures are re-thrown annotated with the step name. */
export async function step(name, fn) {
  currentStep = name;
  const started = Date.now();
  // With live frame logging the frames interleave, so give each step its own lines.
  const sep = DEBUG_FRAMES ? '\n' : ' ';
  const tail = DEBUG_FRAMES ? `    -> ${name}: ` : '';
  process.stdout.write(`  - ${name} ...${sep}`);
  try {
    const value = await withTimeout(Promise.resolve().then(fn), `step "${name}"`);
    process.stdout.write(`${tail}ok (${Date.now() - started}ms)\n`);
    return value;
  } catch (err) {
    process.stdout.write(`${tail}FAILED\n`);
    if (err && typeof err === 'object' && !err.failedStep) {
      try {
        err.failedStep = name;
      } catch {
        /* frozen object: ignore */
      }
    }
    throw err;
  }
}

/** Assert that `v` is an ISO-8601 timestamp string that parses to a date. */
export function assertIsoString(v, what) {
  assert.equal(typeof v, 'string', `${what} must be an ISO date string, got ${inspect(v)}`);
  assert.match(
    v,
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/,
    `${what} must be ISO-8601, got ${inspect(v)}`,
  );
  assert.ok(!Number.isNaN(Date.parse(v)), `${what} must parse as a date, got ${inspect(v)}`);
}

function dumpFrames() {
  const shown = frames.slice(-FRAME_DUMP_LIMIT);
  process.stderr.write(
    `\n  last ${shown.length} of ${frames.length} frame(s) exchanged (DEBUG_FRAMES=1 shows all live):\n`,
  );
  for (const f of shown) process.stderr.write(fmtFrame(f) + '\n');
}

function fail(err) {
  if (finished) return;
  finished = true;
  const where = (err && err.failedStep) || currentStep;
  process.stderr.write(`\nFAIL [${scenarioName}] at step: ${where}\n`);
  if (err instanceof assert.AssertionError) {
    process.stderr.write(`  assertion: ${err.message}\n`);
  } else if (err instanceof Error) {
    process.stderr.write(`  error: ${err.stack || err.message}\n`);
  } else {
    // simpleddp rejects with the raw DDP error object
    process.stderr.write(`  rejected with: ${inspect(err, { depth: 8 })}\n`);
  }
  dumpFrames();
  process.exit(1);
}

/**
 * Run a scenario: prints a header, arms the overall timeout, exits 0 on
 * success and 1 (with a report) on any failure.
 */
export async function scenario(name, body) {
  scenarioName = name;
  console.log(`scenario ${name}`);
  const overall = setTimeout(() => {
    fail(new Error(`overall scenario timeout of ${OVERALL_TIMEOUT_MS}ms exceeded (step "${currentStep}" was running)`));
  }, OVERALL_TIMEOUT_MS);
  process.on('unhandledRejection', (e) => fail(e));
  process.on('uncaughtException', (e) => fail(e));
  try {
    await body();
  } catch (err) {
    fail(err);
    return;
  }
  clearTimeout(overall);
  finished = true;
  console.log(`PASS [${name}]`);
  // Client libraries may keep timers/sockets alive (reconnect logic); we are done.
  process.exit(0);
}
