/**
 * Hints printed after an error line when the likely cause is a mistake in
 * how the command was called, such as calling without `--as`. Core's errors
 * name no flags; they carry a kind and, for a known cause, a reason
 * (`ErrorReason`), and the hints that name flags are made here.
 *
 * @module
 */

import { ErrorKind, ErrorReason } from "../core/errors.ts";

/** The hint for calling anonymously a service that has tenants. */
export const AS_HINT =
  "the call was anonymous: pass --as CLIENT or set RPC_CLIENT (a client name from init.yaml)";

/** {@linkcode AS_HINT} at the REPL's prompt, where `.as` switches client. */
export const REPL_AS_HINT =
  "the call was anonymous: .as CLIENT calls as a client of init.yaml (or start with --as CLIENT)";

/** The hint for a plain connection to a server that serves TLS. */
export const TLS_HINT =
  "the server serves TLS: pass --tls-ca FILE or --tls-pin SHA256 (or trust its CA system-wide)";

/** The hint for a server started without an admin token. */
export const ADMIN_TOKEN_HINT =
  "start the server with --admin-token-file FILE or RPC_ADMIN_TOKEN to accept admin requests";

/** The hint for a procedure that did not load within the server's load limit. */
export const LOAD_TIMEOUT_HINT =
  "the server's load limit is --load-timeout (rpc server); raise it, or fix the module's top-level wait";

const HINTS_BY_REASON: Readonly<Record<ErrorReason, string>> = {
  [ErrorReason.PeerSpeaksTls]: TLS_HINT,
  [ErrorReason.NoAdminToken]: ADMIN_TOKEN_HINT,
  [ErrorReason.LoadTimeout]: LOAD_TIMEOUT_HINT,
};

/**
 * The hint for a failure of kind `kind` (and `reason`, when core knows the
 * cause), or `undefined`. `client` is the client the command called as
 * (`undefined`: anonymous).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hintFor } from "./hints.ts";
 * assert.match(hintFor("Client Not Registered", undefined) ?? "", /--as/);
 * assert.equal(hintFor("Client Not Registered", "c1"), undefined);
 * assert.match(hintFor("Unavailable", "c1", "peer speaks TLS") ?? "", /--tls-ca/);
 * ```
 */
export function hintFor(
  kind: string,
  client: string | undefined,
  reason?: ErrorReason,
): string | undefined {
  if (reason !== undefined) return HINTS_BY_REASON[reason];
  // An anonymous client sees no service that has tenants: both failures point at --as.
  const tenantsOnly = kind === ErrorKind.ClientNotRegistered || kind === ErrorKind.ServiceNotFound;
  return tenantsOnly && !client ? AS_HINT : undefined;
}

/**
 * The client a command line calls as: its `--as`, else `RPC_CLIENT`;
 * `undefined` when anonymous.
 */
export function clientOfCommandLine(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const end = args.indexOf("--");
  const words = end < 0 ? args : args.slice(0, end);
  for (let i = words.length - 1; i >= 0; i--) {
    if (words[i] === "--as" && i + 1 < words.length) return words[i + 1] || undefined;
    if (words[i].startsWith("--as=")) return words[i].slice(5) || undefined;
  }
  return env("RPC_CLIENT") || undefined;
}
