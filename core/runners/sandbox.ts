/**
 * Runs TypeScript procedures in sandboxes, off the thread that does the
 * server's socket I/O.
 *
 * A pool has one slot per core. A slot is a supervisor Web Worker created
 * with the procedures' Deno permissions (by default none but reading the
 * procedure sources), which starts a host worker with a heap limit. The
 * server talks to the host directly over a `MessagePort`, in batches: every
 * call dispatched in one tick travels in one message, and every reply
 * produced in one tick comes back in one.
 *
 * Failure handling: a call past its time limit is answered `Timeout` at
 * once; if its host then does not answer a ping within `stallMs` (it is
 * stuck in a loop, or out of memory), the supervisor replaces the host and
 * the calls it was running fail. A host that exits fails its calls and is
 * replaced. `Deno.exit` inside a procedure throws. The server process is
 * never at risk.
 *
 * @module
 */

import { dirname } from "node:path";
import { ErrorKind, RpcError } from "../errors.ts";
import { toFileUrl } from "../paths.ts";
import type { Procedure, ProcedurePermissions, ProcedureSpec, Runner } from "../registry.ts";
import { type HostReply, type HostRequest, SANDBOX_HOST_SOURCE } from "./sandbox_host.ts";

/** Options of {@linkcode SandboxRunner}. */
export interface SandboxOptions {
  /** Slots per permission set. Default: the number of cores. */
  size?: number;
  /** Heap limit of one slot's host, in MiB. Default 256. */
  memoryMb?: number;
  /** How long a host may take to answer a ping after a call overran. Default 1000 ms. */
  stallMs?: number;
}

const SUPERVISOR_URL = new URL("./sandbox_supervisor.ts", import.meta.url);

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  label: string;
  /** Receives the partial results of a streaming call. */
  onPart?: (value: unknown) => void;
}

/** One supervisor and its host. */
class Slot {
  #supervisor: Worker;
  #port: MessagePort | undefined;
  #inflight = new Map<number, Pending>();
  #outbox: HostRequest[] = [];
  #scheduled = false;
  #nextId = 1;
  #checking = false;
  #closed = false;

  constructor(
    permissions: Deno.PermissionOptionsObject,
    readonly options: Required<SandboxOptions>,
  ) {
    this.#supervisor = new Worker(SUPERVISOR_URL.href, {
      type: "module",
      // deno-lint-ignore no-explicit-any
      deno: { permissions } as any,
    });
    this.#supervisor.onmessage = (event: MessageEvent<{ op: string; code: number }>) => {
      if (event.data.op === "exit" && !this.#closed) {
        this.#restart(`its sandbox stopped (exit code ${event.data.code})`);
      }
    };
    this.#supervisor.onerror = (event) => {
      event.preventDefault();
      if (!this.#closed) this.#restart(`its sandbox failed: ${event.message}`);
    };
    this.#startHost();
  }

  /** Calls in flight on this slot. */
  get load(): number {
    return this.#inflight.size;
  }

  #startHost(): void {
    this.#port?.close();
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = (event: MessageEvent<HostReply[]>) => {
      for (const reply of event.data) {
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
        else {pending.reject(
            new RpcError(ErrorKind.ExecutionException, reply.error ?? "Procedure failed"),
          );}
      }
    };
    this.#port = port1;
    this.#supervisor.postMessage(
      { op: "start", port: port2, source: SANDBOX_HOST_SOURCE, memoryMb: this.options.memoryMb },
      [port2],
    );
  }

  #restart(reason: string): void {
    const failed = [...this.#inflight.values()];
    this.#inflight.clear();
    this.#outbox = [];
    for (const pending of failed) {
      pending.reject(
        new RpcError(ErrorKind.ExecutionException, `${pending.label} was stopped: ${reason}`),
      );
    }
    this.#startHost();
  }

  #flush = (): void => {
    this.#scheduled = false;
    const batch = this.#outbox;
    this.#outbox = [];
    if (batch.length > 0) this.#port?.postMessage(batch);
  };

  #send(request: HostRequest): void {
    this.#outbox.push(request);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  request(
    request: Omit<HostRequest, "id">,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(new RpcError(ErrorKind.Unavailable, "Sandbox is closed"));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, label, ...(onPart ? { onPart } : {}) };
      this.#inflight.set(id, pending);
      this.#send({ ...request, id } as HostRequest);
      if (!signal) return;
      const onAbort = () => {
        if (!this.#inflight.delete(id)) return;
        reject(signal.reason);
        // Stop a streaming procedure's generator; a host stuck in a loop is replaced.
        this.#send({ op: "cancel", id });
        void this.#checkAlive(label);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      pending.resolve = (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      };
      pending.reject = (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      };
    });
  }

  /** After a call overran: replace the host unless it answers a ping in time. */
  async #checkAlive(label: string): Promise<void> {
    if (this.#checking || this.#closed) return;
    this.#checking = true;
    try {
      const ping = this.request({ op: "ping" }, "ping");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<"stalled">((resolve) => {
        timer = setTimeout(() => resolve("stalled"), this.options.stallMs);
      });
      const outcome = await Promise.race([
        ping.then(() => "alive" as const, () => "alive" as const),
        stalled,
      ]);
      clearTimeout(timer);
      if (outcome === "stalled" && !this.#closed) {
        this.#restart(`${label} overran its time limit and blocked its sandbox`);
      }
    } finally {
      this.#checking = false;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#inflight.values()) {
      pending.reject(new RpcError(ErrorKind.Unavailable, "Sandbox is closed"));
    }
    this.#inflight.clear();
    this.#supervisor.postMessage({ op: "stop" });
    this.#port?.close();
    // Give the supervisor a moment to terminate its host, then end it too.
    setTimeout(() => this.#supervisor.terminate(), 50);
  }
}

/** The slots that share one set of permissions. */
class Pool {
  #slots: Slot[] = [];

  constructor(
    readonly permissions: Deno.PermissionOptionsObject,
    readonly options: Required<SandboxOptions>,
  ) {}

  /** The least busy slot, starting slots up to the pool size as needed. */
  pick(): Slot {
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (slot.load === 0) return slot;
      if (!best || slot.load < best.load) best = slot;
    }
    if (this.#slots.length < this.options.size) {
      const slot = new Slot(this.permissions, this.options);
      this.#slots.push(slot);
      return slot;
    }
    return best!;
  }

  close(): void {
    for (const slot of this.#slots) slot.close();
    this.#slots = [];
  }
}

/** Builds the permissions of a sandbox: nothing, except what is granted and reading `sourceDir`. */
export function sandboxPermissions(
  granted: ProcedurePermissions | undefined,
  sourceDir: string,
): Deno.PermissionOptionsObject {
  return {
    read: [sourceDir, ...(granted?.read ?? [])],
    write: granted?.write?.length ? granted.write : false,
    net: granted?.net?.length ? granted.net : false,
    env: granted?.env?.length ? granted.env : false,
    run: granted?.run?.length ? granted.run : false,
    sys: granted?.sys ?? false,
    ffi: false,
    import: false,
  };
}

let nextProcedureId = 1;

/** Loads TypeScript procedures into sandboxes; see the module documentation. */
export class SandboxRunner implements Runner {
  #options: Required<SandboxOptions>;
  #pools = new Map<string, Pool>();

  constructor(options: SandboxOptions = {}) {
    this.#options = {
      size: Math.max(1, options.size ?? navigator.hardwareConcurrency ?? 1),
      memoryMb: options.memoryMb ?? 256,
      stallMs: options.stallMs ?? 1000,
    };
  }

  #pool(spec: ProcedureSpec): Pool {
    const permissions = sandboxPermissions(spec.permissions, dirname(spec.path));
    const key = JSON.stringify(permissions);
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(permissions, this.#options);
      this.#pools.set(key, pool);
    }
    return pool;
  }

  async load(spec: ProcedureSpec): Promise<Procedure> {
    const pool = this.#pool(spec);
    const pid = nextProcedureId++;
    const url = toFileUrl(spec.path).href;
    const label = `${spec.service}.${spec.rpc}`;
    try {
      await pool.pick().request({ op: "load", pid, url, rpc: spec.rpc }, label);
    } catch (error) {
      throw new Error((error as Error).message);
    }
    return {
      spec,
      invoke: (args, signal, onPart) =>
        pool.pick().request({ op: "call", pid, url, rpc: spec.rpc, args }, label, signal, onPart),
    };
  }

  close(): Promise<void> {
    for (const pool of this.#pools.values()) pool.close();
    this.#pools.clear();
    return new Promise((resolve) => setTimeout(resolve, 60));
  }
}
