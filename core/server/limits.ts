/**
 * The guards a server applies to what clients send: sizes, counts, time and
 * rates. Every limit has a default here and a flag on `rpc server`; a value
 * of 0 turns a limit off.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import { LARGEST_FRAME_LIMIT } from "../wire/course.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";

/** Every limit a server enforces. */
export interface ServerLimits {
  /** Largest frame body, in bytes. */
  maxFrameBytes: number;
  /** Longest string in an argument, in UTF-16 code units. */
  maxStringLength: number;
  /** Longest list in an argument. */
  maxListLength: number;
  /** Deepest nesting of lists in an argument (a scalar is depth 0). */
  maxDepth: number;
  /** Most digits of an integer in a request; longer ones are refused before being read exactly. */
  maxIntegerDigits: number;
  /** Connections open at once. */
  maxConnections: number;
  /** Connections open at once from one IP address. */
  maxConnectionsPerIp: number;
  /**
   * Connections kept, beyond `maxConnections` and `maxConnectionsPerIp`, for
   * clients that prove the admin token (so an operator can get in to
   * disconnect whoever fills the server).
   */
  adminReserve: number;
  /**
   * Close a connection whose TLS handshake and first message have not both
   * arrived this long after it was accepted (ms).
   */
  handshakeTimeoutMs: number;
  /** Calls in flight on one connection; more are answered `Rate Limited`. */
  maxCallsPerConnection: number;
  /** Reply bytes waiting to be written to one connection before it is held (see backpressure.ts). */
  maxUnsentBytes: number;
  /** Reply bytes waiting to be written to all connections before those with a backlog are held. */
  maxUnsentTotal: number;
  /** Close a connection with no calls in flight after this long without a message (ms). */
  idleTimeoutMs: number;
  /** Close a connection whose frame is not complete this long after it began (ms). */
  frameTimeoutMs: number;
  /** Calls per second one client may make (token bucket refill); 0 for no limit. */
  clientRate: number;
  /** Calls one client may make in a burst (bucket size). */
  clientBurst: number;
  /** Calls per second over all clients; 0 for no limit. */
  globalRate: number;
  /** Calls in a burst over all clients. */
  globalBurst: number;
}

/** The defaults, documented in README's "Limits" table. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxStringLength: 1024 * 1024,
  maxListLength: 100_000,
  maxDepth: 8,
  // Python's own default limit (sys.int_info.default_max_str_digits), so Python procedures
  // can read every integer the server accepts.
  maxIntegerDigits: 4300,
  maxConnections: 1024,
  maxConnectionsPerIp: 128,
  adminReserve: 2,
  handshakeTimeoutMs: 10_000,
  maxCallsPerConnection: 1024,
  maxUnsentBytes: 16 * 1024 * 1024,
  maxUnsentTotal: 256 * 1024 * 1024,
  idleTimeoutMs: 300_000,
  frameTimeoutMs: 10_000,
  clientRate: 0,
  clientBurst: 0,
  globalRate: 0,
  globalBurst: 0,
};

/** Fills in defaults. */
export function resolveLimits(limits: Partial<ServerLimits> = {}): ServerLimits {
  const out = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(limits)) {
    if (value !== undefined) (out as Record<string, number>)[key] = value;
  }
  // No frame limit is the largest one: a frame length must never begin with "{" (course form).
  if (out.maxFrameBytes === 0) out.maxFrameBytes = LARGEST_FRAME_LIMIT;
  if (out.maxFrameBytes > LARGEST_FRAME_LIMIT) throw frameLimitError(out.maxFrameBytes);
  if (out.clientRate > 0 && out.clientBurst <= 0) out.clientBurst = out.clientRate;
  if (out.globalRate > 0 && out.globalBurst <= 0) out.globalBurst = out.globalRate;
  return out;
}

/**
 * The error for a frame limit over {@linkcode LARGEST_FRAME_LIMIT}: a frame
 * length of `0x7B000000` or more would begin with `{`, the first byte of a
 * course-form request, so the server could not tell the two apart.
 */
export function frameLimitError(bytes: number): RangeError {
  return new RangeError(
    `Cannot use frame limit ${bytes}: the largest is ${LARGEST_FRAME_LIMIT} (a frame length of 0x7B000000 or more would begin with "{", which starts a course-form request)`,
  );
}

/**
 * A token bucket: `rate` tokens per second up to `burst`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenBucket } from "./limits.ts";
 * const bucket = new TokenBucket(10, 2, 0);
 * assert.equal(bucket.take(0), true);
 * assert.equal(bucket.take(0), true);
 * assert.equal(bucket.take(0), false); // the burst of 2 is spent
 * assert.equal(bucket.take(100), true); // 100 ms later: one token back
 * ```
 */
export class TokenBucket {
  #tokens: number;
  #updated: number;

  constructor(readonly rate: number, readonly burst: number, now: number) {
    this.#tokens = burst;
    this.#updated = now;
  }

  /** Takes one token if there is one; `now` is in milliseconds. */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Whether the bucket is full (so it can be forgotten). */
  full(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.burst;
  }

  #refill(now: number): void {
    const elapsed = now - this.#updated;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.rate) / 1000);
      this.#updated = now;
    }
  }
}

/** Rate limits per client and over all clients. */
export class RateLimiter {
  #buckets = new Map<string, TokenBucket>();
  #global: TokenBucket | undefined;

  constructor(readonly limits: ServerLimits, now = performance.now()) {
    if (limits.globalRate > 0) {
      this.#global = new TokenBucket(limits.globalRate, limits.globalBurst, now);
    }
  }

  /**
   * Admits one call from `who` (a client name, or an address for anonymous
   * callers).
   *
   * @throws {RpcError} `Rate Limited` naming the limit that was hit.
   */
  admit(who: string, now?: number): void {
    const { clientRate, clientBurst, globalRate } = this.limits;
    // Without rate limits (the default) a call costs no reading of the clock.
    if (clientRate <= 0 && !this.#global) return;
    now ??= performance.now();
    if (clientRate > 0) {
      let bucket = this.#buckets.get(who);
      if (!bucket) {
        bucket = new TokenBucket(clientRate, clientBurst, now);
        this.#buckets.set(who, bucket);
      }
      if (!bucket.take(now)) {
        throw new RpcError(
          ErrorKind.RateLimited,
          `Client ${who} is over its rate limit of ${clientRate} calls/s (burst ${clientBurst})`,
        );
      }
    }
    if (this.#global && !this.#global.take(now)) {
      throw new RpcError(
        ErrorKind.RateLimited,
        `Server is over its rate limit of ${globalRate} calls/s`,
      );
    }
  }

  /** Forgets buckets that are full again, so the table does not grow without bound. */
  sweep(now = performance.now()): void {
    for (const [who, bucket] of this.#buckets) if (bucket.full(now)) this.#buckets.delete(who);
  }

  /** Clients with a bucket in use. */
  get tracked(): number {
    return this.#buckets.size;
  }
}

/**
 * Checks the sizes in a list of arguments: string and list lengths and list
 * nesting.
 *
 * @throws {RpcError} `Invalid Arguments` quoting the measured size and the limit.
 */
export function checkValueLimits(args: readonly unknown[], limits: ServerLimits): void {
  for (let i = 0; i < args.length; i++) checkValueLimit(args[i], 0, i, limits);
}

/**
 * Checks one value of argument `index` (0-based) nested `depth` deep. Its
 * place (`argument 2`) is written only into an error: a call within the
 * limits builds no text and no closure.
 */
function checkValueLimit(value: unknown, depth: number, index: number, limits: ServerLimits): void {
  if (typeof value === "string") {
    if (limits.maxStringLength > 0 && value.length > limits.maxStringLength) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `argument ${
          index + 1
        }: string of ${value.length} characters exceeds limit ${limits.maxStringLength}`,
      );
    }
    return;
  }
  if (!Array.isArray(value)) return;
  if (limits.maxDepth > 0 && depth + 1 > limits.maxDepth) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `argument ${index + 1}: lists nested ${depth + 1} deep exceed limit ${limits.maxDepth}`,
    );
  }
  if (limits.maxListLength > 0 && value.length > limits.maxListLength) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `argument ${index + 1}: list of ${value.length} items exceeds limit ${limits.maxListLength}`,
    );
  }
  for (const item of value) checkValueLimit(item, depth + 1, index, limits);
}
