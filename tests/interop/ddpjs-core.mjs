// Scenario "core" with ddp.js (+ ws as the socket implementation).
//
// Same flow as simpleddp-core, driven through ddp.js's raw event API, plus
// wire-level checks: a void method's result frame has no `result` key, an
// unknown method yields 404, a forbidden sub yields nosub/not-allowed, and a
// guest (never logged in) can join a guest-access room by code.

import assert from 'node:assert/strict';
import ddpjs from 'ddp.js';
import { EventLog, assertIsoString, env, rand, scenario, socketClass, step } from './lib/harness.mjs';

// ddp.js ships CommonJS with `exports.default`.
const DDP = ddpjs.default ?? ddpjs;

const URL = env('ROOMD_URL');
const ALICE_TOKEN = env('ALICE_TOKEN');
const ALICE_ID = env('ALICE_ID');
const BOB_TOKEN = env('BOB_TOKEN');
const BOB_ID = env('BOB_ID');

const EVENTS = ['connected', 'disconnected', 'result', 'updated', 'ready', 'nosub', 'changed', 'error'];

function ddpClient(label) {
  const ddp = new DDP({ endpoint: URL, SocketConstructor: socketClass(label), autoReconnect: false });
  const log = {};
  for (const ev of EVENTS) {
    log[ev] = new EventLog(`${label} ${ev}`);
    ddp.on(ev, (m) => log[ev].push(m ?? { msg: ev }));
  }
  return {
    label,
    ddp,
    log,
    /** Send a method; resolves with the whole `result` frame (error or not). */
    async call(method, params) {
      const id = ddp.method(method, params);
      const frame = await log.result.waitFor((m) => m.id === id, `result for method ${method} (id ${id})`);
      return { id, frame };
    },
    /** Send a method and expect success; resolves with frame.result. */
    async callOk(method, params) {
      const { frame } = await this.call(method, params);
      assert.equal(frame.error, undefined, `${label}: ${method} must not fail, got error ${JSON.stringify(frame.error)}`);
      return frame.result;
    },
    /** Send a sub; resolves with {id, ready} or {id, nosub}. */
    async sub(name, params) {
      const id = ddp.sub(name, params);
      const onReady = log.ready
        .waitFor((m) => Array.isArray(m.subs) && m.subs.includes(id), `ready for sub ${name} (id ${id})`)
        .then((m) => ({ id, ready: m }));
      const onNosub = log.nosub.waitFor((m) => m.id === id, `nosub for sub ${name} (id ${id})`).then((m) => ({ id, nosub: m }));
      // The losing branch times out later; mark both handled so that is not an unhandled rejection.
      onReady.catch(() => {});
      onNosub.catch(() => {});
      const outcome = await Promise.race([onReady, onNosub]);
      return outcome;
    },
  };
}

function roomMessage(rid, t) {
  return (m) =>
    m.collection === 'stream-room-messages' &&
    m.fields.eventName === rid &&
    m.fields.args[0].t === t;
}

async function connect(client) {
  await step(`${client.label}: connect`, async () => {
    await client.log.connected.waitFor(() => true, 'connected');
    assert.equal(client.ddp.status, 'connected');
  });
}

async function login(client, token, userId) {
  await step(`${client.label}: method login [{resume}]`, async () => {
    const res = await client.callOk('login', [{ resume: token }]);
    assert.equal(res.id, userId, 'login result .id');
    assert.equal(res.token, token, 'login result .token');
    assert.equal(res.type, 'resume', 'login result .type');
    assert.equal(typeof res.tokenExpires?.$date, 'number', 'login result .tokenExpires must be {$date:<ms>}');
  });
}

await scenario('ddpjs-core', async () => {
  const alice = ddpClient('alice');
  const bob = ddpClient('bob');
  const guest = ddpClient('guest');

  await connect(alice);
  await login(alice, ALICE_TOKEN, ALICE_ID);

  const group = await step('alice: createPrivateGroup(name, [], false)', async () => {
    const res = await alice.callOk('createPrivateGroup', [`interop-grp-${rand()}`, [], false]);
    assert.equal(typeof res?.rid, 'string', 'createPrivateGroup result .rid');
    assert.equal(res.t, 'p', 'createPrivateGroup result .t');
    assert.equal(res.inserted, true, 'createPrivateGroup result .inserted');
    return res;
  });

  const channel = await step('alice: createChannel("interop-<random>")', async () => {
    const res = await alice.callOk('createChannel', [`interop-${rand()}`]);
    assert.equal(typeof res?.rid, 'string', 'createChannel result .rid');
    assert.equal(res.t, 'c', 'createChannel result .t');
    return res;
  });
  const rid = channel.rid;

  await step('alice: sub stream-room-messages [rid, false] -> ready', async () => {
    const out = await alice.sub('stream-room-messages', [rid, false]);
    assert.ok(out.ready, `expected ready, got nosub ${JSON.stringify(out.nosub)}`);
  });

  await connect(bob);
  await login(bob, BOB_TOKEN, BOB_ID);

  await step('bob: joinRoom [rid] -> true', async () => {
    const res = await bob.callOk('joinRoom', [rid]);
    assert.equal(res, true, 'joinRoom result');
  });

  await step('alice: changed stream-room-messages t:"uj" msg:"bob"', async () => {
    const m = await alice.log.changed.waitFor(roomMessage(rid, 'uj'), `"uj" for ${rid}`);
    assert.equal(m.msg, 'changed');
    assert.equal(m.fields.args[0].msg, 'bob', 'uj .msg is the username');
    assert.equal(m.fields.args[0].rid, rid, 'uj .rid');
  });

  await step('bob: leaveRoom [rid] -> result frame without "result" key, then updated', async () => {
    const { id, frame } = await bob.call('leaveRoom', [rid]);
    assert.equal(frame.error, undefined, `leaveRoom must not fail: ${JSON.stringify(frame.error)}`);
    assert.ok(!('result' in frame), `void method's result frame must omit "result", got ${JSON.stringify(frame)}`);
    await bob.log.updated.waitFor((m) => Array.isArray(m.methods) && m.methods.includes(id), `updated for ${id}`);
  });

  await step('alice: changed stream-room-messages t:"ul" msg:"bob"', async () => {
    const m = await alice.log.changed.waitFor(roomMessage(rid, 'ul'), `"ul" for ${rid}`);
    assert.equal(m.fields.args[0].msg, 'bob', 'ul .msg is the username');
  });

  await step('alice: unknown method "nope" -> error 404', async () => {
    const { frame } = await alice.call('nope', []);
    assert.ok(frame.error, `expected an error, got ${JSON.stringify(frame)}`);
    assert.equal(frame.error.error, 404, 'error.error');
    assert.equal(frame.error.reason, "Method 'nope' not found", 'error.reason');
    assert.ok(!('result' in frame), 'error frame must not carry "result"');
  });

  await step('bob: sub stream-room-messages for private group he is not in -> nosub not-allowed', async () => {
    const out = await bob.sub('stream-room-messages', [group.rid, false]);
    assert.ok(out.nosub, `expected nosub, got ready ${JSON.stringify(out.ready)}`);
    assert.ok(out.nosub.error, `nosub must carry an error: ${JSON.stringify(out.nosub)}`);
    assert.equal(out.nosub.error.error, 'not-allowed', 'nosub error.error');
  });

  const guestRoom = await step('alice: createChannel(name, [], false, {}, {guestAccess:true}) -> code', async () => {
    const res = await alice.callOk('createChannel', [`interop-guest-${rand()}`, [], false, {}, { guestAccess: true }]);
    assert.equal(typeof res?.rid, 'string', 'createChannel result .rid');
    assert.equal(typeof res.code, 'string', `createChannel result .code must be a string, got ${JSON.stringify(res)}`);
    assert.ok(res.code.length > 0, 'room code must be non-empty');
    return res;
  });

  await connect(guest);

  await step('guest (no login): join-room [{code, guestName}] -> participant', async () => {
    const p = await guest.callOk('join-room', [{ code: guestRoom.code, guestName: 'Jane Smith' }]);
    assert.ok(p && typeof p === 'object', `participant must be an object, got ${JSON.stringify(p)}`);
    assert.equal(typeof p.id, 'string', 'participant.id');
    assert.ok(p.id.length > 0, 'participant.id non-empty');
    assert.equal(p.roomId, guestRoom.rid, 'participant.roomId');
    assert.equal(p.userId, null, 'participant.userId');
    assert.equal(p.guestName, 'Jane Smith', 'participant.guestName');
    assert.equal(p.isActive, true, 'participant.isActive');
    assert.equal(p.isHost, false, 'participant.isHost');
    assertIsoString(p.joinedAt, 'participant.joinedAt');
    assert.equal(p.leftAt, null, 'participant.leftAt');
  });

  await step('no DDP error frames / unexpected disconnects', async () => {
    for (const c of [alice, bob, guest]) {
      assert.deepEqual(c.log.error.items, [], `${c.label} got DDP "error" frames`);
      assert.deepEqual(c.log.disconnected.items, [], `${c.label} was disconnected`);
    }
  });

  for (const c of [alice, bob, guest]) c.ddp.disconnect();
});
