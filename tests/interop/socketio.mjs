// Scenario "Socket.IO": socket.io-client 4.8.x from npm, unmodified, against
// roomd's /socket.io/ door, next to DDP clients in the same rooms.
//
// - default options (HTTP long-polling, then the upgrade to WebSocket) and
//   `transports: ['websocket']`;
// - seed 003's two `socket.emit('join-room', …)` examples (a signed-in user
//   and a guest "Jane Smith") and the participant object they get back;
// - errors as ack payloads: 404 (no such room), 403 (locked), 400 (full,
//   ended, bad guest name), and CONNECT_ERROR for a bad token;
// - participant-joined / participant-left / room-updated / message /
//   room-ended;
// - a DDP client and a Socket.IO client in one room seeing each other;
// - a guest coming back with `since` (recovered: true) and an unknown one;
// - a capacity race mixing DDP and Socket.IO joiners.

import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { EventLog, assertIsoString, env, scenario, step, withTimeout } from './lib/harness.mjs';
import { simpleClient } from './lib/simpleddp-client.mjs';

const DDP_URL = env('ROOMD_URL');
const HTTP_URL = DDP_URL.replace(/^ws/, 'http').replace(/\/websocket$/, '');
// Users of this scenario alone (other scenarios log theirs out).
const ALICE_TOKEN = env('SIO_HOST_TOKEN');
const ALICE_ID = env('SIO_HOST_ID');
const BOB_TOKEN = env('SIO_USER_TOKEN');
const BOB_ID = env('SIO_USER_ID');
const CAROL_TOKEN = env('SIO_OTHER_TOKEN');

const SERVER_EVENTS = ['participant-joined', 'participant-left', 'room-updated', 'message', 'room-ended'];
const open = [];

/** Connects and resolves once connected; every server event is logged. */
function connect(label, opts = {}) {
  const socket = io(HTTP_URL, { reconnection: false, timeout: 5000, ...opts });
  open.push(socket);
  const events = new EventLog(`${label} events`);
  for (const name of SERVER_EVENTS) socket.on(name, (payload) => events.push({ name, payload }));
  const connected = new Promise((resolve, reject) => {
    socket.on('connect', () => resolve());
    socket.on('connect_error', (e) => reject(e));
  });
  return { socket, events, connected: withTimeout(connected, `${label} connects`) };
}

/** `emit` with an acknowledgement, bounded. */
function ask(socket, event, payload) {
  return socket.timeout(5000).emitWithAck(event, payload);
}

const PARTICIPANT_KEYS = ['guestName', 'id', 'isActive', 'isHost', 'joinedAt', 'leftAt', 'roomId', 'userId'];

function assertParticipant(p, want) {
  // Besides the seat: the event's (or, in a join-room ack, the room's)
  // position `seq`, and in an ack whether a `since` was `recovered`.
  const extra = ['guestToken', 'seq', 'recovered'];
  assert.deepEqual(Object.keys(p).filter((k) => !extra.includes(k)).sort(), PARTICIPANT_KEYS, `participant keys: ${JSON.stringify(p)}`);
  assert.equal(typeof p.seq, 'number', `participant.seq: ${JSON.stringify(p)}`);
  assert.equal(typeof p.id, 'string');
  assert.equal(typeof p.roomId, 'string');
  assert.equal(p.isActive, true);
  assertIsoString(p.joinedAt, 'joinedAt');
  assert.equal(p.leftAt, null);
  for (const [k, v] of Object.entries(want)) assert.equal(p[k], v, `participant.${k}: ${JSON.stringify(p)}`);
}

function assertError(ack, statusCode, code, message) {
  assert.ok(ack && ack.error, `expected an error ack, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error.statusCode, statusCode, JSON.stringify(ack));
  assert.equal(ack.error.code, code, JSON.stringify(ack));
  if (message) assert.equal(ack.error.message, message, JSON.stringify(ack));
}

await scenario('socketio', async () => {
  const alice = connect('alice', { auth: { token: ALICE_TOKEN } });
  await step('alice: default transports, polling then upgrade to websocket', async () => {
    const first = await new Promise((resolve) => alice.socket.io.on('open', () => resolve(alice.socket.io.engine.transport.name)));
    await alice.connected;
    assert.equal(first, 'polling');
    const engine = alice.socket.io.engine;
    if (engine.transport.name !== 'websocket') await new Promise((r) => engine.once('upgrade', r));
    assert.equal(engine.transport.name, 'websocket');
  });

  const room = await step('alice: create-room {name, maxParticipants: 5, guestAccess: true} -> room with code', async () => {
    const r = await ask(alice.socket, 'create-room', { name: `sio-${Date.now()}`, maxParticipants: 5, guestAccess: true });
    assert.equal(typeof r._id, 'string', JSON.stringify(r));
    assert.match(r.code, /^[a-z]{3}-[a-z]{3}-[a-z]{3}$/);
    assert.equal(r.maxParticipants, 5);
    return r;
  });
  const code = room.code;

  await step('alice: join-room {code} as host, hears the room from now on', async () => {
    const p = await ask(alice.socket, 'join-room', { code });
    assertParticipant(p, { userId: ALICE_ID, guestName: null, isHost: true, roomId: room._id });
  });

  const ddp = simpleClient('dave-ddp', DDP_URL);
  await step('dave (DDP guest): connect, subscribe after joining', async () => {
    await ddp.server.connect();
  });

  // Seed 003, "Example: Authenticated User".
  const bob = connect('bob', { auth: { token: BOB_TOKEN }, transports: ['websocket'] });
  await step("seed 003 authenticated user: socket.emit('join-room', { code }) (websocket only)", async () => {
    await bob.connected;
    assert.equal(bob.socket.io.engine.transport.name, 'websocket');
    const response = await new Promise((resolve) => {
      const socket = bob.socket;
      // As in the seed, with the room's real code.
      socket.emit('join-room', {
        code: code
      }, resolve);
    });
    assertParticipant(response, { userId: BOB_ID, guestName: null, isHost: false, roomId: room._id });
    assert.equal(response.guestToken, undefined, 'signed-in users get no guest token');
  });

  await step('alice hears participant-joined (bob) and room-updated {participantCount: 2}', async () => {
    const j = await alice.events.waitFor((e) => e.name === 'participant-joined' && e.payload.userId === BOB_ID, 'bob joined');
    assertParticipant(j.payload, { userId: BOB_ID });
    const u = await alice.events.waitFor((e) => e.name === 'room-updated' && e.payload.participantCount === 2, 'count 2');
    assert.deepEqual(Object.keys(u.payload).sort(), ['isActive', 'isLocked', 'maxParticipants', 'participantCount', 'seq']);
    assert.ok(u.payload.seq > j.payload.seq, `positions increase: ${j.payload.seq} then ${u.payload.seq}`);
  });

  // Seed 003, "Example: Guest User".
  const jane = connect('jane');
  const janeP = await step("seed 003 guest: socket.emit('join-room', { code, guestName: 'Jane Smith' })", async () => {
    await jane.connected;
    const response = await new Promise((resolve) => {
      const socket = jane.socket;
      socket.emit('join-room', {
        code: code,
        guestName: 'Jane Smith'
      }, resolve);
    });
    assertParticipant(response, { userId: null, guestName: 'Jane Smith', isHost: false, roomId: room._id });
    assert.equal(typeof response.guestToken, 'string');
    return response;
  });

  await step('DDP guest dave joins; the Socket.IO members hear him, he hears them', async () => {
    const p = await ddp.server.call('join-room', { code, guestName: 'Dave DDP' });
    assert.equal(p.guestName, 'Dave DDP');
    const sub = ddp.server.subscribe('stream-notify-room', `${room._id}/participants`, false);
    await sub.ready();
    const j = await jane.events.waitFor((e) => e.name === 'participant-joined' && e.payload.guestName === 'Dave DDP', 'dave joined');
    assert.equal(j.payload.id, p.id);
    const view = await ddp.server.call('getRoomParticipants', room._id);
    const names = view.participants.map((x) => x.guestName ?? x.userId).sort();
    assert.deepEqual(names, [ALICE_ID, BOB_ID, 'Dave DDP', 'Jane Smith'].sort());
  });

  await step('get-participants (jane, a guest member) -> summary + 4 participants', async () => {
    const v = await ask(jane.socket, 'get-participants', {});
    assert.equal(v.room.code, code);
    assert.equal(v.room.participantCount, 4);
    assert.equal(v.participants.length, 4);
    assert.ok(v.participants.every((x) => x.guestToken === undefined));
  });

  await step('get-participants by a non-member (carol) -> 403 error-not-allowed', async () => {
    const carol = connect('carol', { auth: { token: CAROL_TOKEN }, transports: ['websocket'] });
    await carol.connected;
    assertError(await ask(carol.socket, 'get-participants', { roomId: room._id }), 403, 'error-not-allowed');
    carol.socket.close();
  });

  await step('send-message by bob: ack is the stored message; jane (Socket.IO) and dave (DDP) get it', async () => {
    const sub = ddp.server.subscribe('stream-room-messages', room._id, false);
    await sub.ready();
    const m = await ask(bob.socket, 'send-message', { msg: 'hello from socket.io' });
    assert.equal(m.msg, 'hello from socket.io');
    const e = await jane.events.waitFor((x) => x.name === 'message' && x.payload.id === m._id, 'message');
    assert.equal(e.payload.user.id, BOB_ID);
    assertIsoString(e.payload.ts, 'message.ts');
    await ddp.changed.waitFor((x) => x.collection === 'stream-room-messages' && x.fields?.args?.[0]?._id === m._id, 'DDP message');
  });

  await step('Socket.IO guest kim joins and leaves: dave (DDP) sees uj, ul and the participant events', async () => {
    const psub = ddp.server.subscribe('stream-notify-room', `${room._id}/participants`, false);
    await psub.ready();
    const kim = connect('kim', { transports: ['websocket'] });
    await kim.connected;
    const p = await ask(kim.socket, 'join-room', { code, guestName: 'Kim' });
    assertParticipant(p, { guestName: 'Kim' });
    const sys = (t) => (x) => x.collection === 'stream-room-messages' && x.fields?.args?.[0]?.t === t && x.fields.args[0].u.username === 'Kim';
    await ddp.changed.waitFor((x) => x.collection === 'stream-notify-room' && x.fields?.args?.[0] === 'joined' && x.fields.args[1].id === p.id, 'DDP joined');
    await ddp.changed.waitFor(sys('uj'), 'DDP uj');
    assert.deepEqual(await ask(kim.socket, 'leave-room', {}), { ok: true });
    await ddp.changed.waitFor((x) => x.collection === 'stream-notify-room' && x.fields?.args?.[0] === 'left' && x.fields.args[1].id === p.id, 'DDP left');
    await ddp.changed.waitFor(sys('ul'), 'DDP ul');
    kim.socket.close();
  });

  await step('a meeting guest chats (create-room turns guestChat on): jane\'s send-message is stored under her guest name; alice and dave get it', async () => {
    assert.equal(room.guestChat, true, JSON.stringify(room));
    const m = await ask(jane.socket, 'send-message', { msg: 'hi from a guest' });
    assert.equal(m.msg, 'hi from a guest', JSON.stringify(m));
    assert.equal(m.u.username, 'Jane Smith', JSON.stringify(m));
    const e = await alice.events.waitFor((x) => x.name === 'message' && x.payload.id === m._id, 'guest message');
    assert.equal(e.payload.user.username, 'Jane Smith');
    await ddp.changed.waitFor((x) => x.collection === 'stream-room-messages' && x.fields?.args?.[0]?._id === m._id, 'DDP guest message');
  });

  await step('a guest that joined no room may not send: send-message -> error-invalid-user', async () => {
    const lone = connect('lone', { transports: ['websocket'] });
    await lone.connected;
    const ack = await ask(lone.socket, 'send-message', { roomId: room._id, msg: 'hi' });
    assert.equal(ack.error.code, 'error-invalid-user', JSON.stringify(ack));
    lone.socket.close();
  });

  await step('errors as acks: 404 room not found, 400 bad guest name', async () => {
    const g = connect('ghost', { transports: ['websocket'] });
    await g.connected;
    assertError(await ask(g.socket, 'join-room', { code: 'zzz-zzz-zzz', guestName: 'X' }), 404, 'error-room-not-found', 'Room not found');
    const bad = await ask(g.socket, 'join-room', { code, guestName: '' });
    assert.equal(bad.error.statusCode, 400, JSON.stringify(bad));
    g.socket.close();
  });

  await step('lock-room by a guest -> 403; by alice -> ok; a new guest -> 403 error-room-locked "Room is locked"', async () => {
    const denied = await ask(jane.socket, 'lock-room', {});
    assert.equal(denied.error.statusCode >= 400, true, JSON.stringify(denied));
    const ok = await ask(alice.socket, 'lock-room', {});
    assert.ok(!ok.error, JSON.stringify(ok));
    await jane.events.waitFor((e) => e.name === 'room-updated' && e.payload.isLocked === true, 'locked');
    const g = connect('late', { transports: ['websocket'] });
    await g.connected;
    assertError(await ask(g.socket, 'join-room', { code, guestName: 'Late' }), 403, 'error-room-locked', 'Room is locked');
    const un = await ask(alice.socket, 'unlock-room', {});
    assert.ok(!un.error, JSON.stringify(un));
    g.socket.close();
  });

  await step('set-max-participants 4 (room has 4) -> a fifth guest gets 400 error-room-full', async () => {
    const ok = await ask(alice.socket, 'set-max-participants', { maxParticipants: 4 });
    assert.ok(!ok.error, JSON.stringify(ok));
    const g = connect('fifth', { transports: ['websocket'] });
    await g.connected;
    assertError(await ask(g.socket, 'join-room', { code, guestName: 'Fifth' }), 400, 'error-room-full', 'Room is full');
    g.socket.close();
  });

  await step('leave-room by jane: participant-left with leftAt to alice (Socket.IO) and dave (DDP)', async () => {
    const ok = await ask(jane.socket, 'leave-room', {});
    assert.deepEqual(ok, { ok: true });
    const l = await alice.events.waitFor((e) => e.name === 'participant-left' && e.payload.guestName === 'Jane Smith', 'jane left');
    assert.equal(l.payload.id, janeP.id);
    assertIsoString(l.payload.leftAt, 'leftAt');
    await ddp.changed.waitFor(
      (x) => x.collection === 'stream-notify-room' && x.fields?.args?.[0] === 'left' && x.fields.args[1].id === janeP.id,
      'DDP left',
    );
  });

  await step('end-room by alice: room-ended to bob; a join afterwards -> 400 error-room-inactive', async () => {
    const ok = await ask(alice.socket, 'end-room', {});
    assert.ok(!ok.error, JSON.stringify(ok));
    const e = await bob.events.waitFor((x) => x.name === 'room-ended', 'room-ended');
    assert.equal(e.payload.roomId, room._id);
    assertIsoString(e.payload.endedAt, 'endedAt');
    await bob.events.waitFor((x) => x.name === 'room-updated' && x.payload.isActive === false, 'inactive');
    const g = connect('after', { transports: ['websocket'] });
    await g.connected;
    assertError(await ask(g.socket, 'join-room', { code, guestName: 'After' }), 400, 'error-room-inactive', 'Room is no longer active');
    g.socket.close();
  });

  await step('CONNECT_ERROR for a bad token, with a clear message', async () => {
    for (const transports of [undefined, ['websocket']]) {
      const s = connect('bad', { auth: { token: 'not-a-jwt' }, transports });
      await assert.rejects(s.connected, (e) => /^sign-in refused: /.test(e.message));
    }
  });

  await step('a guest back with join-room {since, guestToken} gets what it missed once, in order, before the ack (recovered: true), then live', async () => {
    const r = await ask(alice.socket, 'create-room', { guestAccess: true });
    assert.ok(!r.error, JSON.stringify(r));
    const mia = connect('mia', { transports: ['websocket'] });
    await mia.connected;
    const seat = await ask(mia.socket, 'join-room', { code: r.code, guestName: 'Mia' });
    assert.ok(!seat.error, JSON.stringify(seat));
    assert.equal(seat.recovered, false, 'a first join recovers nothing');
    // What mia heard last: her own join's position, or a later event's.
    await mia.events.waitFor((e) => e.name === 'room-updated', 'room-updated after mia joined');
    const last = Math.max(seat.seq, ...mia.events.items.map((e) => e.payload.seq));
    mia.socket.disconnect();
    const missed = ['missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5'];
    for (const msg of missed) assert.ok(!(await ask(alice.socket, 'send-message', { roomId: r._id, msg })).error);
    const back = connect('mia back', { transports: ['websocket'] });
    await back.connected;
    const ack = await ask(back.socket, 'join-room', { code: r.code, guestName: 'Mia', guestToken: seat.guestToken, since: last });
    assert.ok(!ack.error, JSON.stringify(ack));
    assert.equal(ack.id, seat.id, 'the same seat');
    assert.equal(ack.recovered, true, JSON.stringify(ack));
    // Every replayed event came before the ack, in order, each once.
    const heard = back.events.items.filter((e) => e.name === 'message').map((e) => e.payload.msg);
    assert.deepEqual(heard, missed, `replayed messages: ${JSON.stringify(back.events.items)}`);
    const seqs = back.events.items.map((e) => e.payload.seq);
    assert.ok(seqs.every((q, i) => q > last && (i === 0 || q > seqs[i - 1])), `positions: ${seqs}`);
    assert.equal(ack.seq, seqs[seqs.length - 1], 'the ack names the position of the last replayed event');
    await ask(alice.socket, 'send-message', { roomId: r._id, msg: 'live after' });
    await back.events.waitFor((e) => e.name === 'message' && e.payload.msg === 'live after', 'the live message');
    const all = back.events.items.filter((e) => e.name === 'message').map((e) => e.payload.msg);
    assert.deepEqual(all, [...missed, 'live after'], 'nothing twice after the replay');
    // A position the room never handed out is not recovered: refetch.
    const stranger = connect('stranger', { transports: ['websocket'] });
    await stranger.connected;
    const cold = await ask(stranger.socket, 'join-room', { code: r.code, guestName: 'Stan', since: ack.seq + 1000 });
    assert.equal(cold.recovered, false, JSON.stringify(cold));
  });

  await step('capacity race: 40 joiners, half DDP half Socket.IO, capacity 7 -> exactly 7 seats', async () => {
    const r = await ask(alice.socket, 'create-room', { maxParticipants: 7, guestAccess: true });
    assert.ok(!r.error, JSON.stringify(r));
    // alice (the creator) holds a seat: 6 are left for 40 joiners.
    const attempts = [];
    for (let i = 0; i < 40; i++) {
      if (i % 2 === 0) {
        attempts.push((async () => {
          const c = simpleClient(`race-ddp-${i}`, DDP_URL);
          await c.server.connect();
          try {
            await c.server.call('join-room', { code: r.code, guestName: `ddp ${i}` });
            return 'ok';
          } catch (e) {
            return e.error;
          }
        })());
      } else {
        attempts.push((async () => {
          const c = connect(`race-sio-${i}`, { transports: i % 4 === 1 ? ['websocket'] : undefined });
          await c.connected;
          const ack = await ask(c.socket, 'join-room', { code: r.code, guestName: `sio ${i}` });
          return ack.error ? ack.error.code : 'ok';
        })());
      }
    }
    const results = await Promise.all(attempts);
    const ok = results.filter((x) => x === 'ok').length;
    const full = results.filter((x) => x === 'error-room-full').length;
    assert.equal(ok, 6, `seats taken: ${JSON.stringify(results)}`);
    assert.equal(full, 34, `refusals: ${JSON.stringify(results)}`);
    const v = await ask(alice.socket, 'get-participants', { roomId: r._id });
    assert.equal(v.room.participantCount, 7);
  });

  for (const s of open) s.close();
});
