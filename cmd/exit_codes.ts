/**
 * Exit codes of the command line: one stable code per failure kind, and the
 * few that are about the command line itself (usage, a partial fan-out).
 * Core reports kinds (`core/errors.ts`); only `cmd/` turns them into codes.
 *
 * @module
 */

import { ErrorKind, isErrorKind, RpcError } from "../core/errors.ts";
import { type FanOutOutcome, fanOutOutcome, type ServerResult } from "../core/client/fanout.ts";

/** Exit code for a command-line usage mistake. */
export const USAGE_EXIT_CODE = 2;

/** Exit code of a fan-out (`--all`) in which some servers failed, or all failed in different ways. */
export const PARTIAL_FAILURE_EXIT_CODE = 7;

/** Process exit codes, one per kind. Success is 0. */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  [ErrorKind.Internal]: 1,
  [ErrorKind.Unavailable]: 3,
  [ErrorKind.Timeout]: 4,
  [ErrorKind.Cancelled]: 5,
  [ErrorKind.Config]: 6,
  [ErrorKind.Store]: 8,
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

/** Exit code for an init.yaml that does not check out (`Config Error`). */
export const CONFIG_EXIT_CODE = EXIT_CODES[ErrorKind.Config];

/** The exit code of a failure of `kind`. */
export function exitCodeOf(kind: ErrorKind): number {
  return EXIT_CODES[kind];
}

/** The exit code of anything thrown, by its kind (`RpcError.from`). */
export function exitCodeOfError(error: unknown): number {
  return EXIT_CODES[RpcError.from(error).kind];
}

/**
 * The exit code of a fan-out: 0 when every server answered ok (or there were
 * none), the kind's own code when all failed with the same kind, otherwise
 * {@linkcode PARTIAL_FAILURE_EXIT_CODE}.
 */
export function fanOutExitCode(results: readonly ServerResult<unknown>[]): number {
  return exitCodeOfOutcome(fanOutOutcome(results));
}

/** The exit code of a fan-out's outcome. */
export function exitCodeOfOutcome(outcome: FanOutOutcome): number {
  if (outcome === "ok") return 0;
  if (outcome === "partial") return PARTIAL_FAILURE_EXIT_CODE;
  return EXIT_CODES[outcome];
}

/**
 * The exit code of `rpc init`: 0 when every server succeeded, the kind's own
 * code when every server failed with the same kind (all `Config Error`: 6),
 * otherwise 1 (some servers failed, or they failed in different ways).
 * `failures` holds the kind of each failed server.
 */
export function deployExitCode(failures: readonly string[], servers: number): number {
  if (failures.length === 0) return 0;
  const kinds = new Set(failures);
  if (failures.length === servers && kinds.size === 1) {
    const [kind] = kinds;
    if (isErrorKind(kind)) return EXIT_CODES[kind];
  }
  return 1;
}
