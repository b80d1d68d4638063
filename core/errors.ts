/**
 * The closed set of failures a caller of rpc can see.
 *
 * Every failure that crosses the wire is an `RPC-EX` message whose
 * `exception-type` is one of the {@linkcode ErrorKind} wire names below. An
 * {@linkcode RpcError} carries its kind and, where a caller may act on it,
 * structured fields ({@linkcode RpcError.code} for the platform's error
 * code, {@linkcode RpcError.reason} for a known cause), so that no caller
 * has to read a message. Core speaks no command line: `cmd/exit_codes.ts`
 * maps kinds to exit codes and `cmd/hints.ts` adds hints naming flags.
 *
 * @module
 */

/** Wire names of every exception kind. The first five are the course's. */
export const ErrorKind = {
  ExecutionException: "Execution Exception",
  InvalidArguments: "Invalid Arguments",
  ServiceNotFound: "Service Not Found",
  RpcNotFound: "RPC Not Found",
  ClientNotRegistered: "Client Not Registered",
  MalformedFrame: "Malformed Frame",
  FrameTooLarge: "Frame Too Large",
  UnsupportedVersion: "Unsupported Version",
  Timeout: "Timeout",
  Cancelled: "Cancelled",
  Unavailable: "Unavailable",
  Unauthorized: "Unauthorized",
  RateLimited: "Rate Limited",
  Conflict: "Conflict",
  /** A configuration file (init.yaml, a secret file it names) cannot be read or is wrong. */
  Config: "Config Error",
  /** A server's state directory (its lock, manifest or code blobs) cannot be read or written. */
  Store: "Store Error",
  Internal: "Internal Error",
} as const;

/** One of the wire names in {@linkcode ErrorKind}. */
export type ErrorKind = typeof ErrorKind[keyof typeof ErrorKind];

const KINDS: ReadonlySet<string> = new Set(Object.values(ErrorKind));

/** Whether `name` is the wire name of a known exception kind. */
export function isErrorKind(name: unknown): name is ErrorKind {
  return typeof name === "string" && KINDS.has(name);
}

/**
 * Known causes a caller may act on, as {@linkcode RpcError.reason}. Only the
 * process that raised the error sees them (they do not cross the wire).
 */
export const ErrorReason = {
  /** TLS met plain rpc: a TLS record where a frame length belongs. */
  PeerSpeaksTls: "peer speaks TLS",
  /** The server was started without an admin token, so it takes no admin requests. */
  NoAdminToken: "no admin token",
  /** A procedure did not finish loading within the server's load limit. */
  LoadTimeout: "load timeout",
} as const;

/** One of the causes in {@linkcode ErrorReason}. */
export type ErrorReason = typeof ErrorReason[keyof typeof ErrorReason];

/** Options of an {@linkcode RpcError}: the cause, and its structured fields. */
export interface RpcErrorOptions extends ErrorOptions {
  /** The platform's error code (`ECONNRESET`, `EPIPE`, `ENOENT`, a node:tls `ERR_…`), when one caused it. */
  code?: string;
  /** A known cause a caller may act on. */
  reason?: ErrorReason;
}

/**
 * An error with a kind from the closed set. This is the only error type that
 * crosses the boundary between rpc and its callers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ErrorKind, RpcError } from "./errors.ts";
 * const error = new RpcError(ErrorKind.RpcNotFound, "No RPC rpc9 in service service1");
 * assert.equal(error.kind, "RPC Not Found");
 * assert.equal(error.message, "No RPC rpc9 in service service1");
 * ```
 */
export class RpcError extends Error {
  override name = "RpcError";
  /** The wire name of this failure's kind. */
  readonly kind: ErrorKind;
  /** The platform's error code that caused it, if any (`ECONNRESET`, `EPIPE`, …). */
  readonly code?: string;
  /** A known cause a caller may act on, if any. */
  readonly reason?: ErrorReason;

  constructor(kind: ErrorKind, message: string, options?: RpcErrorOptions) {
    super(message, options);
    this.kind = kind;
    if (options?.code !== undefined) this.code = options.code;
    if (options?.reason !== undefined) this.reason = options.reason;
  }

  /**
   * Turns anything thrown into an `RpcError`. Platform errors are mapped here
   * once; anything unknown becomes `Internal Error`.
   */
  static from(error: unknown): RpcError {
    if (error instanceof RpcError) return error;
    if (error instanceof ConfigError) {
      return new RpcError(ErrorKind.Config, error.message, { cause: error });
    }
    if (
      error instanceof Deno.errors.ConnectionRefused ||
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.ConnectionAborted ||
      error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.NotConnected ||
      error instanceof Deno.errors.AddrNotAvailable ||
      error instanceof Deno.errors.NetworkUnreachable
    ) {
      return new RpcError(ErrorKind.Unavailable, error.message, { cause: error, ...codeOf(error) });
    }
    if (error instanceof Deno.errors.TimedOut) {
      return new RpcError(ErrorKind.Timeout, error.message, { cause: error, ...codeOf(error) });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new RpcError(ErrorKind.Internal, message, { cause: error });
  }
}

/** The platform's error code of `error`, as {@linkcode RpcErrorOptions} takes it. */
export function codeOf(error: unknown): { code?: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? { code } : {};
}

/** A problem in a configuration file, with its position. */
export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** One or more problems found in a configuration file, each with file:line:column. */
export class ConfigError extends SyntaxError {
  override name = "ConfigError";
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
  }
}

/** Formats a problem as `file:line:column: message`. */
export function formatProblem(problem: ConfigProblem): string {
  return `${problem.file}:${problem.line}:${problem.column}: ${problem.message}`;
}
