/**
 * Framing: how fast {@linkcode FrameDecoder} turns read chunks into bodies,
 * when many small frames arrive in one read (coalesced), when every frame is
 * split across reads, and for a 64 KiB frame split into 64 KiB reads.
 *
 *     deno bench core/wire/frame_bench.ts
 *
 * @module
 */

import { encodeFrame, FrameDecoder } from "./frame.ts";

const encoder = new TextEncoder();
const request = encoder.encode(
  JSON.stringify({
    type: "RPC-REQ",
    serial: 12345,
    value: {
      service: "bench",
      rpc: "echo",
      arguments: ["x".repeat(32)],
      "argument-types": ["str"],
    },
  }),
);

/** `count` frames of `body`, back to back. */
function stream(body: Uint8Array, count: number): Uint8Array {
  const frame = encodeFrame(body);
  const out = new Uint8Array(frame.length * count);
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length);
  return out;
}

const coalesced = stream(request, 64);
let frames = 0;
const decoder = new FrameDecoder(8 * 1024 * 1024, () => frames++);

Deno.bench("FrameDecoder: 64 small frames in one chunk", { group: "small", baseline: true }, () => {
  decoder.push(coalesced);
});

// The same 64 frames, each cut in two, as a slow network or a small read buffer delivers them.
const frameLength = coalesced.length / 64;
const halves: Uint8Array[] = [];
for (let i = 0; i < 64; i++) {
  const start = i * frameLength;
  halves.push(
    coalesced.subarray(start, start + 7),
    coalesced.subarray(start + 7, start + frameLength),
  );
}
Deno.bench(
  "FrameDecoder: 64 small frames, each split across two chunks",
  { group: "small" },
  () => {
    for (const chunk of halves) decoder.push(chunk);
  },
);

// One 64 KiB frame read through a 64 KiB buffer: assembled from two chunks.
const big = stream(new Uint8Array(64 * 1024).fill(0x78), 1);
const bigChunks = [big.subarray(0, 64 * 1024), big.subarray(64 * 1024)];
Deno.bench("FrameDecoder: one 64 KiB frame over two 64 KiB reads", { group: "large" }, () => {
  for (const chunk of bigChunks) decoder.push(chunk);
});

const bigWhole = stream(new Uint8Array(64 * 1024).fill(0x78), 1);
Deno.bench("FrameDecoder: one 64 KiB frame in one read", { group: "large", baseline: true }, () => {
  decoder.push(bigWhole);
});
