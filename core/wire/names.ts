/**
 * The names the protocol carries: services, RPCs, clients and admin ops.
 * Each is 1 to {@linkcode MAX_NAME_LENGTH} characters from a small ASCII set,
 * so that a name a client sends can be echoed in a reply or a log line
 * without carrying line breaks, escape sequences or megabytes with it.
 *
 * Text that is not a name but is still quoted back (an error message, a type
 * name) is cut with {@linkcode clip} before it is logged.
 *
 * @module
 */

/** The longest name, in characters. */
export const MAX_NAME_LENGTH = 128;

/** The characters a name may hold, for messages. */
export const NAME_CHARACTERS = "letters, digits and _ . - @ :";

const NAME = /^[A-Za-z0-9_.@:-]+$/;

/**
 * Why `name` is not a valid name, or `undefined` when it is one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nameProblem } from "./names.ts";
 * assert.equal(nameProblem("service1"), undefined);
 * assert.equal(nameProblem("a b"), 'name "a b" may hold only letters, digits and _ . - @ :');
 * ```
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "name is empty";
  if (name.length > MAX_NAME_LENGTH) {
    return `name of ${name.length} characters exceeds limit ${MAX_NAME_LENGTH}`;
  }
  if (!NAME.test(name)) return `name ${quote(name)} may hold only ${NAME_CHARACTERS}`;
  return undefined;
}

/** The longest excerpt {@linkcode clip} keeps by default. */
export const CLIP_LENGTH = 500;

/**
 * `text` cut to `max` characters, saying how long it was, for logs and
 * messages that quote what a client sent.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clip } from "./names.ts";
 * assert.equal(clip("abcdef", 3), "abc… (6 characters)");
 * ```
 */
export function clip(text: string, max = CLIP_LENGTH): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** `text` as a JSON string literal, cut to 40 characters: control characters show escaped. */
export function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}
