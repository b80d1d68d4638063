import assert from "node:assert/strict";
import { DeadlineQueue } from "./deadline.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("DeadlineQueue fires deadlines in time order, across durations", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  queue.after(40, () => fired.push("40"));
  queue.after(10, () => fired.push("10a"));
  queue.after(10, () => fired.push("10b"));
  queue.after(25, () => fired.push("25"));
  assert.equal(queue.live, 4);
  // Wait for all four however loaded the machine is: what is checked is the order, not the timing.
  for (let waited = 0; fired.length < 4 && waited < 5_000; waited += 20) await sleep(20);
  assert.deepEqual(fired, ["10a", "10b", "25", "40"]);
  assert.equal(queue.live, 0);
});

Deno.test("DeadlineQueue does not fire a cancelled deadline, and leaves no timer that holds the process", async () => {
  const queue = new DeadlineQueue();
  const fired: number[] = [];
  const first = queue.after(10, () => fired.push(1));
  queue.after(20, () => fired.push(2));
  first.cancel();
  first.cancel(); // twice is harmless
  await sleep(40);
  assert.deepEqual(fired, [2]);
  // An armed timer left behind is unref'd: the test's sanitizer would fail otherwise.
  const deadlines = Array.from({ length: 100 }, () => queue.after(60_000, () => fired.push(3)));
  for (const deadline of deadlines) deadline.cancel();
  assert.equal(queue.live, 0);
});

Deno.test("DeadlineQueue keeps a lane small when calls behind a slow one finish first", async () => {
  const queue = new DeadlineQueue();
  let fired = 0;
  const slow = queue.after(30, () => fired++);
  for (let i = 0; i < 20_000; i++) queue.after(30, () => fired++).cancel();
  assert.equal(queue.live, 1);
  await sleep(60);
  assert.equal(fired, 1);
  slow.cancel(); // after it fired: nothing
  assert.equal(queue.live, 0);
});

Deno.test("DeadlineQueue fires a deadline set from inside another's callback", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  queue.after(5, () => {
    fired.push("outer");
    queue.after(5, () => fired.push("inner"));
  });
  await sleep(50);
  assert.deepEqual(fired, ["outer", "inner"]);
});

Deno.test("DeadlineQueue keeps nothing of a cancelled deadline's callback alive", async () => {
  // A collection can only be forced with --expose-gc, so the check runs in a child process.
  const script = `
    import { DeadlineQueue } from ${JSON.stringify(new URL("./deadline.ts", import.meta.url).href)};
    const queue = new DeadlineQueue();
    let collected = false;
    const registry = new FinalizationRegistry(() => collected = true);
    const keepalive = queue.after(60_000, () => {}); // keeps the lane, and the dead entry in it
    (() => {
      const big = { payload: new Uint8Array(1024) };
      registry.register(big, "big");
      queue.after(60_000, () => big.payload.length).cancel();
    })();
    for (let i = 0; i < 50 && !collected; i++) {
      globalThis.gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    keepalive.cancel();
    console.log(collected ? "collected" : "retained");
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", script],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  assert.equal(text, "collected", new TextDecoder().decode(output.stderr));
});
