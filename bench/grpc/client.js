// The gRPC load generator of bench/compare.ts: C unary echo calls in flight
// on one channel (one HTTP/2 connection) for a bounded time, then one JSON
// line on stdout: {count, errors, seconds, latenciesMs: {...}} like the
// Deno load generators print.
//
//   node client.js PORT CONCURRENCY PAYLOAD_BYTES SECONDS

import grpc from "@grpc/grpc-js";

const [port, concurrency, payloadBytes, seconds] = process.argv.slice(2).map(Number);
if (!port || !concurrency || !payloadBytes || !seconds) {
  console.error("usage: node client.js PORT CONCURRENCY PAYLOAD_BYTES SECONDS");
  process.exit(2);
}

const Client = grpc.makeGenericClientConstructor({
  echo: {
    path: "/bench.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => value,
    requestDeserialize: (bytes) => bytes,
    responseSerialize: (value) => value,
    responseDeserialize: (bytes) => bytes,
  },
});
const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
});
const payload = Buffer.alloc(payloadBytes, "x");

const call = () =>
  new Promise((resolve, reject) => {
    client.echo(payload, (error, reply) => {
      if (error) reject(error);
      else if (reply.length !== payloadBytes) reject(new Error(`echoed ${reply.length} bytes`));
      else resolve();
    });
  });

// Connect (and warm the channel) before measuring.
await call();

let latencies = new Float64Array(1 << 16);
let count = 0;
let errors = 0;
const begin = performance.now();
const deadline = begin + seconds * 1000;
const MAX_CALLS = 50_000_000;

async function loop() {
  while (performance.now() < deadline && count + errors < MAX_CALLS) {
    const t0 = performance.now();
    try {
      await call();
    } catch {
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
client.close();
const sorted = latencies.slice(0, count).sort();
const at = (fraction) => sorted[Math.min(count - 1, Math.max(0, Math.ceil(fraction * count) - 1))];
process.stdout.write(
  JSON.stringify({
    count,
    errors,
    seconds: elapsed,
    rps: count / elapsed,
    latencyMs: {
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      min: sorted[0],
      max: sorted[count - 1],
    },
  }) + "\n",
);
process.exit(0);
