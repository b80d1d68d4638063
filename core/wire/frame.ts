/**
 * Length-prefixed framing: every message is an unsigned 32-bit big-endian
 * length followed by that many bytes of body. The length is checked against a
 * limit as soon as its four bytes arrive, before any of the body is read.
 *
 * @module
 */

import { ErrorKind, ErrorReason, RpcError } from "../errors.ts";

/** Bytes in the length prefix. */
export const HEADER_BYTES = 4;

/** Default largest body a peer may send: 8 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** Writes the 4-byte length prefix for a body of `length` bytes at `offset`. */
export function writeHeader(target: Uint8Array, offset: number, length: number): void {
  target[offset] = length >>> 24;
  target[offset + 1] = (length >>> 16) & 0xff;
  target[offset + 2] = (length >>> 8) & 0xff;
  target[offset + 3] = length & 0xff;
}

/** Reads the 4-byte length prefix at `offset`. */
export function readHeader(source: Uint8Array, offset: number): number {
  return (
    source[offset] * 0x1000000 +
    ((source[offset + 1] << 16) | (source[offset + 2] << 8) | source[offset + 3])
  );
}

/**
 * Encodes one frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame } from "./frame.ts";
 * const frame = encodeFrame(new Uint8Array([1, 2]));
 * assert.deepEqual([...frame], [0, 0, 0, 2, 1, 2]);
 * ```
 */
export function encodeFrame(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + body.length);
  writeHeader(frame, 0, body.length);
  frame.set(body, HEADER_BYTES);
  return frame;
}

/**
 * The largest assembly buffer a {@linkcode FrameDecoder} keeps between
 * frames: larger frames get a buffer of their own, dropped after use.
 */
export const ASSEMBLY_RETAINED_BYTES = 1024 * 1024;

/** Builds the error for a frame whose declared length is over the limit. */
export function frameTooLarge(length: number, limit: number): RpcError {
  if (looksLikeTls(length)) {
    return new RpcError(
      ErrorKind.FrameTooLarge,
      `Cannot accept frame: the peer speaks TLS (a TLS record where a frame length belongs)`,
      { reason: ErrorReason.PeerSpeaksTls },
    );
  }
  return new RpcError(
    ErrorKind.FrameTooLarge,
    `Cannot accept frame: length ${length} exceeds limit ${limit}`,
  );
}

/**
 * Whether four bytes read as a frame length are the start of a TLS record
 * (content type 20-23, then major version 3): a TLS peer on a plain
 * connection, or a plain peer on a TLS server.
 */
export function looksLikeTls(length: number): boolean {
  const type = length >>> 24;
  return type >= 0x14 && type <= 0x17 && ((length >>> 16) & 0xff) === 0x03;
}

/**
 * Splits a byte stream into frame bodies. Feed it chunks as they are read;
 * it calls `onFrame` once per complete body, in order.
 *
 * Every body is valid only until `onFrame` returns: bodies that lie whole
 * inside a chunk are views of that chunk, with no copy; a frame split across
 * reads is assembled in a buffer the decoder keeps and reuses (up to
 * {@linkcode ASSEMBLY_RETAINED_BYTES}), so a stream of large frames does not
 * allocate one per frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, FrameDecoder } from "./frame.ts";
 * const bodies: number[] = [];
 * const decoder = new FrameDecoder(1024, (body) => bodies.push(body.length));
 * const frame = encodeFrame(new Uint8Array(3));
 * decoder.push(frame.subarray(0, 2));
 * assert.deepEqual(bodies, []); // half a header: nothing yet
 * decoder.push(frame.subarray(2));
 * assert.deepEqual(bodies, [3]);
 * ```
 */
export class FrameDecoder {
  #header = new Uint8Array(HEADER_BYTES);
  #headerFill = 0;
  /** Declared length of the frame being assembled, or -1 between frames. */
  #bodyLength = -1;
  #bodyFill = 0;
  /** Kept between split frames, so assembling one allocates only when it is the largest yet. */
  #assembly: Uint8Array | undefined;

  constructor(
    readonly maxFrameBytes: number,
    readonly onFrame: (body: Uint8Array) => void,
  ) {}

  /** Whether a frame is partly received. */
  get partial(): boolean {
    return this.#headerFill > 0 || this.#bodyLength >= 0;
  }

  /**
   * Makes room for `needed` bytes of the frame being assembled. The buffer
   * grows with what has arrived (doubling, up to the declared length), not
   * with what the header declares, so a peer that announces a large frame and
   * sends little of it costs little memory.
   */
  #reserve(needed: number): Uint8Array {
    const current = this.#assembly;
    if (current && current.length >= needed) return current;
    const size = Math.min(
      this.#bodyLength,
      Math.max(needed, (current?.length ?? 0) * 2, 64 * 1024),
    );
    const grown = new Uint8Array(size);
    if (current && this.#bodyFill > 0) grown.set(current.subarray(0, this.#bodyFill));
    this.#assembly = grown;
    return grown;
  }

  /**
   * Consumes a chunk. Throws {@linkcode RpcError} `Frame Too Large` when a
   * length prefix exceeds the limit; the stream cannot be resynchronized after
   * that, so the caller should close it.
   */
  push(chunk: Uint8Array): void {
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.#bodyLength >= 0) {
        const take = Math.min(end - offset, this.#bodyLength - this.#bodyFill);
        const assembly = this.#reserve(this.#bodyFill + take);
        assembly.set(chunk.subarray(offset, offset + take), this.#bodyFill);
        this.#bodyFill += take;
        offset += take;
        if (this.#bodyFill === this.#bodyLength) {
          const body = assembly.subarray(0, this.#bodyLength);
          this.#bodyLength = -1;
          this.#bodyFill = 0;
          this.onFrame(body);
          if (this.#assembly!.length > ASSEMBLY_RETAINED_BYTES) this.#assembly = undefined;
        }
        continue;
      }
      let length: number;
      if (this.#headerFill === 0 && end - offset >= HEADER_BYTES) {
        length = readHeader(chunk, offset);
        offset += HEADER_BYTES;
      } else {
        while (this.#headerFill < HEADER_BYTES && offset < end) {
          this.#header[this.#headerFill++] = chunk[offset++];
        }
        if (this.#headerFill < HEADER_BYTES) return;
        this.#headerFill = 0;
        length = readHeader(this.#header, 0);
      }
      if (length > this.maxFrameBytes) throw frameTooLarge(length, this.maxFrameBytes);
      if (end - offset >= length) {
        const body = chunk.subarray(offset, offset + length);
        offset += length;
        this.onFrame(body);
      } else {
        this.#bodyLength = length;
        this.#bodyFill = 0;
      }
    }
  }
}
