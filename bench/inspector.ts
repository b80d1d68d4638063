/**
 * A Chrome DevTools Protocol session with a process started with
 * `--inspect=127.0.0.1:PORT`: what `bench/profile.ts` records CPU profiles
 * through, and what the soak of `bench/compare.ts` reads a server's live heap
 * with.
 *
 * @module
 */

/** How long the inspector may take to answer one command. */
const COMMAND_TIMEOUT_MS = 30_000;

/** The inspector's WebSocket address, from the log of a process started with `--inspect`. */
export async function inspectorUrl(logFile: string): Promise<string> {
  const log = await Deno.readTextFile(logFile);
  const url = /ws:\/\/127\.0\.0\.1:\d+\/[\w/-]+/.exec(log)?.[0];
  if (!url) throw new Error(`The process printed no inspector address; its log:\n${log}`);
  return url;
}

/** A Chrome DevTools Protocol session over the inspector's WebSocket. */
export class Inspector {
  #socket: WebSocket;
  #nextId = 1;
  #waiting = new Map<number, PromiseWithResolvers<unknown>>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      const waiter = this.#waiting.get(message.id);
      if (!waiter) return;
      this.#waiting.delete(message.id);
      if (message.error) waiter.reject(new Error(`Inspector: ${message.error.message}`));
      else waiter.resolve(message.result);
    };
  }

  static async connect(url: string): Promise<Inspector> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`Cannot connect to the inspector at ${url}`));
    });
    return new Inspector(socket);
  }

  send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#nextId++;
    const waiter = Promise.withResolvers<unknown>();
    this.#waiting.set(id, waiter);
    this.#socket.send(JSON.stringify({ id, method, params }));
    const timer = setTimeout(
      () =>
        waiter.reject(new Error(`Inspector: ${method} took longer than ${COMMAND_TIMEOUT_MS} ms`)),
      COMMAND_TIMEOUT_MS,
    );
    return waiter.promise.finally(() => clearTimeout(timer)) as Promise<T>;
  }

  close(): void {
    this.#socket.close();
  }
}

/**
 * The bytes of JavaScript heap still in use after a full collection: what a
 * leak makes grow, unlike the resident size, which also follows how much
 * heap V8 chooses to keep.
 */
export async function liveHeapBytes(inspector: Inspector): Promise<number> {
  await inspector.send("HeapProfiler.collectGarbage");
  const { usedSize } = await inspector.send<{ usedSize: number }>("Runtime.getHeapUsage");
  return usedSize;
}
