/**
 * The interpreters of one service and permission set: started lazily up to
 * the pool size, handed calls (an idle one first, then a new one, then the
 * least loaded one that is not running a long call, up to `depth` calls
 * queued in each), retired when idle, and replaced when one dies. A call its
 * interpreter ended before starting it is handed to another, and so are the
 * calls queued behind one that runs long, once another interpreter is free.
 *
 * @module
 */

import type { RpcError } from "../errors.ts";
import { Interpreter, type Launch, NotStarted, type Reply } from "./python_interpreter.ts";

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
  #waiting: Waiter[] = [];
  /** Why later requests fail, once closed. */
  #closed: RpcError | undefined;
  /** Interpreters ended for being idle: their exit is no restart. */
  #retired = new WeakSet<Interpreter>();
  /** Counts calls taken back, to prefer the interpreter that was busy last. */
  #clock = 0;
  /** Interpreters that ended while the pool was open (crashed, killed for a time limit or a cancel). */
  ended = 0;

  constructor(
    readonly launch: Launch,
    readonly options: { size: number; idleMs: number; depth: number },
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
    // A call sent back because its interpreter ended before starting it goes ahead of newer ones.
    for (let retry = false;; retry = true) {
      signal?.throwIfAborted();
      if (this.#closed) throw this.#closed;
      const interpreter = this.#take(label) ?? await this.#wait(label, retry, signal);
      try {
        const sent = interpreter.known.has(request.path) ? request : { ...request, source };
        const reply = await interpreter.call(sent, label, signal, onPart);
        if (reply.loaded) interpreter.known.add(request.path);
        return reply;
      } catch (error) {
        if (!(error instanceof NotStarted)) throw error;
      } finally {
        this.#release(interpreter);
      }
    }
  }

  async close(reason: RpcError): Promise<void> {
    this.#closed = reason;
    for (const waiter of this.#waiting.splice(0)) waiter.fail(reason);
    const running = [...this.#running];
    for (const interpreter of running) interpreter.kill(reason.message);
    await Promise.all(running.map((interpreter) => interpreter.exited));
  }

  /** An interpreter for a call that arrives now, or none when calls are waiting or all are full. */
  #take(label: string): Interpreter | undefined {
    if (this.#waiting.length > 0) return undefined;
    try {
      return this.#pick();
    } catch (error) {
      throw this.startError(error, label);
    }
  }

  /**
   * Takes an interpreter for one call: an idle one (the one busy last, so the
   * others can retire), else a new one while the pool has room, else the one
   * with the fewest calls queued, if it has fewer than `depth`.
   */
  #pick(): Interpreter | undefined {
    let best: Interpreter | undefined;
    for (const interpreter of this.#live) {
      // Nothing is queued behind a call that runs long.
      if (!interpreter.alive || interpreter.stalled) continue;
      if (
        !best || interpreter.calls < best.calls ||
        (interpreter.calls === best.calls && interpreter.lastUsed > best.lastUsed)
      ) best = interpreter;
    }
    if (!best || (best.calls > 0 && this.#live.size < this.options.size)) {
      if (this.#live.size >= this.options.size) return undefined;
      best = new Interpreter(
        this.launch,
        (dead) => this.#onExit(dead),
        () => this.#rebalance(),
      );
      this.#live.add(best);
      this.#running.add(best);
    } else if (best.calls >= this.options.depth) {
      return undefined;
    }
    clearTimeout(best.idleTimer);
    best.idleTimer = undefined;
    best.calls++;
    return best;
  }

  #wait(label: string, first: boolean, signal?: AbortSignal): Promise<Interpreter> {
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
      if (first) this.#waiting.unshift(waiter);
      else this.#waiting.push(waiter);
      this.#dispatch();
    });
  }

  /** Hands interpreters to waiting calls, in arrival order, while there is room. */
  #dispatch(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let interpreter: Interpreter | undefined;
      try {
        interpreter = this.#pick();
      } catch (error) {
        this.#waiting.shift()!.fail(error);
        continue;
      }
      if (!interpreter) return;
      this.#waiting.shift()!.grant(interpreter);
    }
  }

  #release(interpreter: Interpreter): void {
    interpreter.calls--;
    interpreter.lastUsed = ++this.#clock;
    if (!interpreter.alive || this.#closed) {
      this.#live.delete(interpreter);
    } else if (interpreter.calls === 0) {
      this.#rebalance();
      // An interpreter nobody needs for a while gives its memory back.
      interpreter.idleTimer = setTimeout(() => {
        this.#retired.add(interpreter);
        this.#live.delete(interpreter);
        interpreter.kill();
      }, this.options.idleMs);
      Deno.unrefTimer(Number(interpreter.idleTimer));
    }
    this.#dispatch();
  }

  /**
   * Calls queued behind one that runs long (its bridge said so) go back to
   * the pool when there is somewhere else for them: an idle interpreter, or
   * room for a new one. Only calls the bridge confirms it skipped come back,
   * so none runs twice. Runs when a call is reported long and when an
   * interpreter runs out of calls.
   */
  #rebalance(): void {
    let room = this.#live.size < this.options.size;
    for (const interpreter of this.#live) {
      if (interpreter.alive && interpreter.calls === 0) room = true;
    }
    if (!room) return;
    for (const interpreter of this.#live) {
      if (!interpreter.alive || !interpreter.stalled) continue;
      const queued = interpreter.queued;
      if (queued > 0) interpreter.reclaim(queued);
    }
  }

  /** Interpreters whose process has not exited yet. */
  get alive(): number {
    return this.#running.size;
  }

  #onExit(interpreter: Interpreter): void {
    if (!this.#closed && !this.#retired.has(interpreter)) this.ended++;
    this.#live.delete(interpreter);
    this.#running.delete(interpreter);
    this.#dispatch();
  }
}
