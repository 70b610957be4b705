// Scenario "Slack Web API": npm @slack/web-api 8.x, unmodified, against
// roomd's Slack door (`POST /api/channels.join`, `/api/conversations.join`),
// with a DDP client watching the room.
//
// - `apiCall("channels.join", { name: "General" })` creates `general`;
//   a second call answers `already_in_channel` with the limited object;
// - a second user joins by `#name`; the DDP client sees its `uj`;
// - `validate: true` with a bad name gets the specific error;
// - an archived channel answers `is_archived`, a bad token `invalid_auth`;
// - `conversations.join` by id.

import assert from 'node:assert/strict';
import { WebClient, ErrorCode, LogLevel } from '@slack/web-api';
import { env, scenario, step, withTimeout } from './lib/harness.mjs';
import { roomMessage, simpleClient } from './lib/simpleddp-client.mjs';

const DDP_URL = env('ROOMD_URL');
const API_URL = DDP_URL.replace(/^ws/, 'http').replace(/\/websocket$/, '/api/');
const ALICE_TOKEN = env('SLACK_ALICE_TOKEN');
const ALICE_ID = env('SLACK_ALICE_ID');
const BOB_TOKEN = env('SLACK_BOB_TOKEN');
const BOB_ID = env('SLACK_BOB_ID');

/** A WebClient as a bot would make one, pointed at roomd; no retries, so a failure shows at once. */
function client(token) {
  return new WebClient(token, {
    slackApiUrl: API_URL,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logLevel: LogLevel.ERROR,
  });
}

/** The Slack error code of a rejected call (the library's platform error). */
async function slackError(promise) {
  try {
    const r = await promise;
    assert.fail(`expected a Slack error, got ${JSON.stringify(r)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    assert.equal(e.code, ErrorCode.PlatformError, `not a platform error: ${e.stack}`);
    return e.data.error;
  }
}

scenario('slack-web', async () => {
  const alice = client(ALICE_TOKEN);
  const bob = client(BOB_TOKEN);
  let channel;

  await step('channels.join { name: "General" } creates #general', async () => {
    const r = await alice.apiCall('channels.join', { name: 'General' });
    assert.equal(r.ok, true);
    channel = r.channel;
    assert.equal(channel.name, 'general');
    assert.equal(channel.name_normalized, 'general');
    assert.equal(channel.creator, ALICE_ID);
    assert.equal(channel.is_channel, true);
    assert.equal(channel.is_member, true);
    assert.equal(channel.is_private, false);
    assert.equal(channel.is_archived, false);
    assert.deepEqual(channel.members, [ALICE_ID]);
    assert.deepEqual(channel.previous_names, []);
    assert.equal(typeof channel.created, 'number');
    assert.equal(r.already_in_channel, undefined);
  });

  await step('a second call answers already_in_channel', async () => {
    const r = await alice.apiCall('channels.join', { name: 'GeNERaL' });
    assert.equal(r.ok, true);
    assert.equal(r.already_in_channel, true);
    assert.equal(r.channel.id, channel.id);
    assert.equal(r.channel.members, undefined, 'the limited channel object');
  });

  const ddp = simpleClient('alice-ddp', DDP_URL);
  await step('a DDP client subscribes to the room', async () => {
    await withTimeout(ddp.server.connect(), 'DDP connect');
    await ddp.server.login({ resume: ALICE_TOKEN });
    const sub = ddp.server.subscribe('stream-room-messages', channel.id, false);
    await withTimeout(sub.ready(), 'stream-room-messages ready');
  });

  await step('bob joins "#general"; the DDP client sees his uj', async () => {
    const r = await bob.apiCall('channels.join', { name: '#general' });
    assert.equal(r.ok, true);
    assert.deepEqual(r.channel.members, [ALICE_ID, BOB_ID]);
    await ddp.changed.waitFor(roomMessage(channel.id, (m) => m.t === 'uj' && m.u._id === BOB_ID), 'uj of bob');
  });

  await step('validate: true refuses a bad name with the specific error', async () => {
    const cases = [
      ['Upper Case', 'invalid_name_specials'],
      ['#', 'invalid_name_required'],
      ['---', 'invalid_name_punctuation'],
      ['x'.repeat(81), 'invalid_name_maxlength'],
    ];
    for (const [name, code] of cases) {
      assert.equal(await slackError(alice.apiCall('channels.join', { name, validate: true })), code, name);
    }
    // Without validate, the same name is normalised.
    const r = await alice.apiCall('channels.join', { name: 'Upper Case.Room' });
    assert.equal(r.channel.name, 'upper-case-room');
  });

  await step('an archived channel answers is_archived', async () => {
    const room = await ddp.server.call('createChannel', `archived-${Date.now()}`, []);
    await ddp.server.call('archiveRoom', room._id);
    assert.equal(await slackError(bob.apiCall('channels.join', { name: room.name })), 'is_archived');
    assert.equal(await slackError(bob.apiCall('conversations.join', { channel: room._id })), 'is_archived');
  });

  await step('a private group cannot be joined by name', async () => {
    const group = await ddp.server.call('createPrivateGroup', `private-${Date.now()}`, []);
    assert.equal(await slackError(bob.apiCall('channels.join', { name: group.name })), 'name_taken');
  });

  await step('conversations.join by id', async () => {
    const carolless = await alice.apiCall('channels.join', { name: `conv-${Date.now()}` });
    const r = await bob.conversations.join({ channel: carolless.channel.id });
    assert.equal(r.ok, true);
    assert.deepEqual(r.channel.members, [ALICE_ID, BOB_ID]);
    const again = await bob.conversations.join({ channel: carolless.channel.id });
    assert.equal(again.warning, 'already_in_channel');
  });

  await step('a bad token answers invalid_auth', async () => {
    const mallory = client('xoxb-not-a-roomd-token');
    assert.equal(await slackError(mallory.apiCall('channels.join', { name: 'general' })), 'invalid_auth');
  });

  ddp.server.disconnect();
});
