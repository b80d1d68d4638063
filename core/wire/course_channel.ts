/**
 * The server's side of the course form: a {@linkcode MessageChannel} that
 * looks at the first byte a connection sends. A `{` starts the course's
 * one-shot JSON form (see `course.ts`); anything else is rpc's framed
 * protocol, handed to the plain channel with that first read replayed.
 *
 * In the course form the channel reads one JSON value, hands the server the
 * same `RPC-REQ` message a framed client would send, and writes the server's
 * one reply back in the course form; then the server closes the connection
 * as it does when a framed client has closed its side. So identity, tenants,
 * limits, logging and audit are the server's own, unchanged: the channel
 * only translates. A value that is still incomplete counts as a partly
 * received frame, so the server's slow-sender limit cuts it off; one larger
 * than the frame limit is refused as `Frame Too Large`.
 *
 * @module
 */

import {
  type ByteStream,
  type ChannelHandler,
  type ChannelOptions,
  MessageChannel,
  writeAll,
} from "./channel.ts";
import {
  COURSE_FIRST_BYTE,
  type CourseTypeKey,
  decodeCourseRequest,
  encodeCourseReply,
  JsonValueScanner,
} from "./course.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { DecodeOptions, Message } from "./message.ts";

/** Bytes of the first read, which decides the form. */
const PEEK_BYTES = 4096;

/** A stream whose first chunk can be looked at, then read again. */
class PeekStream implements ByteStream {
  #replay: Uint8Array | undefined;

  constructor(readonly inner: ByteStream) {}

  /** Forgets the chunk `peek` kept: the caller has taken it. */
  take(): void {
    this.#replay = undefined;
  }

  /** Reads the first chunk and keeps it for the next `read`; `null` at end of stream. */
  async peek(): Promise<Uint8Array | null> {
    const buffer = new Uint8Array(PEEK_BYTES);
    const count = await this.inner.read(buffer);
    if (count === null) return null;
    this.#replay = buffer.subarray(0, count);
    return this.#replay;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const replay = this.#replay;
    if (replay === undefined) return this.inner.read(buffer);
    const count = Math.min(replay.length, buffer.length);
    buffer.set(replay.subarray(0, count));
    this.#replay = count < replay.length ? replay.subarray(count) : undefined;
    return Promise.resolve(count);
  }

  write(data: Uint8Array): Promise<number> {
    return this.inner.write(data);
  }

  close(): void {
    this.inner.close();
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite?.() ?? Promise.resolve();
  }
}

const encoder = new TextEncoder();

/**
 * A {@linkcode MessageChannel} that also serves the course's one-shot JSON
 * form on the same connection type; the server uses it for every connection.
 */
export class CourseAwareChannel extends MessageChannel {
  #stream: PeekStream;
  #decode: DecodeOptions | undefined;
  #onBacklog: ((delta: number) => void) | undefined;
  /** Set once the first byte said `{`. */
  #course: { key: CourseTypeKey; since: number | undefined } | undefined;
  #answered = false;
  #writing: Promise<void> = Promise.resolve();

  constructor(stream: ByteStream, options: ChannelOptions = {}) {
    const peekable = new PeekStream(stream);
    super(peekable, options);
    this.#stream = peekable;
    this.#decode = options.decode;
    this.#onBacklog = options.onBacklog;
  }

  /** Whether this connection speaks the course form (known once its first bytes arrived). */
  get course(): boolean {
    return this.#course !== undefined;
  }

  override get partialSince(): number | undefined {
    return this.#course ? this.#course.since : super.partialSince;
  }

  override async readAll(handler: ChannelHandler): Promise<void> {
    let first: Uint8Array | null;
    try {
      first = await this.#stream.peek();
    } catch (error) {
      if (this.closed) return;
      throw RpcError.from(error);
    }
    if (first === null || first[0] !== COURSE_FIRST_BYTE) return await super.readAll(handler);
    this.#stream.take();
    const course = { key: "type" as CourseTypeKey, since: performance.now() as number | undefined };
    this.#course = course;
    const bytes = await this.#readValue(first);
    if (bytes === undefined) return;
    course.since = undefined;
    const { key, message, error } = decodeCourseRequest(bytes, this.#decode);
    course.key = key;
    if (message) handler.onMessage(message);
    else handler.onMalformed(error!, undefined);
    // One request per connection: the server answers it, then ends the connection.
  }

  /** Reads until one JSON value is complete; `undefined` when the channel was closed meanwhile. */
  async #readValue(first: Uint8Array): Promise<Uint8Array | undefined> {
    const scanner = new JsonValueScanner();
    const chunks: Uint8Array[] = [];
    let chunk = first;
    for (;;) {
      const end = scanner.push(chunk);
      if (scanner.length > this.maxFrameBytes) {
        throw new RpcError(
          ErrorKind.FrameTooLarge,
          `Cannot accept course message: more than ${this.maxFrameBytes} bytes (the frame limit)`,
        );
      }
      if (end >= 0) {
        chunks.push(chunk.subarray(0, end));
        break;
      }
      chunks.push(chunk);
      const buffer = new Uint8Array(64 * 1024);
      let count: number | null;
      try {
        count = await this.#stream.read(buffer);
      } catch (error) {
        if (this.closed) return undefined;
        throw RpcError.from(error);
      }
      if (count === null) {
        throw new RpcError(
          ErrorKind.MalformedFrame,
          `Cannot decode course message: stream ended after ${scanner.length} bytes, inside a JSON value`,
        );
      }
      chunk = buffer.subarray(0, count);
    }
    if (chunks.length === 1) return chunks[0];
    const whole = new Uint8Array(scanner.length);
    let offset = 0;
    for (const part of chunks) {
      whole.set(part, offset);
      offset += part.length;
    }
    return whole;
  }

  /**
   * In the course form, writes the first final reply (`RPC-RES`, `RPC-EX`,
   * …) as one JSON message, with no frame; partial results of a streaming
   * call are left out, since the form has one reply. Otherwise as
   * {@linkcode MessageChannel.send}.
   */
  override send(message: Message): boolean {
    const course = this.#course;
    if (!course) return super.send(message);
    if (this.closed || this.#answered) return false;
    if (message.type === "RPC-PART") return true;
    const bytes = encoder.encode(encodeCourseReply(message, course.key));
    if (bytes.length > this.maxFrameBytes) {
      throw new RpcError(
        ErrorKind.FrameTooLarge,
        `Cannot send course reply: length ${bytes.length} exceeds limit ${this.maxFrameBytes}`,
      );
    }
    this.#answered = true;
    // Counted as unsent until written, as a frame is, for the server's reply limits.
    this.#onBacklog?.(bytes.length);
    this.#writing = writeAll(this.#stream, bytes)
      .then(() => this.#stream.closeWrite())
      .catch(() => this.close())
      .finally(() => this.#onBacklog?.(-bytes.length));
    return true;
  }

  override async flush(): Promise<void> {
    if (!this.#course) return await super.flush();
    await this.#writing;
  }
}
