/**
 * Fuzz test: thousands of random and mutated frames, over several concurrent
 * raw connections, against one real `rpc server` process; then checks that
 * the server still answers valid calls, holds no leaked connections or calls,
 * and has not grown without bound.
 *
 * The frames come from a seeded generator, one stream per connection. The
 * seed is printed; to replay a failure:
 *
 *     RPC_FUZZ_SEED=1234 deno test --allow-all tests/fuzz_test.ts
 *
 * `RPC_FUZZ_MS` sets how long to fuzz (default 6000 ms, after a 1000 ms
 * warm-up). A replay sends the same frames in the same order over each of
 * the connections; where the server cuts a connection, and so what it
 * answers, depends on timing.
 *
 * A connection the server cut, and half of those the fuzz ends itself, are
 * finished as a client that wants its answers would: our side shut, the
 * server's replies read until it closes. A loaded server reads and answers
 * a connection long after its frames were sent, and a client that closed at
 * once would count none of them. That replies also flow while a peer keeps
 * writing is `flood_test.ts`'s to check.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../core/client/connect.ts";
import {
  delay,
  frame,
  messageFrame,
  RawConnection,
  type ServerProcess,
  startServer,
  waitFor,
} from "./helpers.ts";

const FRAME_LIMIT = 65_536;
const STRING_LIMIT = 20_000;
const LIST_LIMIT = 1_000;
const CONNECTIONS = 6;
const WARM_UP_MS = 1_000;
const FUZZ_MS = Number(Deno.env.get("RPC_FUZZ_MS") ?? 6_000);
/** How long a connection the fuzz is done with may take to answer what it was sent. */
const DRAIN_MS = 10_000;
/** Connections of one fuzzer being finished at once (each counts against the server's per-IP limit). */
const MAX_FINISHING = 4;
const SEED = Number(Deno.env.get("RPC_FUZZ_SEED") ?? crypto.getRandomValues(new Uint32Array(1))[0]);

// ---------------------------------------------------------------------------
// A seeded generator

/** mulberry32: a small, fast PRNG with a 32-bit state. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  /** An integer in [low, high]. */
  range(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** A string of `n` characters, sometimes with quotes, escapes, controls and non-ASCII. */
  text(n: number): string {
    const alphabet = this.chance(0.7)
      ? "abcdefghijklmnopqrstuvwxyz0123456789"
      : 'ab"\\\n\t\u0000\u001f\u00e9\u4e2d\ud83d\ude00 {}[],:';
    let out = "";
    while (out.length < n) out += alphabet[this.int(alphabet.length)];
    return out;
  }
}

// ---------------------------------------------------------------------------
// What to send

const TYPES = [
  "HELLO",
  "RPC-REQ",
  "RPC-RES",
  "RPC-EX",
  "RPC-CANCEL",
  "LIST",
  "LIST-RES",
  "ADMIN",
  "ADMIN-RES",
  "RPC-PART",
];

/** JSON text of odd values: wrong types, huge and unsafe numbers, deep nesting. */
function oddJson(r: Random): string {
  switch (r.int(16)) {
    case 0:
      return "null";
    case 1:
      return r.pick(["true", "false"]);
    case 2:
      return r.pick(["-1", "-0", "0.5", "1e308", "-1e308", "1e-320", "4294967296"]);
    case 3:
      return "9007199254740993"; // beyond 2^53: parsed as a bigint
    case 4:
      return "1" + "0".repeat(r.range(20, 2000)); // a huge integer
    case 5:
      return JSON.stringify(r.text(r.range(0, 40)));
    case 6:
      return "[]";
    case 7:
      return "{}";
    case 8: {
      const depth = r.range(2, 3000);
      return "[".repeat(depth) + "]".repeat(depth);
    }
    case 9: {
      const depth = r.range(2, 3000);
      return '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
    }
    case 10:
      return JSON.stringify(Array.from({ length: r.range(0, 50) }, () => r.int(1000)));
    case 11:
      return JSON.stringify(r.pick(TYPES));
    case 12:
      return JSON.stringify({ op: r.text(5), versions: [1], service: "service1" });
    case 13:
      return JSON.stringify(Array.from({ length: r.range(1, 5) }, () => r.text(r.range(0, 10))));
    case 14:
      return r.int(1000).toString();
    default:
      return JSON.stringify(r.text(r.range(0, 300)));
  }
}

/** A valid message, most of them calls that succeed. */
function validMessage(r: Random, serial: number): Record<string, unknown> {
  const call = (rpc: string, args: unknown[], extra: Record<string, unknown> = {}) => ({
    type: "RPC-REQ",
    serial,
    value: {
      service: "service1",
      rpc,
      arguments: args,
      ...(r.chance(0.5) ? { client: "c1" } : {}),
      ...extra,
    },
  });
  switch (r.int(14)) {
    case 0:
      return call("echo", [r.text(r.range(0, 200))]);
    case 1:
      return call("add", [r.range(-9, 9), r.range(-9, 9)]);
    case 2:
      return call("add", [r.range(1, 9) / 4, 0.5]);
    case 3:
      return call("add", [Array.from({ length: r.range(0, 20) }, () => r.int(100))]);
    case 4:
      return call("divmod", [r.range(-99, 99), r.range(-3, 3)]);
    case 5:
      return call("rpc1", [r.range(0, 9), r.text(r.range(0, 9))], { client: "c1" });
    case 6:
      return call("rpc2", [[1, 2], ["a", "b"]], { "argument-types": ["List[int]", "List[str]"] });
    case 7:
      return call("sleep", [r.int(50) / 1000]);
    case 8:
      return { type: "RPC-CANCEL", serial: r.int(20), value: {} };
    case 9:
      return { type: "LIST", serial, value: {} };
    case 10:
      return { type: "ADMIN", serial, value: { op: r.pick(["health", "state"]) } };
    case 11:
      return { type: "HELLO", serial, value: { versions: [1], client: r.pick(["c1", "c2"]) } };
    case 12:
      return {
        type: "RPC-REQ",
        serial,
        value: { service: "service2", rpc: "rpc3", arguments: [1.5, [2.5]], client: "c2" },
      };
    default:
      return call("echo", ["x".repeat(r.range(1_000, STRING_LIMIT))]);
  }
}

/** Flips, overwrites, drops or inserts bytes of a valid frame. */
function mutate(r: Random, bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  switch (r.int(5)) {
    case 0: // a few bytes of the body changed
      for (let i = r.range(1, 4); i > 0; i--) {
        out[4 + r.int(out.length - 4)] = r.int(256);
      }
      return out;
    case 1: // one bit flipped anywhere, the length prefix included
      out[r.int(out.length)] ^= 1 << r.int(8);
      return out;
    case 2: { // a body shorter than its prefix says: the stream is out of step from here on
      return out.subarray(0, r.range(4, out.length - 1));
    }
    case 3: { // a body longer than its prefix says
      const extra = r.bytes(r.range(1, 20));
      const joined = new Uint8Array(out.length + extra.length);
      joined.set(out);
      joined.set(extra, out.length);
      return joined;
    }
    default: { // a slice of the body replaced by JSON punctuation, the prefix fixed up
      const body = new TextDecoder().decode(out.subarray(4));
      const at = r.int(body.length);
      const junk = r.pick(['"', "\\", "{", "}", "[", "]", ",", ":", "null", "\u0000", "\ud800"]);
      return frame(body.slice(0, at) + junk + body.slice(at + r.int(4)));
    }
  }
}

/** A JSON message with the wrong shape or types somewhere. */
function wrongShape(r: Random, serial: number): string {
  const odd = () => oddJson(r);
  const serialText = r.chance(0.5) ? String(serial) : odd();
  switch (r.int(8)) {
    case 0: // envelope fields odd
      return `{"type":${
        r.chance(0.5) ? odd() : JSON.stringify(r.pick(TYPES))
      },"serial":${serialText},"value":${odd()}}`;
    case 1: { // RPC-REQ with odd fields
      const field =
        () => (r.chance(0.4) ? odd() : JSON.stringify(r.pick(["service1", "echo", "add"])));
      return `{"type":"RPC-REQ","serial":${serialText},"value":{"service":${field()},"rpc":${field()},"arguments":${
        r.chance(0.5) ? odd() : `[${odd()}]`
      }${r.chance(0.3) ? `,"argument-types":${odd()}` : ""}${
        r.chance(0.3) ? `,"return-types":${odd()}` : ""
      }${r.chance(0.3) ? `,"client":${odd()}` : ""}${r.chance(0.2) ? `,"secret":${odd()}` : ""}}}`;
    }
    case 2: // arguments as an object
      return `{"type":"RPC-REQ","serial":${serial},"value":{"service":"service1","rpc":"echo","arguments":{"0":"a"}}}`;
    case 3: { // deeply nested arguments
      const depth = r.range(5, 5_000);
      return `{"type":"RPC-REQ","serial":${serial},"value":{"service":"service1","rpc":"add","arguments":[${
        "[".repeat(depth)
      }1${"]".repeat(depth)}]}}`;
    }
    case 4: // messages only a server sends
      return `{"type":${
        JSON.stringify(r.pick(["RPC-RES", "RPC-EX", "LIST-RES", "ADMIN-RES", "RPC-PART"]))
      },"serial":${serial},"value":${odd()}}`;
    case 5: // declared types that do not parse or do not match
      return JSON.stringify({
        type: "RPC-REQ",
        serial,
        value: {
          service: "service1",
          rpc: "add",
          arguments: [1, 2],
          "argument-types": r.pick([["List[".repeat(40) + "int" + "]".repeat(40)], ["int"], [
            "nope",
            "int",
          ], ["List[int"]]),
          ...(r.chance(0.5) ? { "return-types": [r.pick(["str", "int", "List[int]"])] } : {}),
        },
      });
    case 6: // too many arguments or list items
      return JSON.stringify({
        type: "RPC-REQ",
        serial,
        value: {
          service: "service1",
          rpc: "add",
          arguments: r.chance(0.5)
            ? [Array.from({ length: LIST_LIMIT + r.int(3) }, (_, i) => i)]
            : Array.from({ length: r.range(3, 500) }, (_, i) => i),
        },
      });
    default: // not an object at all
      return odd();
  }
}

/** A long string in one field, chosen so the frame is just within, at or just over the limit. */
function longField(r: Random, serial: number): Uint8Array {
  const field = r.pick([
    "service",
    "rpc",
    "client",
    "secret",
    "argument",
    "op",
    "type",
    "software",
  ]);
  const build = (text: string): Record<string, unknown> => {
    switch (field) {
      case "op":
        return { type: "ADMIN", serial, value: { op: text, token: text.slice(0, 10) } };
      case "type":
        return { type: text, serial, value: {} };
      case "software":
        return { type: "HELLO", serial, value: { versions: [1], software: text } };
      case "argument":
        return {
          type: "RPC-REQ",
          serial,
          value: { service: "service1", rpc: "echo", arguments: [text] },
        };
      default:
        return {
          type: "RPC-REQ",
          serial,
          value: { service: "service1", rpc: "echo", arguments: ["x"], [field]: text },
        };
    }
  };
  const overhead = JSON.stringify(build("")).length;
  // Within the string limit, or the frame limit; a few bytes under it, at it, or one over.
  const target = r.chance(0.3)
    ? STRING_LIMIT + r.range(-1, 1)
    : FRAME_LIMIT - overhead + r.pick([-100, -1, 0, 1]);
  return messageFrame(build("q".repeat(Math.max(0, target))));
}

/** A HELLO with odd versions, names or secrets. */
function oddHello(r: Random, serial: number): string {
  const versions = r.pick([
    "[]",
    "[0]",
    "[-1]",
    '["1"]',
    "[1.5]",
    "[1e308]",
    "[99]",
    "null",
    '"1"',
    "{}",
    "[[1]]",
    "[1,1,1,1]",
    `[${Array.from({ length: 2_000 }, (_, i) => i).join(",")}]`,
    "[9007199254740993]",
    oddJson(r),
  ]);
  const client = r.chance(0.5)
    ? `,"client":${r.pick(['"c1"', '"c3"', '"nobody"', "7", "null"])}`
    : "";
  const secret = r.chance(0.3) ? `,"secret":${oddJson(r)}` : "";
  return `{"type":"HELLO","serial":${serial},"value":{"versions":${versions}${client}${secret}}}`;
}

/** An ADMIN message with junk in it. */
function adminJunk(r: Random, serial: number): string {
  const op = r.pick(['"install"', '"state"', '"health"', '"drop"', '""', "7", "null", "[]"]);
  const extra = r.pick([
    "",
    `,"token":${oddJson(r)}`,
    `,"state":${oddJson(r)},"sources":${oddJson(r)}`,
    `,"token":"wrong","state":{"services":[]},"sources":{}`,
  ]);
  return r.chance(0.2)
    ? `{"type":"ADMIN","serial":${serial},"value":${oddJson(r)}}`
    : `{"type":"ADMIN","serial":${serial},"value":{"op":${op}${extra}}}`;
}

/** One thing to send: bytes, and whether to close the connection afterwards. */
interface Sending {
  bytes: Uint8Array;
  close: boolean;
}

function generate(r: Random, serial: number): Sending {
  const send = (bytes: Uint8Array, close = false) => ({ bytes, close });
  const text = (body: string) => send(frame(body));
  // Weighted so that most frames leave the connection open: a few kinds end it at once.
  const roll = r.int(100);
  if (roll < 4) return send(r.bytes(r.range(1, 300))); // random bytes, the length prefix too
  if (roll < 10) return send(frame(r.bytes(r.range(0, 300)))); // random bytes in a frame
  if (roll < 35) return send(messageFrame(validMessage(r, serial)));
  if (roll < 50) return send(mutate(r, messageFrame(validMessage(r, serial))));
  if (roll < 68) return text(wrongShape(r, serial));
  if (roll < 76) return send(longField(r, serial));
  if (roll < 79) { // a length just over the limit, with part of a body
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, FRAME_LIMIT + r.range(1, 100));
    return send(new Uint8Array([...header, ...r.bytes(r.int(50))]));
  }
  if (roll < 82) { // a frame cut short, then the connection closed
    const whole = messageFrame(validMessage(r, serial));
    return send(whole.subarray(0, r.range(1, whole.length - 1)), true);
  }
  if (roll < 90) return text(r.chance(0.5) ? oddHello(r, serial) : adminJunk(r, serial));
  // The same serial several times over, and maybe a cancel of it.
  const many = Array.from({ length: r.range(2, 6) }, () =>
    messageFrame({
      type: "RPC-REQ",
      serial,
      value: { service: "service1", rpc: "sleep", arguments: [r.int(30) / 1000] },
    }));
  if (r.chance(0.5)) many.push(messageFrame({ type: "RPC-CANCEL", serial, value: {} }));
  return send(new Uint8Array(many.flatMap((bytes) => [...bytes])));
}

// ---------------------------------------------------------------------------
// Connections that count what comes back

const REPLY_TYPES = new Set(["HELLO", "RPC-RES", "RPC-PART", "RPC-EX", "LIST-RES", "ADMIN-RES"]);

interface Tally {
  frames: number;
  bytes: number;
  connections: number;
  replies: Map<string, number>;
  exceptions: Map<string, number>;
  /** The first message of each exception kind. */
  samples: Map<string, string>;
  /** Replies that break the protocol: not JSON, unknown type, oversized. */
  violations: string[];
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** A raw connection whose replies are read, checked and counted as they come. */
class FuzzConnection {
  closed = false;
  readonly reading: Promise<void>;

  private constructor(readonly conn: Deno.TcpConn, tally: Tally) {
    this.reading = this.#read(tally);
  }

  static async open(port: number, tally: Tally): Promise<FuzzConnection> {
    tally.connections++;
    return new FuzzConnection(await Deno.connect({ hostname: "127.0.0.1", port }), tally);
  }

  async #read(tally: Tally): Promise<void> {
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const n = await this.conn.read(chunk);
        if (n === null) break;
        const joined = new Uint8Array(buffer.length + n);
        joined.set(buffer);
        joined.set(chunk.subarray(0, n), buffer.length);
        buffer = joined;
        while (buffer.length >= 4) {
          const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(0);
          if (length > FRAME_LIMIT) {
            tally.violations.push(`a reply frame of ${length} bytes`);
            return;
          }
          if (buffer.length < 4 + length) break;
          const body = buffer.subarray(4, 4 + length);
          buffer = buffer.slice(4 + length);
          let reply: { type?: unknown; serial?: unknown; value?: Record<string, unknown> };
          try {
            reply = JSON.parse(decoder.decode(body));
          } catch {
            tally.violations.push(
              `a reply that is not JSON: ${decoder.decode(body.subarray(0, 80))}`,
            );
            continue;
          }
          if (!REPLY_TYPES.has(String(reply.type)) || typeof reply.serial !== "number") {
            tally.violations.push(
              `a reply of unknown shape: ${JSON.stringify(reply).slice(0, 200)}`,
            );
            continue;
          }
          count(tally.replies, String(reply.type));
          if (reply.type === "RPC-EX") {
            const kind = String(reply.value?.["exception-type"]);
            count(tally.exceptions, kind);
            if (!tally.samples.has(kind)) {
              tally.samples.set(kind, String(reply.value?.["exception-message"]).slice(0, 120));
            }
          }
        }
      }
    } catch {
      // Reset by the server: it closed with our bytes unread.
    } finally {
      this.closed = true;
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** Closes at once: replies still on their way are lost, and the server's writes fail. */
  close(): void {
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Ends the connection as a client that wants its answers does: shuts our
   * sending side, reads what the server still answers until it closes its
   * side too (or {@linkcode DRAIN_MS} pass), then closes. A busy server
   * reads and answers a connection well after the frames were written; a
   * client that closed at once would never see those answers (its socket is
   * reset when they arrive).
   */
  async finish(): Promise<void> {
    if (!this.closed) await this.conn.closeWrite().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<void>((resolve) => timer = setTimeout(resolve, DRAIN_MS));
    await Promise.race([this.reading, waited]);
    clearTimeout(timer);
    this.close();
    await this.reading;
  }
}

/** Sends generated frames over one connection until `until`, reconnecting whenever it closes. */
async function fuzzer(port: number, r: Random, until: number, tally: Tally): Promise<void> {
  let connection: FuzzConnection | undefined;
  let serial = 1;
  // When the server cuts a connection depends on timing: choices made per connection draw
  // from their own generator, so that the frames sent are the same on every replay.
  const perConnection = new Random(r.int(2 ** 32));
  // Connections being finished: their answers are read while the next connection is fuzzed.
  const finishing = new Set<Promise<void>>();
  const retire = async (old: FuzzConnection) => {
    const finished: Promise<void> = old.finish().finally(() => finishing.delete(finished));
    finishing.add(finished);
    while (finishing.size > MAX_FINISHING) await Promise.race(finishing);
  };
  try {
    while (performance.now() < until) {
      if (!connection || connection.closed) {
        connection?.close();
        await connection?.reading;
        connection = await FuzzConnection.open(port, tally);
        // Most connections begin as a real client would, so that valid calls are served.
        if (perConnection.chance(0.8)) {
          const hello = { versions: [1], client: perConnection.pick(["c1", "c2"]) };
          await connection.write(messageFrame({ type: "HELLO", serial: 0, value: hello }))
            .catch(() => connection!.close());
        }
      }
      const { bytes, close } = generate(r, serial++);
      tally.frames++;
      tally.bytes += bytes.length;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let failed = false;
      try {
        // A write the server never takes in would block: give up on that connection.
        const stalled = new Promise<void>((resolve) => timer = setTimeout(resolve, 5_000));
        await Promise.race([connection.write(bytes), stalled.then(() => connection!.close())]);
      } catch {
        failed = true;
      } finally {
        clearTimeout(timer);
      }
      if (failed) {
        // The server cut the connection: what it answered before that is still to be read.
        await retire(connection);
        connection = undefined;
      } else if (close) {
        // A frame cut short, then the connection ended: gracefully (the server sees the stream
        // end inside a frame, and its answers are read) or at once (they have nowhere to go).
        if (perConnection.chance(0.5)) {
          await retire(connection);
          connection = undefined;
        } else {
          connection.close();
        }
      }
      // Now and then, give the server's replies a moment.
      if (serial % 64 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    connection?.close();
    await connection?.reading;
    await Promise.all(finishing);
  }
}

async function fuzz(port: number, seed: number, ms: number, tally: Tally): Promise<void> {
  const until = performance.now() + ms;
  await Promise.all(
    Array.from(
      { length: CONNECTIONS },
      (_, i) => fuzzer(port, new Random((seed + i * 0x9e3779b9) >>> 0), until, tally),
    ),
  );
}

/** The resident set size of a process, in bytes. */
async function rss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  assert.ok(match, `VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

const MiB = 1024 * 1024;

function table(map: Map<string, number>): string {
  return [...map].sort((a, b) => b[1] - a[1]).map(([key, n]) => `${key}: ${n}`).join(", ");
}

Deno.test({
  name: "fuzz: random and mutated frames leave the server serving, without leaks",
  ignore: Deno.build.os !== "linux", // reads /proc for the server's memory
  async fn() {
    console.log(`fuzz seed ${SEED} (replay: RPC_FUZZ_SEED=${SEED})`);
    const server: ServerProcess = await startServer({
      name: "s1",
      extraArgs: [
        "--max-frame-bytes",
        String(FRAME_LIMIT),
        "--max-string",
        String(STRING_LIMIT),
        "--max-list",
        String(LIST_LIMIT),
        "--call-timeout",
        "2s",
      ],
    });
    try {
      await replayCorpus(server);
      const tally: Tally = {
        frames: 0,
        bytes: 0,
        connections: 0,
        replies: new Map(),
        exceptions: new Map(),
        samples: new Map(),
        violations: [],
      };
      const died = async (error: unknown): Promise<never> => {
        // Give a dying server a moment to be seen as exited.
        await Promise.race([server.process.status, delay(500)]);
        throw new Error(
          `${error}; the server ${server.running() ? "runs" : "exited"}; it logged:\n${
            tail(server)
          }`,
          { cause: error },
        );
      };
      await fuzz(server.port, SEED ^ 0x5eed, WARM_UP_MS, tally).catch(died);
      const warm = await rss(server.process.pid);
      const warmFrames = tally.frames;
      await fuzz(server.port, SEED, FUZZ_MS, tally).catch(died);
      console.log(
        `sent ${tally.frames} frames (${warmFrames} in the warm-up), ${
          (tally.bytes / MiB).toFixed(1)
        } MiB, over ${tally.connections} connections`,
      );
      console.log(`replies: ${table(tally.replies)}`);
      console.log(`exceptions: ${table(tally.exceptions)}`);
      for (const [kind, message] of tally.samples) console.log(`  ${kind}: ${message}`);

      assert.ok(server.running(), `the server process is alive; it logged:\n${tail(server)}`);
      assert.deepEqual(tally.violations.slice(0, 10), [], "every reply is a well-formed message");
      assert.ok(tally.frames >= 1_000, `thousands of frames (${tally.frames})`);
      for (const kind of ["Malformed Frame", "Frame Too Large", "Invalid Arguments"]) {
        assert.ok(tally.exceptions.has(kind), `the fuzz provoked ${kind}`);
      }
      assert.ok(tally.replies.has("RPC-RES"), "valid calls among the fuzz were served");
      // Internal Error means a fault in rpc itself: none in the replies, none in the log.
      const internal = server.stderrText().split("\n").filter((line) =>
        / Internal Error: /.test(line)
      );
      assert.deepEqual(internal.slice(0, 5), [], "no Internal Error in the server's log");
      assert.ok(!tally.exceptions.has("Internal Error"), tally.samples.get("Internal Error"));

      // A fresh client is served, and once the fuzz connections are gone the server holds
      // only that one, with no call in flight.
      const client = await connect(server.address, { client: "c1", connectTimeoutMs: 5_000 });
      try {
        assert.deepEqual(await client.call("service1", "echo", ["after the fuzz"]), [
          "after the fuzz",
        ]);
        assert.deepEqual(await client.call("service1", "add", [[1, 2, 3]]), [6]);
        assert.deepEqual(await client.call("service1", "divmod", [17, 5]), [3, 2]);
        const health = await waitFor(
          async () => {
            const health = await client.admin({ op: "health" }) as Record<string, number>;
            return health.connections === 1 && health.callsInFlight === 0 && health;
          },
          "the server to hold only this connection and no call",
          10_000,
        ).catch(async (error) => {
          const health = await client.admin({ op: "health" });
          throw new Error(`${(error as Error).message}: ${JSON.stringify(health)}`);
        });
        console.log(
          `server: ${health.connectionsAccepted} connections accepted, ${health.callsServed} calls served, ${health.callsFailed} failed`,
        );
      } finally {
        client.close();
      }

      const after = await rss(server.process.pid);
      console.log(
        `server RSS after warm-up ${(warm / MiB).toFixed(1)} MiB, after fuzzing ${
          (after / MiB).toFixed(1)
        } MiB`,
      );
      assert.ok(
        after < 2 * warm + 64 * MiB,
        `RSS grew from ${(warm / MiB).toFixed(1)} to ${(after / MiB).toFixed(1)} MiB`,
      );
      assert.doesNotMatch(server.stderrText(), /Uncaught|panicked/);
    } finally {
      await server.stop();
    }
  },
});

/**
 * Frames the fuzz once found to break the server, each sent on a fresh
 * connection: the reply must be the given kind, and the server must live.
 */
const CORPUS: { what: string; body: string; kind: string; closes?: boolean }[] = [
  {
    what: "a service name too long for a frame's reply to quote (ended the server; now over " +
      "the 128-character limit on names)",
    body: JSON.stringify({
      type: "RPC-REQ",
      serial: 1,
      value: { service: "s".repeat(FRAME_LIMIT - 100), rpc: "r", client: "c1" },
    }),
    kind: "Malformed Frame",
  },
  {
    what: "an admin op too long for a frame's reply to quote (ended the server; now over the " +
      "128-character limit on names)",
    body: JSON.stringify({ type: "ADMIN", serial: 1, value: { op: "o".repeat(FRAME_LIMIT - 60) } }),
    kind: "Malformed Frame",
  },
  {
    what: "a message type that is a huge integer (Internal Error: BigInt)",
    body: '{"type":9007199254740993,"serial":1,"value":{}}',
    kind: "Malformed Frame",
  },
  {
    what: "a HELLO whose versions fill a frame (now over the limit of 16 versions)",
    body: `{"type":"HELLO","serial":0,"value":{"versions":[${
      "7,".repeat(FRAME_LIMIT / 2 - 40)
    }7]}}`,
    kind: "Malformed Frame",
  },
  {
    what: "a message type too long for the reply to quote",
    body: JSON.stringify({ type: "t".repeat(FRAME_LIMIT - 40), serial: 1 }),
    kind: "Malformed Frame",
  },
];

async function replayCorpus(server: ServerProcess): Promise<void> {
  for (const { what, body, kind, closes } of CORPUS) {
    const bytes = frame(body);
    assert.ok(bytes.length - 4 <= FRAME_LIMIT, `${what}: the request fits in a frame`);
    await using raw = await RawConnection.open(server.port);
    await raw.write(bytes);
    const reply = await raw.next();
    assert.equal(reply?.type, "RPC-EX", `${what}: ${JSON.stringify(reply)?.slice(0, 200)}`);
    assert.equal(
      reply?.value["exception-type"],
      kind,
      `${what}: ${JSON.stringify(reply).slice(0, 200)}`,
    );
    if (closes) {
      assert.equal(await raw.next(), null, `${what}: the connection is closed`);
    } else {
      // The connection goes on.
      await raw.send({ type: "ADMIN", serial: 2, value: { op: "health" } });
      assert.equal((await raw.next())?.type, "ADMIN-RES", what);
    }
  }
  assert.ok(server.running(), "the server lives through the corpus");
}

/** The last lines the server logged. */
function tail(server: ServerProcess): string {
  return server.stderrText().split("\n").slice(-30).join("\n");
}
