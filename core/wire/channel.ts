/**
 * A message channel over one byte stream: reads frames and decodes them, and
 * writes messages with every frame queued in the same tick coalesced into one
 * write. Both the server and the client use it.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  frameTooLarge,
  HEADER_BYTES,
  writeHeader,
} from "./frame.ts";
import {
  decodeMessage,
  type DecodeOptions,
  encodeMessageText,
  type Message,
  type SerialError,
} from "./message.ts";

/** The smallest stream a channel needs: Deno's `Conn` and `TlsConn` fit it. */
export interface ByteStream {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
  closeWrite?(): Promise<void>;
}

/** Options of a {@linkcode MessageChannel}. */
export interface ChannelOptions {
  /** Largest frame body accepted or sent. Default 8 MiB. */
  maxFrameBytes?: number;
  /** Size of the reusable read buffer; it doubles, up to 256 KiB, while reads fill it. Default 8 KiB. */
  readBufferBytes?: number;
  /**
   * Start writing within the tick once this many bytes are queued. Default
   * {@linkcode EARLY_WRITE_BYTES}; `Infinity` writes once per tick (for a
   * stream where each write is a message of its own).
   */
  earlyWriteBytes?: number;
  /** Pause reading while this many bytes wait to be written. Default 16 MiB. */
  writeHighWaterBytes?: number;
  /** How bodies are decoded (integer digit limit, deferred arguments). */
  decode?: DecodeOptions;
  /**
   * Told of every change in the bytes waiting to be written: positive when a
   * message is queued, negative as bytes are written or dropped at close.
   */
  onBacklog?: (delta: number) => void;
  /**
   * Asked before each read; while it returns false the channel reads nothing
   * until {@linkcode MessageChannel.resumeReading} is called.
   */
  mayRead?: () => boolean;
}

/** What a channel does with what it reads. */
export interface ChannelHandler {
  /** A decoded message. Called synchronously from the read loop. */
  onMessage(message: Message): void;
  /**
   * A body that did not decode; the framing is intact, so the channel goes
   * on. `serial` is set when the envelope was readable.
   */
  onMalformed(error: RpcError, serial: number | undefined): void;
}

const encoder = new TextEncoder();
/**
 * Buffers start small and grow with what arrives: a connection that makes one
 * call (a fan-out to 200 servers opens 200) costs a few KiB, not hundreds.
 */
const INITIAL_WRITE_BUFFER = 4 * 1024;
const INITIAL_READ_BUFFER = 8 * 1024;
/** The read buffer starts at `readBufferBytes` and doubles up to this while reads fill it. */
const MAX_READ_BUFFER = 256 * 1024;
/**
 * Write buffers up to this size are always kept for reuse; a larger one goes
 * after {@linkcode SMALL_BATCHES_TO_RELEASE} batches in a row that filled
 * less than a quarter of it, so a run of large messages reuses its buffers
 * (small batches come between large ones, e.g. the first message written
 * early) and a connection that goes back to small ones lets them go.
 * Growing a buffer again costs fresh pages and a copy at every doubling.
 */
const RETAINED_WRITE_BUFFER = 1024 * 1024;
const SMALL_BATCHES_TO_RELEASE = 16;
/**
 * Once this many bytes are queued and nothing is being written, the write
 * starts at once instead of at the end of the tick. A pipelining peer then
 * gets the first replies of a batch while the rest are still being worked
 * on, so the two ends work at the same time instead of taking turns; what
 * is queued while that write is under way leaves in the next one.
 */
export const EARLY_WRITE_BYTES = 2048;

/** Reads and writes framed messages over a {@linkcode ByteStream}. */
export class MessageChannel {
  readonly maxFrameBytes: number;
  #stream: ByteStream;
  #readBufferBytes: number;
  #highWater: number;
  #earlyWriteBytes: number;
  #out = new Uint8Array(INITIAL_WRITE_BUFFER);
  /** The buffer the next batch goes to while one is written; made on the first overlap. */
  #spare: Uint8Array<ArrayBuffer> | undefined;
  #outLength = 0;
  /** Batches in a row written from a large buffer that filled less than a quarter of it. */
  #smallBatches = 0;
  /** Bytes of the batch being written that the stream has not taken yet. */
  #writing = 0;
  /** The write loop, while it runs. */
  #flushing: Promise<void> | undefined;
  /** Whether the write loop is due to start at the end of this tick. */
  #scheduled = false;
  /** Whether {@linkcode #flush} is running (it may end before its promise is stored). */
  #inFlush = false;
  #closed = false;
  #writeError: unknown;
  #partialSince: number | undefined;
  #receivedAt = 0;
  #decode: DecodeOptions | undefined;
  #onBacklog: ((delta: number) => void) | undefined;
  #mayRead: (() => boolean) | undefined;
  #resume: PromiseWithResolvers<void> | undefined;

  constructor(stream: ByteStream, options: ChannelOptions = {}) {
    this.#stream = stream;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#readBufferBytes = options.readBufferBytes ?? INITIAL_READ_BUFFER;
    this.#highWater = options.writeHighWaterBytes ?? 16 * 1024 * 1024;
    this.#earlyWriteBytes = options.earlyWriteBytes ?? EARLY_WRITE_BYTES;
    this.#decode = options.decode;
    this.#onBacklog = options.onBacklog;
    this.#mayRead = options.mayRead;
  }

  /** Bytes queued or being written that the stream has not taken yet. */
  get pendingBytes(): number {
    return this.#outLength + this.#writing;
  }

  /** Wakes a read loop held by `mayRead` (or by the write high-water mark) to ask again. */
  resumeReading(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.resolve();
  }

  /** Whether the channel was closed or a write failed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads until the peer closes its side. Resolves on a clean end of stream;
   * rejects with `Frame Too Large` or the read error, after which the stream
   * cannot be trusted and should be closed.
   */
  async readAll(handler: ChannelHandler): Promise<void> {
    const decoder = new FrameDecoder(this.maxFrameBytes, (body) => {
      let message: Message;
      try {
        message = decodeMessage(body, this.#decode);
      } catch (error) {
        const rpcError = RpcError.from(error);
        handler.onMalformed(rpcError, (error as SerialError).serial);
        return;
      }
      handler.onMessage(message);
    });
    let buffer = new Uint8Array(this.#readBufferBytes);
    for (;;) {
      if (this.#held()) {
        // Time spent held is not the sender's: a frame it began gets its time afresh after.
        this.#partialSince = undefined;
        do {
          this.#resume ??= Promise.withResolvers();
          await this.#resume.promise;
        } while (this.#held());
        if (decoder.partial) this.#partialSince = performance.now();
      }
      let count: number | null;
      try {
        count = await this.#stream.read(buffer);
      } catch (error) {
        if (this.#closed) return;
        throw RpcError.from(error);
      }
      if (count === null) {
        if (decoder.partial) {
          throw new RpcError(
            ErrorKind.MalformedFrame,
            "Cannot decode frame: stream ended inside a frame",
          );
        }
        return;
      }
      // One clock reading per read serves every message in it: a batch of 64 calls reads it once.
      this.#receivedAt = performance.now();
      decoder.push(buffer.subarray(0, count));
      // A read that fills the buffer means more is waiting: read more at a time (the decoder
      // keeps no view of the buffer once push returns, so it can be replaced).
      if (count === buffer.length && buffer.length < MAX_READ_BUFFER) {
        buffer = new Uint8Array(buffer.length * 2);
      }
      if (!decoder.partial) this.#partialSince = undefined;
      else this.#partialSince ??= this.#receivedAt;
    }
  }

  /** Whether reading waits: for writes to drain, or for `mayRead`. */
  #held(): boolean {
    return !this.#closed &&
      (this.pendingBytes > this.#highWater || (this.#mayRead !== undefined && !this.#mayRead()));
  }

  /**
   * When the bytes of the message being handled were read
   * (`performance.now()`); while {@linkcode readAll} calls `onMessage`, the
   * arrival time of that message. 0 before the first read.
   */
  get receivedAt(): number {
    return this.#receivedAt;
  }

  /**
   * When the frame now partly received began to arrive (`performance.now()`),
   * or `undefined` between frames. A server uses it to drop slow senders.
   */
  get partialSince(): number | undefined {
    return this.#partialSince;
  }

  /**
   * Queues a message; it is written with everything else queued in this tick
   * (the write starts as soon as {@linkcode EARLY_WRITE_BYTES} are queued).
   * Returns false when the channel is closed. Throws `Frame Too Large` when the
   * encoded message exceeds the frame limit (nothing is queued then).
   */
  send(message: Message): boolean {
    if (this.#closed) return false;
    const text = encodeMessageText(message);
    const start = this.#outLength;
    const body = start + HEADER_BYTES;
    // Room for the text as ASCII; what does not fit (other characters) is encoded after growing.
    if (body + text.length > this.#out.length) this.#grow(body + text.length);
    let { read, written } = encoder.encodeInto(text, this.#out.subarray(body));
    while (read < text.length) {
      this.#grow(body + written + (text.length - read) * 3, body + written);
      const rest = encoder.encodeInto(text.slice(read), this.#out.subarray(body + written));
      read += rest.read;
      written += rest.written;
    }
    if (written > this.maxFrameBytes) throw frameTooLarge(written, this.maxFrameBytes);
    writeHeader(this.#out, start, written);
    this.#outLength = body + written;
    this.#onBacklog?.(HEADER_BYTES + written);
    this.#queued();
    return true;
  }

  /**
   * Queues a message already encoded but for its serial: the body is `head`,
   * the decimal digits of `serial` (a non-negative integer), then `tail`
   * (UTF-8). A request sent again and again that differs only in its serial
   * is encoded once this way (see `RpcClient.prepare`). Otherwise as
   * {@linkcode send}: written with everything else queued in this tick (or
   * earlier), false when the channel is closed, `Frame Too Large` over the frame limit
   * (nothing is queued then).
   */
  sendAroundSerial(head: Uint8Array, serial: number, tail: Uint8Array): boolean {
    if (this.#closed) return false;
    let digits = 1;
    for (let rest = serial; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    const length = head.length + digits + tail.length;
    if (length > this.maxFrameBytes) throw frameTooLarge(length, this.maxFrameBytes);
    const start = this.#outLength;
    const body = start + HEADER_BYTES;
    if (body + length > this.#out.length) this.#grow(body + length);
    const out = this.#out;
    out.set(head, body);
    let at = body + head.length + digits;
    for (let rest = serial; at > body + head.length; rest = Math.floor(rest / 10)) {
      out[--at] = 0x30 + (rest % 10);
    }
    out.set(tail, body + head.length + digits);
    writeHeader(out, start, length);
    this.#outLength = body + length;
    this.#onBacklog?.(HEADER_BYTES + length);
    this.#queued();
    return true;
  }

  /** Starts writing what was just queued now if it is enough, else at the end of the tick. */
  #queued(): void {
    if (this.#flushing !== undefined) return;
    if (this.#outLength >= this.#earlyWriteBytes) this.#startFlush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#scheduledFlush);
    }
  }

  #scheduledFlush = (): void => {
    this.#scheduled = false;
    this.#startFlush();
  };

  /** Starts the write loop unless it runs or there is nothing to write. */
  #startFlush(): void {
    if (this.#flushing !== undefined || this.#outLength === 0 || this.#closed) return;
    const flushing = this.#flush();
    // The loop has already ended when the stream threw at once; then there is nothing to wait for.
    if (this.#inFlush) this.#flushing = flushing;
  }

  /** Makes room for `needed` bytes, keeping the first `keep`. */
  #grow(needed: number, keep = this.#outLength): void {
    if (needed <= this.#out.length) return;
    let size = this.#out.length * 2;
    while (size < needed) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.#out.subarray(0, keep));
    this.#out = bigger;
  }

  async #flush(): Promise<void> {
    this.#inFlush = true;
    try {
      while (this.#outLength > 0 && !this.#closed) {
        // Messages sent while this batch is written go to the other buffer.
        const used = this.#out;
        const length = this.#outLength;
        this.#out = this.#spare ?? new Uint8Array(INITIAL_WRITE_BUFFER);
        this.#outLength = 0;
        this.#writing = length;
        let offset = 0;
        while (offset < length) {
          const count = await this.#stream.write(used.subarray(offset, length));
          offset += count;
          if (this.#closed) break;
          this.#writing -= count;
          this.#onBacklog?.(-count);
          if (this.pendingBytes <= this.#highWater) this.resumeReading();
        }
        this.#spare = used;
        if (used.length > RETAINED_WRITE_BUFFER) {
          this.#smallBatches = length * 4 < used.length ? this.#smallBatches + 1 : 0;
          if (this.#smallBatches === SMALL_BATCHES_TO_RELEASE) {
            this.#spare = new Uint8Array(INITIAL_WRITE_BUFFER);
            this.#smallBatches = 0;
          }
        }
      }
    } catch (error) {
      this.#writeError = error;
      this.close();
    } finally {
      this.#inFlush = false;
      this.#flushing = undefined;
    }
  }

  /** Waits until everything queued so far is written (or writing failed). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#flushing) await this.#flushing;
      // The write loop starts in a microtask queued before this one.
      else if (this.#scheduled) await undefined;
      else return;
    }
  }

  /** The error that stopped writing, if any. */
  get writeError(): unknown {
    return this.#writeError;
  }

  /** Closes the stream at once; queued messages are dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#stream.close();
    } catch {
      // Already closed by the peer or the runtime.
    }
    // What was waiting to be written is dropped.
    const dropped = this.pendingBytes;
    this.#outLength = 0;
    this.#writing = 0;
    if (dropped > 0) this.#onBacklog?.(-dropped);
    this.resumeReading();
    this.#whenClosed?.resolve();
  }

  #whenClosed: PromiseWithResolvers<void> | undefined;

  /** Resolves once the channel is closed, by `close()` or because a write failed. */
  get whenClosed(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#whenClosed ??= Promise.withResolvers();
    return this.#whenClosed.promise;
  }

  /** Writes what is queued, then closes. */
  async end(): Promise<void> {
    await this.flush();
    this.close();
  }
}

/** Writes all of `data`, looping over short writes. */
export async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await stream.write(data.subarray(offset));
  }
}
