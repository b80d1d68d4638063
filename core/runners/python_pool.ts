/**
 * The interpreters of one service and permission set: started lazily up to
 * the pool size, handed to calls one at a time, retired when idle, and
 * replaced when one dies.
 *
 * @module
 */

import type { RpcError } from "../errors.ts";
import { Interpreter, type Launch, type Reply } from "./python_interpreter.ts";

interface Waiter {
  grant(interpreter: Interpreter): void;
  fail(error: unknown): void;
}

/** The interpreters of one service and permission set. */
export class Pool {
  /** Interpreters that count against the pool size. */
  #live = new Set<Interpreter>();
  /** Interpreters whose process has not exited yet (includes dying ones). */
  #running = new Set<Interpreter>();
  #idle: Interpreter[] = [];
  #waiting: Waiter[] = [];
  /** Why later requests fail, once closed. */
  #closed: RpcError | undefined;
  /** Interpreters ended for being idle: their exit is no restart. */
  #retired = new WeakSet<Interpreter>();
  /** Interpreters that ended while the pool was open (crashed, killed for a time limit or a cancel). */
  ended = 0;

  constructor(
    readonly launch: Launch,
    readonly options: { size: number; idleMs: number },
    readonly startError: (error: unknown, label: string) => unknown,
  ) {}

  /** Sends a request to an interpreter, attaching `source` when that one has not loaded `path`. */
  async request(
    request: Record<string, unknown> & { path: string },
    source: string,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    signal?.throwIfAborted();
    const interpreter = await this.#acquire(label, signal);
    try {
      const sent = interpreter.known.has(request.path) ? request : { ...request, source };
      const reply = await interpreter.call(sent, label, signal, onPart);
      if (reply.loaded) interpreter.known.add(request.path);
      return reply;
    } finally {
      this.#release(interpreter);
    }
  }

  async close(reason: RpcError): Promise<void> {
    this.#closed = reason;
    for (const waiter of this.#waiting.splice(0)) waiter.fail(reason);
    this.#idle = [];
    const running = [...this.#running];
    for (const interpreter of running) interpreter.kill(reason.message);
    await Promise.all(running.map((interpreter) => interpreter.exited));
  }

  #acquire(label: string, signal?: AbortSignal): Promise<Interpreter> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<Interpreter>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant(interpreter) {
          signal?.removeEventListener("abort", onAbort);
          resolve(interpreter);
        },
        fail: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(this.startError(error, label));
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
      this.#dispatch();
    });
  }

  /** Hands idle or new interpreters to waiting calls, in arrival order. */
  #dispatch(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let interpreter: Interpreter | undefined;
      while (!interpreter && this.#idle.length > 0) {
        const candidate = this.#idle.pop()!;
        clearTimeout(candidate.idleTimer);
        if (candidate.alive) interpreter = candidate;
      }
      if (!interpreter) {
        if (this.#live.size >= this.options.size) return;
        try {
          interpreter = new Interpreter(this.launch, (dead) => this.#onExit(dead));
        } catch (error) {
          this.#waiting.shift()!.fail(error);
          continue;
        }
        this.#live.add(interpreter);
        this.#running.add(interpreter);
      }
      this.#waiting.shift()!.grant(interpreter);
    }
  }

  #release(interpreter: Interpreter): void {
    if (interpreter.alive && !this.#closed) {
      this.#idle.push(interpreter);
      // An interpreter nobody needs for a while gives its memory back.
      interpreter.idleTimer = setTimeout(() => {
        const index = this.#idle.indexOf(interpreter);
        if (index >= 0) this.#idle.splice(index, 1);
        this.#retired.add(interpreter);
        interpreter.kill();
      }, this.options.idleMs);
      Deno.unrefTimer(Number(interpreter.idleTimer));
    } else {
      this.#live.delete(interpreter);
    }
    this.#dispatch();
  }

  /** Interpreters whose process has not exited yet. */
  get alive(): number {
    return this.#running.size;
  }

  #onExit(interpreter: Interpreter): void {
    if (!this.#closed && !this.#retired.has(interpreter)) this.ended++;
    this.#live.delete(interpreter);
    this.#running.delete(interpreter);
    const index = this.#idle.indexOf(interpreter);
    if (index >= 0) this.#idle.splice(index, 1);
    this.#dispatch();
  }
}
