// Scenario "Rocket.Chat complete" with simpleddp + simpleddp-plugin-login.
//
// A bot and carol exchange messages in a private group, carol sends a typing
// notification, the bot loads history, promotes carol to moderator and sees
// her leave.

import assert from 'node:assert/strict';
import { env, rand, rawInbound, scenario, step } from './lib/harness.mjs';
import { roomMessage, simpleClient } from './lib/simpleddp-client.mjs';

const URL = env('ROOMD_URL');
const BOT_TOKEN = env('BOT_TOKEN');
const BOT_ID = env('BOT_ID');
const BOT_USERNAME = env('BOT_USERNAME');
const CAROL_TOKEN = env('CAROL_TOKEN');
const CAROL_ID = env('CAROL_ID');
const CAROL_USERNAME = 'carol';

async function connectAndLogin(client, token, userId) {
  await step(`${client.label}: connect + login({resume})`, async () => {
    await client.server.connect();
    const res = await client.server.login({ resume: token });
    assert.equal(res.id, userId, `${client.label}: login result .id`);
    assert.equal(res.type, 'resume', `${client.label}: login result .type`);
  });
}

/** Check a sendMessage result / stream message shape (after EJSON decoding). */
function assertChatMessage(m, { rid, msg, userId, username }, what) {
  assert.ok(m && typeof m === 'object', `${what}: must be an object, got ${JSON.stringify(m)}`);
  assert.equal(typeof m._id, 'string', `${what}: ._id`);
  assert.ok(m._id.length > 0, `${what}: ._id non-empty`);
  assert.equal(m.rid, rid, `${what}: .rid`);
  assert.equal(m.msg, msg, `${what}: .msg`);
  assert.ok(m.ts instanceof Date && !Number.isNaN(m.ts.getTime()), `${what}: .ts must EJSON-decode to a Date`);
  assert.ok(m.u && typeof m.u === 'object', `${what}: .u`);
  assert.equal(m.u._id, userId, `${what}: .u._id`);
  assert.equal(m.u.username, username, `${what}: .u.username`);
}

/** The same message as it appeared raw on the wire: ts must be {$date:<ms>}. */
function assertRawTs(label, messageId, what) {
  const raw = rawInbound(label).find((f) => f.msg === 'result' && f.result && f.result._id === messageId);
  assert.ok(raw, `${what}: raw result frame for message ${messageId} not found`);
  assert.equal(typeof raw.result.ts?.$date, 'number', `${what}: raw .ts must be {$date:<number>}`);
}

await scenario('rc-messages', async () => {
  const bot = simpleClient('bot', URL);
  const carol = simpleClient('carol', URL);

  // carol logs in first so the server knows the username "carol".
  await connectAndLogin(carol, CAROL_TOKEN, CAROL_ID);
  await connectAndLogin(bot, BOT_TOKEN, BOT_ID);

  const rid = await step('bot: createPrivateGroup(name, ["carol"], false)', async () => {
    const res = await bot.server.call('createPrivateGroup', `interop-rc-${rand()}`, [CAROL_USERNAME], false);
    assert.equal(typeof res?.rid, 'string', `createPrivateGroup .rid, got ${JSON.stringify(res)}`);
    assert.equal(res.t, 'p', 'createPrivateGroup .t');
    return res.rid;
  });
  const activity = `${rid}/user-activity`;

  for (const c of [bot, carol]) {
    await step(`${c.label}: subscribe stream-room-messages(rid) + stream-notify-room(rid/user-activity)`, async () => {
      const subMsgs = c.server.subscribe('stream-room-messages', rid, false);
      const subNotify = c.server.subscribe('stream-notify-room', activity, false);
      await Promise.all([subMsgs.ready(), subNotify.ready()]);
    });
  }

  const botText = `hello from bot ${rand()}`;
  const carolText = `hi bot, carol here ${rand()}`;

  const botMsg = await step('bot: sendMessage({rid, msg})', async () => {
    const res = await bot.server.call('sendMessage', { rid, msg: botText });
    assertChatMessage(res, { rid, msg: botText, userId: BOT_ID, username: BOT_USERNAME }, 'sendMessage result');
    assertRawTs('bot', res._id, 'sendMessage result');
    return res;
  });

  await step('carol: receives the bot message on stream-room-messages', async () => {
    const m = await carol.changed.waitFor(roomMessage(rid, (x) => x._id === botMsg._id), `bot message ${botMsg._id}`);
    assertChatMessage(m.fields.args[0], { rid, msg: botText, userId: BOT_ID, username: BOT_USERNAME }, 'streamed message');
  });

  const carolMsg = await step('carol: sendMessage({rid, msg})', async () => {
    const res = await carol.server.call('sendMessage', { rid, msg: carolText });
    assertChatMessage(res, { rid, msg: carolText, userId: CAROL_ID, username: CAROL_USERNAME }, 'sendMessage result');
    assertRawTs('carol', res._id, 'sendMessage result');
    return res;
  });

  await step('bot: receives carol message on stream-room-messages', async () => {
    const m = await bot.changed.waitFor(roomMessage(rid, (x) => x._id === carolMsg._id), `carol message ${carolMsg._id}`);
    assertChatMessage(m.fields.args[0], { rid, msg: carolText, userId: CAROL_ID, username: CAROL_USERNAME }, 'streamed message');
  });

  await step('carol: stream-notify-room typing -> bot sees changed on stream-notify-room', async () => {
    await carol.server.call('stream-notify-room', activity, CAROL_USERNAME, ['user-typing'], {});
    const m = await bot.changed.waitFor(
      (x) => x.collection === 'stream-notify-room' && x.fields?.eventName === activity,
      `typing event on ${activity}`,
    );
    assert.equal(m.fields.eventName, activity, 'fields.eventName');
    assert.deepEqual(m.fields.args, [CAROL_USERNAME, ['user-typing'], {}], 'fields.args');
  });

  await step('bot: loadHistory(rid, null, 50, null) -> newest first, both messages', async () => {
    const res = await bot.server.call('loadHistory', rid, null, 50, null);
    assert.ok(res && Array.isArray(res.messages), `loadHistory .messages must be an array, got ${JSON.stringify(res)}`);
    assert.equal(res.unreadNotLoaded, 0, 'loadHistory .unreadNotLoaded');
    const ids = res.messages.map((m) => m._id);
    const iBot = ids.indexOf(botMsg._id);
    const iCarol = ids.indexOf(carolMsg._id);
    assert.ok(iBot >= 0, `history must contain the bot message ${botMsg._id}; ids: ${JSON.stringify(ids)}`);
    assert.ok(iCarol >= 0, `history must contain carol's message ${carolMsg._id}; ids: ${JSON.stringify(ids)}`);
    assert.ok(iCarol < iBot, 'history is newest first: carol (sent later) must precede the bot message');
    for (let i = 1; i < res.messages.length; i++) {
      const a = res.messages[i - 1].ts;
      const b = res.messages[i].ts;
      assert.ok(a instanceof Date && b instanceof Date, `history message ts must decode to Date (index ${i})`);
      assert.ok(a.getTime() >= b.getTime(), `history must be sorted by ts descending (index ${i - 1} vs ${i})`);
    }
    assertChatMessage(res.messages[iBot], { rid, msg: botText, userId: BOT_ID, username: BOT_USERNAME }, 'history bot message');
  });

  await step('bot: addRoomModerator(rid, carolId) succeeds', async () => {
    await bot.server.call('addRoomModerator', rid, CAROL_ID);
  });

  await step('bot: getRoomRoles(rid) lists carol as moderator', async () => {
    const roles = await bot.server.call('getRoomRoles', rid);
    assert.ok(Array.isArray(roles), `getRoomRoles must return an array, got ${JSON.stringify(roles)}`);
    const entry = roles.find((r) => r && r.u && r.u._id === CAROL_ID);
    assert.ok(entry, `carol must be listed; got ${JSON.stringify(roles)}`);
    assert.equal(entry.u.username, CAROL_USERNAME, 'role entry .u.username');
    assert.ok(Array.isArray(entry.roles) && entry.roles.includes('moderator'), `carol roles must include moderator, got ${JSON.stringify(entry.roles)}`);
    if ('rid' in entry) assert.equal(entry.rid, rid, 'role entry .rid');
  });

  await step('carol: leaveRoom(rid)', async () => {
    const res = await carol.server.call('leaveRoom', rid);
    assert.equal(res, undefined, `leaveRoom must return nothing, got ${JSON.stringify(res)}`);
  });

  await step('bot: receives t:"ul" msg:"carol"', async () => {
    const m = await bot.changed.waitFor(roomMessage(rid, (x) => x.t === 'ul'), `"ul" for ${rid}`);
    assert.equal(m.fields.args[0].msg, CAROL_USERNAME, 'ul .msg is the username');
  });

  await step('no DDP error frames / unexpected disconnects', async () => {
    assert.deepEqual(bot.errors.items, [], 'bot got error/disconnect events');
    assert.deepEqual(carol.errors.items, [], 'carol got error/disconnect events');
  });

  await Promise.all([bot.server.disconnect(), carol.server.disconnect()]);
});
