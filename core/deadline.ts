/**
 * Deadlines for many operations at once on one timer: a server with
 * thousands of calls in flight, or a client with thousands of calls waiting,
 * arms one `setTimeout` for the earliest deadline instead of one per call.
 *
 * Deadlines of the same duration come due in the order they were set, so
 * each duration keeps a first-in-first-out lane; a deadline cancelled early
 * (the common case: the call finished) is only marked, and lanes are trimmed
 * as they go. The timer is unref'd: a deadline never keeps a process alive
 * by itself (what it guards, a call waiting on a socket, does), so the timer
 * may stay armed while no deadline is live, instead of being cleared and set
 * again for every batch of calls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeadlineQueue } from "./deadline.ts";
 * const queue = new DeadlineQueue();
 * let fired = false;
 * const deadline = queue.after(5, () => fired = true);
 * assert.equal(queue.live, 1);
 * deadline.cancel(); // finished in time: nothing fires
 * assert.equal(queue.live, 0);
 * await new Promise((resolve) => setTimeout(resolve, 20));
 * assert.equal(fired, false);
 * ```
 *
 * @module
 */

/** A deadline that was set; cancelling it after it fired does nothing. */
export interface Deadline {
  cancel(): void;
}

class Entry implements Deadline {
  live = true;
  /**
   * Dropped as soon as the entry is cancelled or fires: a dead entry may wait
   * in its lane for a while, and must not keep what the callback holds (a
   * call's request, its settled promise and reply) alive meanwhile.
   */
  fire: (() => void) | undefined;

  constructor(
    readonly queue: DeadlineQueue,
    readonly lane: Lane,
    readonly at: number,
    fire: () => void,
  ) {
    this.fire = fire;
  }

  cancel(): void {
    if (!this.live) return;
    this.live = false;
    this.fire = undefined;
    // Calls mostly finish in the order they started: trimming at the head keeps the lane short,
    // so entries die young instead of being promoted to the old generation while they wait.
    if (this.lane.entries[this.lane.head] === this) this.lane.trim();
    this.queue.cancelled();
  }
}

/** A first-in-first-out list of entries, trimmed from the front. */
class Lane {
  entries: (Entry | undefined)[] = [];
  head = 0;

  /** Drops the dead entries at the front; empties the array once none is left. */
  trim(): void {
    const entries = this.entries;
    while (this.head < entries.length && !entries[this.head]!.live) {
      entries[this.head++] = undefined;
    }
    if (this.head === entries.length) {
      entries.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
  }

  /** The first live entry. */
  first(): Entry | undefined {
    this.trim();
    return this.entries[this.head];
  }

  /** Drops dead entries when they are most of the lane (a long call at the head holds it). */
  compact(): void {
    if (this.entries.length - this.head < 4096) return;
    const live = this.entries.filter((entry, i) => i >= this.head && entry!.live);
    if (live.length * 2 < this.entries.length - this.head) {
      this.entries = live;
      this.head = 0;
    }
  }
}

/** Deadlines sharing one timer; see the module documentation. */
export class DeadlineQueue {
  #lanes = new Map<number, Lane>();
  #live = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;
  #now: () => number;

  /** `now` is the clock in milliseconds (default `performance.now`). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Deadlines set and neither fired nor cancelled. */
  get live(): number {
    return this.#live;
  }

  /** Calls `fire` once `ms` milliseconds have passed, unless cancelled first. */
  after(ms: number, fire: () => void): Deadline {
    const duration = Math.max(0, ms);
    let lane = this.#lanes.get(duration);
    if (!lane) {
      lane = new Lane();
      this.#lanes.set(duration, lane);
    }
    const entry = new Entry(this, lane, this.#now() + duration, fire);
    lane.entries.push(entry);
    if (lane.entries.length % 4096 === 0) lane.compact();
    this.#live++;
    if (entry.at < this.#armedAt) this.#arm(entry.at);
    return entry;
  }

  /** Bookkeeping of {@linkcode Entry.cancel}. */
  cancelled(): void {
    this.#live--;
    // Nothing left: drop every lane. The timer stays; it finds nothing due when it fires.
    if (this.#live === 0) this.#lanes.clear();
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(this.#expire, Math.max(0, Math.ceil(at - this.#now())));
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  #expire = (): void => {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = this.#now();
    const due: Entry[] = [];
    let next = Infinity;
    for (const [duration, lane] of this.#lanes) {
      for (let entry = lane.first(); entry; entry = lane.first()) {
        if (entry.at > now) {
          next = Math.min(next, entry.at);
          break;
        }
        entry.live = false;
        this.#live--;
        due.push(entry);
      }
      if (lane.entries.length === 0) this.#lanes.delete(duration);
    }
    if (next < Infinity && this.#live > 0) this.#arm(next);
    for (const entry of due) {
      const fire = entry.fire!;
      entry.fire = undefined;
      fire();
    }
  };
}

/** The process's shared queue, used by the server's call time limits and the client's. */
export const deadlines: DeadlineQueue = new DeadlineQueue();
