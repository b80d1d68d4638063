/**
 * The server side of a deploy: the `Installer` keeps a server's registry in
 * step with its state directory and answers the `state` and `install` admin
 * ops. An install stores the sources sent (checking their hashes), loads
 * every procedure, and only then commits the new manifest and swaps the
 * registry: a failure at any step leaves the old state serving. Requests are
 * validated by `parseInstallRequest` (messages.ts) before anything is done.
 *
 * @module
 */

import { extname } from "node:path";
import { authorizeAdmin } from "../server/admin.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AdminRequest } from "../wire/message.ts";
import { DEFAULT_LOAD_TIMEOUT_MS, Registry, type Runner } from "../server/registry.ts";
import type { KnownClient, RpcServer, SessionInfo } from "../server/server.ts";
import { type InstallReport, parseInstallRequest, type StateReport } from "./messages.ts";
import { blobName, clientsDigest, type DesiredState, planInstall, procedureKey } from "./plan.ts";
import { type ClientRecord, type CodeStore, emptyManifest, type Manifest } from "./store.ts";

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

  /** Handles an `ADMIN` message; every failure is a rejection. */
  handle = async (request: AdminRequest, session: SessionInfo): Promise<unknown> => {
    switch (request.op) {
      case "state":
        return this.state();
      case "install": {
        // A refusal is logged and audited by the server, which summarises repeated ones.
        authorizeAdmin(request, this.#options, session);
        const { generation, state, sources } = parseInstallRequest(request);
        this.#options.logger.info(
          "install",
          `install from ${session.remote} received: planned against generation ${generation}, ${sources.size} sources`,
          { by: session.remote, planned: generation, sources: sources.size },
        );
        return await this.install(state, sources, { by: session.remote, generation });
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
