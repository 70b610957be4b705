// Scenario "Rocket.Chat's own DDP client": @rocket.chat/ddp-client 1.1.2,
// unmodified, the SDK Rocket.Chat's web client is built on.
//
// alice uses the SDK: resume-token login (its `account.user` is filled from
// the `users` record the server publishes), createPrivateGroup with bob,
// `sdk.stream('room-messages', rid, cb)`, bob's message arrives, bob then
// alice leave, alice logs out. bob is a simpleddp client.
//
// The SDK opens its socket with the global `WebSocket` (Node >= 22, or Node 20
// with --experimental-websocket; run.sh adds the flag when needed). The only
// thing wrapped is that global, to record frames for failure reports.

import assert from 'node:assert/strict';
import { EventLog, env, rand, rawInbound, record, scenario, step } from './lib/harness.mjs';
import { simpleClient } from './lib/simpleddp-client.mjs';

const URL = env('ROOMD_URL');
const ALICE_TOKEN = env('ALICE_TOKEN');
const ALICE_ID = env('ALICE_ID');
const BOB_TOKEN = env('BOB_TOKEN');
const BOB_ID = env('BOB_ID');

const NativeWebSocket = globalThis.WebSocket;
if (typeof NativeWebSocket !== 'function') {
  console.error('rc-ddp-client needs a global WebSocket: Node >= 22, or Node 20 with --experimental-websocket');
  process.exit(1);
}
const LABEL = 'alice';
globalThis.WebSocket = class RecordingWebSocket extends NativeWebSocket {
  constructor(url, ...rest) {
    super(url, ...rest);
    record(LABEL, '**', `open ${url}`);
    this.addEventListener('message', (e) => {
      record(LABEL, '<<', typeof e.data === 'string' ? e.data : '<binary>');
    });
    this.addEventListener('close', (e) => record(LABEL, '**', `closed code=${e.code}`));
  }

  send(data) {
    record(LABEL, '>>', String(data));
    return super.send(data);
  }
};

// Imported after the global is in place (the SDK reads it when it connects).
const { DDPSDK } = await import('@rocket.chat/ddp-client');

/** Index of the first raw frame of alice's matching `pred`, or -1. */
function rawIndex(pred) {
  return rawInbound(LABEL).findIndex((f) => {
    try {
      return Boolean(pred(f));
    } catch {
      return false;
    }
  });
}

await scenario('rc-ddp-client', async () => {
  // The SDK appends `/websocket` to the server URL it is given.
  const base = URL.replace(/\/websocket\/?$/, '');
  const bob = simpleClient('bob', URL);

  await step('bob (simpleddp): connect + login({resume})', async () => {
    await bob.server.connect();
    const res = await bob.server.login({ resume: BOB_TOKEN });
    assert.equal(res.id, BOB_ID);
  });

  const sdk = await step('alice: DDPSDK.createAndConnect(url)', async () => DDPSDK.createAndConnect(base));

  await step('alice: account.loginWithToken -> account.user from the users record', async () => {
    const res = await sdk.account.loginWithToken(ALICE_TOKEN);
    assert.equal(res.id, ALICE_ID, 'login result .id');
    assert.equal(sdk.account.uid, ALICE_ID, 'account.uid');
    assert.equal(sdk.account.user?.username, 'alice', `account.user.username, user=${JSON.stringify(sdk.account.user)}`);
    assert.equal(sdk.account.user?.id, ALICE_ID, 'account.user.id');
    const added = rawIndex((f) => f.msg === 'added' && f.collection === 'users' && f.id === ALICE_ID);
    const result = rawIndex((f) => f.msg === 'result' && f.result?.id === ALICE_ID);
    assert.ok(added >= 0, 'a users `added` frame for alice');
    assert.ok(added < result, 'the users record arrives before the login result');
    const doc = rawInbound(LABEL)[added].fields;
    assert.equal(doc.name, 'Alice Liddell', 'users record .name');
    assert.deepEqual(doc.roles, ['user'], 'users record .roles');
    assert.equal(doc.status, 'online', 'users record .status');
  });

  const rid = await step('alice: client.callAsync("createPrivateGroup", name, ["bob"])', async () => {
    const res = await sdk.client.callAsync('createPrivateGroup', `interop-sdk-${rand()}`, ['bob']);
    assert.equal(typeof res?.rid, 'string', `createPrivateGroup .rid, got ${JSON.stringify(res)}`);
    assert.equal(res.t, 'p', 'createPrivateGroup .t');
    return res.rid;
  });

  const messages = new EventLog('alice room-messages');
  const stream = await step('alice: sdk.stream("room-messages", rid, cb) + ready()', async () => {
    const s = sdk.stream('room-messages', rid, (m) => messages.push(m));
    await s.ready();
    return s;
  });

  const text = `hello alice, bob here ${rand()}`;
  await step('bob: sendMessage -> alice callback gets it', async () => {
    await bob.server.call('sendMessage', { rid, msg: text });
    const m = await messages.waitFor((m) => m.msg === text, 'bob message');
    assert.equal(m.rid, rid, 'message .rid');
    assert.equal(m.u?._id, BOB_ID, 'message .u._id');
    assert.equal(m.u?.username, 'bob', 'message .u.username');
  });

  await step('bob leaves -> alice callback gets `ul`', async () => {
    await bob.server.call('leaveRoom', rid);
    const m = await messages.waitFor((m) => m.t === 'ul' && m.u?._id === BOB_ID, 'ul for bob');
    assert.equal(m.rid, rid);
  });

  await step('alice: stream.stop() + leaveRoom', async () => {
    stream.stop();
    const res = await sdk.client.callAsync('leaveRoom', rid);
    assert.equal(res, undefined, `leaveRoom returns nothing, got ${JSON.stringify(res)}`);
  });

  await step('alice: account.logout -> users record removed', async () => {
    await sdk.account.logout();
    assert.equal(sdk.account.user, undefined, 'account.user after logout');
    assert.equal(sdk.account.uid, undefined, 'account.uid after logout');
    const removed = rawIndex((f) => f.msg === 'removed' && f.collection === 'users' && f.id === ALICE_ID);
    assert.ok(removed >= 0, 'a users `removed` frame for alice');
    sdk.connection.close();
  });
});
