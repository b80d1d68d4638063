import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FrameDecoder,
  frameTooLarge,
  HEADER_BYTES,
  readHeader,
  writeHeader,
} from "./frame.ts";

/** A decoder that copies every body it sees, since bodies are valid only during the callback. */
function collector(maxFrameBytes = 1024) {
  const bodies: Uint8Array[] = [];
  const decoder = new FrameDecoder(maxFrameBytes, (body) => bodies.push(body.slice()));
  return { bodies, decoder };
}

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

/** A body of `length` bytes with a recognisable pattern. */
function patterned(length: number, seed = 0): Uint8Array {
  const body = new Uint8Array(length);
  for (let i = 0; i < length; i++) body[i] = (i * 31 + seed) & 0xff;
  return body;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function isFrameTooLarge(error: unknown): boolean {
  return error instanceof RpcError && error.kind === ErrorKind.FrameTooLarge;
}

Deno.test("HEADER_BYTES is four and the default limit is 8 MiB", () => {
  assert.equal(HEADER_BYTES, 4);
  assert.equal(DEFAULT_MAX_FRAME_BYTES, 8 * 1024 * 1024);
});

Deno.test("encodeFrame() writes a big-endian length prefix followed by the body", () => {
  assert.deepEqual([...encodeFrame(bytes(1, 2))], [0, 0, 0, 2, 1, 2]);
  assert.deepEqual([...encodeFrame(new Uint8Array(0))], [0, 0, 0, 0]);
  const frame = encodeFrame(new Uint8Array(0x0102));
  assert.deepEqual([...frame.subarray(0, 4)], [0, 0, 1, 2]);
  assert.equal(frame.length, 4 + 0x0102);
});

Deno.test("writeHeader() and readHeader() round-trip lengths across the whole 32-bit range", () => {
  const lengths = [0, 1, 255, 256, 65535, 65536, 0x00ffffff, 0x01000000, 0x7fffffff, 0x80000000];
  lengths.push(0xfffffffe, 0xffffffff);
  for (const length of lengths) {
    const target = new Uint8Array(10);
    writeHeader(target, 3, length);
    assert.equal(readHeader(target, 3), length, `length ${length}`);
  }
});

Deno.test("writeHeader() writes only its four bytes at the offset", () => {
  const target = new Uint8Array(8).fill(0xaa);
  writeHeader(target, 2, 0x01020304);
  assert.deepEqual([...target], [0xaa, 0xaa, 1, 2, 3, 4, 0xaa, 0xaa]);
});

Deno.test("readHeader() never returns a negative length when the top bit is set", () => {
  assert.equal(readHeader(bytes(0xff, 0xff, 0xff, 0xff), 0), 4294967295);
  assert.equal(readHeader(bytes(0x80, 0, 0, 0), 0), 2147483648);
});

Deno.test("encodeFrame() output decodes back to the same body", () => {
  const body = patterned(300);
  const { bodies, decoder } = collector();
  decoder.push(encodeFrame(body));
  assert.equal(bodies.length, 1);
  assert.deepEqual(bodies[0], body);
  assert.equal(decoder.partial, false);
});

Deno.test("frameTooLarge() builds a Frame Too Large error quoting length and limit", () => {
  const error = frameTooLarge(9000000, 8388608);
  assert.ok(error instanceof RpcError);
  assert.equal(error.kind, ErrorKind.FrameTooLarge);
  assert.match(error.message, /9000000/);
  assert.match(error.message, /8388608/);
});

Deno.test("FrameDecoder assembles a frame whose header arrives one byte at a time", () => {
  const body = patterned(10);
  const frame = encodeFrame(body);
  const { bodies, decoder } = collector();
  for (let i = 0; i < frame.length; i++) {
    assert.equal(bodies.length, 0, `no frame before byte ${i}`);
    decoder.push(frame.subarray(i, i + 1));
  }
  assert.equal(bodies.length, 1);
  assert.deepEqual(bodies[0], body);
  assert.equal(decoder.partial, false);
});

Deno.test("FrameDecoder assembles a frame from every possible two-chunk split", () => {
  const body = patterned(12, 7);
  const frame = encodeFrame(body);
  for (let cut = 0; cut <= frame.length; cut++) {
    const { bodies, decoder } = collector();
    decoder.push(frame.subarray(0, cut));
    decoder.push(frame.subarray(cut));
    assert.equal(bodies.length, 1, `cut at ${cut}`);
    assert.deepEqual(bodies[0], body, `cut at ${cut}`);
    assert.equal(decoder.partial, false);
  }
});

Deno.test("FrameDecoder reuses its assembly buffer for split frames of any size", () => {
  const { bodies, decoder } = collector(4096);
  const sizes = [300, 100, 2000, 5, 300];
  for (const [i, size] of sizes.entries()) {
    const frame = encodeFrame(patterned(size, i));
    decoder.push(frame.subarray(0, 6));
    decoder.push(frame.subarray(6));
  }
  assert.deepEqual(bodies, sizes.map((size, i) => patterned(size, i)));
});

Deno.test("FrameDecoder assembles a body split across many chunks", () => {
  const body = patterned(100, 3);
  const frame = encodeFrame(body);
  const { bodies, decoder } = collector();
  decoder.push(frame.subarray(0, 4));
  for (let offset = 4; offset < frame.length; offset += 7) {
    assert.equal(bodies.length, 0);
    decoder.push(frame.subarray(offset, Math.min(offset + 7, frame.length)));
  }
  assert.equal(bodies.length, 1);
  assert.deepEqual(bodies[0], body);
});

Deno.test("FrameDecoder emits every frame of a chunk holding several, in order", () => {
  const first = patterned(5, 1);
  const second = new Uint8Array(0);
  const third = patterned(17, 2);
  const { bodies, decoder } = collector();
  decoder.push(concat(encodeFrame(first), encodeFrame(second), encodeFrame(third)));
  assert.equal(bodies.length, 3);
  assert.deepEqual(bodies[0], first);
  assert.deepEqual(bodies[1], second);
  assert.deepEqual(bodies[2], third);
  assert.equal(decoder.partial, false);
});

Deno.test("FrameDecoder handles a chunk that ends one frame and starts the next", () => {
  const first = patterned(6, 1);
  const second = patterned(9, 2);
  const stream = concat(encodeFrame(first), encodeFrame(second));
  const { bodies, decoder } = collector();
  // Cut inside the second frame's header.
  decoder.push(stream.subarray(0, 4 + 6 + 2));
  assert.equal(bodies.length, 1);
  assert.equal(decoder.partial, true);
  decoder.push(stream.subarray(4 + 6 + 2));
  assert.equal(bodies.length, 2);
  assert.deepEqual(bodies[0], first);
  assert.deepEqual(bodies[1], second);
});

Deno.test("FrameDecoder decodes an arbitrary stream the same whatever the chunk size", () => {
  const originals = [0, 1, 2, 3, 4, 5, 63, 64, 65, 200].map((length, i) => patterned(length, i));
  const stream = concat(...originals.map(encodeFrame));
  for (const size of [1, 2, 3, 4, 5, 7, 16, 64, 1000]) {
    const { bodies, decoder } = collector();
    for (let offset = 0; offset < stream.length; offset += size) {
      decoder.push(stream.subarray(offset, offset + size));
    }
    assert.equal(bodies.length, originals.length, `chunk size ${size}`);
    bodies.forEach((body, i) => assert.deepEqual(body, originals[i], `chunk ${size} frame ${i}`));
    assert.equal(decoder.partial, false);
  }
});

Deno.test("FrameDecoder emits a zero-length body as an empty frame", () => {
  const { bodies, decoder } = collector();
  decoder.push(bytes(0, 0, 0, 0));
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].length, 0);
  assert.equal(decoder.partial, false);
});

Deno.test("FrameDecoder emits a zero-length body whose header was split", () => {
  const { bodies, decoder } = collector();
  decoder.push(bytes(0, 0));
  assert.equal(decoder.partial, true);
  decoder.push(bytes(0, 0));
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].length, 0);
  assert.equal(decoder.partial, false);
});

Deno.test("FrameDecoder ignores an empty chunk", () => {
  const { bodies, decoder } = collector();
  decoder.push(new Uint8Array(0));
  assert.equal(bodies.length, 0);
  assert.equal(decoder.partial, false);
  decoder.push(bytes(0, 0, 0, 1));
  decoder.push(new Uint8Array(0));
  assert.equal(decoder.partial, true);
  decoder.push(bytes(9));
  assert.deepEqual(bodies.map((body) => [...body]), [[9]]);
});

Deno.test("FrameDecoder accepts a frame exactly at the limit", () => {
  const limit = 32;
  const body = patterned(limit);
  const { bodies, decoder } = collector(limit);
  decoder.push(encodeFrame(body));
  assert.equal(bodies.length, 1);
  assert.deepEqual(bodies[0], body);
});

Deno.test("FrameDecoder accepts a split frame exactly at the limit", () => {
  const limit = 32;
  const body = patterned(limit);
  const frame = encodeFrame(body);
  const { bodies, decoder } = collector(limit);
  decoder.push(frame.subarray(0, 2));
  decoder.push(frame.subarray(2, 20));
  decoder.push(frame.subarray(20));
  assert.deepEqual(bodies, [body]);
});

Deno.test("FrameDecoder rejects a length over the limit with Frame Too Large", () => {
  const { bodies, decoder } = collector(32);
  assert.throws(() => decoder.push(encodeFrame(patterned(33))), (error: unknown) => {
    assert.ok(isFrameTooLarge(error));
    assert.match((error as Error).message, /33/);
    assert.match((error as Error).message, /32/);
    return true;
  });
  assert.equal(bodies.length, 0);
});

Deno.test("FrameDecoder rejects a length over the limit before reading the body", () => {
  const { bodies, decoder } = collector(32);
  const header = new Uint8Array(4);
  writeHeader(header, 0, 33);
  // Only the four header bytes: no body byte has arrived yet.
  assert.throws(() => decoder.push(header), isFrameTooLarge);
  assert.equal(bodies.length, 0);
});

Deno.test("FrameDecoder rejects an over-limit length as soon as a split header completes", () => {
  const { decoder } = collector(1024);
  const header = new Uint8Array(4);
  writeHeader(header, 0, 0xffffffff);
  decoder.push(header.subarray(0, 1));
  decoder.push(header.subarray(1, 2));
  decoder.push(header.subarray(2, 3));
  assert.throws(() => decoder.push(header.subarray(3)), (error: unknown) => {
    assert.ok(isFrameTooLarge(error));
    assert.match((error as Error).message, /4294967295/);
    return true;
  });
});

Deno.test("FrameDecoder emits the frames before an over-limit one, then throws", () => {
  const { bodies, decoder } = collector(8);
  const good = patterned(8);
  const header = new Uint8Array(4);
  writeHeader(header, 0, 9);
  assert.throws(() => decoder.push(concat(encodeFrame(good), header)), isFrameTooLarge);
  assert.deepEqual(bodies, [good]);
});

Deno.test("FrameDecoder does not allocate a huge buffer for an over-limit length", () => {
  // A 4 GiB declared length must be refused, not allocated.
  const { decoder } = collector(DEFAULT_MAX_FRAME_BYTES);
  assert.throws(() => decoder.push(bytes(0xff, 0xff, 0xff, 0xff, 1, 2, 3)), isFrameTooLarge);
});

Deno.test("FrameDecoder reports partial while a header or a body is incomplete", () => {
  const frame = encodeFrame(patterned(5));
  const { bodies, decoder } = collector();
  assert.equal(decoder.partial, false);
  decoder.push(frame.subarray(0, 1));
  assert.equal(decoder.partial, true, "inside the header");
  decoder.push(frame.subarray(1, 4));
  assert.equal(decoder.partial, true, "header done, body not started");
  decoder.push(frame.subarray(4, 6));
  assert.equal(decoder.partial, true, "inside the body");
  decoder.push(frame.subarray(6));
  assert.equal(decoder.partial, false, "frame complete");
  assert.equal(bodies.length, 1);
});

Deno.test("FrameDecoder assembles frames much larger than the read chunk", () => {
  const body = patterned(256 * 1024 + 13, 5);
  const frame = encodeFrame(body);
  const chunk = 4096;
  const { bodies, decoder } = collector(1024 * 1024);
  for (let offset = 0; offset < frame.length; offset += chunk) {
    decoder.push(frame.subarray(offset, offset + chunk));
  }
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].length, body.length);
  assert.deepEqual(bodies[0], body);
});

Deno.test("FrameDecoder gives an assembled body a buffer of exactly its size", () => {
  const frame = encodeFrame(patterned(50));
  const seen: Uint8Array[] = [];
  const decoder = new FrameDecoder(1024, (body) => seen.push(body));
  decoder.push(frame.subarray(0, 10));
  decoder.push(frame.subarray(10));
  assert.equal(seen.length, 1);
  assert.equal(seen[0].byteLength, 50);
  assert.equal(seen[0].buffer.byteLength, 50);
});

Deno.test("FrameDecoder passes a body lying whole in a chunk as a view without copying", () => {
  const frame = encodeFrame(patterned(20));
  const seen: Uint8Array[] = [];
  const decoder = new FrameDecoder(1024, (body) => seen.push(body));
  decoder.push(frame);
  assert.equal(seen[0].buffer, frame.buffer);
  assert.equal(seen[0].byteOffset, 4);
});

Deno.test("FrameDecoder keeps decoding after a large assembled frame is followed by small ones", () => {
  const big = patterned(5000, 1);
  const small = patterned(3, 2);
  const stream = concat(encodeFrame(big), encodeFrame(small), encodeFrame(small));
  const { bodies, decoder } = collector(8192);
  for (let offset = 0; offset < stream.length; offset += 1000) {
    decoder.push(stream.subarray(offset, offset + 1000));
  }
  assert.deepEqual(bodies, [big, small, small]);
});
