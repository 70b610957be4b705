// Issue 20 in a real browser: a host and a guest whose connections drop (a phone that loses its network, then a
// server restart) see, once back, every message and membership change they missed — each once, in order.
//
// The scenario runs its own roomd (ROOMD_BIN, the binary run.sh uses) so that it can restart it on the same port
// and data directory, and puts the host and the guest behind TCP relays it can cut: the browser sees the network
// go away (the socket dies, new ones are refused) while the server and the other people carry on.
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { ART, HOST_TOKEN, WAIT, createMeeting, launch, people, scenario, sleep, until } from "./lib/harness.mjs";

const { step, failed, problems, watch, done } = scenario("reconnect");
const BIN = process.env.ROOMD_BIN;
assert.ok(BIN, "ROOMD_BIN is required (run.sh sets it)");

/** A free port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Our own roomd, restartable on the same port and data directory. */
class Server {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.log = fs.openSync(path.join(dir, "server.log"), "a");
    this.proc = null;
  }
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  async start() {
    // A generous guest grace: the restart must not release the guest's seat. No rate limits: the host types 30
    // messages as fast as the browser sends them, past sendMessage's 5 a second (the limits have tests of their own).
    const args = [
      "--listen",
      `127.0.0.1:${this.port}`,
      "--data-dir",
      path.join(this.dir, "data"),
      "--guest-grace",
      "60s",
      "--no-rate-limits",
    ];
    this.proc = spawn(BIN, args, { env: process.env, stdio: ["ignore", this.log, this.log] });
    const proc = this.proc;
    await until("roomd ready", async () => {
      assert.equal(proc.exitCode, null, "roomd exited while starting");
      const r = await fetch(`${this.url}/readyz`).catch(() => null);
      return r && r.status === 200;
    });
  }
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    await Promise.race([exited, sleep(WAIT)]);
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
}

/** A TCP relay in front of the server that can be cut (every socket dies, new ones are refused) and restored. */
class Relay {
  constructor(target) {
    this.target = target;
    this.live = new Set();
    this.cutOff = false;
    this.server = net.createServer((down) => {
      if (this.cutOff) return down.destroy();
      const up = net.connect(target, "127.0.0.1");
      const pair = [down, up];
      for (const s of pair) {
        this.live.add(s);
        s.on("error", () => pair.forEach((x) => x.destroy()));
        s.on("close", () => {
          this.live.delete(s);
          pair.forEach((x) => x.destroy());
        });
      }
      down.pipe(up);
      up.pipe(down);
    });
  }
  async listen() {
    this.port = await freePort();
    await new Promise((r) => this.server.listen(this.port, "127.0.0.1", r));
    return `http://127.0.0.1:${this.port}`;
  }
  cut() {
    this.cutOff = true;
    for (const s of this.live) s.destroy();
  }
  restore() {
    this.cutOff = false;
  }
  close() {
    this.cut();
    this.server.close();
  }
}

async function newPage(browser, who, baseURL) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 800 }, baseURL });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  watch(page, who);
  return { ctx, page };
}

/** The chat lines of `page`, in the order shown. */
const chatLines = (page) => page.getByRole("log", { name: "Chat messages" }).locator("li").allInnerTexts();

/** Sends `text` from `page`'s composer and waits for it in its own chat. */
async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await until(`"${text}" in the sender's chat`, async () => {
    if ((await chatLines(page)).some((l) => l.includes(text))) return true;
    // A refused send shows its reason under the composer: the timeout then names it.
    const refused = await page.locator(".chat .notice").filter({ hasText: /\S/ }).allInnerTexts();
    if (refused.length) throw new Error(`sending "${text}" was refused: ${refused.join(" / ")}`);
    return false;
  });
}

/** Comes back online: the relay lets it through, and the page hears `online` (it retries at once, as on a phone). */
async function backOnline(relay, page) {
  relay.restore();
  await page.evaluate(() => window.dispatchEvent(new Event("online")));
}

/** Waits until every text of `expected` is in `page`'s chat; then checks each is there once and in this order. */
async function sawAllOnce(page, who, expected) {
  const lines = await until(`${who} shows all ${expected.length} missed lines`, async () => {
    const l = await chatLines(page);
    return expected.every((t) => l.some((x) => x.includes(t))) ? l : false;
  }, 20_000);
  const at = expected.map((t) => {
    const hits = lines.filter((x) => x.includes(t));
    assert.equal(hits.length, 1, `${who}: "${t}" shown ${hits.length} times:\n${lines.join("\n")}`);
    return lines.findIndex((x) => x.includes(t));
  });
  for (let i = 1; i < at.length; i++) {
    assert.ok(at[i - 1] < at[i], `${who}: "${expected[i - 1]}" not before "${expected[i]}":\n${lines.join("\n")}`);
  }
}

/** A guest who walks in through `url`'s share link, says `lines`, and leaves. */
async function walkIn(browser, url, code, name, lines) {
  const w = await newPage(browser, name, url);
  await w.page.goto(`/r/${code}`);
  await w.page.getByLabel("Your name").fill(name);
  await w.page.getByRole("button", { name: "Join", exact: true }).click();
  await w.page.getByRole("button", { name: "Leave" }).waitFor();
  for (const t of lines) await say(w.page, t);
  await w.page.getByRole("button", { name: "Leave" }).click();
  await w.page.getByText("You left the meeting.").waitFor();
  await w.ctx.close();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "roomd-reconnect-"));
const server = new Server(await freePort(), dir);
const hostRelay = new Relay(server.port);
const guestRelay = new Relay(server.port);
const browser = await launch();

try {
  await server.start();
  const hostUrl = await hostRelay.listen();
  const guestUrl = await guestRelay.listen();

  step("host creates a meeting; a guest joins through the share link");
  const host = await newPage(browser, "host", hostUrl);
  await host.page.goto(`/#token=${HOST_TOKEN}`);
  await host.page.getByRole("heading", { name: "New meeting room" }).waitFor();
  const roomName = `reconnect-${Date.now().toString(36)}`;
  const link = await createMeeting(host.page, roomName);
  const code = link.slice(link.lastIndexOf("/") + 1);
  const guest = await newPage(browser, "guest", guestUrl);
  await guest.page.goto(`/r/${code}`);
  await guest.page.getByLabel("Your name").fill("Gina Guest");
  await guest.page.getByRole("button", { name: "Join", exact: true }).click();
  await guest.page.getByRole("heading", { name: roomName }).waitFor();
  await until("the guest in the host's list", async () => (await people(host.page)).length === 2);
  await say(host.page, "before the drop");
  await until("the guest hears the host", async () => (await chatLines(guest.page)).some((l) => l.includes("before the drop")));

  step("the guest's network drops; meanwhile the host sends 30 messages and a walk-in joins, talks and leaves");
  guestRelay.cut();
  await guest.page.getByText("Connection lost").waitFor();
  const away = Array.from({ length: 30 }, (_, i) => `while away ${String(i + 1).padStart(2, "0")}`);
  for (const t of away.slice(0, 15)) await say(host.page, t);
  await walkIn(browser, server.url, code, "Walter Walkin", ["walter was here"]);
  for (const t of away.slice(15)) await say(host.page, t);

  step("the guest comes back: every missed message and the walk-in's join and leave, once and in order");
  await backOnline(guestRelay, guest.page);
  await sawAllOnce(guest.page, "guest", [
    "before the drop",
    ...away.slice(0, 15),
    "Walter Walkin joined",
    "walter was here",
    "Walter Walkin left",
    ...away.slice(15),
  ]);
  await until("the guest's list: host and guest", async () => (await people(guest.page)).length === 2);
  await guest.page.screenshot({ path: path.join(ART, "reconnect-guest-back.png") });

  step("both lose the server: it restarts; before they are back a second walk-in joins, talks and leaves");
  hostRelay.cut();
  guestRelay.cut();
  await host.page.getByText("Connection lost").waitFor();
  await server.stop();
  await server.start();
  const after = Array.from({ length: 5 }, (_, i) => `after the restart ${i + 1}`);
  await walkIn(browser, server.url, code, "Rita Restart", after);

  step("host and guest come back: each sees the second walk-in's join, 5 messages and leave, once and in order");
  await backOnline(hostRelay, host.page);
  await backOnline(guestRelay, guest.page);
  const missed = ["Rita Restart joined", ...after, "Rita Restart left"];
  await sawAllOnce(host.page, "host", [...away, ...missed]);
  await sawAllOnce(guest.page, "guest", [...away, ...missed]);
  await until("the host's list: host and guest", async () => (await people(host.page)).length === 2);
  await until("the guest's banner is gone", async () => !(await guest.page.getByText("Connection lost").isVisible()));
  await host.page.screenshot({ path: path.join(ART, "reconnect-host-after-restart.png") });

  assert.deepEqual(problems, [], `page problems:\n${problems.join("\n")}`);
  step("passed");
} catch (e) {
  failed(e);
  process.exitCode = 1;
} finally {
  done();
  await browser.close().catch(() => {});
  hostRelay.close();
  guestRelay.close();
  await server.stop();
  if (process.exitCode) console.error(`[reconnect] server log: ${path.join(dir, "server.log")}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
