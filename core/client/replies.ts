/**
 * Validators for the replies a client reads: the handshake (`HELLO`,
 * `AUTH`), the service list (`LIST-RES`) and the admin ops' replies (`health`, `clients`, `disconnect`,
 * `log-level`, `stats`). Each builds a fresh value of its type with only
 * the fields it knows, checked in the order they are listed, or throws a
 * `Malformed Frame` {@linkcode RpcError} naming the first field that is wrong
 * and the value found there. (The deploy replies have theirs in
 * `core/deploy/messages.ts`.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHealth } from "./replies.ts";
 * const health = {
 *   server: "s1", version: "0.1.0", uptimeMs: 5000, connections: 1, connectionsAccepted: 3,
 *   connectionsRefused: 0, callsServed: 10, callsFailed: 1, callsInFlight: 0,
 * };
 * assert.deepEqual(parseHealth(health), health);
 * assert.throws(() => parseHealth({ ...health, callsServed: "10" }), {
 *   kind: "Malformed Frame",
 *   message: 'Cannot read the health reply: callsServed must be a count, got "10"',
 * });
 * ```
 *
 * @module
 */

import { ErrorKind } from "../errors.ts";
import { LOG_LEVELS, type LogLevel } from "../log.ts";
import type { ClientReport, StatsReport } from "../server/admin.ts";
import type { Health } from "../server/server.ts";
import type { AuthReply, HelloReply, RpcDescription, ServiceDescription } from "../wire/message.ts";
import { count, fail, list, record, shown, text, texts, validated } from "../wire/validate.ts";

/**
 * Validates a server's answer to `HELLO`.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the HELLO reply: …".
 */
export function parseHelloReply(value: unknown): HelloReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the HELLO reply", () => {
    const reply = record(value, "the reply");
    const version = count(reply.version, "version");
    const server = text(reply.server, "server");
    const software = text(reply.software, "software");
    if (reply["auth-required"] !== undefined && typeof reply["auth-required"] !== "boolean") {
      fail(`auth-required must be true or false, got ${shown(reply["auth-required"])}`);
    }
    return {
      version,
      server,
      software,
      ...(reply.nonce !== undefined ? { nonce: text(reply.nonce, "nonce") } : {}),
      ...(reply["auth-required"] === true ? { "auth-required": true } : {}),
    };
  });
}

/**
 * Validates a server's answer to `AUTH`.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the AUTH reply: …".
 */
export function parseAuthReply(value: unknown): AuthReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the AUTH reply", () => {
    const reply = record(value, "the reply");
    const client = reply.client === null ? null : text(reply.client, "client");
    if (typeof reply.admin !== "boolean") {
      fail(`admin must be true or false, got ${shown(reply.admin)}`);
    }
    return { client, admin: reply.admin };
  });
}

/**
 * Validates a server's reply to the `health` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the health reply: …".
 */
export function parseHealth(value: unknown): Health {
  return validated(
    ErrorKind.MalformedFrame,
    "Cannot read the health reply",
    () => health(record(value, "the reply")),
  );
}

function health(reply: Record<string, unknown>): Health {
  const field = (name: Exclude<keyof Health, "server" | "version">) => count(reply[name], name);
  return {
    server: text(reply.server, "server"),
    version: text(reply.version, "version"),
    uptimeMs: field("uptimeMs"),
    connections: field("connections"),
    connectionsAccepted: field("connectionsAccepted"),
    connectionsRefused: field("connectionsRefused"),
    callsServed: field("callsServed"),
    callsFailed: field("callsFailed"),
    callsInFlight: field("callsInFlight"),
  };
}

function clientReport(value: unknown, what: string): ClientReport {
  const item = record(value, what);
  return {
    id: count(item.id, `${what}.id`),
    client: item.client === null ? null : text(item.client, `${what}.client`),
    address: text(item.address, `${what}.address`),
    connectedAt: text(item.connectedAt, `${what}.connectedAt`),
    calls: count(item.calls, `${what}.calls`),
  };
}

function logLevel(value: unknown, what: string): LogLevel {
  const level = LOG_LEVELS.find((known) => known === value);
  if (level === undefined) {
    fail(`${what} must be one of ${LOG_LEVELS.join(", ")}, got ${shown(value)}`);
  }
  return level;
}

/** Reply to the `clients` op. */
export interface ClientsReply {
  clients: ClientReport[];
}

/**
 * Validates a server's reply to the `clients` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the clients reply: …".
 */
export function parseClientsReply(value: unknown): ClientsReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the clients reply", () => ({
    clients: list(record(value, "the reply").clients, "clients").map((item, i) =>
      clientReport(item, `clients[${i}]`)
    ),
  }));
}

/** Reply to the `disconnect` op. */
export interface DisconnectReply {
  disconnected: ClientReport;
}

/**
 * Validates a server's reply to the `disconnect` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the disconnect reply: …".
 */
export function parseDisconnectReply(value: unknown): DisconnectReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the disconnect reply", () => ({
    disconnected: clientReport(record(value, "the reply").disconnected, "disconnected"),
  }));
}

/** Reply to the `log-level` op. */
export interface LogLevelReply {
  level: LogLevel;
  was: LogLevel;
}

/**
 * Validates a server's reply to the `log-level` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the log-level reply: …".
 */
export function parseLogLevelReply(value: unknown): LogLevelReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the log-level reply", () => {
    const reply = record(value, "the reply");
    return { level: logLevel(reply.level, "level"), was: logLevel(reply.was, "was") };
  });
}

/**
 * Reply to the `stats` op as a client reads it: the limits are whatever
 * numbers the server reports (a server of another version may have others).
 */
export interface StatsReply extends Omit<StatsReport, "limits"> {
  limits: Record<string, number>;
}

/**
 * Validates a server's reply to the `stats` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the stats reply: …".
 */
export function parseStatsReply(value: unknown): StatsReply {
  return validated(ErrorKind.MalformedFrame, "Cannot read the stats reply", () => {
    // Checked in the order the fields are listed, so the first one wrong is the one named.
    const reply = record(value, "the reply");
    const counters = health(reply);
    const pid = count(reply.pid, "pid");
    const startedAt = text(reply.startedAt, "startedAt");
    const level = logLevel(reply.logLevel, "logLevel");
    const callsByClient: Record<string, number> = {};
    for (const [name, calls] of Object.entries(record(reply.callsByClient, "callsByClient"))) {
      callsByClient[name] = count(calls, `callsByClient[${shown(name)}]`);
    }
    const memory = record(reply.memory, "memory");
    const bytes = (name: keyof StatsReport["memory"]) => count(memory[name], `memory.${name}`);
    const memoryBytes = {
      rssBytes: bytes("rssBytes"),
      heapUsedBytes: bytes("heapUsedBytes"),
      heapTotalBytes: bytes("heapTotalBytes"),
    };
    const limits: Record<string, number> = {};
    for (const [name, limit] of Object.entries(record(reply.limits, "limits"))) {
      if (typeof limit !== "number" || !Number.isFinite(limit) || limit < 0) {
        fail(`limits.${name} must be a number of 0 or more, got ${shown(limit)}`);
      }
      limits[name] = limit;
    }
    return {
      ...counters,
      pid,
      startedAt,
      logLevel: level,
      callsByClient,
      memory: memoryBytes,
      limits,
    };
  });
}

function rpcDescription(value: unknown, service: string, i: number): RpcDescription {
  const where = `rpcs[${i}] of service ${service}`;
  const item = record(value, where);
  const rpc = text(item.name, `${where}.name`);
  const name = `${service}.${rpc}`;
  return {
    name: rpc,
    args: texts(item.args, `args of ${name}`),
    returns: texts(item.returns, `returns of ${name}`),
    ...(item.yields !== undefined ? { yields: texts(item.yields, `yields of ${name}`) } : {}),
    ...(item.doc !== undefined ? { doc: text(item.doc, `doc of ${name}`) } : {}),
  };
}

/**
 * Validates the value of a `LIST-RES`: the services a client may call.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the service list: …".
 */
export function parseServiceList(value: unknown): ServiceDescription[] {
  return validated(ErrorKind.MalformedFrame, "Cannot read the service list", () => {
    const reply = record(value, "the reply");
    return list(reply.services, "services").map((item, i): ServiceDescription => {
      const service = record(item, `services[${i}]`);
      const name = text(service.name, `services[${i}].name`);
      return {
        name,
        rpcs: list(service.rpcs, `rpcs of service ${name}`).map((rpc, j) =>
          rpcDescription(rpc, name, j)
        ),
      };
    });
  });
}
