/**
 * Options and helpers shared by the subcommands: the common flags, naming a
 * server, printing values and errors.
 *
 * Settings (init.yaml, `RPC_*` variables, defaults) are resolved in
 * `settings.ts`; its `UsageError`, `configPath` and `parseDuration` are
 * re-exported here for the modules that import them from this one.
 *
 * @module
 */

import { dependency } from "@optique/core/dependency";
import { lineBreak, type Message, message, text } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { argument, flag, option } from "@optique/core/primitives";
import { string, type ValueParser } from "@optique/core/valueparser";
import { type Endpoint, parseEndpoint } from "../core/client.ts";
import { type Cluster, parseCluster } from "../core/cluster.ts";
import { localEndpoint } from "../core/local.ts";
import { stringifyJson } from "../core/types.ts";
import { configPath, UsageError } from "./settings.ts";

export { clientName, configPath, maybeCluster, parseDuration, UsageError } from "./settings.ts";

/**
 * The value of `--config`, as a dependency source: shell completion of
 * server names reads the init.yaml the command line names so far.
 */
const configSource = dependency(string({ metavar: "FILE" }));

/** `-c, --config FILE` (also `RPC_CONFIG`). */
export const configOption = optional(
  option("-c", "--config", configSource, {
    description:
      message`init.yaml describing the cluster (default: $RPC_CONFIG, else ./init.yaml if present).`,
  }),
);

/** `--config FILE` alone, for `rpc bench`, whose `-c` is the number of calls in flight. */
export const configLongOption = optional(
  option("--config", configSource, {
    description:
      message`init.yaml describing the cluster (default: $RPC_CONFIG, else ./init.yaml if present).`,
  }),
);

/**
 * Reads init.yaml for shell completion: quietly nothing when there is no
 * file or it does not parse.
 */
export function clusterForCompletion(flagValue: string): Cluster | undefined {
  try {
    const path = configPath(flagValue || undefined);
    return path ? parseCluster(Deno.readTextFileSync(path), path) : undefined;
  } catch {
    return undefined;
  }
}

/** A value parser taking any text, whose completions are `candidates(config)` starting with the prefix. */
function completingText(
  metavar: "SERVER" | "TARGET",
  candidates: (cluster: Cluster) => Iterable<string>,
): (config: string) => ValueParser<"sync", string> {
  return (config) => ({
    mode: "sync",
    metavar,
    placeholder: "",
    parse: (input) => ({ success: true, value: input }),
    format: (value) => value,
    *suggest(prefix) {
      const cluster = clusterForCompletion(config);
      if (!cluster) return;
      for (const text of candidates(cluster)) {
        if (text.startsWith(prefix)) yield { kind: "literal", text };
      }
    },
  });
}

/** A server name or `host:port`; completes the server names of init.yaml. */
export const serverValue = configSource.deriveSync({
  metavar: "SERVER",
  factory: completingText("SERVER", (cluster) => cluster.servers.keys()),
  defaultValue: () => "",
});

/** `SERVER`, the positional argument of client commands. */
export const serverArgument = argument(serverValue, {
  description: message`Server name from init.yaml, or host:port.`,
});

/** `SERVICE.RPC` (or `SERVICE`); completes those init.yaml declares. */
export const targetValue = configSource.deriveSync({
  metavar: "TARGET",
  factory: completingText("TARGET", function* (cluster) {
    for (const service of cluster.services.values()) {
      yield service.name;
      for (const name of new Set(service.rpcs.map((rpc) => rpc.name))) {
        yield `${service.name}.${name}`;
      }
    }
  }),
  defaultValue: () => "",
});

/**
 * A help footer listing example command lines, one per line as written
 * (message text would otherwise be reflowed into one paragraph).
 */
export function examples(...lines: string[]): Message {
  return [text("Examples:"), ...lines.flatMap((line) => [lineBreak(), text(`  ${line}`)])];
}

/**
 * The client's secret and TLS flags, and `--local`, shared by every command
 * that connects: spread into its `object({...})`. Resolved by
 * `clientSettings()`.
 */
export const securityOptions = {
  secretFile: optional(option("--secret-file", string({ metavar: "FILE" }), {
    description:
      message`File holding this client's secret (default: $RPC_CLIENT_SECRET_FILE, $RPC_CLIENT_SECRET, else the client's secret-file in init.yaml).`,
  })),
  tlsCa: optional(option("--tls-ca", string({ metavar: "FILE" }), {
    description: message`Speak TLS, verifying the server with this PEM CA (default: $RPC_TLS_CA).`,
  })),
  tlsPin: optional(option("--tls-pin", string({ metavar: "SHA256" }), {
    description:
      message`Speak TLS, accepting only a server certificate with this SHA-256 fingerprint (default: $RPC_TLS_PIN).`,
  })),
  tlsCert: optional(option("--tls-cert", string({ metavar: "FILE" }), {
    description:
      message`PEM client certificate for mutual TLS; its CN names the client (default: $RPC_TLS_CERT).`,
  })),
  tlsKey: optional(option("--tls-key", string({ metavar: "FILE" }), {
    description: message`PEM private key of --tls-cert (default: $RPC_TLS_KEY).`,
  })),
  local: withDefault(
    flag("--local", {
      description:
        message`Talk to the cluster rpc up runs on this machine from init.yaml: servers at their loopback addresses, connecting from the address of the client --as names (default: $RPC_LOCAL=1).`,
    }),
    false,
  ),
};

/** `--timeout DURATION` of client commands (also `RPC_TIMEOUT`). */
export const timeoutOption = optional(option("--timeout", string({ metavar: "DURATION" }), {
  description:
    message`Give up after this long (e.g. ${"500ms"}, ${"5s"}); default: $RPC_TIMEOUT, else 30s.`,
}));

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
 * Resolves a server given by name (from init.yaml), as `host:port`, or as
 * `unix:/path/to/rpc.sock`.
 */
export function resolveServer(
  target: string,
  cluster: Cluster | undefined,
): Endpoint & { name?: string } {
  const server = cluster?.servers.get(target);
  if (server) return { hostname: server.host, port: server.port, name: server.name };
  if (/:\d+$/.test(target) || target.startsWith("unix:")) {
    try {
      // Under rpc up, an address written in the file stands for its local server.
      return localEndpoint(cluster, parseEndpoint(target));
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const known = cluster ? [...cluster.servers.keys()].join(", ") : "";
  throw new UsageError(
    cluster
      ? `Unknown server "${target}": init.yaml names ${
        known || "no servers"
      }; or give host:port or unix:/path`
      : `Unknown server "${target}": give host:port or unix:/path, or --config init.yaml to use server names`,
  );
}

/** Formats a value for plain output: strings as they are, everything else as JSON. */
export function plain(value: unknown): string {
  return typeof value === "string" ? value : stringifyJson(value);
}

const encoder = new TextEncoder();

/** Writes all of `bytes` (one `writeSync` may write only part of them to a pipe). */
export function writeAll(
  stream: { writeSync(bytes: Uint8Array): number },
  bytes: Uint8Array,
): void {
  let offset = 0;
  while (offset < bytes.length) offset += stream.writeSync(bytes.subarray(offset));
}

/** Writes text to stdout, ending it with a newline. */
export function print(text: string): void {
  writeAll(Deno.stdout, encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

/** Writes text to stderr, ending it with a newline. */
export function printError(text: string): void {
  writeAll(Deno.stderr, encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

/**
 * Makes text fit on one line: line breaks become a visible `\n`, so an
 * error message of several lines still prints as one `error:` line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { oneLine } from "./common.ts";
 * assert.equal(oneLine("first\nsecond"), "first\\nsecond");
 * ```
 */
export function oneLine(text: string): string {
  return text.replace(/\r?\n/g, "\\n").replace(/\r/g, "\\r");
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
