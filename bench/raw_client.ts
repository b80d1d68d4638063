/**
 * The load generator of the baselines in `bench/compare.ts`: `C` calls in
 * flight on one TCP connection to `bench/raw_server.ts`, pipelined, for a
 * bounded time, then one JSON line on stdout:
 * `{"count", "errors", "seconds", "rps", "latencyMs": {...}}`.
 *
 * - `echo`: each call is one frame of `PAYLOAD` bytes; replies come back in
 *   order, so they are matched first in, first out.
 * - `json`: each call is `{"id", "method": "echo", "params": [text]}`; the
 *   reply is matched by `id` and its `result` checked. The request is
 *   encoded once and each call writes only its own id into it, as `rpc
 *   bench` does with a prepared call (`RpcClient.prepare`), so that both
 *   sides of the comparison pay the same for a request.
 *
 * Frames queued in one tick leave in one write, as rpc's own channel does.
 *
 *     deno run --allow-net bench/raw_client.ts echo|json PORT CONCURRENCY PAYLOAD SECONDS
 *
 * @module
 */

import { summarize } from "../core/client/bench.ts";

/** Most calls one run makes, whatever the time. */
const MAX_CALLS = 50_000_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const [mode, portText, concurrencyText, payloadText, secondsText] = Deno.args;
const port = Number(portText);
const concurrency = Number(concurrencyText);
const payloadBytes = Number(payloadText);
const seconds = Number(secondsText);
if ((mode !== "echo" && mode !== "json") || !port || !concurrency || !payloadBytes || !seconds) {
  console.error("usage: raw_client.ts echo|json PORT CONCURRENCY PAYLOAD SECONDS");
  Deno.exit(2);
}
const json = mode === "json";
const text = "x".repeat(payloadBytes);
const payload = encoder.encode(text);

const conn = await Deno.connect({ hostname: "127.0.0.1", port });
conn.setNoDelay(true);

// Writing: frames queued in one tick are written together.
let out = new Uint8Array(256 * 1024);
let outLength = 0;
let flushing = false;

/** Makes room for a frame of `length` bytes after what is queued. */
function reserve(length: number): void {
  if (outLength + 4 + length <= out.length) return;
  const bigger = new Uint8Array(Math.max(out.length * 2, outLength + 4 + length));
  bigger.set(out.subarray(0, outLength));
  out = bigger;
}

/** Ends the frame of `length` bytes just written after what is queued, and schedules the write. */
function commit(length: number): void {
  new DataView(out.buffer).setUint32(outLength, length);
  outLength += 4 + length;
  if (!flushing) {
    flushing = true;
    queueMicrotask(flush);
  }
}

/** Queues one frame holding `body`. */
function queue(body: Uint8Array): void {
  reserve(body.length);
  out.set(body, outLength + 4);
  commit(body.length);
}
let spare = new Uint8Array(256 * 1024);
async function flush(): Promise<void> {
  while (outLength > 0) {
    const data = out.subarray(0, outLength);
    [out, spare] = [spare.length >= out.length ? spare : new Uint8Array(out.length), out];
    outLength = 0;
    let written = 0;
    while (written < data.length) written += await conn.write(data.subarray(written));
  }
  flushing = false;
}

// Reading: replies resolve the waiting calls.
const waiting = new Map<number, (body: Uint8Array) => void>();
const fifo: ((body: Uint8Array) => void)[] = [];
let fifoHead = 0;
const reading = (async () => {
  const buffer = new Uint8Array(256 * 1024);
  let pending = new Uint8Array(0);
  for (;;) {
    const count = await conn.read(buffer);
    if (count === null) return;
    let data = buffer.subarray(0, count);
    if (pending.length > 0) {
      const joined = new Uint8Array(pending.length + count);
      joined.set(pending);
      joined.set(data, pending.length);
      data = joined;
    }
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = new DataView(data.buffer, data.byteOffset + offset).getUint32(0);
      if (data.length - offset - 4 < length) break;
      const body = data.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      if (json) {
        const reply = JSON.parse(decoder.decode(body));
        const resolve = waiting.get(reply.id);
        waiting.delete(reply.id);
        resolve?.(reply.result === text ? body : new Uint8Array(0));
      } else {
        const resolve = fifo[fifoHead];
        fifo[fifoHead++] = undefined!;
        if (fifoHead > 4096) {
          fifo.splice(0, fifoHead);
          fifoHead = 0;
        }
        resolve(body.length === payloadBytes ? body : new Uint8Array(0));
      }
    }
    pending = data.slice(offset);
  }
})();

// The JSON request around its id, encoded once.
const requestHead = encoder.encode('{"id":');
const requestTail = encoder.encode(`,"method":"echo","params":[${JSON.stringify(text)}]}`);

/** Queues the request with id `id`: the encoded head, the id's digits, the encoded tail. */
function queueRequest(id: number): void {
  const digits = String(id);
  const length = requestHead.length + digits.length + requestTail.length;
  reserve(length);
  let at = outLength + 4;
  out.set(requestHead, at);
  at += requestHead.length;
  for (let i = 0; i < digits.length; i++) out[at++] = digits.charCodeAt(i);
  out.set(requestTail, at);
  commit(length);
}

let nextId = 1;
function call(): Promise<Uint8Array> {
  return new Promise((resolve) => {
    if (json) {
      const id = nextId++;
      waiting.set(id, resolve);
      queueRequest(id);
    } else {
      fifo.push(resolve);
      queue(payload);
    }
  });
}

await call(); // connected and answered before measuring
let latencies = new Float64Array(1 << 16);
let count = 0;
let errors = 0;
const begin = performance.now();
const deadline = begin + seconds * 1000;
async function loop(): Promise<void> {
  while (performance.now() < deadline && count + errors < MAX_CALLS) {
    const t0 = performance.now();
    const body = await call();
    if (body.length === 0) {
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
conn.close();
await reading.catch(() => {});
const { latencyMs } = summarize(latencies.subarray(0, count));
console.log(JSON.stringify({ count, errors, seconds: elapsed, rps: count / elapsed, latencyMs }));
