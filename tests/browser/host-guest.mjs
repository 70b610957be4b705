// The meeting-room web app in a real browser: a host and guests in separate
// browser contexts (separate storage, separate connections) against one roomd.
import path from "node:path";
import assert from "node:assert/strict";
import { ART, BASE, HOST_TOKEN, WAIT, alertText, createMeeting, launch, people, peopleCount, scenario, sleep, until } from "./lib/harness.mjs";

const { step, failed, problems, watch, done } = scenario("host-guest");

async function newPage(browser, who, viewport) {
  const ctx = await browser.newContext({ viewport, baseURL: BASE });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  watch(page, who);
  return { ctx, page };
}


/** Opens the share link in `page`, types a name and clicks Join once. */
async function guestJoin(page, link, name) {
  await page.goto(link);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join", exact: true }).click();
}

async function refusal(page, expected) {
  const text = await until(`the refusal "${expected}"`, async () => {
    const t = await alertText(page);
    return t.includes(expected) ? t : false;
  });
  return text;
}

const browser = await launch();

try {
  // --- host signs in with the link roomd prints, and creates a room --------
  step("host opens /#token=… : signed in, token stored and stripped from the URL");
  const host = await newPage(browser, "host", { width: 1100, height: 760 });
  await host.ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  await host.page.goto(`/#token=${HOST_TOKEN}`);
  await host.page.getByRole("heading", { name: "New meeting room" }).waitFor();
  assert.ok(!host.page.url().includes("token"), `token left in the URL: ${host.page.url()}`);
  assert.equal(await host.page.evaluate(() => localStorage.getItem("roomd.token")), HOST_TOKEN);
  assert.match(await host.page.locator("#account").innerText(), /Hannah Host/);

  step("host creates a meeting room and reads the share link");
  const roomName = `standup-${Date.now().toString(36)}`;
  const link = await createMeeting(host.page, roomName);
  assert.ok(link.startsWith(`${BASE}/r/`), `share link ${link} is not on ${BASE}`);
  const code = link.slice(link.lastIndexOf("/") + 1);
  await until("host in own list", async () => (await people(host.page)).length === 1);
  await host.page.getByRole("button", { name: "Copy link" }).click();
  const copied = await until("copy feedback", async () => (await host.page.getByText(/Link copied|Select and copy/).count()) > 0);
  assert.ok(copied);
  if ((await host.page.getByText("Link copied").count()) > 0) {
    assert.equal(await host.page.evaluate(() => navigator.clipboard.readText()), link);
  }

  // --- a guest joins and appears in the host's list ------------------------
  step("guest (phone-sized viewport) opens the link, joins, appears in the host's list");
  const jane = await newPage(browser, "jane", { width: 390, height: 844 });
  // All of Jane's WebSockets pass through this route, so the test can make
  // the network fail for a while (the reconnect step below).
  let networkDown = false;
  await jane.page.routeWebSocket(/\/websocket$/, (ws) => {
    if (networkDown) {
      ws.close({ code: 1001, reason: "test: network down" });
      return;
    }
    ws.connectToServer();
  });
  await guestJoin(jane.page, link, "Jane Smith");
  await jane.page.getByRole("heading", { name: roomName }).waitFor();
  await until("Jane in her own list", async () => (await people(jane.page)).some((t) => t.includes("Jane Smith") && t.includes("you")));
  await until("Jane in the host's list", async () => (await people(host.page)).some((t) => t.includes("Jane Smith")));
  assert.equal(await peopleCount(host.page), "2");
  assert.ok((await people(jane.page)).some((t) => t.includes("host")), "the guest sees the host");

  step("chat: the host posts, the guest reads it live");
  await host.page.getByLabel("Message", { exact: true }).fill("Welcome, everyone!");
  await host.page.getByRole("button", { name: "Send" }).click();
  await jane.page.getByRole("log", { name: "Chat messages" }).getByText("Welcome, everyone!").waitFor();
  await host.page.getByRole("log", { name: "Chat messages" }).getByText("Jane Smith joined").waitFor();

  // --- lock ----------------------------------------------------------------
  step("host locks the room; a third person sees \"Room is locked\"");
  await host.page.getByRole("button", { name: "Lock room", exact: true }).click();
  await host.page.getByRole("button", { name: "Unlock room", exact: true }).waitFor();
  await jane.page.locator(".badge", { hasText: "Locked" }).waitFor();
  const larry = await newPage(browser, "larry", { width: 800, height: 700 });
  await guestJoin(larry.page, link, "Late Larry");
  await refusal(larry.page, "Room is locked");
  assert.equal(await larry.page.getByRole("button", { name: "Join", exact: true }).isEnabled(), true, "Join is usable again after a refusal");
  await larry.page.screenshot({ path: path.join(ART, "guest-locked.png") });

  // --- capacity ------------------------------------------------------------
  step("host unlocks and sets the capacity to 2: shown full; the third person sees \"Room is full\"");
  await host.page.getByRole("button", { name: "Unlock room", exact: true }).click();
  await host.page.getByRole("button", { name: "Lock room", exact: true }).waitFor();
  await host.page.getByLabel("Capacity").fill("2");
  await host.page.getByRole("button", { name: "Set capacity" }).click();
  await until("2 / 2 on the host", async () => (await peopleCount(host.page)) === "2 / 2");
  await host.page.locator(".badge", { hasText: "Full" }).waitFor();
  await larry.page.getByRole("button", { name: "Join", exact: true }).click();
  await refusal(larry.page, "Room is full");

  // --- double click --------------------------------------------------------
  step("capacity 4; a double click on Join takes one seat");
  await host.page.getByLabel("Capacity").fill("4");
  await host.page.getByRole("button", { name: "Set capacity" }).click();
  await until("2 / 4 on the host", async () => (await peopleCount(host.page)) === "2 / 4");
  const dora = await newPage(browser, "dora", { width: 800, height: 700 });
  let joinFrames = 0;
  dora.page.on("websocket", (ws) =>
    ws.on("framesent", (f) => {
      if (typeof f.payload === "string" && f.payload.includes('"method":"join-room"')) joinFrames += 1;
    }),
  );
  await dora.page.goto(link);
  await dora.page.getByLabel("Your name").fill("Double Dora");
  await dora.page.getByRole("button", { name: "Join", exact: true }).dblclick();
  await dora.page.getByRole("heading", { name: roomName }).waitFor();
  await until("3 / 4 on the host", async () => (await peopleCount(host.page)) === "3 / 4");
  await sleep(500); // a second seat, if any, would show by now
  assert.equal(await peopleCount(host.page), "3 / 4");
  assert.equal(joinFrames, 1, "the double click sent one join-room call");
  const rid = await jane.page.evaluate(() => JSON.parse(sessionStorage.getItem(Object.keys(sessionStorage).find((k) => k.startsWith("roomd.seat.")))).rid);
  const view = await host.page.evaluate((r) => window.roomd.client.call("getRoomParticipants", r), rid);
  assert.equal(view.room.participantCount, 3);
  assert.equal(view.participants.filter((p) => p.guestName === "Double Dora").length, 1);

  // --- reconnect -----------------------------------------------------------
  step("the guest's connection drops: reconnecting state, then the same seat back");
  const seatBefore = await jane.page.evaluate((c) => JSON.parse(sessionStorage.getItem(`roomd.seat.${c}`)).id, code);
  networkDown = true;
  await jane.page.evaluate(() => window.roomd.client.ws.close(4000, "test: connection lost"));
  await jane.page.getByText("Connection lost. Reconnecting").waitFor();
  await until("the Reconnecting status", async () => /Reconnecting/.test(await jane.page.locator("#conn").innerText()));
  await jane.page.screenshot({ path: path.join(ART, "guest-reconnecting.png") });
  networkDown = false;
  await until("Jane reconnected", async () => (await jane.page.locator("#conn").innerText()) === "Connected");
  await jane.page.getByText("Connection lost. Reconnecting").waitFor({ state: "hidden" });
  const seatAfter = await jane.page.evaluate((c) => JSON.parse(sessionStorage.getItem(`roomd.seat.${c}`)).id, code);
  assert.equal(seatAfter, seatBefore, "the seat is resumed, not taken anew");
  assert.equal(await peopleCount(host.page), "3 / 4");
  assert.equal((await people(host.page)).filter((t) => t.includes("Jane Smith")).length, 1);
  // Still live after the reconnect.
  await host.page.getByLabel("Message", { exact: true }).fill("Still here?");
  await host.page.getByRole("button", { name: "Send" }).click();
  await jane.page.getByRole("log", { name: "Chat messages" }).getByText("Still here?").waitFor();

  step("screenshots of the host and guest views");
  await jane.page.screenshot({ path: path.join(ART, "guest.png"), fullPage: true });
  await host.page.screenshot({ path: path.join(ART, "host.png"), fullPage: true });

  // --- leave ---------------------------------------------------------------
  step("a guest leaves: gone from the host's list");
  await dora.page.getByRole("button", { name: "Leave" }).click();
  await dora.page.getByRole("heading", { name: "You left the meeting." }).waitFor();
  await until("2 / 4 after Dora left", async () => (await peopleCount(host.page)) === "2 / 4");

  // --- end -----------------------------------------------------------------
  step("the host ends the room; the guest sees it ended; a late guest is told so");
  await host.page.getByRole("button", { name: "End meeting" }).click();
  await host.page.getByRole("button", { name: "End for everyone" }).click();
  await host.page.locator(".badge", { hasText: "Ended" }).waitFor();
  await jane.page.getByRole("heading", { name: /This meeting has ended/ }).waitFor();
  await jane.page.screenshot({ path: path.join(ART, "guest-ended.png") });
  await larry.page.reload();
  await larry.page.getByLabel("Your name").fill("Late Larry");
  await larry.page.getByRole("button", { name: "Join", exact: true }).click();
  await refusal(larry.page, "This meeting has ended");

  // --- other refusals ------------------------------------------------------
  step("refusals in plain words: unknown code, guests not allowed");
  await guestJoin(larry.page, "/r/zzz-zzz-zzz", "Late Larry");
  await refusal(larry.page, "Room not found");
  await host.page.getByRole("button", { name: "New meeting" }).click();
  await host.page.getByRole("heading", { name: "New meeting room" }).waitFor();
  const members = `members-${Date.now().toString(36)}`;
  const link2 = await createMeeting(host.page, members, { guests: false, readLink: true, previousLink: link });
  await guestJoin(larry.page, link2, "Late Larry");
  await refusal(larry.page, "Guests are not allowed in this room");
  // The name field is checked before the room is.
  await larry.page.getByLabel("Your name").fill("   ");
  await larry.page.getByRole("button", { name: "Join", exact: true }).click();
  await refusal(larry.page, "Please enter a name");

  step("the host's room survives a reload (session restored from storage)");
  await host.page.reload();
  await host.page.getByRole("heading", { name: members }).waitFor();

  assert.deepEqual(problems, [], "no page errors and no CSP violations");
  console.log("[host-guest] PASSED");
} catch (e) {
  failed(e);
  for (const p of problems) console.error(`[host-guest]   ${p}`);
  for (const ctx of browser.contexts()) {
    for (const [i, page] of ctx.pages().entries()) {
      await page.screenshot({ path: path.join(ART, `failure-${browser.contexts().indexOf(ctx)}-${i}.png`) }).catch(() => {});
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close().catch(() => {});
  done();
}
