// Thin convenience wrapper around an *unmodified* simpleddp instance: it only
// wires the library's own public event API (`server.on(...)`) into EventLogs.

import simpleDDP from 'simpleddp';
import { simpleDDPLogin } from 'simpleddp-plugin-login';
import { EventLog, socketClass } from './harness.mjs';

/**
 * Create a simpleddp client (with the login plugin) labelled `label`.
 * Returns { server, changed, nosub, errors, label } where `changed` / `nosub`
 * are EventLogs fed from simpleddp's `server.on('changed' | 'nosub')`.
 */
export function simpleClient(label, endpoint) {
  const server = new simpleDDP(
    {
      endpoint,
      SocketConstructor: socketClass(label),
      reconnectInterval: 1000,
      autoReconnect: false,
    },
    [simpleDDPLogin],
  );
  const changed = new EventLog(`${label} changed`);
  const nosub = new EventLog(`${label} nosub`);
  const errors = new EventLog(`${label} error`);
  // simpleddp re-emits every raw DDP message of these types from its
  // ddpConnection; `server.on` is its documented way to listen to them.
  server.on('changed', (m) => changed.push(m));
  server.on('nosub', (m) => nosub.push(m));
  server.on('error', (m) => errors.push(m));
  server.on('disconnected', () => errors.push({ msg: 'disconnected' }));
  return { label, server, changed, nosub, errors };
}

/** Predicate: a stream-room-messages `changed` carrying a message matching `pred`. */
export function roomMessage(rid, pred) {
  return (m) =>
    m.msg === 'changed' &&
    m.collection === 'stream-room-messages' &&
    m.fields &&
    m.fields.eventName === rid &&
    Array.isArray(m.fields.args) &&
    pred(m.fields.args[0]);
}
