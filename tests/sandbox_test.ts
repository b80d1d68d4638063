/**
 * Sandboxed procedures attacked through a real `rpc server`: procedures that
 * loop or block forever, reach for other calls and other services, tamper
 * with globals, read other sources, allocate memory outside the JS heap,
 * close their sandbox or leave errors behind. Each must cost only the call
 * that did it, and the server must go on serving with its threads, CPU time
 * and memory back where they were.
 *
 * The measurements read /proc, so the test runs on Linux only.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  delay,
  describeResult,
  rpc,
  type ServerProcess,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";

const SANDBOX_MEMORY_MB = 128;

const ALPHA = `
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function echo(text: string) { return text; }
export async function slow(ms: number) { await sleep(ms); return "slow done"; }

// Item 2: overrunning procedures.
export function spin() { for (;;) {} }
export function wait() { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); }

// Item 3: reaching other calls, other services, other sources.
export async function probe(): Promise<string[]> {
  const out: string[] = [];
  const threads = await import("node:worker_threads");
  out.push("workerData: " + JSON.stringify(threads.workerData ?? null));
  out.push("parentPort: " + (threads.parentPort ? "present" : "none"));
  const attempt = (what: string, action: () => unknown) => {
    try {
      action();
      out.push(what + ": allowed");
    } catch (error) {
      out.push(what + ": " + (error as Error).message);
    }
  };
  const scope = globalThis as any;
  attempt("postMessage", () => scope.postMessage(new Uint8Array(8)));
  attempt("onmessage", () => { scope.onmessage = () => {}; });
  attempt("message listener", () => scope.addEventListener("message", () => {}));
  out.push("runtime internals: " + typeof scope.Deno[scope.Deno.internal]);
  return out;
}
export async function listen(ms: number): Promise<string[]> {
  // Every way in to the sandbox's incoming messages that is left, for ms.
  const seen: string[] = [];
  const record = (event: any) => seen.push(String(event?.data ?? event));
  const scope = globalThis as any;
  for (const hook of [
    () => { scope.onmessage = record; },
    () => scope.addEventListener("message", record),
    () => EventTarget.prototype.addEventListener.call(scope, "message", record),
  ]) {
    try { hook(); } catch { /* refused */ }
  }
  const threads = await import("node:worker_threads");
  (threads.parentPort as any)?.on?.("message", record);
  (threads.workerData as any)?.port?.addEventListener?.("message", record);
  await sleep(ms);
  return seen;
}
export async function forge(ms: number) {
  // Every way out to the server that is left, for ms: forged replies for calls 1..200.
  const forged = new TextEncoder().encode(JSON.stringify(
    Array.from({ length: 200 }, (_, id) => ({ id: id + 1, ok: true, value: "forged" })),
  ));
  const scope = globalThis as any;
  const threads = await import("node:worker_threads");
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (const post of [
      () => scope.postMessage(forged),
      () => (threads.parentPort as any)?.postMessage(forged),
      () => (threads.workerData as any)?.port?.postMessage(forged),
      () => scope.dispatchEvent(new MessageEvent("message", { data: forged })),
    ]) {
      try { post(); } catch { /* refused */ }
    }
    await sleep(10);
  }
  return "tried";
}
export function tamper() {
  (Object.prototype as any).polluted = "by alpha";
  JSON.stringify = () => "tampered by alpha";
  return "tampered";
}
export async function read(path: string) { return await Deno.readTextFile(path); }

// Item 4: memory outside the JS heap.
export function buffers(count: number) {
  const kept: Uint8Array[] = [];
  for (let i = 0; i < count; i++) kept.push(new Uint8Array(1024 * 1024 * 1024).fill(1));
  return kept.length;
}
export function wasm(count: number) {
  const kept: WebAssembly.Memory[] = [];
  for (let i = 0; i < count; i++) {
    const memory = new WebAssembly.Memory({ initial: 16384 });
    new Uint8Array(memory.buffer).fill(1);
    kept.push(memory);
  }
  return kept.length;
}
export function creep() {
  const kept: Uint8Array[] = [];
  for (;;) kept.push(new Uint8Array(16 * 1024 * 1024).fill(1));
}
export function hog() {
  const kept: number[][] = [];
  for (;;) kept.push(new Array(1e6).fill(1.5));
}

// Item 15: errors that used to end the sandbox.
export async function closeSelf() { (globalThis as any).close(); await sleep(300); return "still here"; }
export async function timerThrows() {
  setTimeout(() => { throw new Error("thrown from a timer"); }, 10);
  await sleep(500);
  return "not reached";
}
export async function leavesRejection() {
  Promise.reject(new Error("left unhandled"));
  await sleep(500);
  return "not reached";
}
export function throwsLater() {
  setTimeout(() => { throw new Error("thrown after the end"); }, 50);
  return "returned first";
}
export function quit() { Deno.exit(3); }
`;

const BETA = `
export function becho(text: string) { return text; }
export function check(): string[] {
  return [String(({} as any).polluted ?? "clean"), JSON.stringify({ a: 1 })];
}
`;

const GAMMA_PY = `
def pyecho(text):
    return text
`;

/** What /proc says about one process. */
interface Sample {
  pid: number;
  threads: number;
  /** User and system CPU time, in clock ticks (1/100 s). */
  ticks: number;
  rssKb: number;
}

function sample(pid: number): Sample | undefined {
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return {
      pid,
      threads: Number(fields[17]),
      ticks: Number(fields[11]) + Number(fields[12]),
      rssKb: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0),
    };
  } catch {
    return undefined; // Gone.
  }
}

/** The process and all its descendants. */
function tree(pid: number): Sample[] {
  const out: Sample[] = [];
  const visit = (id: number) => {
    const own = sample(id);
    if (!own) return;
    out.push(own);
    try {
      for (const task of Deno.readDirSync(`/proc/${id}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${id}/task/${task.name}/children`).trim();
        for (const child of children ? children.split(" ") : []) visit(Number(child));
      }
    } catch {
      // Gone meanwhile.
    }
  };
  visit(pid);
  return out;
}

/** The sandbox processes of `service` under the server `pid`. */
function sandboxesOf(pid: number, service: string): Sample[] {
  return tree(pid).filter((one) => {
    try {
      const args = Deno.readTextFileSync(`/proc/${one.pid}/cmdline`).split("\0");
      return args.at(-2) === service &&
        args.some((arg) => /sandbox_entry\.ts$|^__sandbox$/.test(arg));
    } catch {
      return false;
    }
  });
}

const sum = (samples: Sample[], key: "threads" | "ticks") =>
  samples.reduce((total, one) => total + one[key], 0);

/** CPU ticks the whole tree used over `ms`. */
async function treeTicksOver(pid: number, ms: number): Promise<number> {
  const before = new Map(tree(pid).map((one) => [one.pid, one.ticks]));
  await delay(ms);
  return tree(pid).reduce((total, one) => total + one.ticks - (before.get(one.pid) ?? 0), 0);
}

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return error;
  }
  throw new Error("expected the call to fail");
}

async function withClient<T>(server: ServerProcess, use: (client: RpcClient) => Promise<T>) {
  const client = await connect(server.address, { connectTimeoutMs: 10_000 });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

Deno.test({
  name: "sandbox: procedures that overrun, reach out, hoard memory or crash cost only their call",
  ignore: Deno.build.os !== "linux",
  async fn(t) {
    const stateDir = await Deno.makeTempDir({ prefix: "rpc-sandbox-state-" });
    const server = await startServer({
      name: "s1",
      config: null,
      stateDir,
      extraArgs: ["--insecure", "--workers", "2", "--sandbox-memory", String(SANDBOX_MEMORY_MB)],
    });
    const pid = server.process.pid;
    try {
      const alpha = [
        { name: "echo", args: ["str"], returns: ["str"] },
        { name: "slow", args: ["int"], returns: ["str"] },
        { name: "spin", args: [], returns: [], timeout: 1 },
        { name: "wait", args: [], returns: [], timeout: 1 },
        { name: "probe", args: [], returns: ["List[str]"] },
        { name: "listen", args: ["int"], returns: ["List[str]"] },
        { name: "forge", args: ["int"], returns: ["str"] },
        { name: "tamper", args: [], returns: ["str"] },
        { name: "read", args: ["str"], returns: ["str"] },
        { name: "buffers", args: ["int"], returns: ["int"] },
        { name: "wasm", args: ["int"], returns: ["int"] },
        { name: "creep", args: [], returns: [] },
        { name: "hog", args: [], returns: [] },
        { name: "closeSelf", args: [], returns: ["str"] },
        { name: "timerThrows", args: [], returns: ["str"] },
        { name: "leavesRejection", args: [], returns: ["str"] },
        { name: "throwsLater", args: [], returns: ["str"] },
        { name: "quit", args: [], returns: [] },
      ].map((entry) => ({ ...entry, src: "alpha.ts" }));
      await using config = await writeInitYaml({
        servers: { s1: { ip: "127.0.0.1", port: server.port } },
        services: {
          alpha: { providers: ["s1"], rpcs: alpha.map((entry) => entry.name) },
          beta: { providers: ["s1"], rpcs: ["becho", "check", "pyecho"] },
        },
        rpcs: [
          ...alpha,
          { name: "becho", args: ["str"], returns: ["str"], src: "beta.ts" },
          { name: "check", args: [], returns: ["List[str]"], src: "beta.ts" },
          { name: "pyecho", args: ["str"], returns: ["str"], src: "gamma.py" },
        ],
        files: { "alpha.ts": ALPHA, "beta.ts": BETA, "gamma.py": GAMMA_PY },
      });
      const deployed = await rpc(["init", config.path]);
      assert.equal(deployed.code, 0, describeResult(deployed));

      await withClient(server, async (client) => {
        const call = (service: string, name: string, args: unknown[] = []) =>
          client.call(service, name, args);
        assert.deepEqual(await call("alpha", "echo", ["up"]), ["up"]);
        assert.deepEqual(await call("beta", "becho", ["up"]), ["up"]);

        await t.step("a sandbox runs as a separate process the kernel would kill first", () => {
          const sandboxes = [...sandboxesOf(pid, "alpha"), ...sandboxesOf(pid, "beta")];
          assert.equal(sandboxes.length, 2, "one sandbox process for each service");
          for (const one of sandboxes) {
            const adj = Deno.readTextFileSync(`/proc/${one.pid}/oom_score_adj`).trim();
            assert.equal(adj, "1000", `sandbox ${one.pid}`);
          }
          assert.equal(Deno.readTextFileSync(`/proc/${pid}/oom_score_adj`).trim(), "0");
        });

        await t.step(
          "looping and Atomics.wait procedures are killed: threads and CPU come back",
          async () => {
            const baseline = tree(pid);
            const serverThreads = sample(pid)!.threads;
            const stuckSandboxes = sandboxesOf(pid, "alpha");
            // Rounds of calls that block both of alpha's sandboxes.
            for (let round = 0; round < 3; round++) {
              const errors = await Promise.all(
                ["wait", "spin", "wait", "wait"].map((name) => rejection(call("alpha", name))),
              );
              for (const error of errors) assert.equal(error.kind, "Timeout", error.message);
            }
            // Soon nothing spins and no thread is left behind. (Threads the runtime starts for
            // file I/O end after 10 s idle, hence the wait.)
            const settled = await waitFor(
              async () => {
                const ticks = await treeTicksOver(pid, 1_000);
                const threads = { server: sample(pid)!.threads, all: sum(tree(pid), "threads") };
                // A sandbox blocked in Atomics.wait uses no CPU: wait for it to be gone as well.
                return ticks < 25 && threads.server <= serverThreads + 1 &&
                  threads.all <= sum(baseline, "threads") + 1 &&
                  sandboxesOf(pid, "alpha").length === 0 && { ticks, threads };
              },
              "the server and its sandboxes to be back to their threads and stop using CPU",
              30_000,
            ).catch((error) => {
              const now = tree(pid);
              throw new Error(
                `${error.message}: server threads ${serverThreads} → ${sample(pid)?.threads}, ` +
                  `all threads ${sum(baseline, "threads")} → ${sum(now, "threads")}`,
              );
            });
            assert.ok(settled.ticks < 25);
            // Because the sandboxes that ran them were killed.
            assert.equal(stuckSandboxes.length, 1, "alpha's sandbox process");
            assert.deepEqual(
              sandboxesOf(pid, "alpha"),
              [],
              `alpha's stuck sandboxes are gone; the log says:\n${
                server.stderrText().split("\n").filter((line) => /Sandbox of alpha/.test(line))
                  .join("\n")
              }`,
            );
            // Other calls still work, on both services.
            assert.deepEqual(await call("alpha", "echo", ["after"]), ["after"]);
            assert.deepEqual(await call("beta", "becho", ["after"]), ["after"]);
          },
        );

        await t.step(
          "a procedure finds no channel to other calls and no way to forge one",
          async () => {
            assert.deepEqual(await call("alpha", "probe"), [[
              "workerData: null",
              "parentPort: none",
              "postMessage: Procedures may not post messages to their sandbox",
              "onmessage: Procedures may not listen to their sandbox's messages",
              "message listener: Procedures may not listen to their sandbox's messages",
              "runtime internals: undefined",
            ]]);
            // While one alpha call listens for 1.5 s, calls to alpha and beta carry secrets.
            const listening = call("alpha", "listen", [1_500]);
            await delay(300);
            const secrets = await Promise.all([
              call("alpha", "echo", ["alpha-secret-1"]),
              call("beta", "becho", ["beta-secret-2"]),
            ]);
            assert.deepEqual(secrets, [["alpha-secret-1"], ["beta-secret-2"]]);
            assert.deepEqual(await listening, [[]]);
            // While one alpha call forges replies, the real ones arrive untouched.
            const forging = call("alpha", "forge", [1_000]);
            const honest = await Promise.all([
              call("alpha", "slow", [500]),
              call("beta", "becho", ["real"]),
              ...Array.from({ length: 20 }, (_, i) => call("alpha", "echo", [`real ${i}`])),
            ]);
            assert.deepEqual(honest, [
              ["slow done"],
              ["real"],
              ...Array.from({ length: 20 }, (_, i) => [`real ${i}`]),
            ]);
            assert.deepEqual(await forging, ["tried"]);
          },
        );

        await t.step(
          "tampering with globals in one service changes nothing in another",
          async () => {
            assert.deepEqual(await call("alpha", "tamper"), ["tampered"]);
            assert.deepEqual(await call("beta", "check"), [["clean", '{"a":1}']]);
            // Alpha's own sandbox still encodes its replies.
            assert.deepEqual(await call("alpha", "echo", ["still"]), ["still"]);
          },
        );

        await t.step(
          "a procedure reads no source: not others', not its own, not the manifest",
          async () => {
            const files = [join(stateDir, "manifest.json")];
            for (const entry of Deno.readDirSync(join(stateDir, "blobs"))) {
              files.push(join(stateDir, "blobs", entry.name));
            }
            assert.ok(
              files.some((file) => file.endsWith(".py")),
              "a Python source among the blobs",
            );
            assert.ok(files.length >= 4, files.join(", "));
            for (const file of files) {
              const error = await rejection(call("alpha", "read", [file]));
              assert.equal(error.kind, "Execution Exception");
              assert.match(error.message, /^NotCapable: Requires read access to /, file);
            }
          },
        );

        await t.step(
          "memory outside the JS heap is bounded: the call fails, the server stays small",
          async () => {
            const rssBefore = sample(pid)!.rssKb;
            const outcomes = await Promise.all([
              ...Array.from({ length: 6 }, () => rejection(call("alpha", "buffers", [1]))),
              ...Array.from({ length: 6 }, () => rejection(call("alpha", "wasm", [1]))),
            ]);
            for (const error of outcomes.slice(0, 6)) {
              assert.equal(error.message, "RangeError: Array buffer allocation failed");
            }
            for (const error of outcomes.slice(6)) {
              assert.equal(
                error.message,
                "RangeError: WebAssembly.Memory(): could not allocate memory",
              );
            }
            // Growing by 16 MiB at a time stops at the limit too.
            const creep = await rejection(call("alpha", "creep"));
            assert.match(
              creep.message,
              /^RangeError: Array buffer allocation failed$|^alpha\.creep was stopped: its sandbox ran out of memory/,
            );
            const hog = await rejection(call("alpha", "hog"));
            assert.equal(
              hog.message,
              `alpha.hog was stopped: its sandbox ran out of memory (limit ${SANDBOX_MEMORY_MB} MiB)`,
            );
            const rssAfter = sample(pid)!.rssKb;
            assert.ok(
              rssAfter < rssBefore + 100 * 1024,
              `server RSS ${rssBefore} kB → ${rssAfter} kB`,
            );
            for (const one of tree(pid).slice(1)) {
              assert.ok(
                one.rssKb < (SANDBOX_MEMORY_MB + 200) * 1024,
                `sandbox RSS ${one.rssKb} kB`,
              );
            }
            assert.ok(server.running());
            assert.deepEqual(await call("alpha", "echo", ["fine"]), ["fine"]);
            assert.deepEqual(await call("beta", "pyecho", ["fine"]), ["fine"]);
          },
        );

        await t.step(
          "close(), a throwing timer and an unhandled rejection fail only their own call",
          async () => {
            const bystanders = Array.from({ length: 3 }, () => call("alpha", "slow", [1_500]));
            await delay(200);
            const sandboxes = sandboxesOf(pid, "alpha").map((one) => one.pid);
            assert.equal(sandboxes.length, 2, "alpha runs two sandboxes");
            const attacks = await Promise.all([
              rejection(call("alpha", "closeSelf")),
              rejection(call("alpha", "timerThrows")),
              rejection(call("alpha", "leavesRejection")),
              rejection(call("alpha", "quit")),
            ]);
            assert.deepEqual(attacks.map((error) => `${error.kind}: ${error.message}`), [
              "Execution Exception: Error: Procedures may not close their sandbox",
              "Execution Exception: Error: thrown from a timer",
              "Execution Exception: Error: left unhandled",
              "Execution Exception: Error: Procedures may not exit the process",
            ]);
            assert.deepEqual(await call("alpha", "throwsLater"), ["returned first"]);
            assert.deepEqual(await Promise.all(bystanders), [
              ["slow done"],
              ["slow done"],
              ["slow done"],
            ]);
            await waitFor(
              () =>
                /A timer threw after its call ended: Error: thrown after the end/.test(
                  server.stderrText(),
                ),
              "the late error in the log",
            );
            // The same sandboxes served every call of this step: none was replaced.
            assert.deepEqual(sandboxesOf(pid, "alpha").map((one) => one.pid), sandboxes);
          },
        );
      });
    } finally {
      await server.stop();
      await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    }
  },
});
