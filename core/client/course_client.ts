/**
 * A client of the course's one-shot form, for servers that speak only it:
 * connect, send one JSON request, read one JSON reply, close.
 *
 * @example An rpc server (which also answers this form) started in this process for the example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { callCourse } from "./course_client.ts";
 * import { sha256Hex } from "../hash.ts";
 * import { Registry } from "../server/registry.ts";
 * import { InlineTypeScriptRunner } from "../runners/typescript.ts";
 * import { RpcServer } from "../server/server.ts";
 * import { parseSignature } from "../types/types.ts";
 *
 * const path = fileURLToPath(new URL("../../services/service1/rpc1.ts", import.meta.url));
 * const rpc1 = {
 *   service: "service1", rpc: "rpc1", signature: parseSignature(["int", "str"], ["str"]),
 *   language: "typescript" as const, path, hash: sha256Hex(await Deno.readTextFile(path)),
 *   trusted: true,
 * };
 * const registry = await Registry.load(
 *   [{ name: "service1", procedures: [rpc1] }],
 *   { typescript: new InlineTypeScriptRunner() },
 * );
 * const server = new RpcServer({ registry });
 * const endpoint = await server.start();
 *
 * const values = await callCourse(endpoint, {
 *   service: "service1", rpc: "rpc1", arguments: [3, "ab"],
 *   "argument-types": ["int", "str"], "return-types": ["str"],
 * });
 * assert.deepEqual(values, ["ababab"]);
 * await server.close();
 * ```
 *
 * @module
 */

import { writeAll } from "../wire/channel.ts";
import {
  type CourseTypeKey,
  decodeCourseReply,
  encodeCourseRequest,
  JsonValueScanner,
} from "../wire/course.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import type { CallRequest } from "../wire/message.ts";
import { connectTcp, connectTls, type TlsClientOptions } from "../transport/mod.ts";

/** Options of {@linkcode callCourse}. */
export interface CourseCallOptions {
  /** Time limit of the whole call: connecting, sending, the reply. Default 30 s. */
  timeoutMs?: number;
  /** Largest reply accepted. Default 8 MiB. */
  maxReplyBytes?: number;
  /** Speak TLS. */
  tls?: TlsClientOptions;
  /** The source address to connect from. */
  localAddress?: string;
  /** The key naming the message type. Default `type`, as the course's `Message` class writes it. */
  key?: CourseTypeKey;
}

/**
 * Sends one course-form request and resolves to the reply's return values.
 * The request's sending side is closed once it is written (servers that read
 * until the end of the stream need that); the reply is read until its JSON
 * value is complete or the server closes.
 *
 * @throws {RpcError} the server's `RPC-EX`, `Unavailable` when it cannot be
 * reached, `Timeout`, or `Malformed Frame` for a reply that is not one.
 */
export async function callCourse(
  endpoint: { hostname: string; port: number },
  request: CallRequest,
  options: CourseCallOptions = {},
): Promise<unknown[]> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const limit = options.maxReplyBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const signal = AbortSignal.timeout(timeoutMs);
  const conn = options.tls
    ? await connectTls(endpoint, options.tls, signal, options.localAddress)
    : await connectTcp(endpoint, signal, options.localAddress);
  const where = `${endpoint.hostname}:${endpoint.port}`;
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    await writeAll(conn, new TextEncoder().encode(encodeCourseRequest(request, options.key)));
    await conn.closeWrite();
    const scanner = new JsonValueScanner();
    for (;;) {
      const buffer = new Uint8Array(64 * 1024);
      const count = await conn.read(buffer);
      if (count === null) break;
      const end = scanner.push(buffer.subarray(0, count));
      const chunk = buffer.subarray(0, end >= 0 ? end : count);
      chunks.push(chunk);
      length += chunk.length;
      if (length > limit) {
        throw new RpcError(
          ErrorKind.FrameTooLarge,
          `Cannot accept reply from ${where}: more than ${limit} bytes`,
        );
      }
      if (end >= 0) break;
    }
  } catch (error) {
    if (signal.aborted) {
      throw new RpcError(ErrorKind.Timeout, `No reply from ${where} within ${timeoutMs} ms`);
    }
    throw RpcError.from(error);
  } finally {
    signal.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch {
      // Closed by the timeout.
    }
  }
  if (length === 0) {
    throw new RpcError(
      ErrorKind.MalformedFrame,
      `Cannot decode course reply: ${where} closed the connection without one`,
    );
  }
  const whole = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    whole.set(chunk, offset);
    offset += chunk.length;
  }
  return decodeCourseReply(whole);
}
