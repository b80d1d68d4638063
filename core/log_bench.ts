/**
 * The per-call log line: what `Logger.info("call", …)` costs with the
 * server's default sink (text lines on stderr, batched per tick) and with a
 * JSON-lines file, the writer discarding the bytes.
 *
 *     deno bench core/log_bench.ts
 *
 * @module
 */

import { BufferedSink, type ByteWriter, formatJsonLine, formatTextLine, Logger } from "./log.ts";

const discard: ByteWriter = { write: (data) => Promise.resolve(data.length) };

/** One call record, as the server logs it, `count` times; then the batch is written. */
async function logCalls(logger: Logger, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const ms = 0.1 + i / 1000;
    logger.info("call", `c1@127.0.0.1:50000 bench.echo(str) ok ${ms.toFixed(2)} ms`, {
      remote: "127.0.0.1:50000",
      client: "c1",
      service: "bench",
      rpc: "echo",
      signature: "str",
      ms,
    });
  }
  await logger.flush();
}

// Writes are not paced (interval 0): the bench measures formatting and batching, not waiting.
const text = new Logger([new BufferedSink(discard, formatTextLine, undefined, 0)]);
const json = new Logger([new BufferedSink(discard, formatJsonLine, undefined, 0)]);

Deno.bench(
  "log: 1,000 call lines, text on stderr (the default)",
  { group: "log", baseline: true },
  async () => {
    await logCalls(text, 1000);
  },
);

Deno.bench("log: 1,000 call lines, JSON lines", { group: "log" }, async () => {
  await logCalls(json, 1000);
});
