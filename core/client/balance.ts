/**
 * Choosing a provider for each call of a service: the picker behind
 * `ServiceClient`'s `balance` option (`core/client/failover.ts`).
 *
 * - `first`: no picker at all; the ordered failover of `failover.ts`.
 * - `round-robin`: the next provider in init.yaml's order after the last
 *   one picked, starting at a random one (so that many short-lived clients,
 *   such as `rpc call` processes, spread too).
 * - `p2c` (power of two choices): two different providers at random, and
 *   of those the one with the lower cost, `(calls in flight + 1) × recent
 *   latency`. Recent latency is an exponentially weighted moving average of
 *   the provider's answer times (weight {@linkcode EWMA_WEIGHT} for each new
 *   one); a provider not yet measured costs as little as possible, so it is
 *   tried.
 *
 * **Ejection.** A provider that fails (cannot be reached, or loses the
 * connection) is ejected: not picked for `ejectMs` (default 1 s), doubled at
 * each failure in a row up to `maxEjectMs` (default 30 s). Once that time is
 * up it is _due_: the client probes it (a `health` request), and only a
 * probe that answers readmits it; a failed probe ejects it again for longer.
 * When every provider that is not yet tried in this call is ejected, the one
 * whose ejection ends first is picked anyway, rather than failing a call that
 * might succeed.
 *
 * @module
 */

/** How calls are spread over a service's providers. */
export type BalancePolicy = "first" | "round-robin" | "p2c";

/** The policies, for parsing and help. */
export const BALANCE_POLICIES: readonly BalancePolicy[] = ["first", "round-robin", "p2c"];

/** Weight of the newest answer time in the moving average. */
export const EWMA_WEIGHT = 0.3;

/** Options of {@linkcode Balancer}. */
export interface BalancerOptions {
  /** `round-robin` or `p2c`. */
  policy: Exclude<BalancePolicy, "first">;
  /** A number in [0, 1), as `Math.random` (injected by tests). */
  random?: () => number;
  /** The clock, in ms (injected by tests). Default `performance.now`. */
  now?: () => number;
  /** First ejection of a failed provider, in ms. Default 1 000. */
  ejectMs?: number;
  /** Longest ejection, in ms. Default 30 000. */
  maxEjectMs?: number;
}

interface ProviderState {
  inFlight: number;
  /** Moving average of answer times, ms; undefined until the first answer. */
  ewmaMs: number | undefined;
  /** Failures in a row. */
  failures: number;
  /** Ejected until this time (ms of `now`); 0 when admitted. */
  ejectedUntil: number;
  /** A probe is under way. */
  probing: boolean;
}

/** Per-provider load and health, and the choice of the next provider. */
export class Balancer {
  readonly policy: Exclude<BalancePolicy, "first">;
  #states: ProviderState[];
  #random: () => number;
  #now: () => number;
  #ejectMs: number;
  #maxEjectMs: number;
  #next: number;

  constructor(count: number, options: BalancerOptions) {
    this.policy = options.policy;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? (() => performance.now());
    this.#ejectMs = options.ejectMs ?? 1_000;
    this.#maxEjectMs = options.maxEjectMs ?? 30_000;
    this.#states = Array.from({ length: count }, () => ({
      inFlight: 0,
      ewmaMs: undefined,
      failures: 0,
      ejectedUntil: 0,
      probing: false,
    }));
    this.#next = Math.floor(this.#random() * count);
  }

  /**
   * The provider for the next attempt, among those not in `tried`; undefined
   * when all were tried.
   */
  pick(tried: ReadonlySet<number> = new Set()): number | undefined {
    const open = this.#states.map((_, index) => index).filter((index) => !tried.has(index));
    if (open.length === 0) return undefined;
    const admitted = open.filter((index) => this.admitted(index));
    if (admitted.length === 0) {
      // Every one left is ejected: the one back soonest rather than nothing.
      return open.reduce((best, index) =>
        this.#states[index].ejectedUntil < this.#states[best].ejectedUntil ? index : best
      );
    }
    if (this.policy === "round-robin") {
      for (let step = 0; step < this.#states.length; step++) {
        const index = (this.#next + step) % this.#states.length;
        if (admitted.includes(index)) {
          this.#next = (index + 1) % this.#states.length;
          return index;
        }
      }
    }
    if (admitted.length === 1) return admitted[0];
    const first = Math.floor(this.#random() * admitted.length);
    let second = Math.floor(this.#random() * (admitted.length - 1));
    if (second >= first) second++;
    const [a, b] = [admitted[first], admitted[second]];
    return this.cost(b) < this.cost(a) ? b : a;
  }

  /** Whether the provider may get calls: never ejected, or readmitted by a probe. */
  admitted(index: number): boolean {
    return this.#states[index].ejectedUntil === 0;
  }

  /** `(in flight + 1) × recent latency`; an unmeasured provider costs 0. */
  cost(index: number): number {
    const state = this.#states[index];
    return (state.inFlight + 1) * (state.ewmaMs ?? 0);
  }

  /** Calls in flight on the provider. */
  inFlight(index: number): number {
    return this.#states[index].inFlight;
  }

  /** A call is sent to the provider; call the function returned when it ends. */
  start(index: number): () => void {
    const state = this.#states[index];
    state.inFlight++;
    let ended = false;
    return () => {
      if (!ended) state.inFlight--;
      ended = true;
    };
  }

  /** The provider answered (any answer, failures of the procedure included) in `ms`. */
  answered(index: number, ms: number): void {
    const state = this.#states[index];
    state.ewmaMs = state.ewmaMs === undefined
      ? ms
      : state.ewmaMs + EWMA_WEIGHT * (ms - state.ewmaMs);
    state.failures = 0;
  }

  /** The provider could not be reached or lost the connection: eject it. Returns the ejection's length, ms. */
  failed(index: number): number {
    const state = this.#states[index];
    const length = Math.min(this.#ejectMs * 2 ** state.failures, this.#maxEjectMs);
    state.failures++;
    state.ejectedUntil = this.#now() + length;
    state.probing = false;
    return length;
  }

  /**
   * Ejected providers whose time is up and that no probe is checking yet;
   * each is marked as being probed (report with {@linkcode readmit} or
   * {@linkcode failed}).
   */
  due(): number[] {
    const now = this.#now();
    const due: number[] = [];
    this.#states.forEach((state, index) => {
      if (state.ejectedUntil !== 0 && !state.probing && state.ejectedUntil <= now) {
        state.probing = true;
        due.push(index);
      }
    });
    return due;
  }

  /** A probe answered: the provider gets calls again. */
  readmit(index: number): void {
    const state = this.#states[index];
    state.ejectedUntil = 0;
    state.probing = false;
  }
}
