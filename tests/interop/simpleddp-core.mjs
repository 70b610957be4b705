// Scenario "core" with simpleddp + simpleddp-plugin-login.
//
// alice logs in, creates a private group and a channel, subscribes to the
// channel's messages; bob logs in, joins (alice sees `uj`) and leaves (alice
// sees `ul`).

import assert from 'node:assert/strict';
import { env, rand, rawInbound, scenario, step } from './lib/harness.mjs';
import { roomMessage, simpleClient } from './lib/simpleddp-client.mjs';

const URL = env('ROOMD_URL');
const ALICE_TOKEN = env('ALICE_TOKEN');
const ALICE_ID = env('ALICE_ID');
const BOB_TOKEN = env('BOB_TOKEN');
const BOB_ID = env('BOB_ID');

async function connectAndLogin(client, token, userId) {
  const { server, label } = client;
  await step(`${label}: connect`, async () => {
    await server.connect();
    assert.equal(server.connected, true, `${label}: simpleddp reports not connected`);
    const session = server.ddpConnection.sessionId;
    assert.equal(typeof session, 'string', `${label}: "connected" frame must carry a session string`);
    assert.ok(session.length > 0, `${label}: session id must be non-empty`);
  });
  await step(`${label}: login({resume})`, async () => {
    const res = await server.login({ resume: token });
    assert.equal(res.id, userId, `${label}: login result .id`);
    assert.equal(res.token, token, `${label}: login result .token echoes the resume token`);
    assert.equal(res.type, 'resume', `${label}: login result .type`);
    assert.ok(res.tokenExpires instanceof Date, `${label}: tokenExpires must EJSON-decode to a Date`);
    assert.ok(res.tokenExpires.getTime() > Date.now(), `${label}: tokenExpires must be in the future`);
    assert.equal(server.userId, userId, `${label}: plugin-login must record userId`);
    // The wire form must be EJSON {$date: <ms number>}.
    const raw = rawInbound(label).find((f) => f.msg === 'result' && f.result && f.result.type === 'resume');
    assert.ok(raw, `${label}: raw login result frame not found`);
    assert.equal(typeof raw.result.tokenExpires?.$date, 'number', `${label}: raw tokenExpires must be {$date:<number>}`);
  });
}

await scenario('simpleddp-core', async () => {
  const alice = simpleClient('alice', URL);
  const bob = simpleClient('bob', URL);

  await connectAndLogin(alice, ALICE_TOKEN, ALICE_ID);

  await step('alice: createPrivateGroup(name, [], false)', async () => {
    const name = `interop-grp-${rand()}`;
    const res = await alice.server.call('createPrivateGroup', name, [], false);
    assert.ok(res && typeof res === 'object', `createPrivateGroup result must be an object, got ${JSON.stringify(res)}`);
    assert.equal(typeof res.rid, 'string', 'createPrivateGroup result .rid must be a string');
    assert.ok(res.rid.length > 0, 'createPrivateGroup result .rid must be non-empty');
    assert.equal(res.t, 'p', 'createPrivateGroup result .t');
    assert.equal(res.inserted, true, 'createPrivateGroup result .inserted');
  });

  const channel = await step('alice: createChannel("interop-<random>")', async () => {
    const name = `interop-${rand()}`;
    const res = await alice.server.call('createChannel', name);
    assert.ok(res && typeof res === 'object', `createChannel result must be an object, got ${JSON.stringify(res)}`);
    assert.equal(typeof res.rid, 'string', 'createChannel result .rid must be a string');
    assert.ok(res.rid.length > 0, 'createChannel result .rid must be non-empty');
    assert.equal(res.t, 'c', 'createChannel result .t');
    return res;
  });
  const rid = channel.rid;

  await step('alice: subscribe stream-room-messages(rid, false) -> ready', async () => {
    const sub = alice.server.subscribe('stream-room-messages', rid, false);
    await sub.ready();
    assert.equal(sub.isReady(), true, 'subscription must be ready');
  });

  await connectAndLogin(bob, BOB_TOKEN, BOB_ID);

  await step('bob: joinRoom(rid) -> true', async () => {
    const res = await bob.server.call('joinRoom', rid);
    assert.equal(res, true, 'joinRoom result');
  });

  await step('alice: receives changed stream-room-messages with t:"uj" msg:"bob"', async () => {
    const m = await alice.changed.waitFor(
      roomMessage(rid, (msg) => msg.t === 'uj'),
      `a "uj" system message for room ${rid}`,
    );
    assert.equal(m.collection, 'stream-room-messages');
    assert.equal(m.fields.eventName, rid, 'fields.eventName is the room id');
    const msg = m.fields.args[0];
    assert.equal(msg.t, 'uj', 'system message type');
    assert.equal(msg.msg, 'bob', 'uj message text is the username');
    assert.equal(msg.rid, rid, 'uj message rid');
  });

  await step('bob: leaveRoom(rid) -> no result', async () => {
    const res = await bob.server.call('leaveRoom', rid);
    assert.equal(res, undefined, `leaveRoom must return nothing, got ${JSON.stringify(res)}`);
  });

  await step('alice: receives changed stream-room-messages with t:"ul" msg:"bob"', async () => {
    const m = await alice.changed.waitFor(
      roomMessage(rid, (msg) => msg.t === 'ul'),
      `a "ul" system message for room ${rid}`,
    );
    const msg = m.fields.args[0];
    assert.equal(msg.t, 'ul', 'system message type');
    assert.equal(msg.msg, 'bob', 'ul message text is the username');
    assert.equal(msg.rid, rid, 'ul message rid');
  });

  await step('no DDP error frames / unexpected disconnects', async () => {
    assert.deepEqual(alice.errors.items, [], 'alice got error/disconnect events');
    assert.deepEqual(bob.errors.items, [], 'bob got error/disconnect events');
  });

  await step('disconnect', async () => {
    await Promise.all([alice.server.disconnect(), bob.server.disconnect()]);
  });
});
