/**
 * Deployment: what `rpc init` sends and what a server does with it.
 *
 * The initializer asks a server for its state (`ADMIN` op `state`: every
 * procedure with the SHA-256 of its source), compares it with init.yaml, and
 * sends one `install` with the complete desired state plus only the sources
 * the server does not hold. The server checks the hashes itself, stores the
 * sources, loads every procedure, and only then commits the new manifest and
 * swaps its registry. A failure at any step leaves the old state serving.
 *
 * @module
 */

import { extname } from "node:path";
import { authorizeAdmin } from "../server/admin.ts";
import { clientSecret, type Cluster, servicesOf } from "./cluster.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { hashSecret, sha256Hex } from "../hash.ts";
import type { Logger } from "../log.ts";
import type { AdminRequest } from "../wire/message.ts";
import { DEFAULT_LOAD_TIMEOUT_MS, Registry, type Runner } from "../server/registry.ts";
import type { KnownClient, RpcServer, SessionInfo } from "../server/server.ts";
import {
  type ClientRecord,
  type CodeStore,
  emptyManifest,
  type Manifest,
  type ProcedureRecord,
  type ServiceRecord,
} from "./store.ts";
import { formatType, parseType } from "../types/types.ts";

/** The state a server should be in: what an install carries. */
export interface DesiredState {
  services: ServiceRecord[];
  procedures: ProcedureRecord[];
  clients: ClientRecord[];
}

/** Reply to the `state` op. */
export interface StateReport extends DesiredState {
  server: string;
  generation: number;
  installedAt: string;
  /**
   * Digest of the full client table ({@linkcode clientsDigest}). `clients`
   * leaves out the secret hashes, so that anyone may ask for the state.
   */
  clientsDigest: string;
}

/** A digest of a client table, secret hashes included, independent of order. */
export function clientsDigest(clients: readonly ClientRecord[]): string {
  return sha256Hex(canonicalJson([...clients].sort((a, b) => a.name.localeCompare(b.name))));
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

/** The name of a blob: hash plus extension. */
export function blobName(procedure: Pick<ProcedureRecord, "hash" | "extension">): string {
  return `${procedure.hash}${procedure.extension}`;
}

/** Identifies a procedure within a server: service, RPC and argument types. */
export function procedureKey(procedure: Pick<ProcedureRecord, "service" | "rpc" | "args">): string {
  return `${procedure.service}.${procedure.rpc}(${procedure.args.join(", ")})`;
}

/** Formats a procedure as `service.rpc(int, str) -> str`. */
export function describeProcedure(procedure: ProcedureRecord): string {
  const returns = procedure.returns.length === 1
    ? procedure.returns[0]
    : `(${procedure.returns.join(", ")})`;
  const yields = procedure.yields
    ? ` yields ${
      procedure.yields.length === 1 ? procedure.yields[0] : `(${procedure.yields.join(", ")})`
    }`
    : "";
  return `${procedureKey(procedure)}${yields} -> ${returns}`;
}

/** What an install changes. */
export interface Plan {
  added: ProcedureRecord[];
  changed: { from: ProcedureRecord; to: ProcedureRecord }[];
  removed: ProcedureRecord[];
  unchanged: ProcedureRecord[];
  /** Services whose tenants change, or that appear or disappear. */
  services: string[];
  clientsChanged: boolean;
  /** Blob names the server lacks. */
  missing: string[];
}

function sameProcedure(a: ProcedureRecord, b: ProcedureRecord): boolean {
  return a.hash === b.hash && a.extension === b.extension && a.language === b.language &&
    a.returns.join() === b.returns.join() && (a.yields ?? []).join() === (b.yields ?? []).join() &&
    (a.doc ?? "") === (b.doc ?? "") &&
    (a.timeoutMs ?? 0) === (b.timeoutMs ?? 0) && (a.trusted ?? false) === (b.trusted ?? false) &&
    canonicalJson(a.permissions ?? {}) === canonicalJson(b.permissions ?? {});
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, item) =>
      item && typeof item === "object" && !Array.isArray(item)
        ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)))
        : item,
  );
}

/**
 * Compares a server's state with the desired one. `current` may be a
 * {@linkcode StateReport}, whose client table is compared by digest.
 */
export function planInstall(
  current: DesiredState & { clientsDigest?: string },
  desired: DesiredState,
): Plan {
  const held = new Map(current.procedures.map((procedure) => [procedureKey(procedure), procedure]));
  const blobs = new Set(current.procedures.map(blobName));
  const plan: Plan = {
    added: [],
    changed: [],
    removed: [],
    unchanged: [],
    services: [],
    clientsChanged: false,
    missing: [],
  };
  const wanted = new Set<string>();
  for (const procedure of desired.procedures) {
    const key = procedureKey(procedure);
    wanted.add(key);
    const before = held.get(key);
    if (!before) plan.added.push(procedure);
    else if (!sameProcedure(before, procedure)) plan.changed.push({ from: before, to: procedure });
    else plan.unchanged.push(procedure);
    const blob = blobName(procedure);
    if (!blobs.has(blob) && !plan.missing.includes(blob)) plan.missing.push(blob);
  }
  for (const [key, procedure] of held) if (!wanted.has(key)) plan.removed.push(procedure);
  const before = new Map(current.services.map((service) => [service.name, canonicalJson(service)]));
  for (const service of desired.services) {
    if (before.get(service.name) !== canonicalJson(service)) plan.services.push(service.name);
    before.delete(service.name);
  }
  plan.services.push(...before.keys());
  plan.clientsChanged = (current.clientsDigest ?? clientsDigest(current.clients)) !==
    clientsDigest(desired.clients);
  return plan;
}

/** Whether a plan changes nothing. */
export function planIsEmpty(plan: Plan): boolean {
  return plan.added.length === 0 && plan.changed.length === 0 && plan.removed.length === 0 &&
    plan.services.length === 0 && !plan.clientsChanged;
}

/** The desired state of one server from init.yaml, with the source text of each blob. */
export async function desiredStateFor(
  cluster: Cluster,
  server: string,
): Promise<{ state: DesiredState; sources: Map<string, string> }> {
  const sources = new Map<string, string>();
  const texts = new Map<string, string>();
  const state: DesiredState = {
    services: [],
    procedures: [],
    clients: [],
  };
  for (const client of cluster.clients.values()) {
    const secret = await clientSecret(client);
    state.clients.push({
      name: client.name,
      ...(client.ip ? { ip: client.ip } : {}),
      ...(secret ? { secretHash: hashSecret(secret) } : {}),
    });
  }
  for (const service of servicesOf(cluster, server)) {
    state.services.push({
      name: service.name,
      ...(service.tenants ? { tenants: service.tenants } : {}),
    });
    for (const rpc of service.rpcs) {
      let text = texts.get(rpc.path);
      if (text === undefined) {
        text = await Deno.readTextFile(rpc.path);
        texts.set(rpc.path, text);
      }
      const procedure: ProcedureRecord = {
        service: service.name,
        rpc: rpc.name,
        args: rpc.signature.args.map(formatType),
        returns: rpc.signature.returns.map(formatType),
        ...(rpc.signature.yields ? { yields: rpc.signature.yields.map(formatType) } : {}),
        language: rpc.language,
        hash: sha256Hex(text),
        extension: extname(rpc.path),
        ...(rpc.doc ? { doc: rpc.doc } : {}),
        ...(rpc.timeoutMs ? { timeoutMs: rpc.timeoutMs } : {}),
        ...(rpc.trusted ? { trusted: true } : {}),
        ...(rpc.permissions ? { permissions: rpc.permissions } : {}),
      };
      state.procedures.push(procedure);
      sources.set(blobName(procedure), text);
    }
  }
  return { state, sources };
}

// ---------------------------------------------------------------------------
// Server side

/** Options of {@linkcode Installer}. */
export interface InstallerOptions {
  store: CodeStore;
  server: RpcServer;
  runners: Record<string, Runner>;
  logger: Logger;
  /** SHA-256 (hex) of the admin secret; installs are refused without one unless `insecure`. */
  adminTokenHash?: string;
  /** Accept installs from anyone. */
  insecure?: boolean;
  /** Receives one record per install (the server audits refused ones). */
  audit?: Logger;
  /**
   * How long loading one procedure may take, in ms, before the install (or
   * boot) fails naming it. Default {@linkcode DEFAULT_LOAD_TIMEOUT_MS}; 0 for no limit.
   */
  loadTimeoutMs?: number;
}

/** Options of {@linkcode Installer.install}. */
export interface InstallOptions {
  /** Who asked, for the log and the audit log (an address, or a file). Default `local`. */
  by?: string;
  /**
   * The generation the state was planned against. When given, the install is
   * refused with `Conflict` if another install has committed since
   * (compare-and-swap), so that no change is overwritten unseen.
   */
  generation?: number;
}

/** Keeps a server's registry in step with its state directory and serves the admin ops. */
export class Installer {
  #options: InstallerOptions;
  #manifest: Manifest = emptyManifest();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: InstallerOptions) {
    this.#options = options;
  }

  /** The state installed now. */
  get manifest(): Manifest {
    return this.#manifest;
  }

  /** Loads the installed state and starts serving it. */
  async boot(): Promise<void> {
    const { store, server, logger } = this.#options;
    const manifest = await store.readManifest();
    server.registry = await Registry.load(store.serviceSpecs(manifest), this.#options.runners, {
      loadTimeoutMs: this.#loadTimeoutMs,
    });
    server.clients = clientTable(manifest.clients);
    this.#manifest = manifest;
    logger.info(
      "install",
      `serving generation ${manifest.generation} from ${store.dir}: ${manifest.services.length} services, ${manifest.procedures.length} procedures`,
      { generation: manifest.generation },
    );
  }

  /** Handles an `ADMIN` message. */
  handle = (request: AdminRequest, session: SessionInfo): Promise<unknown> => {
    switch (request.op) {
      case "state":
        return Promise.resolve(this.state());
      case "install": {
        // A refusal is logged and audited by the server, which summarises repeated ones.
        authorizeAdmin(request, this.#options, session);
        const generation = parseGeneration(request.generation);
        const state = parseDesiredState(request.state);
        const sources = parseSources(request.sources);
        this.#options.logger.info(
          "install",
          `install from ${session.remote} received: planned against generation ${generation}, ${sources.size} sources`,
          { by: session.remote, planned: generation, sources: sources.size },
        );
        return this.install(state, sources, { by: session.remote, generation });
      }
      default:
        throw new RpcError(ErrorKind.InvalidArguments, `Unknown admin op "${request.op}"`);
    }
  };

  /** The installed state, as the `state` op reports it. */
  state(): StateReport {
    const { generation, installedAt, services, procedures, clients } = this.#manifest;
    return {
      server: this.#options.server.name,
      generation,
      installedAt,
      services,
      procedures,
      clients: clients.map(({ name, ip, secretHash }) => ({
        name,
        ...(ip ? { ip } : {}),
        ...(secretHash ? { secret: true } : {}),
      })),
      clientsDigest: clientsDigest(clients),
    };
  }

  get #loadTimeoutMs(): number {
    return this.#options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
  }

  /**
   * Installs a desired state: stores the given sources (checking their
   * hashes), loads every procedure, commits the manifest, swaps the registry.
   * Installs run one at a time; with `generation`, one planned against a
   * state that is no longer current is refused (see {@linkcode InstallOptions}).
   */
  install(
    state: DesiredState,
    sources: Map<string, string>,
    options: InstallOptions = {},
  ): Promise<InstallReport> {
    const run = this.#queue.then(() => this.#install(state, sources, options));
    this.#queue = run.catch((error) => {
      const by = options.by ?? "local";
      this.#options.logger.warn("install", `install from ${by} failed: ${error.message}`, {
        by,
        error: error.message,
      });
    });
    return run;
  }

  async #install(
    state: DesiredState,
    sources: Map<string, string>,
    options: InstallOptions,
  ): Promise<InstallReport> {
    const { store, server, logger, runners } = this.#options;
    const by = options.by ?? "local";
    const current = this.#manifest;
    // Checked here, where installs run one at a time, so nothing can commit in between.
    if (options.generation !== undefined && options.generation !== current.generation) {
      throw new RpcError(
        ErrorKind.Conflict,
        `Cannot install: it was planned against generation ${options.generation}, but the server has generation ${current.generation} (installed ${current.installedAt}) since another install came first; nothing was changed: plan again against the new state and retry (rpc init does both when run again)`,
      );
    }
    // Blobs of the state before the current one are no longer needed by any call in flight.
    await store.collectGarbage([current]);
    let bytes = 0;
    for (const [name, text] of sources) {
      const extension = extname(name);
      const hash = await store.putBlob(text, extension);
      if (`${hash}${extension}` !== name) {
        throw new RpcError(
          ErrorKind.InvalidArguments,
          `Source sent as ${name} has SHA-256 ${hash}`,
        );
      }
      bytes += new TextEncoder().encode(text).length;
    }
    for (const procedure of state.procedures) {
      if (!(await store.has(procedure.hash, procedure.extension))) {
        throw new RpcError(
          ErrorKind.InvalidArguments,
          `No source for ${procedureKey(procedure)}: the server does not hold ${
            blobName(procedure)
          } and it was not sent`,
        );
      }
    }
    const next: Manifest = {
      format: 1,
      generation: current.generation + 1,
      installedAt: new Date().toISOString(),
      ...state,
    };
    let registry: Registry;
    try {
      registry = await Registry.load(store.serviceSpecs(next), runners, {
        loadTimeoutMs: this.#loadTimeoutMs,
      });
    } catch (error) {
      throw new RpcError(
        ErrorKind.ExecutionException,
        `Cannot load the new code: ${(error as Error).message}`,
      );
    }
    await store.writeManifest(next);
    server.registry = registry;
    server.clients = clientTable(next.clients);
    this.#manifest = next;
    const plan = planInstall(current, state);
    this.#options.audit?.info("install", `generation ${next.generation}`, {
      by,
      generation: next.generation,
      added: plan.added.map((p) => ({ procedure: procedureKey(p), sha256: p.hash })),
      changed: plan.changed.map(({ from, to }) => ({
        procedure: procedureKey(to),
        from: from.hash,
        sha256: to.hash,
      })),
      removed: plan.removed.map((p) => ({ procedure: procedureKey(p), sha256: p.hash })),
      services: plan.services,
    });
    const report: InstallReport = {
      generation: next.generation,
      added: plan.added.length,
      changed: plan.changed.length,
      removed: plan.removed.length,
      unchanged: plan.unchanged.length,
      received: sources.size,
      bytes,
    };
    logger.info(
      "install",
      `installed generation ${next.generation} from ${by}: ${report.added} added, ${report.changed} changed, ${report.removed} removed, ${report.unchanged} unchanged; received ${report.received} sources (${bytes} bytes)`,
      {
        by,
        ...report,
        hashes: Object.fromEntries(state.procedures.map((p) => [procedureKey(p), p.hash])),
      },
    );
    return report;
  }
}

function clientTable(clients: ClientRecord[]): Map<string, KnownClient> {
  return new Map(clients.map((client) => [client.name, {
    name: client.name,
    ...(client.ip ? { ip: client.ip } : {}),
    ...(client.secretHash ? { secretHash: client.secretHash } : {}),
  }]));
}

function invalid(message: string): RpcError {
  return new RpcError(ErrorKind.InvalidArguments, `Cannot install: ${message}`);
}

/** Checks an install's `generation`: the generation its state was planned against. */
function parseGeneration(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(
      `generation must be the generation the state was planned against (from the state op), got ${
        JSON.stringify(value)?.slice(0, 40)
      }`,
    );
  }
  return value;
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

/** Checks an install's desired state as received from the network. */
export function parseDesiredState(value: unknown): DesiredState {
  if (typeof value !== "object" || value === null) throw invalid("state must be an object");
  const { services, procedures, clients } = value as Record<string, unknown>;
  if (!Array.isArray(services) || !Array.isArray(procedures) || !Array.isArray(clients)) {
    throw invalid("state needs services, procedures and clients lists");
  }
  const serviceNames = new Set<string>();
  for (const service of services as ServiceRecord[]) {
    if (typeof service?.name !== "string") throw invalid("every service needs a name");
    if (service.tenants !== undefined && !isStrings(service.tenants)) {
      throw invalid(`tenants of ${service.name} must be names`);
    }
    serviceNames.add(service.name);
  }
  const keys = new Set<string>();
  for (const procedure of procedures as ProcedureRecord[]) {
    if (
      typeof procedure?.service !== "string" || typeof procedure.rpc !== "string" ||
      !isStrings(procedure.args) || !isStrings(procedure.returns) ||
      typeof procedure.hash !== "string" || !/^[0-9a-f]{64}$/.test(procedure.hash) ||
      typeof procedure.extension !== "string" ||
      !/^\.(ts|mts|js|mjs|py)$/.test(procedure.extension) ||
      (procedure.language !== "typescript" && procedure.language !== "python")
    ) {
      throw invalid("a procedure record is incomplete");
    }
    if (!serviceNames.has(procedure.service)) {
      throw invalid(`procedure of unknown service ${procedure.service}`);
    }
    if (procedure.trusted !== undefined && typeof procedure.trusted !== "boolean") {
      throw invalid("trusted must be true or false");
    }
    if (procedure.permissions !== undefined && !isPermissions(procedure.permissions)) {
      throw invalid(
        `permissions of ${procedure.rpc} must map read, write, net, env and run to names, sys to a boolean`,
      );
    }
    try {
      procedure.args = procedure.args.map((type) => formatType(parseType(type)));
      procedure.returns = procedure.returns.map((type) => formatType(parseType(type)));
      if (procedure.yields !== undefined) {
        if (!isStrings(procedure.yields) || procedure.yields.length === 0) {
          throw new Error("yields must name types");
        }
        procedure.yields = procedure.yields.map((type) => formatType(parseType(type)));
      }
    } catch (error) {
      throw invalid((error as Error).message);
    }
    const key = procedureKey(procedure);
    if (keys.has(key)) throw invalid(`${key} appears twice`);
    keys.add(key);
  }
  for (const client of clients as ClientRecord[]) {
    if (typeof client?.name !== "string") throw invalid("every client needs a name");
    if (client.secretHash !== undefined && !/^[0-9a-f]{64}$/.test(String(client.secretHash))) {
      throw invalid(`secretHash of client ${client.name} must be a SHA-256 in hex`);
    }
  }
  return { services, procedures, clients } as DesiredState;
}

function isPermissions(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  return Object.entries(value).every(([key, item]) =>
    key === "sys"
      ? typeof item === "boolean"
      : ["read", "write", "net", "env", "run"].includes(key) && isStrings(item)
  );
}

function parseSources(value: unknown): Map<string, string> {
  if (value === undefined) return new Map();
  if (typeof value !== "object" || value === null) {
    throw invalid("sources must be a map of blob name to text");
  }
  const out = new Map<string, string>();
  for (const [name, text] of Object.entries(value)) {
    if (typeof text !== "string" || !/^[0-9a-f]{64}\.(ts|mts|js|mjs|py)$/.test(name)) {
      throw invalid(`bad source entry ${name}`);
    }
    out.set(name, text);
  }
  return out;
}
