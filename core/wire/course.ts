/**
 * The course's own wire form, served on the same port as rpc's framed
 * protocol. A connection whose first byte is `{` carries one JSON message
 * with no length prefix:
 *
 * ```json
 * {"type": "RPC-REQ", "value": {"service": "service1", "rpc": "rpc1",
 *   "arguments": ["3", "ab"], "argument-types": ["int", "str"], "return-types": ["str"]}}
 * ```
 *
 * (`header` may stand for `type`, as the course's text calls it.) It is
 * answered with one JSON message in the same shape, `RPC-RES` with
 * `return values` or `RPC-EX` with `exception-type` and `exception-message`,
 * and the connection is closed. Arguments may be JSON values or strings,
 * which are decoded by their declared `argument-types`.
 *
 * A framed connection can never begin with `{`: its first byte is the top
 * byte of a length, and {@linkcode LARGEST_FRAME_LIMIT} keeps every length
 * below `0x7B000000`.
 *
 * This module is the codec, both directions; it does no I/O.
 *
 * @module
 */

import { ErrorKind, isErrorKind, RpcError } from "../errors.ts";
import {
  type CallRequest,
  decodeMessage,
  type DecodeOptions,
  MAX_BODY_DEPTH,
  type Message,
} from "./message.ts";
import { coerceArgument } from "../types/coerce.ts";
import {
  inspectJson,
  IntegerTooLong,
  parseJson,
  parseJsonExact,
  parseType,
  type RpcType,
  stringifyJson,
} from "../types/types.ts";

/** The first byte of a course-form connection: `{`. */
export const COURSE_FIRST_BYTE = 0x7b;

/**
 * The largest frame limit a server may have: a frame length of `0x7B000000`
 * or more would begin with the byte `{`, which starts the course form.
 */
export const LARGEST_FRAME_LIMIT = 0x7affffff;

/** The serial a course request is given inside the server (the course form has none). */
export const COURSE_SERIAL = 1;

/** The key that names the message type: the course's `Message` class says `type`, its text `header`. */
export type CourseTypeKey = "type" | "header";

const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Finds where one JSON value ends in a byte stream that arrives in chunks,
 * without parsing it: it counts brackets outside strings. The value is
 * complete when the brackets it opened are closed; whether it is valid JSON
 * is for the parser to say.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JsonValueScanner } from "./course.ts";
 * const scanner = new JsonValueScanner();
 * const bytes = new TextEncoder().encode('{"a": "}"}\n');
 * assert.equal(scanner.push(bytes.subarray(0, 4)), -1);
 * assert.equal(scanner.push(bytes.subarray(4)), 6); // just past the closing brace
 * ```
 */
export class JsonValueScanner {
  #depth = 0;
  #inString = false;
  #escaped = false;
  #seen = 0;

  /** Bytes consumed so far (up to the end of the value, once it is complete). */
  get length(): number {
    return this.#seen;
  }

  /**
   * Feeds the next chunk. Returns the index just past the value's last byte
   * within this chunk, or -1 while the value goes on.
   */
  push(chunk: Uint8Array): number {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (byte === BACKSLASH) this.#escaped = true;
        else if (byte === QUOTE) this.#inString = false;
        continue;
      }
      if (byte === QUOTE) {
        this.#inString = true;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        this.#depth++;
      } else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --this.#depth <= 0) {
        this.#seen += i + 1;
        return i + 1;
      }
    }
    this.#seen += chunk.length;
    return -1;
  }
}

function malformed(reason: string): RpcError {
  return new RpcError(ErrorKind.MalformedFrame, `Cannot decode course message: ${reason}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a course message's text: a JSON object with `type` (or `header`)
 * and `value`, nested at most as deep as a frame's body may be, its integers
 * read exactly and no longer than `maxIntegerDigits` (0: any length).
 */
function parseCourseMessage(
  bytes: Uint8Array,
  maxIntegerDigits = 0,
): { key: CourseTypeKey; type: unknown; value: unknown } {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw malformed("not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw malformed(`not JSON (${(error as Error).message})`);
  }
  const shape = inspectJson(parsed);
  if (shape.depth > MAX_BODY_DEPTH) {
    throw malformed(`nests ${shape.depth} levels deep, over the limit of ${MAX_BODY_DEPTH}`);
  }
  if (shape.inexact) {
    try {
      parsed = parseJsonExact(text, maxIntegerDigits);
    } catch (error) {
      throw malformed((error as Error).message);
    }
  }
  if (!isRecord(parsed)) throw malformed("not a JSON object");
  const hasType = Object.hasOwn(parsed, "type");
  const hasHeader = Object.hasOwn(parsed, "header");
  if (!hasType && !hasHeader) {
    throw malformed(`no message type: give "type" (or "header") with "RPC-REQ"`);
  }
  if (hasType && hasHeader && parsed.type !== parsed.header) {
    throw malformed(
      `"type" ${stringifyJson(parsed.type)} and "header" ${stringifyJson(parsed.header)} disagree`,
    );
  }
  const key = hasType ? "type" : "header";
  return { key, type: parsed[key], value: parsed.value };
}

/** What {@linkcode decodeCourseRequest} found. */
export interface CourseRequest {
  /** The key the client named the type with; the reply uses the same. */
  key: CourseTypeKey;
  /** The request as rpc's own `RPC-REQ`, when it is one. */
  message?: Message;
  /** Why the bytes are not a request (`Malformed Frame`). */
  error?: RpcError;
}

/**
 * Decodes a course-form request into rpc's own `RPC-REQ` message (serial
 * {@linkcode COURSE_SERIAL}), checked exactly as a framed one is. String
 * arguments are first decoded by their declared `argument-types` (see
 * {@linkcode decodeStringArgument}). `options.maxIntegerDigits` bounds
 * integers, those in strings too, as the server's frames are bounded; the
 * arguments are read exactly at once. Never throws: a message that is not a
 * valid request comes back as `error`.
 */
export function decodeCourseRequest(
  bytes: Uint8Array,
  options: DecodeOptions = {},
): CourseRequest {
  const maxIntegerDigits = options.maxIntegerDigits ?? 0;
  let key: CourseTypeKey = "type";
  try {
    const parsed = parseCourseMessage(bytes, maxIntegerDigits);
    key = parsed.key;
    if (parsed.type !== "RPC-REQ") {
      throw malformed(
        `the course form carries one RPC-REQ, not ${stringifyJson(parsed.type) ?? "nothing"}`,
      );
    }
    const value = parsed.value;
    if (isRecord(value)) decodeStringArguments(value, maxIntegerDigits);
    // Through the framed codec, so that the course form is checked by the very same rules.
    const body = new TextEncoder().encode(
      stringifyJson({ type: "RPC-REQ", serial: COURSE_SERIAL, value: value ?? null }),
    );
    return { key, message: decodeMessage(body, { maxIntegerDigits }) };
  } catch (error) {
    return { key, error: RpcError.from(error) };
  }
}

/** Decodes, in place, the string arguments of a request value that declares their types. */
function decodeStringArguments(value: Record<string, unknown>, maxIntegerDigits: number): void {
  const args = value.arguments;
  const names = value["argument-types"];
  if (!Array.isArray(args) || !Array.isArray(names) || names.length !== args.length) return;
  value.arguments = args.map((argument, index) => {
    const name = names[index];
    if (typeof name !== "string") return argument;
    let type: RpcType;
    try {
      type = parseType(name);
    } catch {
      return argument; // The server names the bad type when it resolves the call.
    }
    return decodeStringArgument(type, argument, maxIntegerDigits);
  });
}

/**
 * Decodes an argument that arrived as a string into a value of its declared
 * type, as the course allows: `"3"` for an `int`, `"2.5"` for a `float`,
 * `"true"` or `"True"` for a `bool`, and for a list a JSON array (`"[1, 2]"`),
 * a Python list (`"['a', 'b']"`, what `str()` of a list gives) or
 * comma-separated items (`"1,2"`). Lists that arrive as lists have their
 * string items decoded the same way. A string that cannot be read as its
 * type is left as it is, so the server refuses it with `Invalid Arguments`
 * naming the valid signatures; so is an integer of more than
 * `maxIntegerDigits` digits (0: any), which would cost time to convert.
 * Values that are not strings pass unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeStringArgument } from "./course.ts";
 * import { parseType } from "../types/types.ts";
 * const list = decodeStringArgument(parseType("List[str]"), "['a', 'b c']");
 * assert.deepEqual(list, ["a", "b c"]);
 * assert.equal(decodeStringArgument(parseType("int"), "x"), "x");
 * ```
 */
export function decodeStringArgument(
  type: RpcType,
  value: unknown,
  maxIntegerDigits = 0,
): unknown {
  if (type.kind === "list") {
    let list = value;
    if (typeof value === "string") {
      list = readListText(value, maxIntegerDigits);
      if (list === undefined) return value;
    }
    return Array.isArray(list)
      ? list.map((item) => decodeStringArgument(type.of, item, maxIntegerDigits))
      : value;
  }
  if (typeof value !== "string" || type.kind === "str") return value;
  if (type.kind === "int" && tooManyDigits(value, maxIntegerDigits)) return value;
  if (type.kind === "bool") {
    const word = value.trim();
    if (word === "True") return true;
    if (word === "False") return false;
  }
  try {
    return coerceArgument(type, value);
  } catch {
    return value;
  }
}

/** Whether integer text has more than `limit` digits (0: no limit). */
function tooManyDigits(text: string, limit: number): boolean {
  return limit > 0 && text.replace(/[^0-9]/g, "").length > limit;
}

/** Reads a list written as text: JSON, a Python list, or comma-separated items. */
function readListText(text: string, maxIntegerDigits = 0): unknown[] | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  if (!trimmed.startsWith("[")) return trimmed.split(",").map((item) => item.trim());
  try {
    const parsed = parseJson(trimmed, maxIntegerDigits);
    return Array.isArray(parsed) && inspectJson(parsed).depth <= MAX_BODY_DEPTH
      ? parsed
      : undefined;
  } catch (error) {
    return error instanceof IntegerTooLong ? undefined : readPythonList(trimmed, maxIntegerDigits);
  }
}

/**
 * Reads a Python list literal of strings, numbers, booleans and lists, as
 * `str()` writes one: `['a', "b's"]`, `[1, 2.5]`, `[True, [1]]`. Returns
 * `undefined` for anything else. Written here because no JSON reader takes
 * single quotes; it reads only this small grammar.
 */
export function readPythonList(text: string, maxIntegerDigits = 0): unknown[] | undefined {
  let at = 0;
  let depth = 0;
  const word = /[^,\]\s]+/y;
  const skipSpace = () => {
    while (at < text.length && /\s/.test(text[at])) at++;
  };
  const readString = (): string | undefined => {
    const quote = text[at++];
    let out = "";
    while (at < text.length) {
      const char = text[at++];
      if (char === quote) return out;
      if (char !== "\\") {
        out += char;
        continue;
      }
      const next = text[at++];
      const simple: Record<string, string> = {
        "\\": "\\",
        "'": "'",
        '"': '"',
        n: "\n",
        t: "\t",
        r: "\r",
        "0": "\0",
      };
      if (next in simple) {
        out += simple[next];
      } else if (next === "x" || next === "u") {
        const digits = text.slice(at, at + (next === "x" ? 2 : 4));
        if (!/^[0-9a-fA-F]+$/.test(digits) || digits.length !== (next === "x" ? 2 : 4)) {
          return undefined;
        }
        out += String.fromCharCode(parseInt(digits, 16));
        at += digits.length;
      } else {
        return undefined;
      }
    }
    return undefined;
  };
  const readValue = (): unknown => {
    skipSpace();
    const char = text[at];
    if (char === "[") return readList();
    if (char === "'" || char === '"') return readString();
    word.lastIndex = at; // sticky: matches at `at` without copying the rest of the text
    const match = word.exec(text)?.[0];
    if (!match) return undefined;
    at += match.length;
    if (match === "True") return true;
    if (match === "False") return false;
    if (/^[+-]?\d+$/.test(match)) {
      if (tooManyDigits(match, maxIntegerDigits)) return undefined;
      const big = BigInt(match);
      return Number.isSafeInteger(Number(big)) ? Number(big) : big;
    }
    const number = Number(match);
    return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(match) && Number.isFinite(number)
      ? number
      : undefined;
  };
  const readList = (): unknown[] | undefined => {
    if (++depth > MAX_BODY_DEPTH) return undefined; // Nesting is bounded, as in a frame's body.
    at++; // [
    const items: unknown[] = [];
    skipSpace();
    if (text[at] === "]") {
      at++;
      depth--;
      return items;
    }
    for (;;) {
      const item = readValue();
      if (item === undefined) return undefined;
      items.push(item);
      skipSpace();
      const separator = text[at++];
      if (separator === "]") {
        depth--;
        return items;
      }
      if (separator !== ",") return undefined;
      skipSpace();
      if (text[at] === "]") { // a trailing comma, as Python allows
        at++;
        depth--;
        return items;
      }
    }
  };
  skipSpace();
  if (text[at] !== "[") return undefined;
  const list = readList();
  skipSpace();
  return list !== undefined && at === text.length ? list : undefined;
}

/**
 * Encodes the server's reply in the course form, naming its type with the
 * request's key: `RPC-RES` carries `return values`; `RPC-EX` carries
 * `exception-type` and `exception-message`.
 */
export function encodeCourseReply(message: Message, key: CourseTypeKey = "type"): string {
  const value = message.type === "RPC-RES"
    ? { "return values": message.value["return-values"] }
    : message.value;
  return stringifyJson({ [key]: message.type, value });
}

/** Encodes a request in the course form, as `rpc call --wire course` sends it. */
export function encodeCourseRequest(request: CallRequest, key: CourseTypeKey = "type"): string {
  return stringifyJson({ [key]: "RPC-REQ", value: request });
}

/**
 * Reads a course-form reply: the return values of an `RPC-RES`, or throws
 * the {@linkcode RpcError} of an `RPC-EX` (an exception type rpc does not
 * know becomes `Internal Error`, its name kept in the message). A server
 * may write `return values` or `return-values`.
 *
 * @throws {RpcError} the server's exception, or `Malformed Frame` when the
 * reply is neither.
 */
export function decodeCourseReply(bytes: Uint8Array): unknown[] {
  const { type, value } = parseCourseMessage(bytes);
  if (type === "RPC-RES") {
    const values = isRecord(value) ? value["return values"] ?? value["return-values"] : undefined;
    if (!Array.isArray(values)) throw malformed(`RPC-RES value needs a "return values" list`);
    return values;
  }
  if (type === "RPC-EX") {
    if (!isRecord(value) || typeof value["exception-type"] !== "string") {
      throw malformed(`RPC-EX value needs an "exception-type"`);
    }
    const kind = value["exception-type"];
    const given = value["exception-message"];
    const text = typeof given === "string" && given !== "" ? given : "the server gave no message";
    throw isErrorKind(kind)
      ? new RpcError(kind, text)
      : new RpcError(ErrorKind.Internal, `${kind}: ${text}`);
  }
  throw malformed(`expected RPC-RES or RPC-EX, got ${stringifyJson(type) ?? "nothing"}`);
}
