/**
 * Options and helpers shared by the subcommands: finding init.yaml, naming a
 * server, printing values, and the usage error.
 *
 * @module
 */

import { message } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { flag, option } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import { type Endpoint, parseEndpoint } from "../core/client.ts";
import { type Cluster, loadCluster } from "../core/cluster.ts";
import { stringifyJson } from "../core/types.ts";

/** A mistake in how a command was invoked: exit 2 with a short hint. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** `-c, --config FILE` (also `RPC_CONFIG`). */
export const configOption = optional(
  option("-c", "--config", string({ metavar: "FILE" }), {
    description:
      message`init.yaml describing the cluster (default: $RPC_CONFIG, else ./init.yaml if present).`,
  }),
);

/** `--as CLIENT` (also `RPC_CLIENT`). */
export const asOption = optional(
  option("--as", string({ metavar: "CLIENT" }), {
    description:
      message`Client name to call as, from init.yaml's network.clients (default: $RPC_CLIENT).`,
  }),
);

/** `--json`. */
export const jsonFlag = withDefault(
  flag("--json", { description: message`Print JSON for scripts instead of plain text.` }),
  false,
);

/**
 * The init.yaml path to use: the flag, else `RPC_CONFIG`, else (for client
 * commands, `lookHere`) `./init.yaml` when it exists.
 */
export function configPath(flagValue: string | undefined, required = false, lookHere = true): string | undefined {
  const chosen = flagValue ?? Deno.env.get("RPC_CONFIG");
  if (chosen) return chosen;
  if (!lookHere && !required) return undefined;
  try {
    if (Deno.statSync("init.yaml").isFile) return "init.yaml";
  } catch {
    // No init.yaml here.
  }
  if (required) throw new UsageError("No init.yaml: pass --config FILE or set RPC_CONFIG");
  return undefined;
}

/** Loads the cluster file if one is configured. */
export async function maybeCluster(flagValue: string | undefined): Promise<Cluster | undefined> {
  const path = configPath(flagValue);
  return path ? await loadCluster(path) : undefined;
}

/** The client name to use: the flag, else `RPC_CLIENT`. */
export function clientName(flagValue: string | undefined): string | undefined {
  return flagValue ?? Deno.env.get("RPC_CLIENT") ?? undefined;
}

/**
 * Resolves a server given by name (from init.yaml) or as `host:port`.
 */
export function resolveServer(
  target: string,
  cluster: Cluster | undefined,
): Endpoint & { name?: string } {
  const server = cluster?.servers.get(target);
  if (server) return { hostname: server.host, port: server.port, name: server.name };
  if (/:\d+$/.test(target)) {
    try {
      return parseEndpoint(target);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const known = cluster ? [...cluster.servers.keys()].join(", ") : "";
  throw new UsageError(
    cluster
      ? `Unknown server "${target}": init.yaml names ${known || "no servers"}; or give host:port`
      : `Unknown server "${target}": give host:port, or --config init.yaml to use server names`,
  );
}

/** Formats a value for plain output: strings as they are, everything else as JSON. */
export function plain(value: unknown): string {
  return typeof value === "string" ? value : stringifyJson(value);
}

const encoder = new TextEncoder();

/** Writes text to stdout. */
export function print(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

/** Writes text to stderr. */
export function printError(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

/** Splits `int,List[str]` at top-level commas. */
export function splitTypeList(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = "";
  for (const char of text) {
    if (char === "[") depth++;
    if (char === "]") depth--;
    if (char === "," && depth === 0) {
      out.push(current.trim());
      current = "";
    } else {
      current += char;
    }
  }
  if (current.trim() !== "" || out.length > 0) out.push(current.trim());
  return out;
}

/** Parses a positive duration in milliseconds from text such as `500`, `2s`, `1.5s`, `250ms`. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new UsageError(`Cannot read duration "${text}": use e.g. 500ms, 2s, 1m`);
  const value = Number(match[1]);
  const unit = match[2] ?? "ms";
  return Math.round(unit === "ms" ? value : unit === "s" ? value * 1000 : value * 60_000);
}
