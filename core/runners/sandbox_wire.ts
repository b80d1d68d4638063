/**
 * Frames on the connection between the server and a sandbox process: text
 * encoded straight into a frame, and a writer that sends queued frames in
 * order, several in one write when they pile up.
 *
 * @module
 */

import { HEADER_BYTES, writeHeader } from "../wire/frame.ts";

const encoder = new TextEncoder();

/** One frame holding `text` as UTF-8, encoded with no intermediate copy. */
export function textFrame(text: string): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + text.length * 3);
  const { written } = encoder.encodeInto(text, frame.subarray(HEADER_BYTES));
  writeHeader(frame, 0, written);
  return frame.subarray(0, HEADER_BYTES + written);
}

/** Writes frames to a connection in order; a failed write is reported once. */
export class FrameWriter {
  #queue: Uint8Array[] = [];
  #writing = false;
  #failed = false;

  constructor(readonly conn: Deno.Conn, readonly onError: (error: unknown) => void) {}

  /** Queues one frame (header included). */
  send(frame: Uint8Array): void {
    if (this.#failed) return;
    this.#queue.push(frame);
    if (!this.#writing) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const queued = this.#queue;
        this.#queue = [];
        let chunk = queued[0];
        if (queued.length > 1) {
          chunk = new Uint8Array(queued.reduce((sum, frame) => sum + frame.length, 0));
          let offset = 0;
          for (const frame of queued) {
            chunk.set(frame, offset);
            offset += frame.length;
          }
        }
        let offset = 0;
        while (offset < chunk.length) offset += await this.conn.write(chunk.subarray(offset));
      }
    } catch (error) {
      this.#failed = true;
      this.#queue = [];
      this.onError(error);
    } finally {
      this.#writing = false;
    }
  }
}
