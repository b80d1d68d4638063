/**
 * Transport failures as kinds. Every adapter (TCP, TLS, unix) hands its
 * platform errors here, and the kind is decided by the error's `code` (the
 * OS's `ECONNRESET`, `EPIPE`, … as Deno and node:net report them, or
 * node:stream's `ERR_…`), never by its message: the same broken pipe is
 * `Unavailable` over TCP, TLS and a unix socket alike, and `Unavailable` is
 * what failover retries.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transportError } from "./errors.ts";
 * const epipe = Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
 * const error = transportError(epipe);
 * assert.equal(error.kind, "Unavailable");
 * assert.equal(error.code, "EPIPE");
 * ```
 *
 * @module
 */

import { codeOf, ErrorKind, RpcError } from "../errors.ts";

/** The kind of each platform error code a connection can fail with. */
const KIND_OF_CODE: Readonly<Record<string, ErrorKind>> = {
  // The peer is gone, or never was: the call may go elsewhere.
  ECONNREFUSED: ErrorKind.Unavailable,
  ECONNRESET: ErrorKind.Unavailable,
  ECONNABORTED: ErrorKind.Unavailable,
  EPIPE: ErrorKind.Unavailable,
  ENOTCONN: ErrorKind.Unavailable,
  ESHUTDOWN: ErrorKind.Unavailable,
  EHOSTUNREACH: ErrorKind.Unavailable,
  EHOSTDOWN: ErrorKind.Unavailable,
  ENETUNREACH: ErrorKind.Unavailable,
  ENETDOWN: ErrorKind.Unavailable,
  ENETRESET: ErrorKind.Unavailable,
  EADDRNOTAVAIL: ErrorKind.Unavailable,
  ENOTFOUND: ErrorKind.Unavailable,
  EAI_AGAIN: ErrorKind.Unavailable,
  // A unix socket that does not exist.
  ENOENT: ErrorKind.Unavailable,
  // node:stream's words for a socket already ended or destroyed.
  ERR_SOCKET_CLOSED: ErrorKind.Unavailable,
  ERR_STREAM_DESTROYED: ErrorKind.Unavailable,
  ERR_STREAM_WRITE_AFTER_END: ErrorKind.Unavailable,
  ERR_STREAM_PREMATURE_CLOSE: ErrorKind.Unavailable,
  ETIMEDOUT: ErrorKind.Timeout,
  // A unix socket whose file's mode does not let this user connect.
  EACCES: ErrorKind.Unauthorized,
  EPERM: ErrorKind.Unauthorized,
};

/** The kind a platform error code means on a connection; `undefined` for one it does not know. */
export function kindOfCode(code: string | undefined): ErrorKind | undefined {
  return code !== undefined && Object.hasOwn(KIND_OF_CODE, code) ? KIND_OF_CODE[code] : undefined;
}

/**
 * A connection's failure as an {@linkcode RpcError}: the kind its `code`
 * means, keeping the code; for an error without a known code, `fallback`
 * (default: what `RpcError.from` makes of it). `prefix` starts the message
 * (`Cannot connect to …: `). An error that already has a kind is returned
 * as it is.
 */
export function transportError(
  error: unknown,
  options: { fallback?: ErrorKind; prefix?: string } = {},
): RpcError {
  if (error instanceof RpcError) return error;
  const found = codeOf(error);
  const kind = kindOfCode(found.code) ?? options.fallback ?? RpcError.from(error).kind;
  const message = `${options.prefix ?? ""}${
    error instanceof Error ? error.message : String(error)
  }`;
  return new RpcError(kind, message, { cause: error, ...found });
}

/** Rejects with {@linkcode transportError}: for `promise.catch` on a read or a write. */
export function rethrowTransport(error: unknown): never {
  throw transportError(error);
}
