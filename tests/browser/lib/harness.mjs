// What every browser scenario shares: the environment run.sh hands it, an overall deadline, numbered steps,
// bounded waits, a watch for page errors and CSP refusals, and the web app's common locators.
//
// env: ROOMD_HTTP (http://127.0.0.1:PORT), HOST_TOKEN, CHROMIUM, ARTIFACTS_DIR,
//      BROWSER_TIMEOUT_MS (overall bound, default 120000)
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

export const BASE = process.env.ROOMD_HTTP;
export const HOST_TOKEN = process.env.HOST_TOKEN;
export const ART = process.env.ARTIFACTS_DIR || "artifacts";
export const WAIT = 10_000; // every single wait
const OVERALL = Number(process.env.BROWSER_TIMEOUT_MS || 120_000);
assert.ok(BASE && HOST_TOKEN, "ROOMD_HTTP and HOST_TOKEN are required");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts scenario `name`: a process-wide deadline (a hung browser must fail the run, not stall it), numbered
 * step logging, and the list of problems `watch` collects. Call `done()` when the scenario ends.
 */
export function scenario(name) {
  const overall = setTimeout(() => {
    console.error(`[${name}] FAILED: the scenario did not finish within ${OVERALL} ms`);
    process.exit(1);
  }, OVERALL);
  let stepNo = 0;
  const problems = [];
  return {
    problems,
    step: (s) => console.log(`[${name}] ${++stepNo}. ${s}`),
    /** Reports the failure `e` with the step it happened in. */
    failed: (e) => console.error(`[${name}] FAILED at step ${stepNo}: ${e.stack || e}`),
    /** Records page errors and CSP refusals of `page` as problems of `who`. */
    watch(page, who) {
      page.on("pageerror", (e) => problems.push(`${who}: page error: ${e.message}`));
      page.on("console", (m) => {
        if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`${who}: ${m.text()}`);
      });
    },
    done: () => clearTimeout(overall),
  };
}

/** Polls `fn` until it returns a truthy value, at most `timeout` ms. */
export async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
}

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });

export const people = (page) => page.getByRole("list", { name: "Participants" }).locator("li").allInnerTexts();
export const peopleCount = (page) => page.getByTestId("participant-count").innerText();
export const alertText = (page) => page.getByRole("alert").filter({ hasText: /\S/ }).first().innerText();

const SHARE_LINK = /\/r\/[a-z]{3}-[a-z]{3}-[a-z]{3}$/;

/**
 * From the host's "New meeting room" form in `page`: creates room `name` with guests allowed or not, waits
 * for its heading and, if `readLink` (by default: when guests may join), for a share link other than
 * `previousLink`, which it returns.
 */
export async function createMeeting(page, name, { guests = true, readLink = guests, previousLink = null } = {}) {
  await page.getByLabel("Room name").fill(name);
  const box = page.getByLabel("Let guests join with the link");
  await (guests ? box.check() : box.uncheck());
  await page.getByRole("button", { name: "Create room" }).click();
  await page.getByRole("heading", { name }).waitFor();
  if (!readLink) return null;
  return until(`the share link of ${name}`, async () => {
    const v = await page.getByTestId("share-link").inputValue();
    return v !== previousLink && SHARE_LINK.test(v) ? v : false;
  });
}
