/**
 * The closed set of failures a caller of rpc can see.
 *
 * Every failure that crosses the wire is an `RPC-EX` message whose
 * `exception-type` is one of the {@linkcode ErrorKind} wire names below, and
 * every failure the command line reports maps to one stable exit code.
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
 * Process exit codes of the command line, one per kind. Usage errors exit 2
 * (see `cmd/`), success 0.
 */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  [ErrorKind.Internal]: 1,
  [ErrorKind.Unavailable]: 3,
  [ErrorKind.Timeout]: 4,
  [ErrorKind.Cancelled]: 5,
  [ErrorKind.ExecutionException]: 10,
  [ErrorKind.InvalidArguments]: 11,
  [ErrorKind.ServiceNotFound]: 12,
  [ErrorKind.RpcNotFound]: 13,
  [ErrorKind.ClientNotRegistered]: 14,
  [ErrorKind.MalformedFrame]: 15,
  [ErrorKind.FrameTooLarge]: 16,
  [ErrorKind.UnsupportedVersion]: 17,
  [ErrorKind.Unauthorized]: 18,
  [ErrorKind.RateLimited]: 19,
  [ErrorKind.Conflict]: 20,
};

/** Exit code for a command-line usage mistake. */
export const USAGE_EXIT_CODE = 2;

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

  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }

  /** The exit code the command line uses for this error. */
  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }

  /**
   * Turns anything thrown into an `RpcError`. Platform errors are mapped here
   * once; anything unknown becomes `Internal Error`.
   */
  static from(error: unknown): RpcError {
    if (error instanceof RpcError) return error;
    if (
      error instanceof Deno.errors.ConnectionRefused ||
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.ConnectionAborted ||
      error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.NotConnected ||
      error instanceof Deno.errors.AddrNotAvailable ||
      error instanceof Deno.errors.NetworkUnreachable
    ) {
      return new RpcError(ErrorKind.Unavailable, error.message, { cause: error });
    }
    if (error instanceof Deno.errors.TimedOut) {
      return new RpcError(ErrorKind.Timeout, error.message, { cause: error });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new RpcError(ErrorKind.Internal, message, { cause: error });
  }
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
