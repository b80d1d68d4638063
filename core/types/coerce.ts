/**
 * Typed values from text: what `rpc call`, the REPL, `rpc bench`, the HTTP
 * gateway's `text-arguments` and the course form's string arguments read.
 * {@linkcode coerceArgument} reads a text as one given type;
 * {@linkcode textType} says which type a text is most exactly, as
 * `inferType` says it of a JSON value, for choosing among overloads
 * (`overload.ts`). It does no I/O.
 *
 * @module
 */

import {
  checkValue,
  formatType,
  inferType,
  parseJson,
  type RpcType,
  TypeMismatch,
} from "./types.ts";

const INT_TEXT = /^[+-]?\d+$/;
const FLOAT_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

const INT: RpcType = { kind: "int" };
const FLOAT: RpcType = { kind: "float" };
const STR: RpcType = { kind: "str" };
const BOOL: RpcType = { kind: "bool" };

function coerceScalar(type: RpcType, text: string): unknown {
  const trimmed = type.kind === "str" ? text : text.trim();
  switch (type.kind) {
    case "int": {
      if (!INT_TEXT.test(trimmed)) break;
      const big = BigInt(trimmed);
      const small = Number(big);
      return Number.isSafeInteger(small) ? small : big;
    }
    case "float": {
      if (!FLOAT_TEXT.test(trimmed)) break;
      const number = Number(trimmed);
      if (Number.isFinite(number)) return number;
      break;
    }
    case "bool":
      if (trimmed === "true") return true;
      if (trimmed === "false") return false;
      break;
    case "str":
      return text;
    case "list":
      break;
  }
  throw new SyntaxError(`Cannot read ${JSON.stringify(text)} as ${formatType(type)}`);
}

/**
 * Turns command-line text into a value of `type`.
 *
 * Scalars: `int` is a decimal integer of any size, `float` a decimal number,
 * `bool` is `true` or `false`, `str` is taken as is. Lists are either a JSON
 * array (`[1, 2, 3]`, `["a", "b"]`) or comma-separated items (`1,2,3`, `a,b`);
 * an empty string or `[]` is the empty list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coerceArgument } from "./coerce.ts";
 * import { parseType } from "./types.ts";
 * const list = coerceArgument(parseType("List[int]"), "1,2,3");
 * assert.deepEqual(list, [1, 2, 3]);
 * ```
 * @throws {SyntaxError} when the text cannot be read as that type.
 */
export function coerceArgument(type: RpcType, text: string): unknown {
  if (type.kind !== "list") return coerceScalar(type, text);
  const trimmed = text.trim();
  if (trimmed === "") return [];
  if (trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = parseJson(trimmed);
    } catch {
      throw new SyntaxError(
        `Cannot read ${JSON.stringify(text)} as ${formatType(type)}: not a valid JSON array`,
      );
    }
    try {
      return checkValue(type, parsed);
    } catch (error) {
      if (error instanceof TypeMismatch) {
        throw new SyntaxError(
          `Cannot read ${JSON.stringify(text)} as ${formatType(type)}: ${error.message}`,
        );
      }
      throw error;
    }
  }
  if (type.of.kind === "list") {
    throw new SyntaxError(
      `Cannot read ${JSON.stringify(text)} as ${formatType(type)}: nested lists must be JSON`,
    );
  }
  return text.split(",").map((item) => coerceScalar(type.of, item));
}

/** Whether `text` can be read as `type` (see {@linkcode coerceArgument}). */
export function textFits(type: RpcType, text: string): boolean {
  try {
    coerceArgument(type, text);
    return true;
  } catch {
    return false;
  }
}

/** The scalar type a text is most exactly: int, then float, then bool, else str. */
function scalarTextType(text: string): RpcType {
  const trimmed = text.trim();
  if (INT_TEXT.test(trimmed)) return INT;
  if (FLOAT_TEXT.test(trimmed) && Number.isFinite(Number(trimmed))) return FLOAT;
  if (trimmed === "true" || trimmed === "false") return BOOL;
  return STR;
}

/**
 * The type a text is most exactly, as `inferType` gives a JSON value's own
 * type: `3` is an `int`, `3.5` a `float`, `true` a `bool`, a JSON array the
 * list its items make (`[1, 2.5]` is `List[float]`), comma-separated items a
 * list of what they all are (`1,2` is `List[int]`, `1,x` `List[str]`), and
 * any other text a `str`. `undefined` for the empty list (`''` or `[]`),
 * which has no element type. A text the user quoted (in the REPL) is a `str`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { textType } from "./coerce.ts";
 * import { formatType } from "./types.ts";
 * assert.equal(formatType(textType("3")!), "int");
 * assert.equal(formatType(textType("1,2.5")!), "List[float]");
 * assert.equal(formatType(textType("3", { quoted: true })!), "str");
 * assert.equal(textType(""), undefined);
 * ```
 */
export function textType(text: string, options: { quoted?: boolean } = {}): RpcType | undefined {
  if (options.quoted) return STR;
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  if (trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = parseJson(trimmed);
    } catch {
      return STR;
    }
    return Array.isArray(parsed) ? inferType(parsed) : STR;
  }
  if (!text.includes(",")) return scalarTextType(text);
  const items = text.split(",").map(scalarTextType);
  const of = items.every((item) => item === INT)
    ? INT
    : items.every((item) => item === INT || item === FLOAT)
    ? FLOAT
    : items.every((item) => item === BOOL)
    ? BOOL
    : STR;
  return { kind: "list", of };
}
