// Issue 22 in a real browser: share links as people paste them, codes as people type them, guest names with joined
// emoji, and the host's view (own share link, members-only rooms, over capacity, an ended room).
import path from "node:path";
import assert from "node:assert/strict";
import { ART, BASE, HOST_TOKEN, WAIT, alertText, createMeeting, launch, people, peopleCount, scenario, sleep, until } from "./lib/harness.mjs";

const { step, failed, problems, watch, done } = scenario("share-links");

async function newPage(browser, who, ctx) {
  ctx = ctx ?? (await browser.newContext({ viewport: { width: 1000, height: 800 }, baseURL: BASE }));
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  watch(page, who);
  return { ctx, page };
}

const avatarOf = (page, name) => page.getByRole("list", { name: "Participants" }).locator("li", { hasText: name }).locator(".avatar").innerText();
const pathOf = (page) => new URL(page.url()).pathname;

async function refusal(page, expected) {
  return until(`the refusal "${expected}"`, async () => {
    const t = await alertText(page);
    return expected.test(t) ? t : false;
  });
}

/** Opens `link` as a guest, joins as `name`, waits for the room. */
async function guestJoins(page, link, name, roomName) {
  await page.goto(link);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.getByRole("heading", { name: roomName }).waitFor();
}

/** Every visible, disabled control in the page's main area (none should be left in an ended room). */
async function disabledControls(page) {
  const out = [];
  for (const el of await page.locator("main button, main input, main textarea").all()) {
    if ((await el.isVisible()) && (await el.isDisabled())) out.push(await el.evaluate((e) => e.outerHTML));
  }
  return out;
}

const browser = await launch();

try {
  step("host signs in and creates a meeting room with guests");
  const host = await newPage(browser, "host");
  await host.page.goto(`/#token=${HOST_TOKEN}`);
  await host.page.getByRole("heading", { name: "New meeting room" }).waitFor();
  const roomName = `links-${Date.now().toString(36)}`;
  const link = await createMeeting(host.page, roomName);
  const code = link.slice(link.lastIndexOf("/") + 1);
  assert.ok(await host.page.getByText("Share this link with guests").isVisible(), "a room with guests shows its share link");

  // --- 22.3: share links with punctuation, cut short; codes as typed -----------------------------------------------
  step("a link pasted with a sentence's \").\" opens the room's guest page, the address bar corrected");
  const ana = await newPage(browser, "ana");
  await ana.page.goto(`${link}).`);
  await ana.page.getByRole("heading", { name: "Join the meeting" }).waitFor();
  assert.equal(pathOf(ana.page), `/r/${code}`);
  assert.equal(await ana.page.locator("main code").innerText(), code);

  step("22.1: a guest named with joined emoji is admitted; avatars show the whole emoji");
  await ana.page.getByLabel("Your name").fill("👩‍💻 Ana");
  await ana.page.getByRole("button", { name: "Join", exact: true }).click();
  await ana.page.getByRole("heading", { name: roomName }).waitFor();
  await until("Ana in the host's list", async () => (await people(host.page)).some((t) => t.includes("👩‍💻 Ana")));
  assert.equal(await avatarOf(host.page, "👩‍💻 Ana"), "👩‍💻", "the avatar is the first grapheme, not half a surrogate pair");
  assert.equal(await avatarOf(ana.page, "👩‍💻 Ana"), "👩‍💻");

  step("22.2: the guest chats; the host reads it under the guest's name; the host can close the chat to guests");
  await ana.page.getByLabel("Message", { exact: true }).fill("Hello from Ana");
  await ana.page.getByRole("button", { name: "Send" }).click();
  const hostLog = host.page.getByRole("log", { name: "Chat messages" });
  await hostLog.locator("li.msg", { hasText: "Hello from Ana" }).waitFor();
  assert.equal(await hostLog.locator("li.msg", { hasText: "Hello from Ana" }).locator(".who").innerText(), "👩‍💻 Ana");
  const rid = await ana.page.evaluate((c) => JSON.parse(sessionStorage.getItem(`roomd.seat.${c}`)).rid, code);
  await host.page.evaluate((r) => window.roomd.client.call("saveRoomSettings", r, { guestChat: false }), rid);
  await ana.page.getByText("The host has not opened the chat to guests").waitFor();
  assert.equal(await ana.page.getByRole("button", { name: "Send" }).isVisible(), false, "no composer once closed");
  await host.page.evaluate((r) => window.roomd.client.call("saveRoomSettings", r, { guestChat: true }), rid);
  await ana.page.getByRole("button", { name: "Send" }).waitFor();

  step("a link with a trailing \"/\", capitals and no dashes; a rainbow-flag name, the whole flag as its avatar");
  const bo = await newPage(browser, "bo");
  await guestJoins(bo.page, `/r/${code.replaceAll("-", "").toUpperCase()}/`, "🏳️‍🌈 Bo", roomName);
  assert.equal(pathOf(bo.page), `/r/${code}`);
  await until("Bo in the host's list", async () => (await people(host.page)).some((t) => t.includes("🏳️‍🌈 Bo")));
  assert.equal(await avatarOf(host.page, "🏳️‍🌈 Bo"), "🏳️‍🌈");

  step("22.1: a name with a bidi override is refused, naming the character");
  const eve = await newPage(browser, "eve");
  await eve.page.goto(`${link}.`);
  await eve.page.getByLabel("Your name").fill("ali\u202Ece");
  await eve.page.getByRole("button", { name: "Join", exact: true }).click();
  const said = await refusal(eve.page, /U\+202E/);
  assert.match(said, /invisible or control character/);
  assert.doesNotMatch(said, /1 to 50/, "the real reason, not the length");

  step("/r and /r/ say \"Room not found\" kindly, and take a code typed with spaces");
  for (const p of ["/r", "/r/", "/r/a/b"]) {
    await eve.page.goto(p);
    await eve.page.getByRole("heading", { name: "Room not found" }).waitFor();
    assert.ok(await eve.page.getByLabel("Meeting code").isVisible(), `${p}: a way on`);
  }
  await eve.page.getByLabel("Meeting code").fill(` ${code.replaceAll("-", " ").toUpperCase()} `);
  await eve.page.getByRole("button", { name: "Go to meeting" }).click();
  await eve.page.getByRole("heading", { name: "Join the meeting" }).waitFor();
  assert.equal(pathOf(eve.page), `/r/${code}`);

  step("the landing page takes a code without dashes, and says kindly when it is not a code");
  await eve.page.goto("/");
  await eve.page.getByLabel("Meeting code").fill(code.replaceAll("-", ""));
  await eve.page.getByRole("button", { name: "Go to meeting" }).click();
  await eve.page.getByRole("heading", { name: "Join the meeting" }).waitFor();
  assert.equal(pathOf(eve.page), `/r/${code}`);
  await eve.page.goto("/");
  await eve.page.getByLabel("Meeting code").fill("abc-def");
  await eve.page.getByRole("button", { name: "Go to meeting" }).click();
  await refusal(eve.page, /nine letters/);
  assert.equal(pathOf(eve.page), "/");

  // --- 22.4: the host's view ----------------------------------------------------------------------------------------
  step("22.4: the signed-in host opening their own share link goes into the room, no guest-name form");
  const hostTab = await newPage(browser, "host-tab", host.ctx);
  await hostTab.page.goto(link);
  await hostTab.page.getByRole("heading", { name: roomName }).waitFor();
  assert.equal(await hostTab.page.getByLabel("Your name").count(), 0, "no guest-name form for the host");
  assert.ok(await hostTab.page.getByRole("button", { name: "End meeting" }).isVisible());
  await until("3 people in the host tab", async () => (await peopleCount(hostTab.page)) === "3");
  await hostTab.page.close();
  await sleep(300);
  assert.equal(await peopleCount(host.page), "3", "the host tab took no seat of its own");

  step("22.4: a capacity below the count says so in words");
  await host.page.getByLabel("Capacity", { exact: true }).fill("1");
  await host.page.getByRole("button", { name: "Set capacity" }).click();
  await until("3 / 1 on the host", async () => (await peopleCount(host.page)) === "3 / 1");
  await until("over capacity", async () => (await host.page.getByTestId("capacity-state").innerText()) === "full, over capacity");
  assert.match(await host.page.locator("#people-h").innerText(), /3 \/ 1 — full, over capacity/);
  await host.page.getByLabel("Capacity", { exact: true }).fill("3");
  await host.page.getByRole("button", { name: "Set capacity" }).click();
  await until("3 / 3 on the host", async () => (await peopleCount(host.page)) === "3 / 3");
  assert.match(await host.page.locator("#people-h").innerText(), /3 \/ 3 — full$/);

  step("22.4: an ended room shows no disabled controls and no share link");
  await host.page.getByRole("button", { name: "End meeting" }).click();
  await host.page.getByRole("button", { name: "End for everyone" }).click();
  await host.page.locator(".badge", { hasText: "Ended" }).waitFor();
  await host.page.getByRole("button", { name: "New meeting" }).waitFor();
  assert.deepEqual(await disabledControls(host.page), [], "no disabled controls in an ended room");
  assert.equal(await host.page.getByText("Share this link with guests").isVisible(), false);
  assert.equal(await host.page.getByTestId("share-link").isVisible(), false);
  for (const name of ["Lock room", "Set capacity", "End meeting", "Send"]) {
    assert.equal(await host.page.getByRole("button", { name, exact: true }).isVisible(), false, `${name} hidden`);
  }
  await host.page.screenshot({ path: path.join(ART, "host-ended.png"), fullPage: true });

  step("22.4: a members-only room hides \"Share this link with guests\"");
  await host.page.getByRole("button", { name: "New meeting" }).click();
  await host.page.getByRole("heading", { name: "New meeting room" }).waitFor();
  const members = `members-${Date.now().toString(36)}`;
  await createMeeting(host.page, members, { guests: false });
  await host.page.getByTestId("members-only").waitFor();
  assert.equal(await host.page.getByText("Share this link with guests").isVisible(), false);
  assert.equal(await host.page.getByTestId("share-link").isVisible(), false);

  assert.deepEqual(problems, [], "no page errors and no CSP violations");
  console.log("[share-links] PASSED");
} catch (e) {
  failed(e);
  for (const p of problems) console.error(`[share-links]   ${p}`);
  for (const ctx of browser.contexts()) {
    for (const [i, page] of ctx.pages().entries()) {
      await page.screenshot({ path: path.join(ART, `share-links-failure-${browser.contexts().indexOf(ctx)}-${i}.png`) }).catch(() => {});
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close().catch(() => {});
  done();
}
