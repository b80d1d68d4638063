/**
 * The load generator of the HTTP row in `bench/compare.ts`: `C` keep-alive
 * HTTP/1.1 connections, each with one `POST` in flight at a time (HTTP/1.1
 * has no multiplexing), for a bounded time; then one JSON line on stdout:
 * `{"count", "errors", "seconds", "rps", "latencyMs": {...}}`.
 *
 * The body is `["xxx…"]` (a JSON array with one string of `PAYLOAD` bytes),
 * which both rpc's gateway (`POST /v1/bench/echo`) and the raw `Deno.serve`
 * echo (bench/http_echo.ts) answer with `{"return-values": ["xxx…"]}`; a reply
 * that is not a 200 with exactly that body counts as an error.
 *
 * It speaks HTTP/1.1 itself over `Deno.connect` rather than through `fetch`:
 * `fetch` costs more CPU per request than the servers being measured, so it
 * would measure itself. It reads only what these two servers send (a status
 * line, headers, and a `Content-Length` body).
 *
 *     deno run --allow-net bench/http_client.ts URL CONCURRENCY PAYLOAD SECONDS [AUTHORIZATION]
 *
 * @module
 */

import { summarize } from "../core/client/bench.ts";

/** Most requests one run makes, whatever the time. */
const MAX_CALLS = 50_000_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const [urlText, concurrencyText, payloadText, secondsText, authorization] = Deno.args;
const concurrency = Number(concurrencyText);
const payloadBytes = Number(payloadText);
const seconds = Number(secondsText);
if (!urlText || !concurrency || !payloadBytes || !seconds) {
  console.error("usage: http_client.ts URL CONCURRENCY PAYLOAD SECONDS [AUTHORIZATION]");
  Deno.exit(2);
}
const url = new URL(urlText);
const text = "x".repeat(payloadBytes);
const body = encoder.encode(JSON.stringify([text]));
const expected = JSON.stringify({ "return-values": [text] });
const request = encoder.encode(
  `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
    (authorization ? `Authorization: ${authorization}\r\n` : "") +
    `Content-Length: ${body.length}\r\n\r\n`,
);
const message = new Uint8Array(request.length + body.length);
message.set(request);
message.set(body, request.length);

const HEADER_END = encoder.encode("\r\n\r\n");

function indexOf(data: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= data.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (data[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** One keep-alive connection: `call()` sends the request and resolves to whether the reply was right. */
class Connection {
  #conn: Deno.TcpConn;
  #buffer = new Uint8Array(256 * 1024);
  #pending = new Uint8Array(0);

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
  }

  async call(): Promise<boolean> {
    let written = 0;
    while (written < message.length) written += await this.#conn.write(message.subarray(written));
    let data = this.#pending;
    for (;;) {
      const end = indexOf(data, HEADER_END, 0);
      if (end >= 0) {
        const head = decoder.decode(data.subarray(0, end));
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
        if (!Number.isFinite(length)) throw new Error(`Reply without Content-Length: ${head}`);
        const start = end + HEADER_END.length;
        if (data.length - start >= length) {
          const reply = decoder.decode(data.subarray(start, start + length));
          this.#pending = data.slice(start + length);
          return head.startsWith("HTTP/1.1 200") && reply === expected;
        }
      }
      const count = await this.#conn.read(this.#buffer);
      if (count === null) throw new Error("Connection closed by the server");
      const joined = new Uint8Array(data.length + count);
      joined.set(data);
      joined.set(this.#buffer.subarray(0, count), data.length);
      data = joined;
    }
  }

  close(): void {
    this.#conn.close();
  }
}

const port = Number(url.port || 80);
const connections = await Promise.all(
  Array.from(
    { length: concurrency },
    async () => new Connection(await Deno.connect({ hostname: url.hostname, port })),
  ),
);
for (const connection of connections) {
  if (!(await connection.call())) throw new Error("The first reply was not the echo");
}

let latencies = new Float64Array(1 << 16);
let count = 0;
let errors = 0;
const begin = performance.now();
const deadline = begin + seconds * 1000;
async function loop(connection: Connection): Promise<void> {
  while (performance.now() < deadline && count + errors < MAX_CALLS) {
    const t0 = performance.now();
    if (!(await connection.call())) {
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
await Promise.all(connections.map(loop));
const elapsed = (performance.now() - begin) / 1000;
for (const connection of connections) connection.close();
const { latencyMs } = summarize(latencies.subarray(0, count));
console.log(JSON.stringify({ count, errors, seconds: elapsed, rps: count / elapsed, latencyMs }));
