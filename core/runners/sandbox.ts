/**
 * Runs TypeScript procedures in sandboxes: child OS processes, one pool per
 * service (and set of Deno permissions), never in the server's own process.
 *
 * A pool starts sandbox processes as calls need them, up to `size`, and
 * gives calls to as few of them as keep up (see `sandbox_spread.ts`): a call
 * goes to an idle one of those, else a new one while there are fewer, else
 * the least busy; a sandbox blocked by a call is passed over. A sandbox (see
 * `sandbox_process.ts`) holds only its service's procedures, so procedures
 * of different services share no memory, no globals and no channel; it reads
 * no procedure source from disk (the server sends each module's text, which
 * is imported from a `blob:` URL). Calls and replies travel in batches: every
 * call dispatched in one tick goes in one frame, and every reply produced in
 * one tick comes back in one.
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
import { processCpuMs, SAMPLE_MS, Spread } from "./sandbox_spread.ts";

/** Options of {@linkcode SandboxRunner}. */
export interface SandboxOptions {
  /** The most sandbox processes per service (and permission set). Default: the number of cores. */
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

/**
 * How long the oldest call in flight on a sandbox may have waited before new
 * calls pass it over: it is blocked by a procedure that does not return, or
 * far behind. Longer than calls wait on a sandbox that keeps up (64 KiB echo
 * calls at 64 in flight stay on one sandbox once it is warm), short enough
 * that calls stop queueing behind a blocked one soon.
 */
const BLOCKED_MS = 25;

/** Whether processes' CPU time can be read here: the server's own, read once. */
let cpuReadableOnce: Promise<boolean> | undefined;
const cpuReadable = (): Promise<boolean> =>
  cpuReadableOnce ??= processCpuMs(Deno.pid).then((ms) => ms !== undefined);

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
  #spread: Spread;
  #sampler: ReturnType<typeof setInterval> | undefined;
  #sampling = false;
  /** Set where the sandboxes' CPU cannot be read. */
  #blind = false;
  #sampledAt: number | undefined;
  /** CPU milliseconds each sandbox taking calls had used at the last sample. */
  #cpu = new Map<Slot, number>();
  readonly modules = new Map<number, Module>();
  readonly modulesByPath = new Map<string, Module>();
  readonly definitions = new Map<number, Definition>();
  readonly definitionsByKey = new Map<string, Definition>();

  constructor(
    readonly name: string,
    readonly permissions: Deno.PermissionOptionsObject,
    readonly options: Resolved,
  ) {
    this.#spread = new Spread(options.size);
  }

  /**
   * The sandbox for a new call, among the first {@linkcode Spread.count}
   * (see `sandbox_spread.ts`): an idle one, else a new one while there are
   * fewer, else the least loaded. One whose oldest call in flight has waited
   * {@linkcode BLOCKED_MS} or longer is passed over for the others, and for a
   * new one while the pool has room.
   */
  pick(): Slot {
    this.#watch();
    const count = this.#spread.count;
    const started = this.#active.length;
    const blocked = performance.now() - BLOCKED_MS;
    const taking = this.#choose(0, count, blocked);
    if (taking?.load === 0) return taking;
    if (started < count) return this.#add();
    if (taking) return taking;
    // Every sandbox taking calls is blocked: one of the others, a new one, else the least loaded.
    return this.#choose(count, started, blocked) ??
      (started < this.options.size ? this.#add() : this.#choose(0, started, -Infinity)!);
  }

  /**
   * Among the active sandboxes from `from` to `to`: the first idle one, else
   * the least loaded whose oldest call in flight was sent after `blocked`.
   */
  #choose(from: number, to: number, blocked: number): Slot | undefined {
    const active = this.#active;
    let least: Slot | undefined;
    for (let i = from; i < to && i < active.length; i++) {
      const slot = active[i];
      if (slot.load === 0) return slot;
      if (slot.oldestSentAt > blocked && (!least || slot.load < least.load)) least = slot;
    }
    return least;
  }

  #add(): Slot {
    const slot = new Slot(this);
    this.#active.push(slot);
    this.#all.add(slot);
    return slot;
  }

  /** Starts reading the sandboxes' CPU use while calls are in flight. */
  #watch(): void {
    if (this.#sampler !== undefined || this.#blind || this.options.size === 1) return;
    const sampler = setInterval(() => void this.#sample(), SAMPLE_MS);
    Deno.unrefTimer(sampler);
    this.#sampler = sampler;
  }

  async #sample(): Promise<void> {
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      if (!(await cpuReadable())) {
        // The CPU cannot be read here: every sandbox takes calls, as without this.
        this.#spread.widen();
        this.#blind = true;
        this.#stopSampling();
        return;
      }
      const now = performance.now();
      const slots = this.#active.slice(0, this.#spread.count);
      const used = await Promise.all(
        slots.map((slot) => slot.pid === undefined ? undefined : processCpuMs(slot.pid)),
      );
      // A sandbox that ended or is starting has no reading this time; the others keep theirs.
      const shares: number[] = [];
      const next = new Map<Slot, number>();
      for (let i = 0; i < slots.length; i++) {
        const ms = used[i];
        const before = this.#cpu.get(slots[i]);
        if (ms === undefined) continue;
        next.set(slots[i], ms);
        if (before !== undefined && this.#sampledAt !== undefined) {
          shares.push((ms - before) / (now - this.#sampledAt));
        }
      }
      this.#cpu = next;
      this.#sampledAt = now;
      if (shares.length === slots.length) this.#spread.update(shares);
      if (this.#active.every((slot) => slot.load === 0)) this.#stopSampling();
    } finally {
      this.#sampling = false;
    }
  }

  #stopSampling(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
    this.#sampledAt = undefined;
    this.#cpu.clear();
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
    this.#stopSampling();
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
      // A call's Pending listens to its signal and rejects with its reason at once.
      settlesOnAbort: true,
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
