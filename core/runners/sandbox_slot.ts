/**
 * One sandbox process as the runner sees it: the procedures it has loaded,
 * the calls in flight on it (each its own abort listener), the batches that
 * carry them, and what happens when it overruns, stalls or ends. The pool in
 * `sandbox.ts` keeps several per service and permission set.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import { sandboxCodec } from "./sandbox_codec.ts";
import type { HostReply, HostRequest } from "./sandbox_host.ts";
import { SandboxProcess } from "./sandbox_process.ts";
import { MAX_BATCH_CHARS } from "./sandbox_wire.ts";
import type { Resolved } from "./sandbox.ts";

const codec = sandboxCodec();
const decoder = new TextDecoder();

/**
 * A request in flight. It is its own abort listener (`handleEvent`), so a
 * call costs one object and one promise, and no closures.
 */
class Pending {
  /** When the call was handed to the slot (`performance.now()`). */
  readonly sentAt = performance.now();
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
export interface Module {
  mid: number;
  source: string;
  type: string;
  /** File URL of the module's source, named in messages. */
  name: string;
}

/** One function of one module. */
export interface Definition {
  pid: number;
  mid: number;
  rpc: string;
}

/** What a slot needs of the pool it belongs to (`sandbox.ts`). */
export interface SlotPool {
  readonly name: string;
  readonly permissions: Deno.PermissionOptionsObject;
  readonly options: Resolved;
  readonly modules: ReadonlyMap<number, Module>;
  readonly definitions: ReadonlyMap<number, Definition>;
  /** Sandboxes that ended while in use. */
  ended: number;
  /** Takes `slot` out of the ones given new calls. */
  withdraw(slot: Slot): void;
  /** Drops an ended `slot`. */
  forget(slot: Slot): void;
}

/** One sandbox process and the calls it runs. */
export class Slot {
  #pool: SlotPool;
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

  constructor(pool: SlotPool) {
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

  /** When the oldest call in flight was handed to this slot; `Infinity` when none is. */
  get oldestSentAt(): number {
    for (const pending of this.#inflight.values()) return pending.sentAt;
    return Infinity;
  }

  /** The sandbox process's id, once it has started. */
  get pid(): number | undefined {
    return this.#process?.pid;
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
