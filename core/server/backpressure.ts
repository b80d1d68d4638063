/**
 * Backpressure on replies. A client that sends calls and never reads their
 * replies would otherwise make the server hold every reply in memory. Each
 * connection has a {@linkcode ConnectionReplies} that counts the bytes of
 * replies not yet written to it ("unsent") and decides when a call may start
 * and when the connection may be read; a {@linkcode ReplyBudget} sums them
 * over all connections.
 *
 * Stopping reading is not enough on its own: one read can bring a thousand
 * small requests whose replies are large, and no reply exists yet when they
 * arrive. So each call still running is counted too ("reserved"), as much as
 * its connection's largest recent message and at least 1/64 of the bound:
 * with the default 16 MiB, at most 64 calls run at once on one connection
 * while their reply sizes are unknown, fewer once they are known to be large.
 * The total counts the same, so many connections cannot each take a burst.
 * Calls that may not start wait, in order, and nothing more is read from the
 * connection until they have started. A connection with nothing running and
 * nothing unsent may always start one call, so every client makes progress.
 *
 * @module
 */

/** The limits a {@linkcode ReplyBudget} enforces; 0 turns one off. */
export interface ReplyLimits {
  /** Unsent reply bytes one connection may have. */
  maxUnsentBytes: number;
  /** Unsent reply bytes all connections together may have. */
  maxUnsentTotal: number;
}

/** Each running call counts as at least this fraction of the bound (per connection, else total). */
export const RESERVE_SHARE = 1 / 64;

/**
 * The unsent and reserved reply bytes of every connection of a server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReplyBudget } from "./backpressure.ts";
 * const budget = new ReplyBudget({ maxUnsentBytes: 1000, maxUnsentTotal: 0 });
 * const replies = budget.open(() => {});
 * assert.equal(replies.acquire(), undefined); // the first call always starts
 * assert.equal(replies.mayRead(), true);
 * replies.changed(2000); // its reply is queued and not written
 * replies.release();
 * assert.equal(replies.mayRead(), false);
 * ```
 */
export class ReplyBudget {
  readonly limits: Readonly<ReplyLimits>;
  /** What a running call reserves at least. */
  readonly floor: number;
  #unsent = 0;
  #reserved = 0;
  /** Connections that wait for room: calls queued, or reading held. */
  #stalled = new Set<ConnectionReplies>();

  constructor(limits: ReplyLimits) {
    this.limits = { ...limits };
    this.floor = (limits.maxUnsentBytes > 0 ? limits.maxUnsentBytes : limits.maxUnsentTotal) *
      RESERVE_SHARE;
  }

  /** Unsent reply bytes over all connections. */
  get unsent(): number {
    return this.#unsent;
  }

  /** Bytes reserved for the replies of running calls, over all connections. */
  get reserved(): number {
    return this.#reserved;
  }

  /** Connections waiting for their clients to read. */
  get stalled(): number {
    return this.#stalled.size;
  }

  /** Whether unsent and reserved bytes are at the total. */
  get full(): boolean {
    const { maxUnsentTotal } = this.limits;
    return maxUnsentTotal > 0 && this.#unsent + this.#reserved >= maxUnsentTotal;
  }

  /** Whether reserving `more` bytes would take unsent and reserved bytes over the total. */
  over(more: number): boolean {
    const { maxUnsentTotal } = this.limits;
    return maxUnsentTotal > 0 && this.#unsent + this.#reserved + more > maxUnsentTotal;
  }

  /** Accounting for a new connection; `resume` wakes its read loop. */
  open(resume: () => void): ConnectionReplies {
    return new ConnectionReplies(this, resume);
  }

  /** Called by a connection whose unsent or reserved bytes changed. */
  add(unsent: number, reserved: number): void {
    const wasFull = this.full;
    this.#unsent += unsent;
    this.#reserved += reserved;
    // Back under the total: every connection held by it may go on.
    if (wasFull && !this.full && this.#stalled.size > 0) {
      for (const connection of [...this.#stalled]) connection.pump();
    }
  }

  /** Called by a connection that waits (`true`) or no longer does. */
  stall(connection: ConnectionReplies, stalled: boolean): void {
    if (stalled) this.#stalled.add(connection);
    else this.#stalled.delete(connection);
  }
}

interface Waiter {
  resolve(): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** The unsent replies and running calls of one connection. */
export class ConnectionReplies {
  #budget: ReplyBudget;
  #resume: () => void;
  #unsent = 0;
  #running = 0;
  /** What a running call is taken to reply: the largest recent message, decaying. */
  #estimate: number;
  /** `#running * #estimate`, as the budget has it. */
  #reserved = 0;
  #waiters: Waiter[] = [];
  /** When bytes were last written, or first waited (performance.now()). */
  #progressAt = 0;
  #closed = false;
  /** Whether the budget counts this connection as stalled. */
  #stalled = false;

  constructor(budget: ReplyBudget, resume: () => void) {
    this.#budget = budget;
    this.#resume = resume;
    this.#estimate = budget.floor;
  }

  /** Bytes of replies queued or being written to this connection. */
  get unsent(): number {
    return this.#unsent;
  }

  /** Calls started and not yet released. */
  get running(): number {
    return this.#running;
  }

  /** Calls waiting to start. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * How long replies have waited with none of their bytes written (ms), or 0
   * when nothing waits: how long the client has not been reading.
   */
  stalledFor(now = performance.now()): number {
    return this.#unsent > 0 ? now - this.#progressAt : 0;
  }

  /** The channel's hook: `delta` bytes were queued (positive) or written or dropped (negative). */
  changed(delta: number): void {
    if (delta > 0) {
      if (this.#unsent === 0) this.#progressAt = performance.now();
      const decayed = this.#estimate - this.#estimate / 16;
      this.#estimate = Math.max(this.#budget.floor, delta, decayed);
    } else {
      this.#progressAt = performance.now();
    }
    this.#unsent += delta;
    this.#account(delta);
    if (delta < 0) this.pump();
  }

  /** Brings the budget up to date with this connection's unsent and reserved bytes. */
  #account(unsent: number): void {
    const reserved = this.#running * this.#estimate;
    this.#budget.add(unsent, reserved - this.#reserved);
    this.#reserved = reserved;
  }

  /** Whether one more call may start now. */
  #fits(): boolean {
    if (this.#running === 0 && this.#unsent === 0) return true;
    const { maxUnsentBytes } = this.#budget.limits;
    const next = (this.#running + 1) * this.#estimate;
    if (maxUnsentBytes > 0 && this.#unsent + next > maxUnsentBytes) return false;
    return !this.#budget.over(this.#estimate);
  }

  #readable(): boolean {
    if (this.#closed) return true;
    if (this.#waiters.length > 0) return false;
    const { maxUnsentBytes } = this.#budget.limits;
    if (maxUnsentBytes > 0 && this.#unsent >= maxUnsentBytes) return false;
    return !(this.#unsent > 0 && this.#budget.full);
  }

  /**
   * Whether the connection may be read now. A client that keeps up with its
   * replies is always read; one that does not is read again once they drain.
   */
  mayRead(): boolean {
    const readable = this.#readable();
    if (!readable) this.#stall(true);
    return readable;
  }

  #stall(stalled: boolean): void {
    if (this.#stalled === stalled) return;
    this.#stalled = stalled;
    this.#budget.stall(this, stalled);
  }

  /**
   * Starts a call if it may start now, without waiting: returns whether it
   * did. One that did must be matched by one {@linkcode release}.
   */
  tryAcquire(): boolean {
    if (this.#waiters.length > 0 || !this.#fits()) return false;
    this.#start();
    return true;
  }

  /**
   * Starts a call: returns `undefined` when it may start now, else a promise
   * that resolves when it may (or rejects with the signal's reason when
   * `signal` aborts first). Every start must be matched by one
   * {@linkcode release}.
   */
  acquire(signal?: AbortSignal): Promise<void> | undefined {
    if (this.#waiters.length === 0 && this.#fits()) {
      this.#start();
      return undefined;
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = { resolve, signal, onAbort: undefined };
    if (signal) {
      waiter.onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal.reason);
        this.pump();
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    this.#waiters.push(waiter);
    this.#stall(true);
    return promise;
  }

  #start(): void {
    this.#running++;
    this.#account(0);
  }

  /** A started call is over (its reply, if any, is already queued). */
  release(): void {
    this.#running--;
    this.#account(0);
    if (this.#waiters.length > 0) this.pump();
  }

  /** Starts the calls that now fit, and wakes the read loop when it may read. */
  pump(): void {
    while (this.#waiters.length > 0 && this.#fits()) {
      const waiter = this.#waiters.shift()!;
      if (waiter.onAbort) waiter.signal!.removeEventListener("abort", waiter.onAbort);
      this.#start();
      waiter.resolve();
    }
    if (this.#stalled && this.#readable()) {
      this.#stall(false);
      this.#resume();
    }
  }

  /** The connection closed: it waits for nothing any more. */
  close(): void {
    this.#closed = true;
    this.#stall(false);
  }
}
