/**
 * Frames on the connection between the server and a sandbox process: a
 * writer that encodes text straight into its write buffer and sends what
 * piled up in one write, in order.
 *
 * The writer keeps two buffers and swaps them: one is written to the
 * connection while the other takes new frames. A fresh `Uint8Array` per frame
 * costs more than everything else a call does once arguments reach a few
 * kilobytes (on this kind of machine a 64 KiB allocation takes about 150 µs,
 * 20 times the JSON encoding of the same bytes: the kernel maps and zeroes
 * new pages each time), so the buffers are reused. They grow as frames need,
 * up to {@linkcode MAX_WRITE_BUFFER_BYTES} each; frames that do not fit wait
 * as text (on the JS heap, where strings cost little) until a buffer is free.
 * A frame larger than that alone gets a buffer of its own, dropped after use.
 *
 * @module
 */

import { HEADER_BYTES, writeHeader } from "../wire/frame.ts";

const encoder = new TextEncoder();

/** Starting size of each write buffer. */
const INITIAL_WRITE_BYTES = 64 * 1024;

/** The most each of the two write buffers grows to (a single larger frame excepted). */
export const MAX_WRITE_BUFFER_BYTES = 512 * 1024;

/**
 * The most characters of JSON text a batch frame is made of before it is
 * split (one request or reply alone may be longer). Small enough that a
 * batch's text stays an ordinary V8 string (strings of more than 128 KiB are
 * each a fresh mapping, new pages at every batch) and that a frame mostly
 * arrives in one 64 KiB read: 64 KiB echo calls at C=64 took 6-8 page faults
 * each in the server with 48 KiB batches, 16-18 with 256 KiB.
 */
export const MAX_BATCH_CHARS = 48 * 1024;

/**
 * Bytes each end of a sandbox connection reads at once. Larger than a batch
 * frame, so that a frame usually arrives whole (handed on as a view of the
 * read buffer, not assembled) and one read takes several frames under load.
 */
export const READ_BUFFER_BYTES = 256 * 1024;

/** Writes frames to a connection in order; a failed write is reported once. */
export class FrameWriter {
  #out = new Uint8Array(INITIAL_WRITE_BYTES);
  #spare = new Uint8Array(INITIAL_WRITE_BYTES);
  #length = 0;
  /** Frames waiting for room, as text, oldest first from `#head`. */
  #waiting: string[] = [];
  #head = 0;
  #writing = false;
  #failed = false;

  constructor(readonly conn: Deno.Conn, readonly onError: (error: unknown) => void) {}

  /** Queues one frame holding `text` as UTF-8. */
  sendText(text: string): void {
    if (this.#failed) return;
    if (this.#head < this.#waiting.length || !this.#fits(text)) this.#waiting.push(text);
    else this.#encode(text);
    if (!this.#writing) void this.#drain();
  }

  /** Queues bytes as they are (no header): the token a sandbox opens with. */
  sendRaw(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#reserve(bytes.length);
    this.#out.set(bytes, this.#length);
    this.#length += bytes.length;
    if (!this.#writing) void this.#drain();
  }

  /** Whether `text` fits the current buffer, growing it within its bound (ASCII assumed). */
  #fits(text: string): boolean {
    const needed = this.#length + HEADER_BYTES + text.length;
    if (needed <= this.#out.length) return true;
    if (this.#length > 0 && needed > MAX_WRITE_BUFFER_BYTES) return false;
    this.#reserve(HEADER_BYTES + text.length);
    return true;
  }

  /** Encodes one frame after what is queued. */
  #encode(text: string): void {
    // Room for ASCII (one byte a character) first, the common case.
    this.#reserve(HEADER_BYTES + text.length);
    const start = this.#length;
    const body = start + HEADER_BYTES;
    let { read, written } = encoder.encodeInto(text, this.#out.subarray(body));
    while (read < text.length) {
      // Other characters: room for the worst case of the rest, keeping what is encoded.
      this.#length = body + written;
      this.#reserve((text.length - read) * 3);
      const more = encoder.encodeInto(text.slice(read), this.#out.subarray(body + written));
      read += more.read;
      written += more.written;
    }
    writeHeader(this.#out, start, written);
    this.#length = body + written;
  }

  /** Makes room for `bytes` more after what is queued. */
  #reserve(bytes: number): void {
    const needed = this.#length + bytes;
    if (needed <= this.#out.length) return;
    const size = needed > MAX_WRITE_BUFFER_BYTES
      ? needed
      : Math.min(MAX_WRITE_BUFFER_BYTES, Math.max(needed, this.#out.length * 2));
    const bigger = new Uint8Array(size);
    bigger.set(this.#out.subarray(0, this.#length));
    this.#out = bigger;
  }

  /** Moves waiting frames into the buffer while they fit (at least one into an empty one). */
  #fill(): void {
    const waiting = this.#waiting;
    while (this.#head < waiting.length && (this.#length === 0 || this.#fits(waiting[this.#head]))) {
      this.#encode(waiting[this.#head]);
      waiting[this.#head++] = "";
    }
    if (this.#head === waiting.length) {
      this.#waiting = [];
      this.#head = 0;
    }
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      for (;;) {
        this.#fill();
        if (this.#length === 0) break;
        const buffer = this.#out;
        const data = buffer.subarray(0, this.#length);
        // New frames go to the other buffer while this one is written.
        this.#out = this.#spare;
        this.#length = 0;
        let offset = 0;
        while (offset < data.length) offset += await this.conn.write(data.subarray(offset));
        // A buffer grown past the bound for one large frame is not kept.
        this.#spare = buffer.length <= MAX_WRITE_BUFFER_BYTES
          ? buffer
          : new Uint8Array(INITIAL_WRITE_BYTES);
      }
    } catch (error) {
      this.#failed = true;
      this.#length = 0;
      this.#waiting = [];
      this.#head = 0;
      this.onError(error);
    } finally {
      this.#writing = false;
    }
  }
}
