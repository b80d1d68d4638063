/**
 * Small checks for values that came over the wire, for the validators that
 * turn a reply into a typed value without casting it (the deploy messages,
 * health, stats, the service list). Each check returns the value as its
 * type or throws {@linkcode Invalid} naming the field and the value found
 * there; {@linkcode validated} turns that into an {@linkcode RpcError} of the
 * validator's kind, prefixed with what was being read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { count, record, validated } from "./validate.ts";
 * const parse = (value: unknown) =>
 *   validated("Malformed Frame", "Cannot read the reply", () => count(record(value, "the reply").n, "n"));
 * assert.equal(parse({ n: 3 }), 3);
 * assert.throws(() => parse({ n: -1 }), {
 *   kind: "Malformed Frame",
 *   message: "Cannot read the reply: n must be a count, got -1",
 * });
 * ```
 *
 * @module
 */

import { type ErrorKind, RpcError } from "../errors.ts";

/** Thrown by the checks; {@linkcode validated} turns it into the validator's own error. */
export class Invalid extends Error {}

/** Fails the check with `message`. */
export function fail(message: string): never {
  throw new Invalid(message);
}

/** A value for a message: JSON, cut short. */
export function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** An object (not a list, not null). */
export function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(`${what} must be an object, got ${shown(value)}`);
  }
  return value as Record<string, unknown>;
}

/** A list. */
export function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) fail(`${what} must be a list, got ${shown(value)}`);
  return value;
}

/** A string. */
export function text(value: unknown, what: string): string {
  if (typeof value !== "string") fail(`${what} must be text, got ${shown(value)}`);
  return value;
}

/** A list of strings. */
export function texts(value: unknown, what: string): string[] {
  return list(value, what).map((item, i) => text(item, `${what}[${i}]`));
}

/** A whole number, 0 or more. */
export function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    fail(`${what} must be a count, got ${shown(value)}`);
  }
  return value;
}

/** Runs `parse`, turning a failed check into an {@linkcode RpcError} of `kind`. */
export function validated<T>(kind: ErrorKind, prefix: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof Invalid) throw new RpcError(kind, `${prefix}: ${error.message}`);
    throw error;
  }
}
