import assert from "node:assert/strict";
import { join } from "node:path";
import { RpcError } from "../errors.ts";
import type { ProcedurePermissions, ProcedureSpec } from "../server/registry.ts";
import { sandboxPermissions, SandboxRunner } from "./sandbox.ts";
import { sandboxCommand } from "./sandbox_process.ts";

const SOURCE = `
export function echo(value: unknown) { return value; }
export async function later(value: unknown) { await new Promise((r) => setTimeout(r, 20)); return value; }
export async function readFile(path: string) { return await Deno.readTextFile(path); }
export function fail() { throw new TypeError("bad thing"); }
export function quit() { Deno.exit(1); }
export function spin() { for (;;) {} }
export function hog() { const all: unknown[] = []; for (;;) all.push(new Array(1e6).fill(1)); }
export function unsendable() { return () => 1; }
export const notAFunction = 3;
export function variable(name: string) { return Deno.env.get(name) ?? null; }
export function where() { return Deno.pid; }
export function busy(ms: number) { const end = performance.now() + ms; while (performance.now() < end); return Deno.pid; }
`;

const NEVER_LOADS = `await new Promise(() => {});
export function never() {}
`;

interface Fixture extends AsyncDisposable {
  dir: string;
  runner: SandboxRunner;
  load(rpc: string, permissions?: ProcedurePermissions): ReturnType<SandboxRunner["load"]>;
}

/** The test process's environment, as `rpc server` passes its own. */
const processEnv = (name: string) => Deno.env.get(name);

async function fixture(env: (name: string) => string | undefined = processEnv): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-sandbox-" });
  await Deno.writeTextFile(join(dir, "procedures.ts"), SOURCE);
  const runner = new SandboxRunner({ size: 2, memoryMb: 64, stallMs: 1000, env });
  const spec = (rpc: string, permissions?: ProcedurePermissions): ProcedureSpec => ({
    service: "svc",
    rpc,
    signature: { args: [], returns: [] },
    language: "typescript",
    path: join(dir, "procedures.ts"),
    hash: "0".repeat(64),
    ...(permissions ? { permissions } : {}),
  });
  return {
    dir,
    runner,
    load: (rpc, permissions) => runner.load(spec(rpc, permissions)),
    async [Symbol.asyncDispose]() {
      await runner.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    return error as RpcError;
  }
  throw new Error("expected the call to fail");
}

Deno.test("SandboxRunner runs sync and async procedures and carries values exactly", async () => {
  await using f = await fixture();
  const echo = await f.load("echo");
  const later = await f.load("later");
  assert.deepEqual(
    await echo.invoke([[1, "two", 12345678901234567890n]], new AbortController().signal),
    [
      1,
      "two",
      12345678901234567890n,
    ],
  );
  assert.equal(await later.invoke(["x"], new AbortController().signal), "x");
});

Deno.test("SandboxRunner passes granted variables from the injected environment, not the process's", async () => {
  const name = "RPC_SANDBOX_TEST_GRANTED";
  assert.equal(Deno.env.get(name), undefined);
  await using f = await fixture((wanted) => wanted === name ? "injected" : processEnv(wanted));
  const variable = await f.load("variable", { env: [name, "RPC_SANDBOX_TEST_UNSET"] });
  const signal = new AbortController().signal;
  assert.equal(await variable.invoke([name], signal), "injected");
  assert.equal(await variable.invoke(["RPC_SANDBOX_TEST_UNSET"], signal), null);
});

Deno.test("SandboxRunner batches thousands of overlapping calls", async () => {
  await using f = await fixture();
  const echo = await f.load("echo");
  const signal = new AbortController().signal;
  const results = await Promise.all(
    Array.from({ length: 2000 }, (_, i) => echo.invoke([i], signal)),
  );
  assert.deepEqual(results, Array.from({ length: 2000 }, (_, i) => i));
});

Deno.test("SandboxRunner carries large and non-ASCII values exactly, in batches split across frames", async () => {
  await using f = await fixture();
  const echo = await f.load("echo");
  const signal = new AbortController().signal;
  // Batches of these pass the frame size, queue behind writes under way, and mix encodings;
  // about 3 MiB in flight at once, well within the fixture's 64 MiB.
  const values = Array.from(
    { length: 48 },
    (_, i) =>
      i % 3 === 0
        ? "x".repeat(64 * 1024 + i)
        : i % 3 === 1
        ? `ünïcødé ✓ 日本語 😀 ${i} `.repeat(2000)
        : `lone \ud800 ${"y".repeat(100_000)} \u0000 end ${i}`,
  );
  const results = await Promise.all(values.map((value) => echo.invoke([value], signal)));
  // (Compared as booleans: a failure would print megabytes.)
  const wrong = values.map((value, i) => results[i] === value ? -1 : i).filter((i) => i >= 0);
  assert.deepEqual(wrong, [], "values that came back changed");
  // A single value far larger than any buffer kept.
  const huge = "z".repeat(2 * 1024 * 1024);
  assert.ok(await echo.invoke([huge], signal) === huge, "the 2 MiB value came back changed");
});

Deno.test("SandboxRunner denies what a procedure was not granted, and allows what it was", async () => {
  await using f = await fixture();
  const secretDir = await Deno.makeTempDir({ prefix: "rpc-secret-" });
  const secret = join(secretDir, "secret.txt");
  await Deno.writeTextFile(secret, "s3cret");
  const denied = await f.load("readFile");
  const error = await rejection(denied.invoke([secret], new AbortController().signal));
  assert.equal(error.kind, "Execution Exception");
  assert.match(error.message, /^NotCapable: Requires read access/);
  const allowed = await f.load("readFile", { read: [secret] });
  assert.equal(await allowed.invoke([secret], new AbortController().signal), "s3cret");
  await Deno.remove(secretDir, { recursive: true });
});

Deno.test("SandboxRunner reports errors by message only, and Deno.exit throws", async () => {
  await using f = await fixture();
  const failed = await rejection((await f.load("fail")).invoke([], new AbortController().signal));
  assert.equal(failed.message, "TypeError: bad thing");
  const quit = await rejection((await f.load("quit")).invoke([], new AbortController().signal));
  assert.match(quit.message, /may not exit/);
  const unsendable = await rejection(
    (await f.load("unsendable")).invoke([], new AbortController().signal),
  );
  assert.match(unsendable.message, /cannot be sent/);
  assert.equal(await (await f.load("echo")).invoke([1], new AbortController().signal), 1);
});

Deno.test("SandboxRunner replaces a host stuck in a loop; its other calls fail, later calls work", async () => {
  await using f = await fixture();
  const spin = await f.load("spin");
  const later = await f.load("later");
  const timeout = new AbortController();
  const stuck = spin.invoke([], timeout.signal);
  // Both slots: one spins; calls sent to it after the spin are stuck behind it.
  setTimeout(() => timeout.abort(new RpcError("Timeout", "spin did not finish")), 100);
  const error = await rejection(stuck);
  assert.equal(error.kind, "Timeout");
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(await later.invoke(["after"], AbortSignal.timeout(5000)), "after");
});

Deno.test("SandboxRunner gives calls to one sandbox while it keeps up", async () => {
  await using f = await fixture();
  const where = await f.load("where");
  const signal = AbortSignal.timeout(30_000);
  const pids = new Set<number>();
  for (let round = 0; round < 5; round++) {
    const answers = await Promise.all(Array.from({ length: 400 }, () => where.invoke([], signal)));
    for (const pid of answers) pids.add(pid as number);
  }
  assert.equal(pids.size, 1, `2,000 quick calls ran in ${pids.size} sandboxes`);
  assert.equal(f.runner.stats.alive, 1);
});

Deno.test("SandboxRunner gives calls to a second sandbox once the first is busy", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using f = await fixture();
  const busy = await f.load("busy");
  const signal = AbortSignal.timeout(30_000);
  // Four callers, each keeping one 20 ms call in flight, until calls come back from two sandboxes.
  const pids = new Set<number>();
  const deadline = Date.now() + 10_000;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (pids.size < 2 && Date.now() < deadline) {
      pids.add(await busy.invoke([20], signal) as number);
    }
  }));
  assert.equal(pids.size, 2, "calls kept one sandbox busy for 10 s and no other took any");
});

Deno.test("SandboxRunner passes over a sandbox blocked by a call", async () => {
  await using f = await fixture();
  const spin = await f.load("spin");
  const where = await f.load("where");
  const first = await where.invoke([], AbortSignal.timeout(5000));
  const stop = new AbortController();
  const stuck = spin.invoke([], stop.signal);
  await new Promise((resolve) => setTimeout(resolve, 200));
  // Sent after the spin has held the first sandbox for 200 ms: it runs in another.
  const second = await where.invoke([], AbortSignal.timeout(5000));
  assert.notEqual(second, first);
  stop.abort(new RpcError("Timeout", "spin did not finish"));
  assert.equal((await rejection(stuck)).kind, "Timeout");
});

Deno.test("SandboxRunner survives a procedure that exhausts its memory", async () => {
  await using f = await fixture();
  const hog = await f.load("hog");
  const error = await rejection(hog.invoke([], AbortSignal.timeout(60_000)));
  assert.equal(error.kind, "Execution Exception");
  assert.match(
    error.message,
    /^svc\.hog was stopped: its sandbox ran out of memory \(limit 64 MiB\)$/,
  );
  const echo = await f.load("echo");
  assert.equal(await echo.invoke(["alive"], AbortSignal.timeout(5000)), "alive");
});

Deno.test("SandboxRunner refuses to load a module without the named function", async () => {
  await using f = await fixture();
  await assert.rejects(f.load("notAFunction"), /does not export a function named notAFunction/);
  await assert.rejects(f.load("missing"), /does not export a function named missing/);
});

Deno.test("SandboxRunner bounds loading: a module that never finishes fails to load", async () => {
  await using f = await fixture();
  const runner = new SandboxRunner({
    size: 1,
    loadTimeoutMs: 1_000,
    stallMs: 300,
    env: processEnv,
  });
  const path = join(f.dir, "never.ts");
  await Deno.writeTextFile(path, NEVER_LOADS);
  try {
    await assert.rejects(
      runner.load({
        service: "svc",
        rpc: "never",
        signature: { args: [], returns: [] },
        language: "typescript",
        path,
        hash: "1".repeat(64),
      }),
      /^Error: Cannot load procedure: .*never\.ts did not finish loading within 1000 ms$/,
    );
  } finally {
    await runner.close();
  }
});

Deno.test("a sandbox process from source is allowed its procedures' permissions and its connection, no more", () => {
  const { command, args } = sandboxCommand(
    "svc",
    sandboxPermissions({ read: ["/srv/data"], net: ["api.example.com:443"], env: ["TZ"] }),
    4242,
  );
  assert.equal(command, Deno.execPath());
  const allowed = args.filter((arg) => arg.startsWith("--allow"));
  assert.deepEqual(allowed, [
    "--allow-read=/srv/data",
    "--allow-net=api.example.com:443,127.0.0.1:4242",
    "--allow-env=TZ",
  ]);
  assert.ok(!args.includes("-A") && !args.includes("--allow-all"));
  assert.match(args.at(-2)!, /sandbox_entry\.ts$/);
  assert.equal(args.at(-1), "svc");
  // A comma cannot be written inside a flag's list: the process allows the kind, the worker narrows.
  const comma = sandboxCommand("svc", sandboxPermissions({ write: ["/tmp/a,b"] }), 1);
  assert.ok(comma.args.includes("--allow-write"));
});
