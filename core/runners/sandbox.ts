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
import { sandboxCodec } from "./sandbox_codec.ts";
import type { HostReply, HostRequest } from "./sandbox_host.ts";
import { SandboxProcess } from "./sandbox_process.ts";
import { MAX_BATCH_CHARS } from "./sandbox_wire.ts";

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

type Resolved = Required<Omit<SandboxOptions, "logger">> & { logger: Logger | undefined };

const codec = sandboxCodec();
const decoder = new TextDecoder();

/**
 * A request in flight. It is its own abort listener (`handleEvent`), so a
 * call costs one object and one promise, and no closures.
 */
class Pending {
  readonly #resolve: (value: unknown) => void;
  readonly #reject: (error: unknown) => void;

  constructor(
    readonly slot: Slot,
    readonly id: number,
    readonly label: string,
    resolve: (value: unknown) => void,
    reject: (error: unknown) => void,
    readonly signal: AbortSignal | undefined,
    /** Receives the partial results of a streaming call. */
    readonly onPart: ((value: unknown) => void) | undefined,
  ) {
    this.#resolve = resolve;
    this.#reject = reject;
    signal?.addEventListener("abort", this, { once: true });
  }

  resolve(value: unknown): void {
    this.signal?.removeEventListener("abort", this);
    this.#resolve(value);
  }

  reject(error: unknown): void {
    this.signal?.removeEventListener("abort", this);
    this.#reject(error);
  }

  /** The call's signal was aborted (time limit, cancel, connection gone). */
  handleEvent(): void {
    this.slot.abort(this);
  }
}

/** A module's source, as sent to each sandbox once. */
interface Module {
  mid: number;
  source: string;
  type: string;
  /** File URL of the module's source, named in messages. */
  name: string;
}

/** One function of one module. */
interface Definition {
  pid: number;
  mid: number;
  rpc: string;
}

let nextModuleId = 1;
let nextProcedureId = 1;

/** One sandbox process and the calls it runs. */
class Slot {
  #pool: Pool;
  #process: SandboxProcess | undefined;
  #started: Promise<void>;
  #state: "starting" | "ready" | "retiring" | "ended" = "starting";
  #inflight = new Map<number, Pending>();
  #outbox: HostRequest[] = [];
  #scheduled = false;
  #nextId = 1;
  #checking = false;
  /** Procedures and modules this process has been sent. */
  #defined = new Set<number>();
  #modulesSent = new Set<number>();
  /** Set when this slot was stopped on purpose: its end is not news. */
  #quiet = false;

  constructor(pool: Pool) {
    this.#pool = pool;
    this.#started = this.#start();
  }

  get #ended(): boolean {
    return this.#state === "ended";
  }

  /** Calls in flight. */
  get load(): number {
    return this.#inflight.size;
  }

  async #start(): Promise<void> {
    const { options, name, permissions } = this.#pool;
    let process: SandboxProcess;
    try {
      process = await SandboxProcess.start({
        name,
        permissions,
        memoryMb: options.memoryMb,
        startTimeoutMs: options.startTimeoutMs,
        onFrame: (body) => this.#receive(body),
        warn: (message) => options.logger?.warn("sandbox", message),
        env: options.env,
      });
    } catch (error) {
      this.#end((error as Error).message, ErrorKind.Unavailable);
      return;
    }
    this.#process = process;
    options.logger?.info("sandbox", `Sandbox of ${name} started (pid ${process.pid})`, {
      service: name,
      pid: process.pid,
    });
    void process.ended.then((reason) => this.#end(reason));
    if (this.#state === "ended") {
      process.kill("its sandbox was closed");
      return;
    }
    if (this.#state === "starting") this.#state = "ready";
    if (this.#outbox.length > 0) this.#flush();
    this.#retireIfIdle();
  }

  #receive(body: Uint8Array): void {
    const replies = codec.decode(decoder.decode(body)) as HostReply[];
    for (const reply of replies) {
      if ("note" in reply) {
        this.#pool.options.logger?.warn("sandbox", `${this.#pool.name}: ${reply.note}`);
        continue;
      }
      if (!("id" in reply)) continue;
      const pending = this.#inflight.get(reply.id);
      if (!pending) continue;
      if (reply.part) {
        try {
          if (!pending.onPart) {
            throw new RpcError(
              ErrorKind.ExecutionException,
              `${pending.label} streams results, but its signature declares no yields`,
            );
          }
          pending.onPart(reply.value);
        } catch (error) {
          // A part that does not fit the signature ends the call.
          this.#inflight.delete(reply.id);
          this.#send({ op: "cancel", id: reply.id });
          pending.reject(error);
        }
        continue;
      }
      this.#inflight.delete(reply.id);
      if (reply.ok) pending.resolve(reply.value);
      else {
        pending.reject(
          new RpcError(ErrorKind.ExecutionException, reply.error ?? "Procedure failed"),
        );
      }
    }
    this.#retireIfIdle();
  }

  /** Fails every call in flight and leaves the pool; `reason` says why the sandbox ended. */
  #end(reason: string, kind: ErrorKind = ErrorKind.ExecutionException): void {
    if (this.#state === "ended" && this.#inflight.size === 0) {
      this.#pool.forget(this);
      return;
    }
    const wasQuiet = this.#quiet;
    this.#state = "ended";
    this.#pool.ended++;
    this.#pool.forget(this);
    const failed = [...this.#inflight.values()];
    this.#inflight.clear();
    this.#outbox = [];
    for (const pending of failed) {
      pending.reject(
        kind === ErrorKind.Unavailable
          ? new RpcError(kind, reason)
          : new RpcError(kind, `${pending.label} was stopped: ${reason}`),
      );
    }
    this.#pool.options.logger?.log(
      wasQuiet ? "info" : "warn",
      "sandbox",
      `Sandbox of ${this.#pool.name}${
        this.#process ? ` (pid ${this.#process.pid})` : ""
      } ended: ${reason}`,
      { service: this.#pool.name, reason, failed: failed.length },
    );
  }

  #flush = (): void => {
    this.#scheduled = false;
    if (!this.#process || this.#outbox.length === 0) return;
    const batch = this.#outbox;
    this.#outbox = [];
    // Frames of a bounded size stay within the buffers both ends keep (see sandbox_wire.ts).
    const texts = codec.encodeBatches(batch, MAX_BATCH_CHARS);
    for (const text of texts) this.#process.send(text);
  };

  #send(request: HostRequest): void {
    this.#outbox.push(request);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  /** Sends what this process needs to know about procedure `pid` before it is used. */
  #define(pid: number): void {
    if (this.#defined.has(pid)) return;
    const definition = this.#pool.definitions.get(pid)!;
    const module = this.#pool.modules.get(definition.mid)!;
    const first = !this.#modulesSent.has(module.mid);
    this.#send({
      op: "define",
      pid,
      mid: module.mid,
      rpc: definition.rpc,
      name: module.name,
      ...(first ? { source: module.source, type: module.type } : {}),
    });
    this.#defined.add(pid);
    this.#modulesSent.add(module.mid);
  }

  /** Runs procedure `pid` with `args`; `signal` cuts it short, `onPart` takes streamed values. */
  call(
    pid: number,
    args: unknown[],
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<unknown> {
    if (this.#state === "ended") {
      return Promise.reject(new RpcError(ErrorKind.Unavailable, "Sandbox is closed"));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.#defined.has(pid)) this.#define(pid);
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    this.#inflight.set(id, new Pending(this, id, label, resolve, reject, signal, onPart));
    this.#send({ op: "call", id, pid, args });
    return promise;
  }

  /** Imports procedure `pid`'s module (`op: "load"`) or checks the sandbox answers (`ping`). */
  request(
    request: { op: "load"; pid: number } | { op: "ping" },
    label: string,
    signal?: AbortSignal,
  ): Promise<unknown> {
    if (this.#state === "ended") {
      return Promise.reject(new RpcError(ErrorKind.Unavailable, "Sandbox is closed"));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if ("pid" in request) this.#define(request.pid);
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    this.#inflight.set(id, new Pending(this, id, label, resolve, reject, signal, undefined));
    this.#send({ ...request, id });
    return promise;
  }

  /** A request's signal was aborted: fail it, stop it, and retire or check the process. */
  abort(pending: Pending): void {
    const { id, signal, label } = pending;
    if (this.#inflight.get(id) !== pending) return;
    this.#inflight.delete(id);
    const reason = signal!.reason;
    pending.reject(reason);
    // Stops a streaming procedure's generator.
    this.#send({ op: "cancel", id });
    if (reason instanceof RpcError && reason.kind === ErrorKind.Timeout) {
      // What the overdue call left running ends with this process.
      this.#retire();
    }
    void this.#checkAlive(label);
    this.#retireIfIdle();
  }

  /** Takes no new calls; the process ends once the calls it runs have. */
  #retire(): void {
    if (this.#state !== "starting" && this.#state !== "ready") return;
    this.#state = "retiring";
    this.#pool.withdraw(this);
  }

  #retireIfIdle(): void {
    if (this.#state === "retiring" && this.#inflight.size === 0 && this.#process) {
      this.#quiet = true;
      this.#process.kill("it was retired after a call overran");
    }
  }

  /** After a call was cut short: kill the process unless it answers a ping in time. */
  async #checkAlive(label: string): Promise<void> {
    if (this.#checking || this.#state === "ended") return;
    this.#checking = true;
    try {
      // A process still starting cannot answer yet; that is not a stall.
      await this.#started;
      if (!this.#process || this.#ended) return;
      const ping = this.request({ op: "ping" }, "ping");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<"stalled">((resolve) => {
        timer = setTimeout(() => resolve("stalled"), this.#pool.options.stallMs);
      });
      const outcome = await Promise.race([
        ping.then(() => "alive" as const, () => "alive" as const),
        stalled,
      ]);
      clearTimeout(timer);
      if (outcome === "stalled") {
        this.#quiet = false;
        this.#process.kill(`${label} overran its time limit and blocked its sandbox`);
      }
    } finally {
      this.#checking = false;
    }
  }

  /** Fails the calls in flight, kills the process and waits for it to end. */
  async close(): Promise<void> {
    for (const pending of this.#inflight.values()) {
      pending.reject(new RpcError(ErrorKind.Unavailable, "Sandbox is closed"));
    }
    this.#inflight.clear();
    this.#quiet = true;
    this.#state = "ended";
    await this.#started;
    if (this.#process) {
      this.#process.kill("its sandbox was closed");
      await this.#process.ended;
    }
  }
}

/** The sandboxes of one service with one set of permissions, and what they run. */
class Pool {
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
