/**
 * Length-prefixed framing: every message is an unsigned 32-bit big-endian
 * length followed by that many bytes of body. The length is checked against a
 * limit as soon as its four bytes arrive, before any of the body is read.
 *
 * @module
 */

import { ErrorKind, RpcError } from "./errors.ts";

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
 * import { encodeFrame } from "./frame.ts";
 * const frame = encodeFrame(new Uint8Array([1, 2]));
 * console.assert(frame.join() === "0,0,0,2,1,2");
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
  return new RpcError(
    ErrorKind.FrameTooLarge,
    `Cannot accept frame: length ${length} exceeds limit ${limit}`,
  );
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
 * import { encodeFrame, FrameDecoder } from "./frame.ts";
 * const bodies: number[] = [];
 * const decoder = new FrameDecoder(1024, (body) => bodies.push(body.length));
 * const frame = encodeFrame(new Uint8Array(3));
 * decoder.push(frame.subarray(0, 2));
 * decoder.push(frame.subarray(2));
 * console.assert(bodies.join() === "3");
 * ```
 */
export class FrameDecoder {
  #header = new Uint8Array(HEADER_BYTES);
  #headerFill = 0;
  /** The frame being assembled: a view of `#assembly`, or undefined between frames. */
  #body: Uint8Array | undefined;
  #bodyFill = 0;
  /** Kept between split frames, so assembling one allocates only when it is the largest yet. */
  #assembly: Uint8Array | undefined;

  constructor(
    readonly maxFrameBytes: number,
    readonly onFrame: (body: Uint8Array) => void,
  ) {}

  /** Whether a frame is partly received. */
  get partial(): boolean {
    return this.#headerFill > 0 || this.#body !== undefined;
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
      if (this.#body) {
        const take = Math.min(end - offset, this.#body.length - this.#bodyFill);
        this.#body.set(chunk.subarray(offset, offset + take), this.#bodyFill);
        this.#bodyFill += take;
        offset += take;
        if (this.#bodyFill === this.#body.length) {
          const body = this.#body;
          this.#body = undefined;
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
        if (!this.#assembly || this.#assembly.length < length) {
          this.#assembly = new Uint8Array(length);
        }
        this.#body = this.#assembly.subarray(0, length);
        this.#bodyFill = 0;
      }
    }
  }
}
