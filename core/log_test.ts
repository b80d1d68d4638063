/**
 * The log's lines, byte for byte: the text and JSON formats of the records
 * the server writes (a call, an exception with control characters, a record
 * with a bigint), through the buffered sink, as one batch per tick.
 *
 * Run: `deno test core/log_test.ts`
 */

import assert from "node:assert/strict";
import {
  BufferedSink,
  type ByteWriter,
  formatJsonLine,
  formatTextLine,
  Logger,
  type LogRecord,
  MemorySink,
} from "./log.ts";

/** A writer that keeps every write, as text. */
class Collect implements ByteWriter {
  readonly writes: string[] = [];
  write(data: Uint8Array): Promise<number> {
    this.writes.push(new TextDecoder().decode(data));
    return Promise.resolve(data.length);
  }
}

const clock = () => new Date(Date.UTC(2026, 10, 27, 5, 6, 7, 89));

/** What the server logs: a call, a refusal, an exception, a record with a bigint. */
function logSome(logger: Logger): void {
  logger.info("call", "c1@127.0.0.1:5000 service1.rpc1(int, str) ok 0.12 ms", {
    remote: "127.0.0.1:5000",
    client: "c1",
    service: "service1",
    rpc: "rpc1",
    signature: "int, str",
    ms: 0.123456,
  });
  logger.warn("unauthorized", "127.0.0.1:5001: line one\nforged\tline\r\u0007\u007f", {
    remote: "127.0.0.1:5001",
    client: undefined,
  });
  logger.error("exception", "ünïcode ✓", { big: 12345678901234567890n, list: [1, "a"] });
  logger.debug("hidden", "not at info");
}

const TEXT = [
  "2026-11-27T05:06:07.089Z INFO  c1@127.0.0.1:5000 service1.rpc1(int, str) ok 0.12 ms\n",
  "2026-11-27T05:06:07.089Z WARN  127.0.0.1:5001: line one\\nforged\\tline\\r\\u0007\\u007f\n",
  "2026-11-27T05:06:07.089Z ERROR ünïcode ✓\n",
].join("");

const JSON_LINES = [
  '{"time":"2026-11-27T05:06:07.089Z","level":"info","event":"call","msg":"c1@127.0.0.1:5000 service1.rpc1(int, str) ok 0.12 ms","remote":"127.0.0.1:5000","client":"c1","service":"service1","rpc":"rpc1","signature":"int, str","ms":0.123456}\n',
  '{"time":"2026-11-27T05:06:07.089Z","level":"warn","event":"unauthorized","msg":"127.0.0.1:5001: line one\\nforged\\tline\\r\\u0007\u007f","remote":"127.0.0.1:5001"}\n',
  '{"time":"2026-11-27T05:06:07.089Z","level":"error","event":"exception","msg":"ünïcode ✓","big":"12345678901234567890","list":[1,"a"]}\n',
].join("");

Deno.test("log: text and JSON lines are exactly as before, in one write per tick", async () => {
  const text = new Collect();
  const json = new Collect();
  const logger = new Logger([
    new BufferedSink(text, formatTextLine),
    new BufferedSink(json, formatJsonLine),
  ], { clock });
  logSome(logger);
  await logger.flush();
  assert.deepEqual(text.writes, [TEXT]);
  assert.deepEqual(json.writes, [JSON_LINES]);
});

Deno.test("log: records handed to a sink carry time, level, event, msg, then the fields", () => {
  const memory = new MemorySink();
  const logger = new Logger([memory], { clock });
  logSome(logger);
  assert.equal(memory.records.length, 3);
  const first: LogRecord = memory.records[0];
  assert.deepEqual(Object.keys(first), [
    "time",
    "level",
    "event",
    "msg",
    "remote",
    "client",
    "service",
    "rpc",
    "signature",
    "ms",
  ]);
  assert.equal(first.time, "2026-11-27T05:06:07.089Z");
});

Deno.test("log: the time of a record is the time it was logged, to the millisecond", async () => {
  const text = new Collect();
  const logger = new Logger([new BufferedSink(text, formatTextLine)]);
  const before = Date.now();
  logger.info("call", "one");
  await new Promise((resolve) => setTimeout(resolve, 5));
  logger.info("call", "two");
  const after = Date.now();
  await logger.flush();
  const times = text.writes.join("").trim().split("\n").map((line) =>
    Date.parse(line.split(" ")[0])
  );
  assert.equal(times.length, 2);
  assert.ok(times[0] >= before && times[1] > times[0] && times[1] <= after, String(times));
});

Deno.test("log: a sink writes a quiet log's line at once, and a busy log once per interval", async () => {
  const text = new Collect();
  const sink = new BufferedSink(text, formatTextLine, 100_000, 1000);
  const logger = new Logger([sink], { clock });
  logger.info("call", "first");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(text.writes.length, 1, "the first line after a quiet spell leaves in its tick");
  // Lines of the next ticks wait for the interval, then leave together.
  for (let i = 0; i < 5; i++) {
    logger.info("call", `busy ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.equal(text.writes.length, 1);
  await logger.flush();
  assert.equal(text.writes.length, 2);
  assert.equal(text.writes[1].split("\n").filter(Boolean).length, 5);
});
