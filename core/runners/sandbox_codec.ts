/**
 * The encoding of the batches that travel between the server and a sandbox
 * process: JSON text, with the values JSON cannot hold written as tagged
 * objects, so that what a procedure returns arrives as it was returned.
 *
 * | value                          | written as                          |
 * | ------------------------------ | ----------------------------------- |
 * | `bigint`                       | `{"\u0000": "bigint", "v": "123"}`  |
 * | `NaN`, `±Infinity`, `-0`       | `{"\u0000": "number", "v": "NaN"}`  |
 * | `undefined` (in a list)        | `{"\u0000": "undefined"}`           |
 * | an object that is not plain    | `{}` (a `Date`, a `Map`, a class…)  |
 * | a function or a symbol         | refused: `TypeError`                |
 *
 * Objects are never valid values in a signature, so reducing one to `{}`
 * keeps the check that refuses it ("got an object") and nothing else. A
 * value with nothing to tag (the common case) is written by plain
 * `JSON.stringify` after one walk; only a value that needs tags goes through
 * the slower replacer, and only text that holds a tag through the reviver.
 *
 * The host in the sandbox (see `sandbox_host.ts`) runs in another isolate and
 * gets this code as source text, so {@linkcode sandboxCodec} refers to nothing
 * outside itself, and keeps its own references to the built-ins it uses: a
 * procedure that replaces `JSON.stringify` in its sandbox does not change how
 * the sandbox encodes.
 *
 * @module
 */

/** Encodes and decodes batches. */
export interface SandboxCodec {
  /** JSON text of `value`. @throws {TypeError} for a function or symbol inside it. */
  encode(value: unknown): string;
  /** The value `text` encodes. */
  decode(text: string): unknown;
  /**
   * `items` as JSON arrays of at most about `maxChars` characters each (one
   * item alone may be longer), in order: one array, encoded at once, unless
   * that is longer. @throws {TypeError} as {@linkcode encode}.
   */
  encodeBatches(items: unknown[], maxChars: number): string[];
  /** Items already encoded (`parts`), joined into arrays as {@linkcode encodeBatches} does. */
  group(parts: string[], maxChars: number): string[];
}

/** Builds the codec; self-contained, so that it can be sent as source text. */
export function sandboxCodec(): SandboxCodec {
  const TAG = "\u0000";
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const isArray = Array.isArray;
  const getPrototypeOf = Object.getPrototypeOf;
  const isFinite = Number.isFinite;
  const objectPrototype = Object.prototype;
  const is = Object.is;
  const includes = String.prototype.includes;
  const hasOwn = Object.hasOwn;

  const isPlainObject = (value: object): boolean => {
    const prototype = getPrototypeOf(value);
    return (prototype === objectPrototype || prototype === null) && !("toJSON" in value);
  };

  /** Whether plain `JSON.stringify` writes `value` exactly. */
  const plain = (value: unknown, depth: number): boolean => {
    switch (typeof value) {
      case "string":
      case "boolean":
        return true;
      case "number":
        return isFinite(value) && !is(value, -0);
      case "object": {
        if (value === null) return true;
        if (depth > 100) return false;
        if (isArray(value)) {
          for (let i = 0; i < value.length; i++) {
            if (!plain(value[i], depth + 1)) return false;
          }
          return true;
        }
        if (!isPlainObject(value)) return false;
        for (const key in value) {
          if (!plain((value as Record<string, unknown>)[key], depth + 1)) return false;
        }
        return true;
      }
      default:
        return false;
    }
  };

  function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
    // The holder's own value, before any toJSON turned a Date into a string.
    const original = this[key];
    switch (typeof original) {
      case "bigint":
        return { [TAG]: "bigint", v: original.toString() };
      case "number":
        if (isFinite(original) && !is(original, -0)) return original;
        return { [TAG]: "number", v: is(original, -0) ? "-0" : String(original) };
      case "undefined":
        return { [TAG]: "undefined" };
      case "function":
      case "symbol":
        throw new TypeError(`a ${typeof original} cannot be sent`);
      case "object":
        if (original === null || isArray(original) || isPlainObject(original)) return value;
        return {};
      default:
        return value;
    }
  }

  function reviver(_key: string, value: unknown): unknown {
    if (value === null || typeof value !== "object" || !hasOwn(value, TAG)) return value;
    const tagged = value as Record<string, string>;
    switch (tagged[TAG]) {
      case "bigint":
        return BigInt(tagged.v);
      case "number":
        return Number(tagged.v);
      case "undefined":
        return undefined;
      default:
        return value;
    }
  }

  const encode = (value: unknown): string =>
    plain(value, 0) ? stringify(value) : stringify(value, replacer);

  // Loops and concatenation rather than Array methods a procedure could replace in its sandbox.
  const group = (parts: string[], maxChars: number): string[] => {
    const out: string[] = [];
    let current = "";
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (current !== "" && current.length + part.length + 2 > maxChars) {
        out[out.length] = `[${current}]`;
        current = "";
      }
      current = current === "" ? part : `${current},${part}`;
    }
    out[out.length] = `[${current}]`;
    return out;
  };

  /**
   * Characters per item of the last batch: one stringify of a whole batch is
   * twice as fast as one per item, but a batch that must be split anyway is
   * encoded item by item at once rather than twice.
   */
  let charsPerItem = 0;

  return {
    encode,
    decode: (text) => includes.call(text, "\\u0000") ? parse(text, reviver as never) : parse(text),
    encodeBatches: (items, maxChars) => {
      if (items.length <= 1) return [encode(items)];
      if (items.length * charsPerItem <= maxChars) {
        const whole = encode(items);
        charsPerItem = whole.length / items.length;
        if (whole.length <= maxChars) return [whole];
      }
      const parts: string[] = [];
      let chars = 0;
      for (let i = 0; i < items.length; i++) {
        parts[i] = encode(items[i]);
        chars += parts[i].length + 1;
      }
      charsPerItem = chars / items.length;
      return group(parts, maxChars);
    },
    group,
  };
}
