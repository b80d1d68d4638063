/**
 * The type grammar of rpc, written as in the course: `int`, `float`, `str`,
 * `bool` and `List[T]` (nesting allowed). This module parses type names,
 * checks values strictly, and reads and writes JSON that keeps integers exact;
 * `coerce.ts` reads typed values from text and `overload.ts` picks the
 * overload a call means.
 * It does no I/O.
 *
 * Values on the wire are JSON. An `int` is a JSON integer of any size: inside
 * ±(2^53 - 1) it is a `number`, beyond that a `bigint`, so nothing is rounded.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";

/** A parsed type. */
export type RpcType =
  | { readonly kind: "int" }
  | { readonly kind: "float" }
  | { readonly kind: "str" }
  | { readonly kind: "bool" }
  | { readonly kind: "list"; readonly of: RpcType };

/** Names of the scalar types. */
export const SCALAR_TYPES = ["int", "float", "str", "bool"] as const;

/** The deepest `List[List[...]]` nesting a type name may have. */
export const MAX_TYPE_DEPTH = 8;

const SCALARS: Record<string, RpcType> = {
  int: { kind: "int" },
  float: { kind: "float" },
  str: { kind: "str" },
  bool: { kind: "bool" },
};

/**
 * Parses a type name such as `List[int]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatType, parseType } from "./types.ts";
 * assert.equal(formatType(parseType(" list[ int ] ")), "List[int]");
 * assert.throws(() => parseType("List[int"), SyntaxError);
 * ```
 * @throws {SyntaxError} when the name is not a type.
 */
export function parseType(text: string): RpcType {
  const cached = parsedTypes.get(text);
  if (cached) return cached;
  const type = parseTypeText(text);
  if (parsedTypes.size < PARSED_TYPES_LIMIT && text.length <= 64) parsedTypes.set(text, type);
  return type;
}

/**
 * Type names parsed so far: a request that declares its argument types names
 * the same few on every call. Types are immutable, so they are shared.
 */
const parsedTypes = new Map<string, RpcType>();
const PARSED_TYPES_LIMIT = 1024;

function parseTypeText(text: string): RpcType {
  const source = text.trim();
  let type: RpcType | undefined;
  let rest = source;
  let depth = 0;
  const wrappers: number[] = [];
  for (;;) {
    const match = /^(?:List|list)\s*\[\s*/.exec(rest);
    if (!match) break;
    depth++;
    if (depth > MAX_TYPE_DEPTH) {
      throw new SyntaxError(
        `Cannot parse type "${source}": nesting ${depth} exceeds limit ${MAX_TYPE_DEPTH}`,
      );
    }
    wrappers.push(depth);
    rest = rest.slice(match[0].length);
  }
  const scalar = /^[A-Za-z_]+/.exec(rest);
  if (scalar && Object.hasOwn(SCALARS, scalar[0])) {
    type = SCALARS[scalar[0]];
    rest = rest.slice(scalar[0].length);
  }
  if (!type) {
    throw new SyntaxError(
      `Cannot parse type "${source}": expected one of int, float, str, bool or List[...]`,
    );
  }
  for (let i = 0; i < wrappers.length; i++) {
    const close = /^\s*\]\s*/.exec(rest);
    if (!close) {
      throw new SyntaxError(`Cannot parse type "${source}": missing "]"`);
    }
    rest = rest.slice(close[0].length);
    type = { kind: "list", of: type };
  }
  if (rest.length > 0) {
    throw new SyntaxError(`Cannot parse type "${source}": unexpected "${rest}"`);
  }
  return type;
}

/** Formats a type in its canonical spelling, e.g. `List[int]`. */
export function formatType(type: RpcType): string {
  return type.kind === "list" ? `List[${formatType(type.of)}]` : type.kind;
}

/** Formats a list of types as `int, str`. */
export function formatTypes(types: readonly RpcType[]): string {
  return types.map(formatType).join(", ");
}

/** A procedure signature: the types of its arguments and of its return values. */
export interface Signature {
  readonly args: readonly RpcType[];
  readonly returns: readonly RpcType[];
  /** For a streaming procedure: the types of each partial result it yields. */
  readonly yields?: readonly RpcType[];
}

/** Parses a signature from lists of type names. */
export function parseSignature(
  args: readonly string[],
  returns: readonly string[],
  yields?: readonly string[],
): Signature {
  return {
    args: args.map(parseType),
    returns: returns.map(parseType),
    ...(yields ? { yields: yields.map(parseType) } : {}),
  };
}

/**
 * Formats a signature as `name(int, str) -> str`; several return values are
 * parenthesized and none is written `()`.
 */
export function formatSignature(name: string, signature: Signature): string {
  const returns = signature.returns.length === 1
    ? formatType(signature.returns[0])
    : `(${formatTypes(signature.returns)})`;
  const yields = signature.yields
    ? ` yields ${
      signature.yields.length === 1
        ? formatType(signature.yields[0])
        : `(${formatTypes(signature.yields)})`
    }`
    : "";
  return `${name}(${formatTypes(signature.args)})${yields} -> ${returns}`;
}

/** The key that identifies an overload among its siblings: its argument types. */
export function argumentKey(types: readonly RpcType[]): string {
  return types.map(formatType).join(",");
}

/** Describes a value's JavaScript shape for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  }
  if (typeof value === "bigint") {
    const text = value.toString();
    const digits = text.length - (value < 0n ? 1 : 0);
    return text.length > 40
      ? `the integer ${text.slice(0, 40)}… (${digits} digits)`
      : `the integer ${text}`;
  }
  if (typeof value === "boolean") return `the boolean ${value}`;
  return typeof value === "object" ? "an object" : typeof value;
}

/** A value did not match its declared type; `path` says where, e.g. `[2]`. */
export class TypeMismatch extends TypeError {
  override name = "TypeMismatch";
  constructor(readonly path: string, readonly expected: RpcType, readonly actual: unknown) {
    super(`expected ${formatType(expected)}${path}, got ${describeValue(actual)}`);
  }
}

/**
 * Checks `value` against `type` and returns it in its canonical form: the
 * same reference when nothing changes (the common case), otherwise a copy in
 * which integers beyond 2^53 are `bigint` and `bigint` floats are numbers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkValue, parseType } from "./types.ts";
 * const list = [1, 2, 3];
 * assert.equal(checkValue(parseType("List[int]"), list), list);
 * assert.throws(() => checkValue(parseType("List[int]"), [1, "2"]));
 * ```
 * @throws {TypeMismatch} when the value does not have the type.
 */
export function checkValue(type: RpcType, value: unknown, path = ""): unknown {
  const checked = canonical(type, value);
  if (checked !== MISMATCH) return checked;
  throw mismatch(type, value, path);
}

/** What {@linkcode canonical} returns for a value that does not have the type. */
const MISMATCH: unique symbol = Symbol("mismatch");

/**
 * The value in canonical form, or {@linkcode MISMATCH}. It builds no path
 * strings or errors, so a long list costs one pass; {@linkcode mismatch}
 * finds where a value failed only once it has.
 */
function canonical(type: RpcType, value: unknown): unknown {
  switch (type.kind) {
    case "int":
      if (typeof value === "number") {
        if (Number.isSafeInteger(value)) return value;
        if (Number.isInteger(value)) return BigInt(value);
      } else if (typeof value === "bigint") {
        return Number.isSafeInteger(Number(value)) ? Number(value) : value;
      }
      return MISMATCH;
    case "float":
      if (typeof value === "number" && Number.isFinite(value)) return value;
      if (typeof value === "bigint") return Number(value);
      return MISMATCH;
    case "str":
      return typeof value === "string" ? value : MISMATCH;
    case "bool":
      return typeof value === "boolean" ? value : MISMATCH;
    case "list": {
      if (!Array.isArray(value)) return MISMATCH;
      const of = type.of;
      let copy: unknown[] | undefined;
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        const checked = canonical(of, item);
        if (checked === item) continue;
        if (checked === MISMATCH) return MISMATCH;
        copy ??= value.slice();
        copy[i] = checked;
      }
      return copy ?? value;
    }
  }
}

/** The error for a value that does not have the type, naming the innermost element that fails. */
function mismatch(type: RpcType, value: unknown, path: string): TypeMismatch {
  if (type.kind === "list" && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (canonical(type.of, value[i]) === MISMATCH) {
        return mismatch(type.of, value[i], `${path}[${i}]`);
      }
    }
  }
  return new TypeMismatch(path ? ` at ${path}` : "", type, value);
}

/** Whether `value` has `type`, without building a copy or an error. */
export function hasType(type: RpcType, value: unknown): boolean {
  switch (type.kind) {
    case "int":
      return typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value));
    case "float":
      return typeof value === "bigint" || (typeof value === "number" && Number.isFinite(value));
    case "str":
      return typeof value === "string";
    case "bool":
      return typeof value === "boolean";
    case "list":
      return Array.isArray(value) && value.every((item) => hasType(type.of, item));
  }
}

/**
 * Checks a list of values against a list of types.
 *
 * @param what `"argument"` or `"return value"`, used in messages.
 * @throws {RpcError} `Invalid Arguments` naming the first value that fails.
 */
export function checkValues(
  types: readonly RpcType[],
  values: readonly unknown[],
  what: string,
): unknown[] {
  if (values.length !== types.length) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `Expected ${types.length} ${what}${types.length === 1 ? "" : "s"}, got ${values.length}`,
    );
  }
  let out: unknown[] | undefined;
  for (let i = 0; i < types.length; i++) {
    let checked: unknown;
    try {
      checked = checkValue(types[i], values[i]);
    } catch (error) {
      if (!(error instanceof TypeMismatch)) throw error;
      throw new RpcError(ErrorKind.InvalidArguments, `${what} ${i + 1}: ${error.message}`);
    }
    if (checked !== values[i]) {
      out ??= values.slice();
      out[i] = checked;
    }
  }
  return out ?? (values as unknown[]);
}

/** Guesses the type of a value, for calls that do not declare argument types. */
export function inferType(value: unknown): RpcType | undefined {
  switch (typeof value) {
    case "bigint":
      return SCALARS.int;
    case "number":
      return Number.isInteger(value) ? SCALARS.int : SCALARS.float;
    case "string":
      return SCALARS.str;
    case "boolean":
      return SCALARS.bool;
  }
  if (!Array.isArray(value)) return undefined;
  let item: RpcType | undefined;
  for (const element of value) {
    const next = inferType(element);
    if (!next) return undefined;
    if (!item || (item.kind === "int" && next.kind === "float")) item = next;
  }
  return item ? { kind: "list", of: item } : undefined;
}

// ---------------------------------------------------------------------------
// JSON that keeps integers exact

/** An integer in JSON text has more digits than the limit allows. */
export class IntegerTooLong extends RangeError {
  override name = "IntegerTooLong";
  constructor(readonly digits: number, readonly limit: number) {
    super(`integer of ${digits} digits exceeds limit ${limit}`);
  }
}

const INTEGER_TEXT = /^-?\d+$/;

/**
 * A reviver that reads integers `number` cannot carry exactly from their
 * source text, refusing those of more than `maxDigits` digits (0: any) before
 * converting them: the conversion costs time that grows faster than the
 * number of digits.
 */
function exactIntegers(maxDigits: number) {
  return (_key: string, value: unknown, context?: { source?: string }): unknown => {
    if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
    const source = context?.source;
    if (source === undefined || !INTEGER_TEXT.test(source)) return value;
    const digits = source.length - (source.startsWith("-") ? 1 : 0);
    if (maxDigits > 0 && digits > maxDigits) throw new IntegerTooLong(digits, maxDigits);
    return BigInt(source);
  };
}

/** What {@linkcode inspectJson} finds in a parsed JSON value. */
export interface JsonShape {
  /**
   * Whether a number may not have been read exactly: an integer beyond
   * ±(2^53 - 1), or one so long that it was read as an infinity.
   */
  inexact: boolean;
  /** The deepest nesting of arrays and objects; a scalar is 0, `[]` is 1. */
  depth: number;
}

function inexactNumber(value: number): boolean {
  return !Number.isSafeInteger(value) && (Number.isInteger(value) || !Number.isFinite(value));
}

/**
 * Walks a value `JSON.parse` returned, without recursion (so any nesting is
 * safe), and says whether any number in it may be inexact and how deep it
 * nests. It visits values, not text, so a long string costs nothing.
 */
export function inspectJson(root: unknown): JsonShape {
  if (typeof root === "number") return { inexact: inexactNumber(root), depth: 0 };
  if (typeof root !== "object" || root === null) return { inexact: false, depth: 0 };
  let inexact = false;
  let depth = 0;
  const stack: object[] = [root];
  const levels: number[] = [1];
  while (stack.length > 0) {
    const value = stack.pop()!;
    const level = levels.pop()!;
    if (level > depth) depth = level;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        if (typeof item === "number") {
          if (!inexact && inexactNumber(item)) inexact = true;
        } else if (typeof item === "object" && item !== null) {
          stack.push(item);
          levels.push(level + 1);
        }
      }
    } else {
      for (const key in value) {
        const item = (value as Record<string, unknown>)[key];
        if (typeof item === "number") {
          if (!inexact && inexactNumber(item)) inexact = true;
        } else if (typeof item === "object" && item !== null) {
          stack.push(item);
          levels.push(level + 1);
        }
      }
    }
  }
  return { inexact, depth };
}

/**
 * Parses JSON reading every integer beyond 2^53 exactly, as a `bigint`.
 *
 * @throws {IntegerTooLong} for an integer of more than `maxIntegerDigits`
 * digits (0: no limit).
 * @throws {SyntaxError} for text that is not JSON.
 */
export function parseJsonExact(text: string, maxIntegerDigits = 0): unknown {
  return JSON.parse(text, exactIntegers(maxIntegerDigits) as never);
}

/**
 * Parses JSON, turning integers beyond 2^53 into `bigint` instead of rounding
 * them, whatever their size. The text is parsed once; only when the result
 * holds a number that may be inexact is it parsed again with a reviver that
 * reads those digits exactly. Looking at the values, not the text, keeps a
 * long string cheap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseJson } from "./types.ts";
 * const [big] = parseJson("[123456789012345678901]") as bigint[];
 * assert.equal(big, 123456789012345678901n);
 * const [huge] = parseJson(`[1${"0".repeat(400)}]`) as bigint[];
 * assert.equal(huge, 10n ** 400n);
 * ```
 * @throws {IntegerTooLong} for an integer of more than `maxIntegerDigits`
 * digits (0, the default: no limit).
 */
export function parseJson(text: string, maxIntegerDigits = 0): unknown {
  const value = JSON.parse(text);
  return inspectJson(value).inexact ? parseJsonExact(text, maxIntegerDigits) : value;
}

function bigintReplacer(_key: string, value: unknown): unknown {
  // deno-lint-ignore no-explicit-any
  return typeof value === "bigint" ? (JSON as any).rawJSON(value.toString()) : value;
}

/** Serializes to JSON, writing `bigint` values as exact JSON integers. */
export function stringifyJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (!(error instanceof TypeError) || !/BigInt/i.test(error.message)) throw error;
    return JSON.stringify(value, bigintReplacer);
  }
}
