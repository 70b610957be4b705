// Rooms by interest, measured (BENCHMARKS.md, "Rooms by interest"): run by
// scripts/bench-interest.sh against three running cluster nodes.
//
//   node scripts/bench-interest.mjs <secret> <rooms-per-node> <messages> <url-a> <url-b> <url-c>
//
// Through each node, signs in an owner and creates <rooms-per-node> public
// channels with <messages> messages each (every room used through one node
// only). Then a reader on node b asks for the latest page of 50 rooms
// created through node a (rooms node b does not hold): the time of each
// first call, which includes loading the room. Prints one JSON line.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';

// `ws` from the interop suite's packages (tests/interop, `npm ci` there).
const WebSocket = createRequire(new URL('../tests/interop/package.json', import.meta.url))('ws');

const [secret, perNode, messages, ...urls] = process.argv.slice(2);

function jwt(sub, username) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, username, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

// A minimal DDP client: methods only.
async function ddp(url) {
  const ws = new WebSocket(url);
  await new Promise((ok, fail) => { ws.once('open', ok); ws.once('error', fail); });
  const waiting = new Map();
  let next = 1;
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.msg === 'ping') ws.send(JSON.stringify({ msg: 'pong' }));
    if (m.msg === 'result' && waiting.has(m.id)) {
      waiting.get(m.id)(m);
      waiting.delete(m.id);
    }
  });
  ws.send(JSON.stringify({ msg: 'connect', version: '1', support: ['1'] }));
  const call = (method, params) => new Promise((ok, fail) => {
    const id = String(next++);
    waiting.set(id, (m) => (m.error ? fail(new Error(`${method}: ${JSON.stringify(m.error)}`)) : ok(m.result)));
    ws.send(JSON.stringify({ msg: 'method', id, method, params }));
  });
  return { call, close: () => ws.close() };
}

const created = [];
for (const [i, url] of urls.entries()) {
  const c = await ddp(url);
  await c.call('login', [{ resume: jwt(`bench-owner-${i}`, `bench-owner-${i}`) }]);
  const rooms = [];
  for (let r = 0; r < Number(perNode); r++) {
    const doc = await c.call('createChannel', [`bench-${i}-${r}-${Date.now()}`, []]);
    const rid = doc.rid ?? doc._id;
    for (let m = 0; m < Number(messages); m++) await c.call('sendMessage', [{ rid, msg: `m-${m}` }]);
    rooms.push(rid);
  }
  created.push(rooms);
  c.close();
}
const reader = await ddp(urls[1]);
await reader.call('login', [{ resume: jwt('bench-reader', 'bench-reader') }]);
const firsts = [];
for (const rid of created[0].slice(0, 50)) {
  const t = process.hrtime.bigint();
  const page = await reader.call('loadHistory', [rid, null, 50, null]);
  firsts.push(Number(process.hrtime.bigint() - t) / 1e6);
  if (page.messages.length < Math.min(50, Number(messages))) throw new Error(`short page for ${rid}`);
}
reader.close();
firsts.sort((a, b) => a - b);
const pct = (p) => firsts[Math.min(firsts.length - 1, Math.floor((p / 100) * firsts.length))].toFixed(1);
console.log(JSON.stringify({ first_call_ms: { p50: pct(50), p90: pct(90), max: pct(100) } }));
process.exit(0);
