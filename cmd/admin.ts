/**
 * `rpc admin`: the admin channel (libvirt's virt-admin) for holders of the
 * server's admin secret: who is connected, closing one connection, the log
 * level, and the server's counters.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional } from "@optique/core/modifiers";
import { argument, command, constant, option } from "@optique/core/primitives";
import { choice, string } from "@optique/core/valueparser";
import { ADMIN_OPS } from "../core/server/admin.ts";
import { connect } from "../core/client/connect.ts";
import { localRunOf } from "../core/client/local.ts";
import {
  type ClientsReply,
  type DisconnectReply,
  type LogLevelReply,
  parseClientsReply,
  parseDisconnectReply,
  parseLogLevelReply,
  parseStatsReply,
  type StatsReply,
} from "../core/client/replies.ts";
import { LOG_LEVELS } from "../core/log.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  configOption,
  examples,
  jsonFlag,
  print,
  resolveServer,
  securityOptions,
  serverArgument,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { formatUptime } from "./ping.ts";
import { adminToken, clientSettings, connectOptions } from "./settings.ts";

/** An admin operation the command line offers. */
export type AdminOp = typeof ADMIN_OPS[number];

/** The parser of `rpc admin`. */
export const adminCommand = command(
  "admin",
  object({
    command: constant("admin" as const),
    ...securityOptions,
    config: configOption,
    adminTokenFile: optional(option("--admin-token-file", string({ metavar: "FILE" }), {
      description: message`File holding the server's admin secret (default: $RPC_ADMIN_TOKEN).`,
    })),
    json: jsonFlag,
    timeout: timeoutOption,
    server: serverArgument,
    op: argument(choice(ADMIN_OPS, { metavar: "OP" }), {
      description:
        message`The operation: clients, disconnect ID, log-level LEVEL (debug, info, warn or error), or stats.`,
    }),
    operand: optional(argument(string({ metavar: "ARG" }), {
      description: message`The connection ID for disconnect, the level for log-level.`,
    })),
  }),
  {
    brief: message`Administer a running server: clients, disconnect, log level, stats.`,
    description:
      message`Needs the admin secret the server was started with, as for rpc init (${"--admin-token-file"} or $RPC_ADMIN_TOKEN); a request without it is refused (exit 18) and logged by the server as unauthorized. ${"clients"} lists every open connection: its ID, client name, address, when it connected and the calls it made. ${"disconnect ID"} closes one (its calls in flight are cancelled). ${"log-level LEVEL"} changes what the server logs until it restarts. ${"stats"} prints the server's counters, limits and memory.`,
    footer: examples(
      "RPC_ADMIN_TOKEN=secret rpc admin s1 clients",
      "rpc admin --admin-token-file ~/.rpc-admin s1 disconnect 7",
      "rpc admin s1 log-level debug",
      "rpc admin 127.0.0.1:8181 stats --json",
    ),
  },
);

/** Options of {@linkcode runAdmin}, as parsed. */
export interface AdminCommandOptions {
  config?: string;
  adminTokenFile?: string;
  json: boolean;
  timeout?: string;
  server: string;
  op: AdminOp;
  operand?: string;
}

/** The `ADMIN` request for a command line, its operand checked. */
export function adminRequest(op: AdminOp, operand: string | undefined): Record<string, unknown> {
  switch (op) {
    case "disconnect": {
      if (operand === undefined || !/^\d+$/.test(operand)) {
        throw new UsageError(
          `disconnect needs a connection ID (a number from rpc admin SERVER clients)${
            operand === undefined ? "" : `, got "${operand}"`
          }`,
        );
      }
      return { op, id: Number(operand) };
    }
    case "log-level": {
      if (operand === undefined || !(LOG_LEVELS as readonly string[]).includes(operand)) {
        throw new UsageError(
          `log-level needs one of ${LOG_LEVELS.join(", ")}${
            operand === undefined ? "" : `, got "${operand}"`
          }`,
        );
      }
      return { op, level: operand };
    }
    default:
      if (operand !== undefined) throw new UsageError(`${op} takes no argument, got "${operand}"`);
      return { op };
  }
}

/** Lays rows out in columns, the first row being the header. */
export function table(rows: readonly string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

/** An op's reply, validated: `Malformed Frame` naming the field when it is not the op's reply. */
export type AdminReply =
  | { op: "clients"; reply: ClientsReply }
  | { op: "disconnect"; reply: DisconnectReply }
  | { op: "log-level"; reply: LogLevelReply }
  | { op: "stats"; reply: StatsReply };

/** Validates the reply to `op` (never cast: it came from the network). */
export function adminReply(op: AdminOp, value: unknown): AdminReply {
  switch (op) {
    case "clients":
      return { op, reply: parseClientsReply(value) };
    case "disconnect":
      return { op, reply: parseDisconnectReply(value) };
    case "log-level":
      return { op, reply: parseLogLevelReply(value) };
    case "stats":
      return { op, reply: parseStatsReply(value) };
  }
}

/** The plain-text output of an op's reply. */
export function adminLines(answer: AdminReply): string[] {
  switch (answer.op) {
    case "clients": {
      const { clients } = answer.reply;
      return table([
        ["ID", "CLIENT", "ADDRESS", "CONNECTED SINCE", "CALLS"],
        ...clients.map((client) => [
          String(client.id),
          client.client ?? "-",
          client.address,
          client.connectedAt,
          String(client.calls),
        ]),
      ]);
    }
    case "disconnect": {
      const { disconnected } = answer.reply;
      return [
        `disconnected ${disconnected.id}: ${
          disconnected.client ?? "(anonymous)"
        } from ${disconnected.address}, ${disconnected.calls} calls`,
      ];
    }
    case "log-level": {
      const { level, was } = answer.reply;
      return [`log level ${was} -> ${level}`];
    }
    case "stats": {
      const stats = answer.reply;
      const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
      const byClient = Object.entries(stats.callsByClient)
        .map(([client, calls]) => `${client} ${calls}`).join(", ");
      return [
        `server       ${stats.server} (rpc ${stats.version}, pid ${stats.pid})`,
        `started      ${stats.startedAt}, up ${formatUptime(stats.uptimeMs)}`,
        `connections  ${stats.connections} open, ${stats.connectionsAccepted} accepted, ${stats.connectionsRefused} refused`,
        `calls        ${stats.callsServed} served, ${stats.callsFailed} failed, ${stats.callsInFlight} in flight`,
        `by client    ${byClient || "-"} (connected now)`,
        `log level    ${stats.logLevel}`,
        `memory       ${mib(stats.memory.rssBytes)} resident, heap ${
          mib(stats.memory.heapUsedBytes)
        } of ${mib(stats.memory.heapTotalBytes)}`,
        `limits       ${
          Object.entries(stats.limits).map(([name, value]) => `${name}=${value}`).join(" ")
        }`,
      ];
    }
  }
}

/** Runs `rpc admin`; returns the exit code. */
export async function runAdmin(options: AdminCommandOptions): Promise<number> {
  const request = adminRequest(options.op, options.operand);
  const settings = await clientSettings({ ...options, as: undefined });
  // Under rpc up (--local), the servers' admin secret is in its run file.
  const token = await adminToken(options.adminTokenFile) ?? localRunOf(settings.cluster)?.token;
  // The token is proven in the handshake (AUTH), never sent.
  const client = await connect(
    resolveServer(options.server, settings.cluster, settings.broker !== undefined),
    { ...connectOptions(settings), ...(token ? { adminToken: token } : {}) },
  );
  try {
    const reply = await client.admin({ ...request, op: options.op }, {
      timeoutMs: settings.timeoutMs,
    });
    const answer = adminReply(options.op, reply);
    if (options.json) print(stringifyJson(answer.reply));
    else for (const line of adminLines(answer)) print(line);
    return 0;
  } finally {
    client.close();
  }
}
