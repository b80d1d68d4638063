/**
 * The code that hosts TypeScript procedures inside a sandbox slot. It runs in
 * a `node:worker_threads` worker with a heap limit, started from source text
 * (`eval`), so the restricted worker that starts it needs no read access to
 * rpc's own files. It is written as a function so that it is type-checked,
 * and sent as that function's text.
 *
 * Messages are batches (arrays): `{id, op: "call", pid, url, rpc, args}`,
 * `{id, op: "load", pid, url, rpc}`, `{id, op: "ping"}` in; `{id, ok, value}`
 * or `{id, ok: false, error}` out. Replies produced in one tick leave in one
 * batch.
 *
 * @module
 */

/** A request to the host. */
export interface HostRequest {
  id: number;
  /** `cancel` stops the streaming call `id` (its generator's `return()`). */
  op: "call" | "load" | "ping" | "cancel";
  /** Number the supervisor gives each (module, function) pair; the host caches by it. */
  pid?: number;
  /** File URL of the procedure's module. */
  url?: string;
  rpc?: string;
  args?: unknown[];
}

/** A reply from the host. */
export interface HostReply {
  id: number;
  ok: boolean;
  /** Set on each partial result of a streaming call; the final reply follows. */
  part?: true;
  value?: unknown;
  error?: string;
}

type Fn = (...args: unknown[]) => unknown;

/** Runs inside the host worker; `require` is the CommonJS require of an eval'd worker. */
export function sandboxHost(require: (id: string) => unknown): void {
  const { workerData } = require("node:worker_threads") as { workerData: { port: MessagePort } };
  const port = workerData.port;
  const exit = () => {
    throw new Error("Procedures may not exit the process");
  };
  try {
    Object.defineProperty(Deno, "exit", { value: exit, configurable: true, writable: true });
  } catch {
    // Deno.exit stays; the supervisor replaces a host that disappears.
  }
  const process = (globalThis as { process?: { exit?: unknown } }).process;
  if (process) process.exit = exit;

  const loaded = new Map<number, Fn>();
  const streams = new Map<number, AsyncIterator<unknown, unknown>>();
  const loading = new Map<number, Promise<Fn>>();
  let outbox: HostReply[] = [];
  let scheduled = false;

  const describe = (error: unknown): string => {
    if (error instanceof Error) {
      return error.message ? `${error.name}: ${error.message}` : error.name;
    }
    return String(error);
  };
  const flush = () => {
    scheduled = false;
    const batch = outbox;
    outbox = [];
    try {
      port.postMessage(batch);
    } catch {
      for (const reply of batch) {
        try {
          port.postMessage([reply]);
        } catch (error) {
          port.postMessage([{
            id: reply.id,
            ok: false,
            error: `The procedure returned a value that cannot be sent: ${describe(error)}`,
          }]);
        }
      }
    }
  };
  const send = (reply: HostReply) => {
    outbox.push(reply);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  };
  const load = (request: HostRequest): Promise<Fn> => {
    const key = request.pid!;
    let promise = loading.get(key);
    if (!promise) {
      promise = import(request.url!).then((module: Record<string, unknown>) => {
        const fn = module[request.rpc!] ?? module.default;
        if (typeof fn !== "function") {
          throw new Error(`${request.url} does not export a function named ${request.rpc}`);
        }
        loaded.set(key, fn as Fn);
        return fn as Fn;
      });
      promise.catch(() => loading.delete(key));
      loading.set(key, promise);
    }
    return promise;
  };
  const run = (fn: Fn, request: HostRequest) => {
    let result: unknown;
    try {
      result = fn(...request.args!);
    } catch (error) {
      send({ id: request.id, ok: false, error: describe(error) });
      return;
    }
    const iterator = result as AsyncIterator<unknown, unknown> | null;
    if (
      iterator !== null && typeof iterator === "object" && typeof iterator.next === "function" &&
      Symbol.asyncIterator in iterator
    ) {
      streams.set(request.id, iterator);
      const pump = async () => {
        try {
          for (;;) {
            const step = await iterator.next();
            if (!streams.has(request.id)) return;
            if (step.done) {
              send({ id: request.id, ok: true, value: step.value });
              return;
            }
            send({ id: request.id, ok: true, part: true, value: step.value });
          }
        } catch (error) {
          send({ id: request.id, ok: false, error: describe(error) });
        } finally {
          streams.delete(request.id);
        }
      };
      void pump();
    } else if (result !== null && typeof (result as Promise<unknown>)?.then === "function") {
      (result as Promise<unknown>).then(
        (value) => send({ id: request.id, ok: true, value }),
        (error) => send({ id: request.id, ok: false, error: describe(error) }),
      );
    } else {
      send({ id: request.id, ok: true, value: result });
    }
  };
  const handle = (request: HostRequest) => {
    if (request.op === "ping") return send({ id: request.id, ok: true });
    if (request.op === "cancel") {
      const stream = streams.get(request.id);
      streams.delete(request.id);
      void stream?.return?.(undefined)?.catch(() => {});
      return;
    }
    const fn = loaded.get(request.pid!);
    if (fn && request.op === "call") return run(fn, request);
    load(request).then(
      (fn) => request.op === "load" ? send({ id: request.id, ok: true }) : run(fn, request),
      (error) =>
        send({ id: request.id, ok: false, error: `Cannot load procedure: ${describe(error)}` }),
    );
  };
  port.onmessage = (event: MessageEvent<HostRequest[]>) => {
    for (const request of event.data) handle(request);
  };
}

/** Source text that starts {@linkcode sandboxHost} in an eval'd worker. */
export const SANDBOX_HOST_SOURCE = `(${sandboxHost.toString()})(require);`;
