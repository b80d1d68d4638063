import assert from "node:assert/strict";
import {
  type ByteStream,
  type ChannelHandler,
  EARLY_WRITE_BYTES,
  MessageChannel,
  writeAll,
} from "./channel.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { encodeFrame, FrameDecoder, writeHeader } from "./frame.ts";
import { decodeMessage, type Message } from "./message.ts";

// ---------------------------------------------------------------------------
// An in-memory duplex byte stream

/** One direction of a duplex: bytes written at one end, read at the other. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  push(data: Uint8Array): void {
    if (this.#ended) throw new Deno.errors.BrokenPipe("write after end");
    this.#chunks.push(data.slice());
    this.#notify();
  }

  end(): void {
    this.#ended = true;
    this.#notify();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const count = Math.min(buffer.length, chunk.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    return count;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

interface MemoryStreamOptions {
  /** Largest number of bytes one write call accepts (short writes). */
  maxWriteBytes?: number;
  /** Resolves before each write completes, to hold writes back. */
  gate?: () => Promise<void>;
  /** Makes every write fail with this error. */
  writeError?: Error;
}

/** One end of an in-memory duplex; records every write call it receives. */
class MemoryStream implements ByteStream {
  readonly writes: Uint8Array[] = [];
  closed = false;

  constructor(
    readonly incoming: ByteQueue,
    readonly outgoing: ByteQueue,
    readonly options: MemoryStreamOptions = {},
  ) {}

  read(buffer: Uint8Array): Promise<number | null> {
    return this.incoming.read(buffer);
  }

  async write(data: Uint8Array): Promise<number> {
    if (this.options.gate) await this.options.gate();
    if (this.options.writeError) throw this.options.writeError;
    if (this.closed) throw new Deno.errors.BadResource("stream is closed");
    const count = Math.min(data.length, this.options.maxWriteBytes ?? Infinity);
    const accepted = data.slice(0, count);
    this.writes.push(accepted);
    this.outgoing.push(accepted);
    return count;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.outgoing.end();
    this.incoming.end();
  }

  /** Writes bytes to the peer directly, bypassing any channel. */
  raw(data: Uint8Array): void {
    this.outgoing.push(data);
  }
}

/** Two connected ends: what `left` writes, `right` reads, and back. */
function duplex(
  leftOptions: MemoryStreamOptions = {},
  rightOptions: MemoryStreamOptions = {},
): [MemoryStream, MemoryStream] {
  const toRight = new ByteQueue();
  const toLeft = new ByteQueue();
  return [
    new MemoryStream(toLeft, toRight, leftOptions),
    new MemoryStream(toRight, toLeft, rightOptions),
  ];
}

// ---------------------------------------------------------------------------
// Helpers

/** Fails a test that takes longer than `ms` instead of letting it hang. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A handler that records what it is given. */
function recorder() {
  const messages: Message[] = [];
  const malformed: { error: RpcError; serial: number | undefined }[] = [];
  const handler: ChannelHandler = {
    onMessage: (message) => messages.push(message),
    onMalformed: (error, serial) => malformed.push({ error, serial }),
  };
  return { messages, malformed, handler };
}

/** Splits written bytes back into decoded messages. */
function framesOf(data: Uint8Array): Message[] {
  const out: Message[] = [];
  new FrameDecoder(1 << 24, (body) => out.push(decodeMessage(body))).push(data);
  return out;
}

const encoder = new TextEncoder();

function rawFrame(text: string): Uint8Array {
  return encodeFrame(encoder.encode(text));
}

function list(serial: number): Message {
  return { type: "LIST", serial, value: {} };
}

function isKind(kind: string) {
  return (error: unknown) => {
    assert.ok(error instanceof RpcError, `expected RpcError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    return true;
  };
}

// ---------------------------------------------------------------------------
// Writing

Deno.test("MessageChannel coalesces messages sent in one tick into one write", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left);
  assert.equal(channel.send(list(1)), true);
  assert.equal(channel.send(list(2)), true);
  assert.equal(channel.send(list(3)), true);
  assert.equal(left.writes.length, 0, "nothing is written synchronously");
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 1);
  assert.deepEqual(framesOf(left.writes[0]), [list(1), list(2), list(3)]);
  channel.close();
  right.close();
});

Deno.test("MessageChannel writes messages sent in separate ticks separately, in order", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left);
  channel.send(list(1));
  await within(2000, channel.flush());
  channel.send(list(2));
  channel.send(list(3));
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 2);
  assert.deepEqual(framesOf(left.writes[0]), [list(1)]);
  assert.deepEqual(framesOf(left.writes[1]), [list(2), list(3)]);
  channel.close();
  right.close();
});

Deno.test("MessageChannel queues messages sent during a write into the next write", async () => {
  let release!: () => void;
  let held = true;
  const gate = () => held ? new Promise<void>((resolve) => release = resolve) : Promise.resolve();
  const [left, right] = duplex({ gate });
  const channel = new MessageChannel(left);
  channel.send(list(1));
  await delay(0); // The first write has started and is held.
  channel.send(list(2));
  channel.send(list(3));
  held = false;
  release();
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 2);
  assert.deepEqual(framesOf(left.writes[0]), [list(1)]);
  assert.deepEqual(framesOf(left.writes[1]), [list(2), list(3)]);
  channel.close();
  right.close();
});

Deno.test("MessageChannel delivers sent messages to the peer's readAll, in order", async () => {
  const [left, right] = duplex();
  const sender = new MessageChannel(left);
  const receiver = new MessageChannel(right);
  const { messages, malformed, handler } = recorder();
  const reading = receiver.readAll(handler);
  const sent: Message[] = [
    { type: "HELLO", serial: 0, value: { versions: [1], client: "c1" } },
    {
      type: "RPC-REQ",
      serial: 1,
      value: { service: "service1", rpc: "add", arguments: [12345678901234567890n, 1] },
    },
    { type: "RPC-RES", serial: 1, value: { "return-values": ["ok"] } },
  ];
  for (const message of sent) sender.send(message);
  await within(2000, sender.end());
  await within(2000, reading);
  assert.deepEqual(messages, sent);
  assert.deepEqual(malformed, []);
  receiver.close();
});

Deno.test("MessageChannel grows its write buffer for a message larger than 64 KiB", async () => {
  const [left, right] = duplex();
  const sender = new MessageChannel(left);
  const receiver = new MessageChannel(right, { readBufferBytes: 1000 });
  const { messages, handler } = recorder();
  const reading = receiver.readAll(handler);
  const big = "é".repeat(100_000); // 200,000 bytes of UTF-8
  const message: Message = { type: "RPC-RES", serial: 4, value: { "return-values": [big] } };
  sender.send(list(3));
  sender.send(message);
  await within(5000, sender.end());
  await within(5000, reading);
  assert.deepEqual(messages, [list(3), message]);
  receiver.close();
});

Deno.test("MessageChannel keeps the order of small and large messages sent in one tick", async () => {
  const [left, right] = duplex();
  const sender = new MessageChannel(left);
  const receiver = new MessageChannel(right, { readBufferBytes: 4096 });
  const { messages, handler } = recorder();
  const reading = receiver.readAll(handler);
  const reply = (serial: number, text: string): Message => ({
    type: "RPC-RES",
    serial,
    value: { "return-values": [text] },
  });
  const sent = [
    list(1),
    reply(2, "x".repeat(40_000)),
    reply(3, "small"),
    reply(4, "ü".repeat(30_000)),
    reply(5, "x".repeat(20_000)),
    list(6),
  ];
  for (const message of sent) sender.send(message);
  await within(5000, sender.end());
  await within(5000, reading);
  assert.deepEqual(messages, sent);
  receiver.close();
});

Deno.test("MessageChannel send() refuses a message over the frame limit and queues nothing", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left, { maxFrameBytes: 64 });
  const big: Message = {
    type: "RPC-RES",
    serial: 1,
    value: { "return-values": ["x".repeat(100)] },
  };
  assert.throws(() => channel.send(big), isKind(ErrorKind.FrameTooLarge));
  channel.send(list(2));
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 1);
  assert.deepEqual(framesOf(left.writes[0]), [list(2)]);
  channel.close();
  right.close();
});

Deno.test("MessageChannel sendAroundSerial() writes the serial's digits between head and tail, in order with send()", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left, { maxFrameBytes: 100 });
  const bytes = (text: string) => new TextEncoder().encode(text);
  const head = bytes('{"type":"RPC-REQ","serial":');
  const tail = bytes(',"value":{"service":"s","rpc":"r","arguments":["é"]}}');
  const request = (serial: number): Message => ({
    type: "RPC-REQ",
    serial,
    value: { service: "s", rpc: "r", arguments: ["é"] },
  });
  const serials = [0, 7, 10, 99, 4294967295];
  channel.send(list(1));
  for (const serial of serials) assert.equal(channel.sendAroundSerial(head, serial, tail), true);
  // Over the frame limit: refused, and nothing queued.
  assert.throws(
    () => channel.sendAroundSerial(head, 1, bytes(`,"value":"${"x".repeat(70)}"}`)),
    isKind(ErrorKind.FrameTooLarge),
  );
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 1);
  assert.deepEqual(framesOf(left.writes[0]), [list(1), ...serials.map(request)]);
  channel.close();
  assert.equal(channel.sendAroundSerial(head, 1, tail), false);
  right.close();
});

Deno.test("MessageChannel send() returns false once the channel is closed", () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left);
  channel.close();
  assert.equal(channel.closed, true);
  assert.equal(left.closed, true);
  assert.equal(channel.send(list(1)), false);
  channel.close(); // Closing twice is harmless.
  right.close();
});

Deno.test("MessageChannel completes short writes with writeAll", async () => {
  const [left, right] = duplex({ maxWriteBytes: 3 });
  const channel = new MessageChannel(left);
  channel.send(list(1));
  channel.send(list(2));
  await within(2000, channel.flush());
  assert.ok(left.writes.length > 1, "the stream took several writes");
  assert.ok(left.writes.every((write) => write.length <= 3));
  const joined = new Uint8Array(left.writes.reduce((sum, write) => sum + write.length, 0));
  let offset = 0;
  for (const write of left.writes) {
    joined.set(write, offset);
    offset += write.length;
  }
  assert.deepEqual(framesOf(joined), [list(1), list(2)]);
  channel.close();
  right.close();
});

Deno.test("writeAll() loops until every byte is written", async () => {
  const [left, right] = duplex({ maxWriteBytes: 4 });
  const data = new Uint8Array(10).map((_, i) => i);
  await within(2000, writeAll(left, data));
  assert.deepEqual(left.writes.map((write) => write.length), [4, 4, 2]);
  const buffer = new Uint8Array(10);
  let filled = 0;
  while (filled < 10) filled += (await right.read(buffer.subarray(filled)))!;
  assert.deepEqual(buffer, data);
  left.close();
});

Deno.test("MessageChannel starts writing within the tick once a batch reaches EARLY_WRITE_BYTES", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left);
  const big = (serial: number): Message => ({
    type: "RPC-RES",
    serial,
    value: { "return-values": ["x".repeat(200)] },
  });
  let serial = 0;
  while (left.writes.length === 0) {
    channel.send(big(++serial));
    assert.ok(serial * 220 < EARLY_WRITE_BYTES * 2, "a write started once the batch was large");
  }
  const first = serial;
  // What is sent while that write is under way leaves in the next one, in order.
  channel.send(big(++serial));
  channel.send(big(++serial));
  assert.equal(left.writes.length, 1);
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 2);
  assert.ok(left.writes[0].length >= EARLY_WRITE_BYTES);
  assert.deepEqual(
    [...framesOf(left.writes[0]), ...framesOf(left.writes[1])].map((m) => m.serial),
    Array.from({ length: serial }, (_, i) => i + 1),
  );
  assert.equal(framesOf(left.writes[0]).length, first);
  channel.close();
  right.close();
});

Deno.test("MessageChannel with earlyWriteBytes Infinity writes a large batch once, at the end of the tick", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left, { earlyWriteBytes: Infinity });
  for (let serial = 1; serial <= 20; serial++) {
    channel.send({ type: "RPC-RES", serial, value: { "return-values": ["x".repeat(500)] } });
  }
  assert.equal(left.writes.length, 0, "nothing is written within the tick");
  await within(2000, channel.flush());
  assert.equal(left.writes.length, 1);
  assert.equal(framesOf(left.writes[0]).length, 20);
  channel.close();
  right.close();
});

Deno.test("MessageChannel flush() resolves when a stream's write throws at once", async () => {
  const failure = new Deno.errors.BrokenPipe("peer went away");
  const stream: ByteStream = {
    read: () => new Promise(() => {}),
    write: () => {
      throw failure;
    },
    close: () => {},
  };
  const channel = new MessageChannel(stream);
  // Large enough to be written within the tick, where the throw reaches the channel at once.
  channel.send({
    type: "RPC-RES",
    serial: 1,
    value: { "return-values": ["x".repeat(EARLY_WRITE_BYTES)] },
  });
  await within(2000, channel.flush());
  assert.equal(channel.closed, true);
  assert.equal(channel.writeError, failure);
});

Deno.test("MessageChannel keeps a large write buffer across small batches, and lets it go after a run of them", async () => {
  /** The buffer each write came from. */
  const sources: ArrayBufferLike[] = [];
  const stream: ByteStream = {
    read: () => new Promise(() => {}),
    write: (data) => {
      sources.push(data.buffer);
      return Promise.resolve(data.length);
    },
    close: () => {},
  };
  const channel = new MessageChannel(stream);
  const big = { type: "RPC-RES", serial: 1, value: { "return-values": ["x".repeat(2 << 20)] } };
  const small = (serial: number): Message => ({ type: "LIST", serial, value: {} });
  channel.send(big as Message);
  await within(2000, channel.flush());
  const large = sources[0];
  assert.ok(large.byteLength > 2 << 20);
  // Small batches alternate between the large buffer and the other one; five of them, and the
  // next large batch is written from the large buffer again, not from one grown afresh.
  for (let serial = 2; serial <= 6; serial++) {
    channel.send(small(serial));
    await within(2000, channel.flush());
  }
  channel.send(big as Message);
  await within(2000, channel.flush());
  assert.equal(sources.at(-1), large);
  // A long run of small batches: the large buffer goes.
  for (let serial = 7; serial <= 60; serial++) {
    channel.send(small(serial));
    await within(2000, channel.flush());
  }
  assert.ok(sources.slice(-10).every((source) => source.byteLength < 1 << 20));
  channel.close();
});

Deno.test("MessageChannel closes itself and keeps the error when a write fails", async () => {
  const failure = new Deno.errors.BrokenPipe("peer went away");
  const [left, right] = duplex({ writeError: failure });
  const channel = new MessageChannel(left);
  channel.send(list(1));
  await within(2000, channel.flush());
  assert.equal(channel.closed, true);
  assert.equal(channel.writeError, failure);
  assert.equal(channel.send(list(2)), false);
  right.close();
});

Deno.test("MessageChannel end() writes what is queued, then closes the stream", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left);
  channel.send(list(1));
  await within(2000, channel.end());
  assert.equal(left.closed, true);
  const buffer = new Uint8Array(1024);
  const count = await within(2000, right.read(buffer));
  assert.deepEqual(framesOf(buffer.subarray(0, count!)), [list(1)]);
  assert.equal(await within(2000, right.read(buffer)), null, "then the end of the stream");
});

// ---------------------------------------------------------------------------
// Reading

Deno.test("MessageChannel readAll resolves when the peer closes cleanly", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right);
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  left.close();
  await within(2000, reading);
  assert.deepEqual(messages, []);
});

Deno.test("MessageChannel calls onMalformed for a bad body and keeps reading", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right);
  const { messages, malformed, handler } = recorder();
  const reading = channel.readAll(handler);
  left.raw(rawFrame("this is not json"));
  left.raw(rawFrame(JSON.stringify({ type: "NOPE", serial: 5 })));
  left.raw(new Uint8Array([0, 0, 0, 2, 0xff, 0xfe]));
  left.raw(rawFrame(JSON.stringify(list(6))));
  left.close();
  await within(2000, reading);
  assert.deepEqual(messages, [list(6)]);
  assert.equal(malformed.length, 3);
  for (const { error } of malformed) assert.equal(error.kind, ErrorKind.MalformedFrame);
  assert.deepEqual(malformed.map(({ serial }) => serial), [undefined, 5, undefined]);
});

Deno.test("MessageChannel passes the serial of a readable envelope to onMalformed", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right);
  const { messages, malformed, handler } = recorder();
  const reading = channel.readAll(handler);
  left.raw(rawFrame(JSON.stringify({ type: "RPC-REQ", serial: 41, value: { rpc: "r" } })));
  left.raw(
    rawFrame(JSON.stringify({ type: "RPC-REQ", serial: 42, value: { service: "s", rpc: "r" } })),
  );
  left.close();
  await within(2000, reading);
  assert.equal(malformed.length, 1);
  assert.equal(malformed[0].serial, 41);
  assert.match(malformed[0].error.message, /needs a service name/);
  assert.equal(messages.length, 1);
  assert.equal(messages[0].serial, 42);
});

Deno.test("MessageChannel readAll rejects Frame Too Large as soon as the header arrives", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right, { maxFrameBytes: 64 });
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  left.raw(rawFrame(JSON.stringify(list(1))));
  const header = new Uint8Array(4);
  writeHeader(header, 0, 65);
  left.raw(header); // No body follows and the stream stays open.
  await assert.rejects(() => within(2000, reading), (error: unknown) => {
    isKind(ErrorKind.FrameTooLarge)(error);
    assert.match((error as Error).message, /65/);
    assert.match((error as Error).message, /64/);
    return true;
  });
  assert.deepEqual(messages, [list(1)], "frames before the bad one are delivered");
  channel.close();
  left.close();
});

Deno.test("MessageChannel readAll accepts a frame exactly at its limit", async () => {
  const [left, right] = duplex();
  const text = JSON.stringify(list(1));
  const channel = new MessageChannel(right, { maxFrameBytes: text.length });
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  left.raw(rawFrame(text));
  left.close();
  await within(2000, reading);
  assert.deepEqual(messages, [list(1)]);
});

Deno.test("MessageChannel readAll rejects a stream that ends inside a frame", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right);
  const { handler } = recorder();
  const reading = channel.readAll(handler);
  left.raw(rawFrame(JSON.stringify(list(1))).subarray(0, 7));
  left.close();
  await assert.rejects(() => within(2000, reading), (error: unknown) => {
    isKind(ErrorKind.MalformedFrame)(error);
    assert.match((error as Error).message, /stream ended inside a frame/);
    return true;
  });
});

Deno.test("MessageChannel readAll assembles frames larger than its read buffer", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(right, { readBufferBytes: 5 });
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  const message: Message = {
    type: "RPC-RES",
    serial: 9,
    value: { "return-values": ["y".repeat(500)] },
  };
  left.raw(rawFrame(JSON.stringify(message)));
  left.raw(rawFrame(JSON.stringify(list(10))));
  left.close();
  await within(2000, reading);
  assert.deepEqual(messages, [message, list(10)]);
});

Deno.test("MessageChannel readAll maps a read error to an RpcError", async () => {
  const stream: ByteStream = {
    read: () => Promise.reject(new Deno.errors.ConnectionReset("reset by peer")),
    write: (data) => Promise.resolve(data.length),
    close: () => {},
  };
  const channel = new MessageChannel(stream);
  await assert.rejects(
    () => within(2000, channel.readAll(recorder().handler)),
    isKind(ErrorKind.Unavailable),
  );
});

Deno.test("MessageChannel readAll resolves quietly when a read fails after close", async () => {
  let failRead!: (error: Error) => void;
  const stream: ByteStream = {
    read: () => new Promise((_, reject) => failRead = reject),
    write: (data) => Promise.resolve(data.length),
    close: () => failRead(new Deno.errors.BadResource("closed")),
  };
  const channel = new MessageChannel(stream);
  const reading = channel.readAll(recorder().handler);
  await delay(0);
  channel.close();
  await within(2000, reading);
});

Deno.test("MessageChannel pauses reading while too many bytes wait to be written", async () => {
  let release!: () => void;
  let held = true;
  const gate = () => held ? new Promise<void>((resolve) => release = resolve) : Promise.resolve();
  const [left, right] = duplex({ gate });
  const channel = new MessageChannel(left, { writeHighWaterBytes: 10 });
  channel.send(list(1));
  await delay(0); // The first write is held; what is sent now waits in the buffer.
  channel.send(list(2));
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  right.raw(rawFrame(JSON.stringify(list(100))));
  await delay(20);
  assert.deepEqual(messages, [], "no read while the write buffer is over the high-water mark");
  held = false;
  release();
  await within(2000, channel.flush());
  await delay(0);
  right.close();
  await within(2000, reading);
  assert.deepEqual(messages, [list(100)]);
});

Deno.test("MessageChannel counts pending bytes and reports every change to onBacklog", async () => {
  let release!: () => void;
  let held = true;
  const gate = () => held ? new Promise<void>((resolve) => release = resolve) : Promise.resolve();
  const [left] = duplex({ gate, maxWriteBytes: 10 });
  let backlog = 0;
  const channel = new MessageChannel(left, { onBacklog: (delta) => backlog += delta });
  channel.send(list(1));
  const size = channel.pendingBytes;
  assert.ok(size > 10);
  assert.equal(backlog, size, "queued bytes are reported at once");
  await delay(0); // the write has begun and is held
  assert.equal(channel.pendingBytes, size, "bytes being written still count until taken");
  held = false;
  release();
  await within(2000, channel.flush());
  assert.equal(channel.pendingBytes, 0);
  assert.equal(backlog, 0, "short writes are reported as they complete");
});

Deno.test("MessageChannel reports what it drops at close", async () => {
  const gate = () => new Promise<void>(() => {}); // writes never complete
  const [left] = duplex({ gate });
  let backlog = 0;
  const channel = new MessageChannel(left, { onBacklog: (delta) => backlog += delta });
  channel.send(list(1));
  await delay(0);
  channel.send(list(2));
  assert.ok(backlog > 0);
  channel.close();
  assert.equal(backlog, 0);
  assert.equal(channel.pendingBytes, 0);
});

Deno.test("MessageChannel reads nothing while mayRead says no, until resumeReading()", async () => {
  const [left, right] = duplex();
  let allowed = false;
  const channel = new MessageChannel(left, { mayRead: () => allowed });
  const { messages, handler } = recorder();
  const reading = channel.readAll(handler);
  right.raw(rawFrame(JSON.stringify(list(7))));
  await delay(20);
  assert.deepEqual(messages, []);
  channel.resumeReading();
  await delay(20);
  assert.deepEqual(messages, [], "asked again, still not allowed");
  allowed = true;
  channel.resumeReading();
  await delay(20);
  assert.deepEqual(messages, [list(7)]);
  right.close();
  await within(2000, reading);
});

Deno.test("MessageChannel restarts a partial frame's clock after reading was held", async () => {
  const [left, right] = duplex();
  let allowed = true;
  const channel = new MessageChannel(left, { mayRead: () => allowed });
  const reading = channel.readAll(recorder().handler);
  const frame = rawFrame(JSON.stringify(list(1)));
  allowed = false; // checked before the next read, after this one
  right.raw(frame.subarray(0, 3));
  await delay(20);
  assert.equal(channel.partialSince, undefined, "no slow-sender clock while held");
  const before = performance.now();
  allowed = true;
  channel.resumeReading();
  await delay(20);
  assert.ok(channel.partialSince! >= before, "the frame's time starts again");
  right.raw(frame.subarray(3));
  right.close();
  await within(2000, reading);
});

Deno.test("MessageChannel decodes with the options it was given", async () => {
  const [left, right] = duplex();
  const channel = new MessageChannel(left, { decode: { maxIntegerDigits: 20 } });
  const { malformed, handler } = recorder();
  const reading = channel.readAll(handler);
  right.raw(rawFrame(`{"type":"LIST","serial":3,"value":{"n":${"1".repeat(21)}}}`));
  right.close();
  await within(2000, reading);
  assert.equal(malformed.length, 1);
  assert.equal(malformed[0].serial, 3);
  assert.match(malformed[0].error.message, /integer of 21 digits exceeds limit 20/);
});
