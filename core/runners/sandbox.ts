/**
 * Runs TypeScript procedures in sandboxes: child OS processes, one pool per
 * service (and set of Deno permissions), never in the server's own process.
 *
 * A pool starts sandbox processes as calls need them, up to `size`: a call
 * goes to an idle sandbox, else a new one while the pool has room, else the
 * least busy. A sandbox (see `sandbox_process.ts`) holds only its service's
 * procedures, so procedures of different services share no memory, no
 * globals and no channel; it reads no procedure source from disk (the server
 * sends each module's text, which is imported from a `blob:` URL). Calls and
 * replies travel in batches: every call dispatched in one tick goes in one
 * frame, and every reply produced in one tick comes back in one.
 *
 * Failure handling: a call past its time limit is answered `Timeout` at
 * once, and its sandbox takes no new calls. If the sandbox then does not
 * answer a ping within `stallMs` (it is stuck in a loop or in
 * `Atomics.wait`), it is killed with SIGKILL and the calls it was running
 * fail; otherwise it is killed as soon as its other calls have finished, so
 * that nothing the overdue procedure left running (timers, a loop that
 * yields) lives on. A sandbox that ends for any other reason (out of memory,
 * killed) fails its calls. New calls get a new sandbox. The server process is
 * never at risk: what a procedure allocates is counted against its sandbox.
 *
 * @module
 */

import { extname } from "node:path";
import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { toFileUrl } from "../paths.ts";
import type { Procedure, ProcedurePermissions, ProcedureSpec, Runner } from "../server/registry.ts";
import { type Environment, NO_ENVIRONMENT } from "./environment.ts";
import { type Definition, type Module, Slot, type SlotPool } from "./sandbox_slot.ts";

/** Options of {@linkcode SandboxRunner}. */
export interface SandboxOptions {
  /** Sandbox processes per service (and permission set). Default: the number of cores. */
  size?: number;
  /** Memory each sandbox may use beyond what it needs to start, in MiB. Default 256. */
  memoryMb?: number;
  /** How long a sandbox may take to answer a ping after a call overran. Default 1000 ms. */
  stallMs?: number;
  /** How long a sandbox may take to start. Default 30 s. */
  startTimeoutMs?: number;
  /**
   * How long loading a procedure (its module's top level) may take; 0 for no
   * limit. Default 30 s, as `rpc server --load-timeout`. A sandbox stuck
   * loading is killed like one stuck in a call.
   */
  loadTimeoutMs?: number;
  /** Where sandboxes that end and errors that belong to no call are reported. */
  logger?: Logger;
  /**
   * The server's environment, which a sandbox's Deno needs to start (`HOME`,
   * `DENO_DIR`, `PATH`, …) and which holds the variables procedures are
   * granted. Default: no variables (`rpc server` passes its own).
   */
  env?: Environment;
}

export type Resolved = Required<Omit<SandboxOptions, "logger">> & { logger: Logger | undefined };

let nextModuleId = 1;
let nextProcedureId = 1;

/** The sandboxes of one service with one set of permissions, and what they run. */
class Pool implements SlotPool {
  /** Sandboxes taking new calls. */
  #active: Slot[] = [];
  /** Every sandbox not yet ended, retiring ones included. */
  #all = new Set<Slot>();
  /** Sandboxes that ended while in use (crashed, out of memory, stuck, retired), not closed. */
  ended = 0;
  readonly modules = new Map<number, Module>();
  readonly modulesByPath = new Map<string, Module>();
  readonly definitions = new Map<number, Definition>();
  readonly definitionsByKey = new Map<string, Definition>();

  constructor(
    readonly name: string,
    readonly permissions: Deno.PermissionOptionsObject,
    readonly options: Resolved,
  ) {}

  /** The least busy sandbox, starting one up to the pool size as needed. */
  pick(): Slot {
    let best: Slot | undefined;
    for (const slot of this.#active) {
      if (slot.load === 0) return slot;
      if (!best || slot.load < best.load) best = slot;
    }
    if (this.#active.length < this.options.size) {
      const slot = new Slot(this);
      this.#active.push(slot);
      this.#all.add(slot);
      return slot;
    }
    return best!;
  }

  /** Sandboxes not yet ended. */
  get alive(): number {
    return this.#all.size;
  }

  /** Stops giving `slot` new calls. */
  withdraw(slot: Slot): void {
    const index = this.#active.indexOf(slot);
    if (index >= 0) this.#active.splice(index, 1);
  }

  /** Drops an ended `slot`. */
  forget(slot: Slot): void {
    this.withdraw(slot);
    this.#all.delete(slot);
  }

  /** The procedure for function `rpc` of the source at `path`, read once per pool. */
  async procedure(path: string, rpc: string): Promise<Definition> {
    let module = this.modulesByPath.get(path);
    if (!module) {
      let source: string;
      try {
        source = await Deno.readTextFile(path);
      } catch (error) {
        throw new Error(`Cannot load procedure: cannot read ${path}: ${(error as Error).message}`);
      }
      module = this.modulesByPath.get(path) ?? {
        mid: nextModuleId++,
        source,
        type: /^\.m?ts$/.test(extname(path)) ? "application/typescript" : "text/javascript",
        name: toFileUrl(path).href,
      };
      this.modulesByPath.set(path, module);
      this.modules.set(module.mid, module);
    }
    const key = `${module.mid}:${rpc}`;
    let definition = this.definitionsByKey.get(key);
    if (!definition) {
      definition = { pid: nextProcedureId++, mid: module.mid, rpc };
      this.definitionsByKey.set(key, definition);
      this.definitions.set(definition.pid, definition);
    }
    return definition;
  }

  async close(): Promise<void> {
    const slots = [...this.#all];
    this.#active = [];
    this.#all.clear();
    await Promise.all(slots.map((slot) => slot.close()));
  }
}

/**
 * Builds the permissions of a sandbox: nothing but what is granted. (Not even
 * reading the procedure's own source: the server sends it.)
 */
export function sandboxPermissions(
  granted: ProcedurePermissions | undefined,
): Deno.PermissionOptionsObject {
  return {
    read: granted?.read?.length ? granted.read : false,
    write: granted?.write?.length ? granted.write : false,
    net: granted?.net?.length ? granted.net : false,
    env: granted?.env?.length ? granted.env : false,
    run: granted?.run?.length ? granted.run : false,
    sys: granted?.sys ?? false,
    ffi: false,
    import: false,
  };
}

/** Loads TypeScript procedures into sandboxes; see the module documentation. */
export class SandboxRunner implements Runner {
  #options: Resolved;
  #pools = new Map<string, Pool>();

  constructor(options: SandboxOptions = {}) {
    this.#options = {
      size: Math.max(1, options.size ?? navigator.hardwareConcurrency ?? 1),
      memoryMb: options.memoryMb ?? 256,
      stallMs: options.stallMs ?? 1000,
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      loadTimeoutMs: options.loadTimeoutMs ?? 30_000,
      logger: options.logger,
      env: options.env ?? NO_ENVIRONMENT,
    };
  }

  #pool(spec: ProcedureSpec): Pool {
    const permissions = sandboxPermissions(spec.permissions);
    const key = `${spec.service}\n${JSON.stringify(permissions)}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(spec.service, permissions, this.#options);
      this.#pools.set(key, pool);
    }
    return pool;
  }

  async load(spec: ProcedureSpec): Promise<Procedure> {
    const pool = this.#pool(spec);
    const { pid } = await pool.procedure(spec.path, spec.rpc);
    const label = `${spec.service}.${spec.rpc}`;
    const limit = new AbortController();
    const { loadTimeoutMs } = this.#options;
    const timer = loadTimeoutMs > 0
      ? setTimeout(() =>
        limit.abort(
          new RpcError(
            ErrorKind.Timeout,
            `Cannot load procedure: ${spec.path} did not finish loading within ${loadTimeoutMs} ms`,
          ),
        ), loadTimeoutMs)
      : undefined;
    try {
      await pool.pick().request({ op: "load", pid }, label, limit.signal);
    } catch (error) {
      throw new Error((error as Error).message);
    } finally {
      clearTimeout(timer);
    }
    return {
      spec,
      invoke: (args, signal, onPart) => pool.pick().call(pid, args, label, signal, onPart),
    };
  }

  /** Sandboxes running now, and how many ended while in use (for metrics); pick() replaces them. */
  get stats(): { alive: number; restarted: number } {
    let alive = 0;
    let restarted = 0;
    for (const pool of this.#pools.values()) {
      alive += pool.alive;
      restarted += pool.ended;
    }
    return { alive, restarted };
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }
}
