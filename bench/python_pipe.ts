/**
 * The baseline of the Python row in `bench/compare.ts`: a raw Python echo
 * over a pipe. One `python3` process runs a JSON-lines loop (read a line,
 * `json.loads`, answer `{"id", "result"}` with its first parameter through
 * `json.dumps`, flush); this process keeps `C` calls in flight on its stdin,
 * pipelined, for a bounded time, then prints one JSON line on stdout:
 * `{"count", "errors", "seconds", "rps", "latencyMs": {...}}`.
 *
 * It is what any Python procedure behind a pipe costs at least: two process
 * hops, a JSON encode and decode on each side, and the interpreter's loop.
 * No confinement, no server, no network.
 *
 *     deno run --allow-run bench/python_pipe.ts CONCURRENCY PAYLOAD SECONDS
 *
 * @module
 */

import { summarize } from "../core/client/bench.ts";

/** Most calls one run makes, whatever the time. */
const MAX_CALLS = 50_000_000;

/** The echo loop the interpreter runs: the least a JSON-lines bridge can do. */
const ECHO_LOOP = String.raw`
import json, sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    request = json.loads(line)
    out.write((json.dumps({"id": request["id"], "result": request["params"][0]}) + "\n").encode())
    out.flush()
`;

const [concurrencyText, payloadText, secondsText] = Deno.args;
const concurrency = Number(concurrencyText);
const payloadBytes = Number(payloadText);
const seconds = Number(secondsText);
if (!concurrency || !payloadBytes || !seconds) {
  console.error("usage: python_pipe.ts CONCURRENCY PAYLOAD SECONDS");
  Deno.exit(2);
}
const text = "x".repeat(payloadBytes);
const encoder = new TextEncoder();

const child = new Deno.Command("python3", {
  args: ["-I", "-B", "-u", "-c", ECHO_LOOP],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const stdin = child.stdin.getWriter();

// Writing: lines queued in one tick leave in one write, as rpc's runner could at best.
let lines: string[] = [];
let flushing = false;
async function flush(): Promise<void> {
  while (lines.length > 0) {
    const data = encoder.encode(lines.join(""));
    lines = [];
    await stdin.write(data);
  }
  flushing = false;
}

// Reading: each reply line resolves its call by id.
const waiting = new Map<number, (ok: boolean) => void>();
const reading = (async () => {
  let partial = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf("\n", start);
      if (end < 0) break;
      const line = partial + chunk.slice(start, end);
      partial = "";
      start = end + 1;
      const reply = JSON.parse(line);
      const resolve = waiting.get(reply.id);
      waiting.delete(reply.id);
      resolve?.(reply.result === text);
    }
    partial += chunk.slice(start);
  }
})();

let nextId = 1;
function call(): Promise<boolean> {
  return new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    lines.push(JSON.stringify({ id, params: [text] }) + "\n");
    if (!flushing) {
      flushing = true;
      queueMicrotask(flush);
    }
  });
}

await call(); // started and answered before measuring
let latencies = new Float64Array(1 << 16);
let count = 0;
let errors = 0;
const begin = performance.now();
const deadline = begin + seconds * 1000;
async function loop(): Promise<void> {
  while (performance.now() < deadline && count + errors < MAX_CALLS) {
    const t0 = performance.now();
    if (!(await call())) {
      errors++;
      continue;
    }
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = performance.now() - t0;
  }
}
await Promise.all(Array.from({ length: concurrency }, loop));
const elapsed = (performance.now() - begin) / 1000;
await stdin.close();
await reading.catch(() => {});
await child.status;
const { latencyMs } = summarize(latencies.subarray(0, count));
console.log(JSON.stringify({ count, errors, seconds: elapsed, rps: count / elapsed, latencyMs }));
