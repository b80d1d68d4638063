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

import { dependency, deriveFromAsync } from "@optique/core/dependency";
import { lineBreak, type Message, message, text } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { argument, flag, option } from "@optique/core/primitives";
import type { NonEmptyString } from "@optique/core/nonempty";
import { string, type ValueParser } from "@optique/core/valueparser";
import { type Endpoint, parseEndpoint } from "../core/client/client.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import { nameProblem } from "../core/wire/names.ts";
import { stringifyJson } from "../core/types/types.ts";
import { localEndpoint, UsageError } from "./settings.ts";

export { clientName, configPath, maybeCluster, parseDuration, UsageError } from "./settings.ts";
export { oneLine, OutputClosed, print, printError, writeAll } from "./output.ts";

/**
 * The value of `--config`, as a dependency source: shell completion of
 * server names reads the init.yaml the command line names so far.
 */
export const configSource = dependency(string({ metavar: "FILE" }));

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

/** The module that finds completions, loaded only when the shell asks for them. */
const completion = () => import("./completion.ts");

/**
 * A value parser taking any text as it is, whose shell completions are the
 * `candidates` that start with the word typed so far.
 */
function completing(
  metavar: NonEmptyString,
  candidates: () => Promise<Iterable<string>>,
): ValueParser<"async", string> {
  return {
    mode: "async",
    metavar,
    placeholder: "",
    parse: (input) => Promise.resolve({ success: true, value: input }),
    format: (value) => value,
    async *suggest(prefix) {
      for (const text of await candidates().catch(() => [])) {
        if (text.startsWith(prefix)) yield { kind: "literal", text };
      }
    },
  };
}

/** A server name or `host:port`; completes the server names of init.yaml. */
export const serverValue = configSource.deriveAsync({
  metavar: "SERVER",
  factory: (config) =>
    completing("SERVER", async () => (await completion()).serverNames({ config })),
  defaultValue: () => "",
});

/** A server's own name (`rpc server --name`); completes the server names of init.yaml. */
export const serverNameValue = configSource.deriveAsync({
  metavar: "NAME",
  factory: (config) => completing("NAME", async () => (await completion()).serverNames({ config })),
  defaultValue: () => "",
});

/** The `SERVER` argument as a dependency source: services complete from what it lists. */
const serverSource = dependency(serverValue);

/** `SERVER`, the positional argument of client commands. */
export const serverArgument = argument(serverSource, {
  description: message`Server name from init.yaml, or host:port.`,
});

/** A client name; completes the client names of init.yaml. */
const clientSource = dependency(configSource.deriveAsync({
  metavar: "CLIENT",
  factory: (config) =>
    completing("CLIENT", async () => (await completion()).clientNames({ config })),
  defaultValue: () => "",
}));

/**
 * A service name; completes the services the server lists for the client
 * (`--as`), else those init.yaml has the server provide.
 */
const serviceSource = dependency(deriveFromAsync({
  metavar: "SERVICE",
  dependencies: [configSource, serverSource, clientSource] as const,
  factory: (config, server, as) =>
    completing(
      "SERVICE",
      async () => (await completion()).serviceNames({ config, server, as }),
    ),
  defaultValues: () => ["", "", ""] as const,
}));

/** `SERVICE`, the positional argument after `SERVER` of `rpc call` and `rpc bench`. */
export const serviceArgument = argument(serviceSource, {
  description: message`Service name, as in init.yaml.`,
});

/** `--service SERVICE` of `rpc call`: completes the services of init.yaml. */
export function serviceOption(description: Message) {
  return option("--service", serviceSource, { description });
}

/** An RPC name of the service; completes from the server's listing, else init.yaml. */
const rpcValue = deriveFromAsync({
  metavar: "RPC",
  dependencies: [configSource, serverSource, clientSource, serviceSource] as const,
  factory: (config, server, as, service) =>
    completing(
      "RPC",
      async () => (await completion()).rpcNames({ config, server, as, service }),
    ),
  defaultValues: () => ["", "", "", ""] as const,
});

/** `RPC`, the procedure name after `SERVICE`. */
export const rpcArgument = argument(rpcValue, {
  description: message`Procedure name within the service.`,
});

/** `SERVICE.RPC` (or `SERVICE`); completes those the server lists, else init.yaml's. */
export const targetValue = deriveFromAsync({
  metavar: "TARGET",
  dependencies: [configSource, serverSource, clientSource] as const,
  factory: (config, server, as) =>
    completing(
      "TARGET",
      async () => (await completion()).targetNames({ config, server, as }),
    ),
  defaultValues: () => ["", "", ""] as const,
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
  broker: optional(option("--broker", string({ metavar: "URL" }), {
    description:
      message`Reach servers by name through this NATS broker, nats://[USER:PASSWORD@]HOST:PORT (default: $RPC_BROKER, else init.yaml's network.broker).`,
  })),
  brokerCreds: optional(option("--broker-creds", string({ metavar: "FILE" }), {
    description:
      message`The broker's own credentials: a NATS .creds file or an nkey seed file (default: $RPC_BROKER_CREDS).`,
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

/** `--as CLIENT` (also `RPC_CLIENT`); completes the client names of init.yaml. */
export const asOption = optional(
  option("--as", clientSource, {
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
  brokered = false,
): Endpoint & { name?: string } {
  const server = cluster?.servers.get(target);
  if (server && (brokered || server.port > 0)) {
    return { hostname: server.host, port: server.port, name: server.name };
  }
  if (server) {
    throw new UsageError(
      `Server ${server.name} has no ip and port in ${
        cluster!.file
      }: reach it through the broker (--broker URL, or network.broker in the file)`,
    );
  }
  if (brokered) {
    if (/:\d+$/.test(target) || target.startsWith("unix:")) {
      throw new UsageError(
        `--broker reaches servers by name, not by address: give the name of ${target}`,
      );
    }
    const problem = nameProblem(target);
    if (problem) throw new UsageError(`Cannot use server "${target}": ${problem}`);
    return { hostname: "", port: 0, name: target };
  }
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

/** Prints return values as `rpc call` does: one per line, or one JSON object. */
export function formatResults(results: readonly unknown[], json: boolean): string[] {
  return json ? [stringifyJson({ "return-values": results })] : results.map(plain);
}

/**
 * Lines of one partial result of a streaming call: one value per line, or
 * one `{"part": [...]}` JSON object.
 */
export function formatPart(part: readonly unknown[], json: boolean): string[] {
  return json ? [stringifyJson({ part })] : part.map(plain);
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
