/**
 * How many of a pool's sandboxes take new calls. More sandboxes are not
 * faster by themselves: each one more process taking turns on the cores
 * costs CPU per call in wake-ups and smaller batches. On 2 cores, echo
 * calls at 64 in flight ran at 46-61k calls/s with one sandbox and 35-46k with
 * two, the sandboxes' CPU per call halved, and one sandbox was no slower at
 * 64 KiB either. A procedure that keeps its sandbox's CPU busy is the other
 * way round: 2 ms of work per call ran at 448 calls/s in one sandbox and 824
 * in two.
 *
 * So a pool starts by giving calls to one sandbox and watches how much CPU
 * its sandboxes use ({@linkcode Spread.update}, from `/proc` every
 * {@linkcode SAMPLE_MS}): when every sandbox taking calls is busy
 * ({@linkcode BUSY_SHARE} of a core or more), one more takes calls, up to the
 * pool's size; when the work would fit in one fewer, one fewer does. Where
 * the CPU cannot be read (not Linux), every sandbox takes calls.
 *
 * @module
 */

/** How often a pool with calls in flight reads its sandboxes' CPU time. */
export const SAMPLE_MS = 250;

/** The share of one core above which a sandbox counts as busy. */
export const BUSY_SHARE = 0.75;

/** The count of sandboxes that take new calls, adjusted from their CPU use. */
export class Spread {
  #count = 1;

  /** `max` is the pool's size. */
  constructor(readonly max: number) {}

  /** How many sandboxes (the first ones started) take new calls. */
  get count(): number {
    return Math.min(this.#count, this.max);
  }

  /** Every sandbox may take calls: the CPU cannot be read. */
  widen(): void {
    this.#count = this.max;
  }

  /**
   * Takes the share of a core (0 to 1, or more for a sandbox using several)
   * each sandbox taking calls used over the last interval, in order.
   */
  update(shares: readonly number[]): void {
    if (shares.length < this.count) return;
    let total = 0;
    let allBusy = true;
    for (let i = 0; i < this.count; i++) {
      total += shares[i];
      if (shares[i] < BUSY_SHARE) allBusy = false;
    }
    if (allBusy && this.#count < this.max) this.#count++;
    else if (this.#count > 1 && total < (this.#count - 1) * BUSY_SHARE) this.#count--;
  }
}

/** Milliseconds of CPU process `pid` has used (user and system), or undefined where unreadable. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}
