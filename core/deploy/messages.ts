/**
 * What the deploy admin ops carry on the wire, and one validator for each:
 * the `state` reply and the `install` reply, read by the client, and the
 * `install` request, read by the server. Wire data is never cast: each
 * validator builds a fresh value of its type, with only the fields it
 * knows, or throws an {@linkcode RpcError} naming the first field that is
 * wrong and the value found there.
 *
 * A malformed reply is a `Malformed Frame` ("Cannot read the state reply: …");
 * a malformed request is `Invalid Arguments` ("Cannot install: …").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseInstallReport } from "./messages.ts";
 * const reply = { generation: 2, added: 1, changed: 0, removed: 0, unchanged: 3, received: 1, bytes: 40 };
 * assert.deepEqual(parseInstallReport(reply), reply);
 * assert.throws(
 *   () => parseInstallReport({ ...reply, added: "1" }),
 *   { kind: "Malformed Frame", message: 'Cannot read the install reply: added must be a count, got "1"' },
 * );
 * ```
 *
 * @module
 */

import { ErrorKind } from "../errors.ts";
import type { ProcedurePermissions } from "../server/registry.ts";
import { formatType, parseType } from "../types/types.ts";
import { count, fail, list, record, shown, text, texts, validated } from "../wire/validate.ts";
import { type DesiredState, procedureKey } from "./plan.ts";
import {
  type ClientRecord,
  type ProcedureRecord,
  type ServiceRecord,
  SHA256_HEX,
  SOURCE_EXTENSION,
} from "./store.ts";

/** A client as the `state` reply shows it: its secret hash is left out. */
export interface ReportedClient {
  name: string;
  ip?: string;
  /** Whether the client has a secret. */
  secret?: true;
}

/** Reply to the `state` op. */
export interface StateReport {
  server: string;
  generation: number;
  installedAt: string;
  services: ServiceRecord[];
  procedures: ProcedureRecord[];
  clients: ReportedClient[];
  /**
   * Digest of the full client table (see `clientsDigest` in plan.ts).
   * `clients` leaves out the secret hashes, so that anyone may ask for the
   * state.
   */
  clientsDigest: string;
}

/** Reply to the `install` op. */
export interface InstallReport {
  generation: number;
  added: number;
  changed: number;
  removed: number;
  unchanged: number;
  /** Sources received in this install. */
  received: number;
  /** Bytes of source text received. */
  bytes: number;
}

/** The `install` request, as the server reads it. */
export interface InstallRequest {
  /** The generation the state was planned against. */
  generation: number;
  state: DesiredState;
  /** Source text by blob name (`<sha256>.<extension>`). */
  sources: Map<string, string>;
}

function sha256(value: unknown, what: string): string {
  if (typeof value !== "string" || !SHA256_HEX.test(value)) {
    fail(`${what} must be a SHA-256 in hex, got ${shown(value)}`);
  }
  return value;
}

/** Types as the server spells them: parsed and formatted again. */
function types(value: unknown, what: string): string[] {
  return texts(value, what).map((type, i) => {
    try {
      return formatType(parseType(type));
    } catch (error) {
      return fail(`${what}[${i}]: ${(error as Error).message}`);
    }
  });
}

function services(value: unknown): ServiceRecord[] {
  return list(value, "services").map((item, i) => {
    const service = record(item, `services[${i}]`);
    const name = text(service.name, `services[${i}].name`);
    return {
      name,
      ...(service.tenants !== undefined
        ? { tenants: texts(service.tenants, `tenants of service ${name}`) }
        : {}),
    };
  });
}

function permissions(value: unknown, what: string): ProcedurePermissions {
  const out: ProcedurePermissions = {};
  for (const [key, item] of Object.entries(record(value, what))) {
    if (key === "sys") {
      if (typeof item !== "boolean") fail(`${what}.sys must be true or false, got ${shown(item)}`);
      out.sys = item;
    } else if (
      key === "read" || key === "write" || key === "net" || key === "env" || key === "run"
    ) {
      out[key] = texts(item, `${what}.${key}`);
    } else {
      fail(`${what} may name read, write, net, env, run and sys, got ${shown(key)}`);
    }
  }
  return out;
}

function procedure(value: unknown, i: number, serviceNames: Set<string>): ProcedureRecord {
  const where = `procedures[${i}]`;
  const item = record(value, where);
  const service = text(item.service, `${where}.service`);
  if (!serviceNames.has(service)) fail(`${where} is of unknown service ${shown(service)}`);
  const rpc = text(item.rpc, `${where}.rpc`);
  const name = `${service}.${rpc}`;
  if (item.language !== "typescript" && item.language !== "python") {
    fail(`language of ${name} must be typescript or python, got ${shown(item.language)}`);
  }
  const extension = text(item.extension, `extension of ${name}`);
  if (!SOURCE_EXTENSION.test(extension)) {
    fail(`extension of ${name} must be .ts, .mts, .js, .mjs or .py, got ${shown(extension)}`);
  }
  if (item.yields !== undefined && (!Array.isArray(item.yields) || item.yields.length === 0)) {
    fail(`yields of ${name} must name types, got ${shown(item.yields)}`);
  }
  if (item.doc !== undefined) text(item.doc, `doc of ${name}`);
  if (item.trusted !== undefined && typeof item.trusted !== "boolean") {
    fail(`trusted of ${name} must be true or false, got ${shown(item.trusted)}`);
  }
  return {
    service,
    rpc,
    args: types(item.args, `args of ${name}`),
    returns: types(item.returns, `returns of ${name}`),
    ...(item.yields !== undefined ? { yields: types(item.yields, `yields of ${name}`) } : {}),
    language: item.language,
    hash: sha256(item.hash, `hash of ${name}`),
    extension,
    ...(item.doc !== undefined ? { doc: item.doc as string } : {}),
    ...(item.timeoutMs !== undefined
      ? { timeoutMs: count(item.timeoutMs, `timeoutMs of ${name}`) }
      : {}),
    ...(item.trusted !== undefined ? { trusted: item.trusted as boolean } : {}),
    ...(item.permissions !== undefined
      ? { permissions: permissions(item.permissions, `permissions of ${name}`) }
      : {}),
  };
}

function procedures(value: unknown, ofServices: ServiceRecord[]): ProcedureRecord[] {
  const serviceNames = new Set(ofServices.map((service) => service.name));
  const keys = new Set<string>();
  return list(value, "procedures").map((item, i) => {
    const parsed = procedure(item, i, serviceNames);
    const key = procedureKey(parsed);
    if (keys.has(key)) fail(`${key} appears twice`);
    keys.add(key);
    return parsed;
  });
}

function ip(value: unknown, what: string): { ip?: string } {
  return value === undefined ? {} : { ip: text(value, what) };
}

/**
 * Validates a desired state received in an `install` request.
 *
 * @throws {RpcError} `Invalid Arguments`, "Cannot install: …".
 */
export function parseDesiredState(value: unknown): DesiredState {
  return validated(ErrorKind.InvalidArguments, "Cannot install", () => desiredState(value));
}

function desiredState(value: unknown): DesiredState {
  const state = record(value, "state");
  const serviceList = services(state.services);
  return {
    services: serviceList,
    procedures: procedures(state.procedures, serviceList),
    clients: list(state.clients, "clients").map((item, i): ClientRecord => {
      const client = record(item, `clients[${i}]`);
      const name = text(client.name, `clients[${i}].name`);
      return {
        name,
        ...ip(client.ip, `ip of client ${name}`),
        ...(client.secretHash !== undefined
          ? { secretHash: sha256(client.secretHash, `secretHash of client ${name}`) }
          : {}),
      };
    }),
  };
}

/**
 * Validates an `install` request: the generation it was planned against,
 * the desired state, and the sources sent with it.
 *
 * @throws {RpcError} `Invalid Arguments`, "Cannot install: …".
 */
export function parseInstallRequest(request: Record<string, unknown>): InstallRequest {
  return validated(ErrorKind.InvalidArguments, "Cannot install", () => {
    const { generation } = request;
    if (typeof generation !== "number" || !Number.isSafeInteger(generation) || generation < 0) {
      fail(
        `generation must be the generation the state was planned against (from the state op), got ${
          shown(generation)
        }`,
      );
    }
    const state = desiredState(request.state);
    const sources = new Map<string, string>();
    if (request.sources !== undefined) {
      const given = record(request.sources, "sources");
      for (const [name, source] of Object.entries(given)) {
        const [hash, extension] = [name.slice(0, 64), name.slice(64)];
        if (!SHA256_HEX.test(hash) || !SOURCE_EXTENSION.test(extension)) {
          fail(`sources must be named <sha256>.<extension>, got ${shown(name)}`);
        }
        sources.set(name, text(source, `sources[${shown(name)}]`));
      }
    }
    return { generation, state, sources };
  });
}

/**
 * Validates a server's reply to the `state` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the state reply: …".
 */
export function parseStateReport(value: unknown): StateReport {
  return validated(ErrorKind.MalformedFrame, "Cannot read the state reply", () => {
    // Checked in the order the fields are listed, so the first one wrong is the one named.
    const reply = record(value, "the reply");
    const server = text(reply.server, "server");
    const generation = count(reply.generation, "generation");
    const installedAt = text(reply.installedAt, "installedAt");
    if (Number.isNaN(Date.parse(installedAt))) {
      fail(`installedAt must be a time, got ${shown(installedAt)}`);
    }
    const serviceList = services(reply.services);
    return {
      server,
      generation,
      installedAt,
      services: serviceList,
      procedures: procedures(reply.procedures, serviceList),
      clients: list(reply.clients, "clients").map((item, i): ReportedClient => {
        const client = record(item, `clients[${i}]`);
        const name = text(client.name, `clients[${i}].name`);
        if (client.secret !== undefined && client.secret !== true) {
          fail(`secret of client ${name} must be true when given, got ${shown(client.secret)}`);
        }
        return {
          name,
          ...ip(client.ip, `ip of client ${name}`),
          ...(client.secret ? { secret: true } : {}),
        };
      }),
      clientsDigest: sha256(reply.clientsDigest, "clientsDigest"),
    };
  });
}

/**
 * Validates a server's reply to the `install` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the install reply: …".
 */
export function parseInstallReport(value: unknown): InstallReport {
  return validated(ErrorKind.MalformedFrame, "Cannot read the install reply", () => {
    const reply = record(value, "the reply");
    const field = (name: keyof InstallReport) => count(reply[name], name);
    return {
      generation: field("generation"),
      added: field("added"),
      changed: field("changed"),
      removed: field("removed"),
      unchanged: field("unchanged"),
      received: field("received"),
      bytes: field("bytes"),
    };
  });
}
