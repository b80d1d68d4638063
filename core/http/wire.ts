/**
 * HTTP/1.1 over one {@linkcode Connection}: reads requests with their whole
 * body, hands them one at a time to a handler, and writes its responses —
 * whole (`Content-Length`) or streamed (chunked, for Server-Sent Events).
 *
 * Why not `Deno.serve`: it serves only sockets it accepts itself, so it
 * cannot serve the server's TLS listener (which checks client certificates),
 * and it offers no hook to count connections or drop slow senders — a peer
 * that sends half a request line holds its connection for good. `node:http`
 * has those limits but costs three times as much per request under Deno.
 * So the gateway accepts connections itself, as the TCP protocol does, and
 * parses HTTP with `http-parser-js` (a maintained, pure JavaScript parser);
 * this module is the thin layer around it. It accepts what an origin server
 * needs: `Content-Length` or chunked request bodies, keep-alive, pipelining
 * (answered in order), `Expect: 100-continue`; no upgrades.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { HTTPParser } from "http-parser-js";
import { writeAll } from "../wire/channel.ts";
import type { Connection } from "../transport/mod.ts";

/** One request, with its whole body. */
export interface HttpRequest {
  method: string;
  /** The request target as sent, e.g. `/v1/service1/rpc1?x=1`. */
  target: string;
  /** The path of the target, percent-decoding not applied. */
  path: string;
  /** Header values by lowercase name; repeated headers are joined with `, `. */
  headers: Map<string, string>;
  body: Uint8Array;
  /** Aborted when the connection closes before the response is complete. */
  signal: AbortSignal;
}

/** A whole response. */
export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** A response whose body is written as it is produced (chunked). */
export interface HttpStreamResponse {
  status: number;
  headers?: Record<string, string>;
  /**
   * Writes the body: each `write` sends one piece and resolves to false once
   * the connection is gone. The response ends when the promise settles.
   */
  stream(write: (text: string) => Promise<boolean>): Promise<void>;
}

/** What the handler answers. */
export type HttpReply = HttpResponse | HttpStreamResponse;

/** A request the wire layer refuses before the handler sees it. */
export interface HttpRefusal {
  status: number;
  /** The error kind the gateway reports, e.g. `Frame Too Large`. */
  kind: string;
  message: string;
}

/** Options of {@linkcode HttpConnection}. */
export interface HttpConnectionOptions {
  /** Largest request line plus headers, in bytes. */
  maxHeaderBytes: number;
  /** Largest request body, in bytes. */
  maxBodyBytes: number;
  /** Answers one request. */
  handle(request: HttpRequest): Promise<HttpReply>;
  /** The response to a request refused here (unreadable, or over a limit); the connection then closes. */
  refuse(refusal: HttpRefusal): HttpResponse;
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** The reason phrase of a status code. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "Unknown";
}

const encoder = new TextEncoder();
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
/** Requests read ahead of the one being answered (pipelining); reading pauses beyond. */
const MAX_QUEUED = 8;

interface Parsed {
  method: string;
  target: string;
  headers: Map<string, string>;
  keepAlive: boolean;
  body: Uint8Array;
}

/** Serves HTTP/1.1 on one connection until either side closes it. */
export class HttpConnection {
  readonly conn: Connection;
  #options: HttpConnectionOptions;
  #parser = new HTTPParser(HTTPParser.REQUEST);
  #queue: Parsed[] = [];
  #current: Parsed | undefined;
  #bodyChunks: Uint8Array[] = [];
  #bodyBytes = 0;
  #refusal: HttpRefusal | undefined;
  #partialSince: number | undefined;
  #closed = false;
  #abort = new AbortController();
  #wake: (() => void) | undefined;
  #busy = false;
  #closeAfterResponse = false;
  #served = 0;

  constructor(conn: Connection, options: HttpConnectionOptions) {
    this.conn = conn;
    this.#options = options;
    const parser = this.#parser;
    // The parser's own check catches a head that never ends. It resets its limit to the library's
    // default (80 KiB) for every request after the first, so the limit is set again each time.
    parser.maxHeaderSize = options.maxHeaderBytes;
    const reinitialize = parser.reinitialize;
    parser.reinitialize = function (this: typeof parser, ...args: unknown[]) {
      reinitialize.apply(this, args as never);
      this.maxHeaderSize = options.maxHeaderBytes;
    } as typeof reinitialize;
    parser[HTTPParser.kOnHeadersComplete] = (
      info: {
        method: number;
        url: string;
        headers: string[];
        shouldKeepAlive: boolean;
        upgrade: boolean;
      },
    ) => this.#onHead(info);
    parser[HTTPParser.kOnBody] = (chunk: Buffer, start: number, length: number) => {
      if (this.#refusal) return;
      this.#bodyBytes += length;
      if (this.#bodyBytes > options.maxBodyBytes) {
        this.#refusal = tooLarge(`more than ${options.maxBodyBytes}`, options.maxBodyBytes);
        return;
      }
      // The chunk is a view of the read buffer, which is reused: copy it.
      this.#bodyChunks.push(chunk.subarray(start, start + length).slice());
    };
    parser[HTTPParser.kOnMessageComplete] = () => {
      const current = this.#current;
      this.#current = undefined;
      if (!current || this.#refusal) return;
      current.body = concat(this.#bodyChunks, this.#bodyBytes);
      this.#bodyChunks = [];
      this.#bodyBytes = 0;
      this.#queue.push(current);
    };
  }

  /**
   * When the request now partly received began to arrive (`performance.now()`),
   * or `undefined` between requests: the gateway drops slow senders by it.
   */
  get partialSince(): number | undefined {
    return this.#partialSince;
  }

  /** Whether a request is being answered. */
  get busy(): boolean {
    return this.#busy;
  }

  /** Aborted when the connection closes, or its peer stops sending while a request is answered. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Requests answered so far. */
  get served(): number {
    return this.#served;
  }

  /** Closes the connection; a response being written is cut short. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    this.#wake?.();
  }

  /** Closes once the response being written is complete (at once when idle). */
  closeWhenIdle(): void {
    if (this.#busy || this.#queue.length > 0) this.#closeAfterResponse = true;
    else this.close();
  }

  /** Writes `response` with `Connection: close`, then closes (for refusals outside a request). */
  async refuse(response: HttpResponse): Promise<void> {
    if (this.#closed) return;
    this.#closeAfterResponse = true;
    try {
      await writeAll(this.conn, encodeResponse(response, false, false));
    } catch {
      // The peer is gone.
    }
    this.close();
  }

  #onHead(
    info: { method: number; url: string; headers: string[]; shouldKeepAlive: boolean },
  ): number {
    const headers = new Map<string, string>();
    // A head that arrived whole in one read escapes the parser's check (it counts per read): count it.
    let headBytes = info.url.length;
    for (const text of info.headers) headBytes += text.length + 2;
    for (let i = 0; i < info.headers.length; i += 2) {
      const name = info.headers[i].toLowerCase();
      const value = info.headers[i + 1];
      const before = headers.get(name);
      headers.set(name, before === undefined ? value : `${before}, ${value}`);
    }
    const method = HTTPParser.methods[info.method] ?? "UNKNOWN";
    this.#current = {
      method,
      target: info.url,
      headers,
      keepAlive: info.shouldKeepAlive,
      body: new Uint8Array(0),
    };
    this.#bodyChunks = [];
    this.#bodyBytes = 0;
    const length = headers.get("content-length");
    const encoding = headers.get("transfer-encoding");
    let refusal: HttpRefusal | undefined;
    if (headBytes > this.#options.maxHeaderBytes) {
      refusal = headersTooLarge(this.#options.maxHeaderBytes);
    } else if (encoding !== undefined && length !== undefined) {
      refusal = badRequest("a request may not have both Content-Length and Transfer-Encoding");
    } else if (encoding !== undefined && encoding.toLowerCase() !== "chunked") {
      refusal = badRequest(`Transfer-Encoding ${encoding} is not supported (only chunked)`);
    } else if (length !== undefined && !/^\d{1,15}$/.test(length.trim())) {
      refusal = badRequest(`Content-Length ${JSON.stringify(length)} is not a number`);
    } else if (length !== undefined && Number(length) > this.#options.maxBodyBytes) {
      refusal = tooLarge(length.trim(), this.#options.maxBodyBytes);
    } else if (headers.get("upgrade") !== undefined || method === "CONNECT") {
      refusal = badRequest("Protocol upgrades and CONNECT are not supported");
    }
    if (refusal) {
      this.#refusal = refusal;
      return 1; // skip the body: the connection closes after the refusal
    }
    if (headers.get("expect")?.toLowerCase() === "100-continue") {
      writeAll(this.conn, CONTINUE).catch(() => {});
    }
    return 0;
  }

  /** Reads and answers requests until the connection closes. */
  async serve(): Promise<void> {
    const reading = this.#read();
    try {
      for (;;) {
        while (this.#queue.length === 0 && !this.#closed && !this.#refusal) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
        }
        if (this.#queue.length > 0) {
          const request = this.#queue.shift()!;
          this.#wake?.();
          await this.#answer(request);
          if (this.#closeAfterResponse && this.#queue.length === 0) break;
          continue;
        }
        if (this.#refusal && !this.#closed) {
          await this.refuse(this.#options.refuse(this.#refusal));
        }
        break;
      }
    } finally {
      this.close();
      await reading;
    }
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    const view = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.length);
    try {
      while (!this.#closed && !this.#refusal) {
        // Pipelined requests beyond a few wait in the socket, not in memory.
        while (this.#queue.length >= MAX_QUEUED && !this.#closed) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
        }
        const count = await this.conn.read(buffer);
        if (count === null) break;
        this.#partialSince ??= performance.now();
        const result = this.#parser.execute(view, 0, count);
        if (result instanceof Error) {
          const message = (result as Error & { code?: string }).code === "HPE_HEADER_OVERFLOW" ||
              /header size/.test(result.message)
            ? undefined
            : result.message;
          this.#refusal ??= message === undefined
            ? {
              status: 431,
              kind: "Headers Too Large",
              message:
                `Cannot read request: headers exceed limit ${this.#options.maxHeaderBytes} bytes`,
            }
            : badRequest(`Cannot parse HTTP request: ${message}`);
        }
        // Between requests the parser waits for a request line and holds none of one. (Its
        // state is not in its type declarations, but is what its `execute` dispatches on.)
        const parser = this.#parser as unknown as { state: string; line: string };
        if (parser.state === "REQUEST_LINE" && parser.line === "") {
          this.#partialSince = undefined;
        }
        this.#wake?.();
      }
    } catch {
      // A reset connection ends like a closed one.
    }
    if (!this.#refusal && this.#current === undefined && this.#queue.length === 0 && !this.#busy) {
      this.close();
    } else if (!this.#refusal) {
      // The peer closed its side (or went away): a response in progress has no reader.
      this.#closeAfterResponse = true;
      if (!this.#busy && this.#queue.length === 0) this.close();
      else this.#abort.abort();
    }
    this.#wake?.();
  }

  async #answer(request: Parsed): Promise<void> {
    this.#busy = true;
    const path = request.target.split("?", 1)[0];
    const method = request.method === "HEAD" ? "GET" : request.method;
    let reply: HttpReply;
    try {
      reply = await this.#options.handle({
        method,
        target: request.target,
        path,
        headers: request.headers,
        body: request.body,
        signal: this.#abort.signal,
      });
    } catch (error) {
      reply = this.#options.refuse({
        status: 500,
        kind: "Internal Error",
        message: (error as Error)?.message ?? String(error),
      });
    }
    const keepAlive = request.keepAlive && !this.#closeAfterResponse;
    const head = request.method === "HEAD";
    try {
      if ("stream" in reply) {
        await this.#stream(reply, keepAlive);
      } else {
        await writeAll(this.conn, encodeResponse(reply, keepAlive, head));
      }
    } catch {
      this.close();
    }
    this.#served++;
    this.#busy = false;
    if (!keepAlive) this.#closeAfterResponse = true;
  }

  async #stream(reply: HttpStreamResponse, keepAlive: boolean): Promise<void> {
    const headers = { ...reply.headers, "transfer-encoding": "chunked" };
    await writeAll(
      this.conn,
      encoder.encode(headText(reply.status, headers, keepAlive)),
    );
    const write = async (text: string): Promise<boolean> => {
      if (this.#closed) return false;
      const body = encoder.encode(text);
      if (body.length === 0) return true;
      try {
        await writeAll(this.conn, encoder.encode(`${body.length.toString(16)}\r\n`));
        await writeAll(this.conn, concat([body, encoder.encode("\r\n")], body.length + 2));
        return true;
      } catch {
        this.close();
        return false;
      }
    };
    await reply.stream(write);
    if (!this.#closed) await writeAll(this.conn, encoder.encode("0\r\n\r\n"));
  }
}

function badRequest(message: string): HttpRefusal {
  return { status: 400, kind: "Bad Request", message };
}

function headersTooLarge(limit: number): HttpRefusal {
  return {
    status: 431,
    kind: "Headers Too Large",
    message: `Cannot read request: headers exceed limit ${limit} bytes`,
  };
}

function tooLarge(length: string, limit: number): HttpRefusal {
  return {
    status: 413,
    kind: "Frame Too Large",
    message: `Cannot read request: body of ${length} bytes exceeds limit ${limit}`,
  };
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function headText(status: number, headers: Record<string, string>, keepAlive: boolean): string {
  let text = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  if (!keepAlive) text += "connection: close\r\n";
  return text + "\r\n";
}

/** Encodes a whole response: head and body in one buffer, so it goes out in one write. */
export function encodeResponse(
  response: HttpResponse,
  keepAlive: boolean,
  headOnly: boolean,
): Uint8Array {
  const body = typeof response.body === "string"
    ? encoder.encode(response.body)
    : response.body ?? new Uint8Array(0);
  const head = encoder.encode(
    headText(
      response.status,
      { ...response.headers, "content-length": String(body.length) },
      keepAlive,
    ),
  );
  if (headOnly || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}
