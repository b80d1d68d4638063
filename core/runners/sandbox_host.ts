/**
 * The code that runs procedures inside a sandbox process: the module of the
 * Web Worker that `sandbox_entry.ts` starts with the procedures' Deno
 * permissions. It is written as functions so that it is type-checked, and
 * started from their source text ({@linkcode SANDBOX_HOST_SOURCE}), so that
 * the sandbox needs no read access to rpc's own files.
 *
 * Messages are batches: arrays encoded by `sandbox_codec.ts`, as JSON text.
 * In: {@linkcode HostRequest}s, one frame body per message. Out:
 * {@linkcode HostReply}s, one frame per message; the replies produced in one
 * tick leave in one batch (split when it would pass `maxBatchChars`).
 *
 * Before any procedure runs, the host takes private references to what it
 * needs and then closes what a procedure could use to reach the channel or
 * end the sandbox: `postMessage`, `onmessage` and message listeners on the
 * worker's scope, `close()`, `Deno.exit`, `process.exit`, and the runtime's
 * internals (`Deno[Deno.internal]`, which hold raw ops). Messages a procedure
 * dispatches itself are not trusted events and are ignored.
 *
 * Failures stay with the call that caused them. Each call runs in an
 * `AsyncLocalStorage` context holding its id, so an error thrown by a timer
 * it set, or a promise it left rejected, fails that call (or, once the call
 * has ended, is reported as a note for the log); the error never reaches the
 * worker's default handler, which would end the sandbox and every call in it.
 *
 * @module
 */

import type { SandboxCodec } from "./sandbox_codec.ts";
import { sandboxCodec } from "./sandbox_codec.ts";
import { MAX_BATCH_CHARS } from "./sandbox_wire.ts";

/** A request to the host. */
export type HostRequest =
  /**
   * Makes procedure `pid` (function `rpc` of module `mid`) known. `source` and
   * `type` come with the first procedure of each module sent to a sandbox.
   */
  | {
    op: "define";
    pid: number;
    mid: number;
    rpc: string;
    /** The module's file URL, used in messages instead of the URL it is imported from. */
    name: string;
    source?: string;
    type?: string;
  }
  /** Imports the procedure's module and checks that it exports the function. */
  | { op: "load"; id: number; pid: number }
  | { op: "call"; id: number; pid: number; args: unknown[] }
  /** Stops call `id`: a streaming procedure's generator is returned. */
  | { op: "cancel"; id: number }
  | { op: "ping"; id: number };

/** A reply from the host. */
export type HostReply =
  | {
    id: number;
    ok: boolean;
    /** Set on each partial result of a streaming call; the final reply follows. */
    part?: true;
    value?: unknown;
    error?: string;
  }
  /** Sent once, when the host is ready for procedures. */
  | { ready: true }
  /** Something to log that belongs to no call in flight. */
  | { note: string };

type Fn = (...args: unknown[]) => unknown;

interface Definition {
  mid: number;
  rpc: string;
  name: string;
}

interface AsyncStorage {
  run<R>(store: number, callback: (...args: unknown[]) => R, ...args: unknown[]): R;
  getStore(): number | undefined;
}

/** Runs inside the sandbox's worker; see the module documentation. */
export function sandboxHost(
  codec: SandboxCodec,
  Storage: new () => AsyncStorage,
  maxBatchChars: number,
): void {
  // deno-lint-ignore no-explicit-any
  const scope = globalThis as any;
  // Private references, taken before any procedure can change what they point to.
  const post: (message: unknown) => void = scope.postMessage.bind(scope);
  const listen = EventTarget.prototype.addEventListener;
  const defineProperty = Object.defineProperty;
  const later = queueMicrotask;
  const originalSetTimeout = setTimeout;
  const originalSetInterval = setInterval;
  const createObjectURL = URL.createObjectURL;
  const revokeObjectURL = URL.revokeObjectURL;
  const BlobOf = Blob;
  const ErrorOf = Error;
  const MapOf = Map;
  const storage = new Storage();
  const asyncIterator = Symbol.asyncIterator;

  const describe = (error: unknown): string => {
    if (error instanceof ErrorOf) {
      return error.message ? `${error.name}: ${error.message}` : error.name;
    }
    return String(error);
  };

  // ---- replies, one batch per tick
  let outbox: HostReply[] = [];
  let scheduled = false;
  const encodeBatches = (batch: HostReply[]): string[] => {
    try {
      return codec.encodeBatches(batch, maxBatchChars);
    } catch {
      // One value cannot be sent: find it, fail its call, send the others.
      const parts: string[] = [];
      for (let i = 0; i < batch.length; i++) {
        const reply = batch[i];
        try {
          parts[i] = codec.encode(reply);
        } catch (error) {
          parts[i] = codec.encode({
            id: (reply as { id?: number }).id ?? 0,
            ok: false,
            error: `The procedure returned a value that cannot be sent: ${describe(error)}`,
          });
        }
      }
      return codec.group(parts, maxBatchChars);
    }
  };
  const flush = () => {
    scheduled = false;
    const batch = outbox;
    outbox = [];
    // Text: the process that relays it encodes it straight into its write buffer.
    const texts = encodeBatches(batch);
    for (let i = 0; i < texts.length; i++) post(texts[i]);
  };
  const send = (reply: HostReply) => {
    outbox.push(reply);
    if (!scheduled) {
      scheduled = true;
      later(flush);
    }
  };

  // ---- calls in flight: id → the iterator of a streaming call, or null
  const running = new MapOf<number, AsyncIterator<unknown, unknown> | null>();
  const stop = (iterator: AsyncIterator<unknown, unknown> | null | undefined) => {
    if (!iterator) return;
    try {
      void iterator.return?.(undefined)?.catch?.(() => {});
    } catch {
      // A generator that throws on return() has stopped all the same.
    }
  };
  const settle = (id: number, reply: HostReply) => {
    if (running.delete(id)) send(reply);
  };
  /** An error that escaped a procedure: it fails the call it belongs to, else it is noted. */
  const fault = (id: number | undefined, error: unknown, how: string) => {
    if (id !== undefined && running.has(id)) {
      const iterator = running.get(id);
      running.delete(id);
      stop(iterator);
      send({ id, ok: false, error: describe(error) });
      return;
    }
    send({ note: `${how} after its call ended: ${describe(error)}` });
  };

  // ---- timers: an error thrown by a callback belongs to the call that set it
  const guard = (callback: Fn, args: unknown[]) => {
    const id = storage.getStore();
    return function (this: unknown) {
      try {
        return callback.apply(this, args);
      } catch (error) {
        fault(id, error, "A timer threw");
        return undefined;
      }
    };
  };
  scope.setTimeout = (callback: unknown, delay?: number, ...args: unknown[]) =>
    typeof callback === "function"
      ? originalSetTimeout(guard(callback as Fn, args), delay)
      : originalSetTimeout(callback as never, delay, ...args);
  scope.setInterval = (callback: unknown, delay?: number, ...args: unknown[]) =>
    typeof callback === "function"
      ? originalSetInterval(guard(callback as Fn, args), delay)
      : originalSetInterval(callback as never, delay, ...args);
  listen.call(scope, "error", (event: Event) => {
    event.preventDefault();
    const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
    fault(storage.getStore(), error, "An uncaught error");
  });
  listen.call(scope, "unhandledrejection", (event: Event) => {
    event.preventDefault();
    fault(storage.getStore(), (event as PromiseRejectionEvent).reason, "An unhandled rejection");
  });

  // ---- procedures
  const definitions = new MapOf<number, Definition>();
  const sources = new MapOf<number, { source: string; type: string }>();
  const modules = new MapOf<number, Promise<Record<string, unknown>>>();
  const functions = new MapOf<number, Fn>();

  const importModule = (mid: number, name: string): Promise<Record<string, unknown>> => {
    let promise = modules.get(mid);
    if (promise) return promise;
    const source = sources.get(mid);
    if (!source) return Promise.reject(new ErrorOf(`${name} was not sent to this sandbox`));
    const url = createObjectURL(new BlobOf([source.source], { type: source.type }));
    promise = import(url).then(
      (module: Record<string, unknown>) => {
        sources.delete(mid);
        return module;
      },
      (error: unknown) => {
        modules.delete(mid);
        // Name the module by its file, not by the blob URL it was imported from.
        const renamed = new ErrorOf(
          (error instanceof ErrorOf ? error.message : String(error)).split(url).join(name),
        );
        renamed.name = error instanceof ErrorOf ? error.name : "Error";
        throw renamed;
      },
    ).finally(() => revokeObjectURL(url));
    modules.set(mid, promise);
    return promise;
  };
  const resolve = async (pid: number): Promise<Fn> => {
    const known = functions.get(pid);
    if (known) return known;
    const definition = definitions.get(pid);
    if (!definition) throw new ErrorOf(`Procedure ${pid} was not sent to this sandbox`);
    const module = await importModule(definition.mid, definition.name);
    const fn = module[definition.rpc] ?? module.default;
    if (typeof fn !== "function") {
      throw new ErrorOf(`${definition.name} does not export a function named ${definition.rpc}`);
    }
    functions.set(pid, fn as Fn);
    return fn as Fn;
  };

  const pump = async (id: number, iterator: AsyncIterator<unknown, unknown>) => {
    try {
      for (;;) {
        const step = await iterator.next();
        if (running.get(id) !== iterator) return;
        if (step.done) return settle(id, { id, ok: true, value: step.value });
        send({ id, ok: true, part: true, value: step.value });
      }
    } catch (error) {
      if (running.get(id) === iterator) settle(id, { id, ok: false, error: describe(error) });
    }
  };
  const start = (fn: Fn, id: number, args: unknown[]) => {
    let result: unknown;
    try {
      result = storage.run(id, fn, ...args);
    } catch (error) {
      return settle(id, { id, ok: false, error: describe(error) });
    }
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      return settle(id, { id, ok: true, value: result });
    }
    const iterator = result as AsyncIterator<unknown, unknown>;
    if (typeof iterator.next === "function" && asyncIterator in iterator) {
      running.set(id, iterator);
      return void storage.run(id, pump as Fn, id, iterator);
    }
    const thenable = result as PromiseLike<unknown>;
    if (typeof thenable.then === "function") {
      return void thenable.then(
        (value) => settle(id, { id, ok: true, value }),
        (error) => settle(id, { id, ok: false, error: describe(error) }),
      );
    }
    settle(id, { id, ok: true, value: result });
  };

  const handle = (request: HostRequest) => {
    switch (request.op) {
      case "define":
        definitions.set(request.pid, { mid: request.mid, rpc: request.rpc, name: request.name });
        if (request.source !== undefined && !modules.has(request.mid)) {
          sources.set(request.mid, { source: request.source, type: request.type ?? "" });
        }
        return;
      case "ping":
        return send({ id: request.id, ok: true });
      case "cancel": {
        const iterator = running.get(request.id);
        running.delete(request.id);
        return stop(iterator);
      }
      case "load":
        running.set(request.id, null);
        return void resolve(request.pid).then(
          () => settle(request.id, { id: request.id, ok: true }),
          (error) =>
            settle(request.id, {
              id: request.id,
              ok: false,
              error: `Cannot load procedure: ${describe(error)}`,
            }),
        );
      case "call": {
        const { id, pid, args } = request;
        running.set(id, null);
        const fn = functions.get(pid);
        if (fn) return start(fn, id, args);
        return void resolve(pid).then(
          (fn) => running.has(id) && start(fn, id, args),
          (error) =>
            settle(id, { id, ok: false, error: `Cannot load procedure: ${describe(error)}` }),
        );
      }
    }
  };
  listen.call(scope, "message", (event: Event) => {
    // A procedure can dispatch a MessageEvent of its own; only the runtime's are trusted.
    if (!event.isTrusted) return;
    const data = (event as MessageEvent<unknown>).data;
    if (typeof data !== "string") return;
    const batch = codec.decode(data) as HostRequest[];
    for (let i = 0; i < batch.length; i++) handle(batch[i]);
  });

  // ---- close what a procedure could use to reach the channel or end the sandbox
  const refuse = (what: string) => () => {
    throw new ErrorOf(`Procedures may not ${what}`);
  };
  const seal = (target: object, key: PropertyKey, value: unknown) => {
    try {
      defineProperty(target, key, { value, writable: false, configurable: false });
    } catch {
      // Already sealed: nothing to do.
    }
  };
  seal(scope, "postMessage", refuse("post messages to their sandbox"));
  seal(scope, "close", refuse("close their sandbox"));
  for (const key of ["onmessage", "onmessageerror"]) {
    defineProperty(scope, key, {
      get: () => null,
      set: refuse("listen to their sandbox's messages"),
      configurable: false,
    });
  }
  seal(
    EventTarget.prototype,
    "addEventListener",
    function (this: unknown, type: string, ...rest: unknown[]) {
      if (this === scope && (type === "message" || type === "messageerror")) {
        refuse("listen to their sandbox's messages")();
      }
      return listen.call(this as EventTarget, type, ...(rest as [EventListener]));
    },
  );
  seal(scope.Deno, "exit", refuse("exit the process"));
  const process = scope.process as Record<string, unknown> | undefined;
  if (process) {
    seal(process, "exit", refuse("exit the process"));
    seal(process, "reallyExit", refuse("exit the process"));
    seal(process, "abort", refuse("exit the process"));
  }
  delete scope.Deno[scope.Deno.internal];

  send({ ready: true });
}

/** Source text of the sandbox worker's module. */
export const SANDBOX_HOST_SOURCE = `import { AsyncLocalStorage } from "node:async_hooks";
(${sandboxHost.toString()})((${sandboxCodec.toString()})(), AsyncLocalStorage, ${MAX_BATCH_CHARS});
`;
