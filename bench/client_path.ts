/**
 * The cost of the client library alone: 64 loops (`--in-flight`) each calling
 * `echo(str)` (32 B) again as soon as its call returns, the shape of
 * `rpc bench -c 64`, through one `RpcClient` over an in-memory connection, to a peer that
 * answers each request with a reply assembled from bytes (no decoding, no
 * JSON), so nearly all the CPU is the client's. Prints the CPU time per call of
 * the process (user + system, every thread, the garbage collector's included)
 * for each round, then the least and the median.
 *
 * Each `--root DIR[:MODE]` is a checkout to measure (default: this one),
 * each with a mode: `timeout` (a time limit on every call, as `rpc bench`
 * and `rpc call` give, the default), `none`, or `prepared`
 * (`RpcClient.prepare`, where the checkout has it). Several are measured
 * alternately in one process, round by round, so a before/after shares the
 * machine's load:
 *
 *     deno run -A bench/client_path.ts [--rounds 10] [--calls 50000] [--in-flight 64] [--root DIR[:MODE]]...
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string", multiple: true },
    rounds: { type: "string", default: "10" },
    calls: { type: "string", default: "50000" },
    "in-flight": { type: "string", default: "64" },
  },
});
const here = resolve(join(dirname(fileURLToPath(import.meta.url)), ".."));
const rounds = Number(values.rounds);
const calls = Number(values.calls);
const inFlight = Number(values["in-flight"]);

const encoder = new TextEncoder();
/** The request body up to its serial, as every client so far encodes it. */
const REQUEST_HEAD = '{"type":"RPC-REQ","serial":'.length;
const replyHead = encoder.encode('{"type":"RPC-RES","serial":');
const replyTail = encoder.encode(`,"value":{"return-values":["${"x".repeat(32)}"]}}`);

/** Connects a client of the checkout at `root` to a byte-level echo peer; returns its loop. */
async function setup(root: string, mode: string): Promise<(total: number) => Promise<void>> {
  const from = (path: string) => import(pathToFileURL(join(root, path)).href);
  const { connectOver } = await from("core/client/connect.ts");
  const { memoryPair } = await from("core/transport/memory.ts");
  const { FrameDecoder } = await from("core/wire/frame.ts");
  const [clientEnd, serverEnd] = memoryPair({ name: "client-path" });
  let out = new Uint8Array(1 << 16);
  let length = 0;
  let flushing = false;
  // Replies of one tick leave in one write, as a server's do.
  const put = (parts: Uint8Array[]) => {
    const size = parts.reduce((sum, part) => sum + part.length, 0);
    if (length + 4 + size > out.length) {
      const bigger = new Uint8Array(out.length * 2);
      bigger.set(out.subarray(0, length));
      out = bigger;
    }
    new DataView(out.buffer).setUint32(length, size);
    let at = length + 4;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    length = at;
    if (flushing) return;
    flushing = true;
    queueMicrotask(async () => {
      const data = out.slice(0, length);
      length = 0;
      flushing = false;
      await serverEnd.write(data);
    });
  };
  let greeted = false;
  const decoder = new FrameDecoder(1 << 20, (body: Uint8Array) => {
    if (!greeted) {
      greeted = true;
      const hello = {
        type: "HELLO",
        serial: 0,
        value: { version: 1, server: "echo", software: "" },
      };
      put([encoder.encode(JSON.stringify(hello))]);
      return;
    }
    let end = REQUEST_HEAD;
    while (body[end] >= 0x30 && body[end] <= 0x39) end++;
    put([replyHead, body.subarray(REQUEST_HEAD, end), replyTail]);
  });
  (async () => {
    const buffer = new Uint8Array(1 << 16);
    for (;;) {
      const count = await serverEnd.read(buffer).catch(() => null);
      if (count === null) return;
      decoder.push(buffer.subarray(0, count));
    }
  })();
  const client = await connectOver(clientEnd);
  const args = ["x".repeat(32)];
  const options = mode === "none" ? {} : { timeoutMs: 30_000 };
  const prepared = mode === "prepared" ? client.prepare("bench", "echo", args, options) : undefined;
  return async (total: number) => {
    let started = 0;
    const loop = async () => {
      while (started < total) {
        started++;
        if (prepared) await prepared.call();
        else await client.call("bench", "echo", args, options);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, loop));
  };
}

const specs = values.root?.length ? values.root : [`${here}:timeout`];
const runs = [];
for (const spec of specs) {
  const [dir, mode = "timeout"] = spec.split(":");
  if (!["timeout", "none", "prepared"].includes(mode)) {
    console.error(`client_path.ts: mode must be timeout, none or prepared, got "${mode}"`);
    Deno.exit(2);
  }
  const root = resolve(dir);
  runs.push({ label: `${root}:${mode}`, run: await setup(root, mode), cpu: [] as number[] });
}
for (const { run } of runs) await run(calls); // warm up
for (let round = 0; round < rounds; round++) {
  for (const { run, cpu } of runs) {
    const before = process.cpuUsage();
    await run(calls);
    const used = process.cpuUsage(before);
    cpu.push((used.user + used.system) / calls);
  }
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[list.length >> 1];
for (const { label, cpu } of runs) {
  console.log(
    `${label}: CPU per call least ${Math.min(...cpu).toFixed(2)} µs, median ${
      median(cpu).toFixed(2)
    } µs (rounds: ${cpu.map((value) => value.toFixed(2)).join(" ")})`,
  );
}
console.log(
  `load average ${Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")}`,
);
Deno.exit(0);
