import assert from "node:assert/strict";
import { sandboxCodec } from "./sandbox_codec.ts";

const codec = sandboxCodec();
const roundTrip = (value: unknown) => codec.decode(codec.encode(value));

Deno.test("sandboxCodec carries plain values as plain JSON", () => {
  const value = { id: 1, ok: true, value: ["a", 2.5, -3, true, null, [[]], { k: "v" }] };
  assert.equal(codec.encode(value), JSON.stringify(value));
  assert.deepEqual(roundTrip(value), value);
});

Deno.test("sandboxCodec carries what JSON cannot: bigint, NaN, infinities, -0, undefined", () => {
  const value = [12345678901234567890n, -5n, NaN, Infinity, -Infinity, -0, undefined, 0];
  const back = roundTrip(value) as unknown[];
  assert.equal(back.length, value.length);
  assert.equal(back[0], 12345678901234567890n);
  assert.equal(back[1], -5n);
  assert.ok(Number.isNaN(back[2]));
  assert.equal(back[3], Infinity);
  assert.equal(back[4], -Infinity);
  assert.ok(Object.is(back[5], -0));
  assert.equal(back[6], undefined);
  assert.ok(Object.is(back[7], 0));
  assert.deepEqual(roundTrip({ value: undefined }), {});
});

Deno.test("sandboxCodec reduces objects that are not plain to {}, and refuses functions", () => {
  // A Date would otherwise arrive as a string and pass for a `str`.
  assert.deepEqual(roundTrip([new Date(0), new Map([[1, 2]]), new Uint8Array(2)]), [{}, {}, {}]);
  assert.throws(() => codec.encode({ value: () => 1 }), /a function cannot be sent/);
  assert.throws(() => codec.encode([Symbol("s")]), /a symbol cannot be sent/);
});

Deno.test("sandboxCodec keeps strings exactly, including NUL and backslashes", () => {
  const value = ["\u0000", "\\u0000", "a\u0000b", "\ud800", "日本"];
  assert.deepEqual(roundTrip(value), value);
});

Deno.test("sandboxCodec does not depend on JSON as a procedure may leave it", () => {
  const own = sandboxCodec();
  const original = JSON.stringify;
  try {
    JSON.stringify = () => "tampered";
    assert.equal(own.encode([1]), "[1]");
  } finally {
    JSON.stringify = original;
  }
});

Deno.test("sandboxCodec.encodeBatches: one array while it fits, else arrays of about the size, in order", () => {
  const items = Array.from({ length: 10 }, (_, i) => ({ id: i, value: "x".repeat(100) }));
  assert.deepEqual(codec.encodeBatches(items, 1_000_000), [JSON.stringify(items)]);
  const split = codec.encodeBatches(items, 300);
  assert.ok(split.length > 1);
  for (const text of split) assert.ok(text.length <= 300 || JSON.parse(text).length === 1, text);
  assert.deepEqual(split.flatMap((text) => codec.decode(text) as unknown[]), items);
  // One item alone longer than the limit is its own array.
  const big = [{ id: 1, value: "y".repeat(500) }, { id: 2 }];
  assert.deepEqual(codec.encodeBatches(big, 100).map((text) => JSON.parse(text).length), [1, 1]);
  assert.deepEqual(codec.encodeBatches([], 100), ["[]"]);
  // Tagged values survive the split.
  const tagged = [{ id: 1, value: 1n }, { id: 2, value: NaN }, { id: 3, value: "z".repeat(200) }];
  const back = codec.encodeBatches(tagged, 150).flatMap((text) => codec.decode(text) as unknown[]);
  assert.equal((back[0] as { value: bigint }).value, 1n);
  assert.ok(Number.isNaN((back[1] as { value: number }).value));
});
