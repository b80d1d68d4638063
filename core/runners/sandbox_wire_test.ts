import assert from "node:assert/strict";
import { FrameDecoder } from "../wire/frame.ts";
import { FrameWriter, MAX_WRITE_BUFFER_BYTES } from "./sandbox_wire.ts";

const encoder = new TextEncoder();

/** A connection that keeps what is written to it, `chunk` bytes a write at most. */
function collector(chunk = Infinity) {
  const written: Uint8Array[] = [];
  const conn = {
    write(data: Uint8Array): Promise<number> {
      const count = Math.min(chunk, data.length);
      written.push(data.slice(0, count));
      // A write completes later, as a socket's does, so frames pile up meanwhile.
      return new Promise((resolve) => setTimeout(() => resolve(count), 0));
    },
  } as unknown as Deno.Conn;
  return { conn, written };
}

/** Waits until the writer has written `bytes` in all. */
async function writtenBytes(written: Uint8Array[], bytes: number): Promise<Uint8Array> {
  for (let i = 0; i < 10_000; i++) {
    const total = written.reduce((sum, part) => sum + part.length, 0);
    if (total >= bytes) break;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const out = new Uint8Array(written.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of written) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const TEXTS = [
  "",
  "x",
  "x".repeat(65536),
  "é",
  `${"a".repeat(1000)}é${"b".repeat(1000)}`,
  `ü${"c".repeat(5000)}`,
  `${"d".repeat(4999)}✓`,
  "😀".repeat(3),
  `${"e".repeat(7)}😀`,
  `lone \ud800 surrogate \udfff`,
  "ünïcødé ✓ 日本語 😀".repeat(10_000),
  "y".repeat(MAX_WRITE_BUFFER_BYTES * 2),
];

Deno.test("FrameWriter: frames of ASCII, other characters anywhere and surrogates, in order, byte for byte", async () => {
  for (const chunk of [Infinity, 65_521]) {
    const { conn, written } = collector(chunk);
    const writer = new FrameWriter(conn, (error) => {
      throw error;
    });
    writer.sendRaw(encoder.encode("token"));
    // Some while a write is under way, so that both buffers are used and grown.
    for (const text of TEXTS.slice(0, 4)) writer.sendText(text);
    await new Promise((resolve) => setTimeout(resolve, 0));
    for (const text of TEXTS.slice(4)) writer.sendText(text);
    const expected = TEXTS.map((text) => encoder.encode(text));
    const total = 5 + expected.reduce((sum, body) => sum + 4 + body.length, 0);
    const all = await writtenBytes(written, total);
    assert.equal(all.length, total);
    assert.equal(new TextDecoder().decode(all.subarray(0, 5)), "token");
    const bodies: Uint8Array[] = [];
    new FrameDecoder(1 << 30, (body) => bodies.push(body.slice())).push(all.subarray(5));
    assert.equal(bodies.length, expected.length);
    for (let i = 0; i < expected.length; i++) assert.deepEqual(bodies[i], expected[i], `text ${i}`);
  }
});

Deno.test("FrameWriter: a failed write is reported once and later frames are dropped", async () => {
  let reported = 0;
  const conn = {
    write: () => Promise.reject(new Error("Broken pipe")),
  } as unknown as Deno.Conn;
  const writer = new FrameWriter(conn, () => reported++);
  writer.sendText("one");
  await new Promise((resolve) => setTimeout(resolve, 0));
  writer.sendText("two");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(reported, 1);
});
