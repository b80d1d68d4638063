/**
 * The browser console in a real headless Chromium (Debian's `chromium`,
 * driven by puppeteer-core): load it, call, fail, stream a countdown — with
 * the keyboard — and keep a screenshot of each under `tests/output/`
 * (git-ignored; the test prints where). The page runs under the gateway's
 * strict Content-Security-Policy, and any violation fails the test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import puppeteer, { type Page } from "puppeteer-core";
import { ROOT } from "./helpers.ts";
import { SECRETS, startHttpServer } from "./http_helpers.ts";

// The callbacks of page.evaluate run in the page; the DOM's types are left out of this program,
// where they would clash with Deno's.
// deno-lint-ignore no-explicit-any
declare const document: any;

/**
 * The browser: Debian's Chromium (`.ci/run` installs it), or a Chromium or
 * Chrome already installed elsewhere (GitHub's Ubuntu runners have Chrome).
 */
const BROWSERS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

function browserPath(): string {
  for (const path of BROWSERS) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there; try the next.
    }
  }
  throw new Error(`No browser found at ${BROWSERS.join(", ")}: install Debian's chromium`);
}

Deno.test("HTTP console in headless Chromium: load, call, fail, stream", async (t) => {
  await using http = await startHttpServer();
  const output = join(ROOT, "tests", "output", "http-console");
  await Deno.mkdir(output, { recursive: true });
  console.log(`screenshots: ${output}`);
  const browser = await puppeteer.launch({
    executablePath: browserPath(),
    // CI runs as root, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    headless: true,
    timeout: 60_000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    const problems: string[] = [];
    page.on("console", (message) => {
      // The failing calls below are answered 400 and 500 on purpose; anything else is a problem.
      const expected = /the server responded with a status of (400|500)/.test(message.text());
      if (message.type() === "error" && !expected) problems.push(`console: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`page: ${error}`));
    await page.evaluateOnNewDocument(() => {
      document.addEventListener(
        "securitypolicyviolation",
        (event: { violatedDirective: string; blockedURI: string }) => {
          console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
        },
      );
    });
    const shot = (name: string) =>
      page.screenshot({ path: join(output, `${name}.png`), fullPage: true });
    const status = () => page.$eval("#status", (element) => element.textContent ?? "");
    const waitForStatus = (pattern: RegExp) =>
      page.waitForFunction(
        (source: string) =>
          new RegExp(source).test(document.getElementById("status")!.textContent!),
        {},
        pattern.source,
      ).catch(async (error) => {
        throw new Error(`Status is "${await status()}", not ${pattern}: ${error}`);
      });

    await t.step("the page loads, and the keyboard alone reaches every control", async () => {
      const response = await page.goto(http.url, { waitUntil: "load" });
      assert.equal(response?.status(), 200);
      assert.match(response!.headers()["content-security-policy"], /default-src 'none'/);
      await waitForStatus(/service\(s\) you may call/);
      // Anonymous: only the open service.
      assert.deepEqual(await optionsOf(page, "#service"), ["open"]);
      await page.keyboard.press("Tab");
      assert.equal(await focused(page), "credential");
      await page.keyboard.type(`alice:${SECRETS.alice}`);
      await page.keyboard.press("Enter");
      await waitForStatus(/^2 service\(s\) you may call/);
      assert.deepEqual(await optionsOf(page, "#service"), ["math", "open"]);
      const order = [];
      for (let i = 0; i < 5; i++) {
        await page.keyboard.press("Tab");
        order.push(await focused(page));
      }
      assert.deepEqual(order, ["load", "service", "rpc", "arg-0", "submit"]);
      await shot("1-loaded");
    });

    /** Picks service and RPC (focused and changed with the keyboard) and fills the fields. */
    const prepare = async (service: string, rpc: string, args: string[]) => {
      await choose(page, "#service", service);
      await choose(page, "#rpc", rpc);
      for (const [i, text] of args.entries()) {
        await page.focus(`#arg-${i}`);
        await page.keyboard.type(text);
      }
    };

    await t.step("a call shows its result and its time", async () => {
      await prepare("math", "big(", ["123456789012345678901"]);
      await page.keyboard.press("Enter");
      await waitForStatus(/^ok \(\d+\.\d ms\)$/);
      assert.equal(
        await page.$eval("#result", (element) => element.textContent),
        "[123456789012345678902]",
      );
      await shot("2-call");
    });

    await t.step("a failing call shows its error kind", async () => {
      await prepare("math", "fail(", ["no such luck"]);
      await page.keyboard.press("Enter");
      await waitForStatus(/^500 Execution Exception: Error: no such luck \(\d+\.\d ms\)$/);
      assert.match(await page.$eval("#status", (element) => element.className), /error/);
      await shot("3-failed-call");
    });

    await t.step("a wrong argument is refused with the coercion rule it broke", async () => {
      await prepare("math", "big(", ["twelve"]);
      await page.keyboard.press("Enter");
      await waitForStatus(/^400 Invalid Arguments: Argument 1: Cannot read "twelve" as int/);
    });

    await t.step("a countdown streams its parts, then its result", async () => {
      await prepare("math", "countdown(", ["3"]);
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.querySelectorAll("#parts li").length === 1);
      await shot("4-streaming");
      await waitForStatus(/^ok: 3 part\(s\), then the result/);
      const parts = await page.$$eval("#parts li", (items) => items.map((li) => li.textContent));
      assert.deepEqual(parts, ["[3]", "[2]", "[1]"]);
      assert.equal(await page.$eval("#result", (element) => element.textContent), '["liftoff"]');
      await shot("5-streamed");
    });

    await t.step("Escape cancels a streaming call, and the server cancels it", async () => {
      await prepare("math", "countdown(", ["50"]);
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.querySelectorAll("#parts li").length >= 1);
      await page.keyboard.press("Escape");
      await waitForStatus(/^Cancelled/);
      await page.waitForFunction(() => true);
      const deadline = Date.now() + 10_000;
      while (!/math\.countdown\(int\) Cancelled/.test(http.server.stderrText())) {
        assert.ok(Date.now() < deadline, "the server never cancelled the countdown");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });

    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});

/** The option texts of a select. */
function optionsOf(page: Page, selector: string): Promise<string[]> {
  return page.$$eval(`${selector} option`, (items) => items.map((o) => o.textContent ?? ""));
}

/** The id of the focused element. */
function focused(page: Page): Promise<string> {
  return page.evaluate(() => document.activeElement?.id ?? "");
}

/**
 * Focuses a select and moves through its options with the arrow keys until
 * the chosen one's text starts with `prefix`.
 */
async function choose(page: Page, selector: string, prefix: string): Promise<void> {
  await page.focus(selector);
  const texts = await page.$$eval(`${selector} option`, (items) => items.map((o) => o.textContent));
  const target = texts.findIndex((text) => text?.startsWith(prefix));
  assert.ok(target >= 0, `no option ${prefix} in ${selector}: ${texts}`);
  await page.keyboard.press("Home");
  for (let i = 0; i < target; i++) await page.keyboard.press("ArrowDown");
  const chosen = await page.$eval(selector, (element) => {
    // deno-lint-ignore no-explicit-any
    const select = element as any;
    return select.options[select.selectedIndex]?.textContent ?? "";
  });
  assert.ok(chosen.startsWith(prefix), `chose ${chosen}, not ${prefix}`);
}
