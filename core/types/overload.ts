/**
 * Which overload of an RPC a call means: one rule for everyone who has to
 * choose — the server for the JSON values of a request, `rpc call`, the REPL
 * and `rpc bench` for command-line texts, and `ServiceClient` to know which
 * overload's `idempotent` applies before it retries.
 *
 * **The rule.**
 * 1. With declared argument types, the overload with exactly those types
 *    (compared parsed, so `list[int]` is `List[int]`); none is an error.
 * 2. Otherwise, among the overloads of the same arity that every argument
 *    fits: the only one; else the one whose types are exactly the
 *    arguments' own (`3` is an `int`, `3.5` a `float`, `"x"` a `str`;
 *    `inferType` for a value, `textType` for a text); else the call is
 *    ambiguous.
 * 3. When no overload fits: a lone overload is chosen anyway, so that
 *    checking (or coercing) its arguments names the exact mismatch;
 *    otherwise no overload accepts the arguments.
 * 4. With declared return types, they must be the chosen overload's.
 *
 * Failures are {@linkcode OverloadError}s (`Invalid Arguments`) whose
 * `reason` says which step failed, so a caller can add its own hint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chooseOverload, VALUES } from "./overload.ts";
 * import { parseSignature } from "./types.ts";
 * const overloads = [parseSignature(["float"], ["str"]), parseSignature(["int"], ["str"])];
 * assert.equal(chooseOverload(overloads, [3], VALUES, { service: "s", rpc: "r" }), 1);
 * assert.equal(chooseOverload(overloads, [3.5], VALUES, { service: "s", rpc: "r" }), 0);
 * ```
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { RpcDescription } from "../wire/message.ts";
import { coerceArgument, textFits, textType } from "./coerce.ts";
import {
  argumentKey,
  formatSignature,
  formatTypes,
  hasType,
  inferType,
  parseType,
  type RpcType,
  type Signature,
} from "./types.ts";

/** How the arguments of a call are read: whether one fits a type, and its own type. */
export interface ArgumentReader<A> {
  /** Whether `argument` can be a value of `type`. */
  fits(type: RpcType, argument: A): boolean;
  /** The type `argument` is most exactly; `undefined` when none stands out (the empty list). */
  own(argument: A): RpcType | undefined;
}

/** Arguments that are JSON values, as a request carries them. */
export const VALUES: ArgumentReader<unknown> = { fits: hasType, own: inferType };

/** A command-line argument: its text, and whether the user quoted it (in the REPL). */
export type TextArgument = string | { readonly text: string; readonly quoted?: boolean };

function textOf(argument: TextArgument): string {
  return typeof argument === "string" ? argument : argument.text;
}

/** Arguments that are command-line texts, read as `coerce.ts` reads them. */
export const TEXTS: ArgumentReader<TextArgument> = {
  fits: (type, argument) => textFits(type, textOf(argument)),
  own: (argument) =>
    typeof argument === "string"
      ? textType(argument)
      : textType(argument.text, { quoted: argument.quoted ?? false }),
};

/** Which step of the rule failed. */
export type OverloadProblem =
  /** A declared type name is not a type. */
  | "bad type name"
  /** No overload takes the declared argument types. */
  | "no such types"
  /** No overload accepts arguments of this number and kind. */
  | "no match"
  /** Several overloads accept the arguments and none is exactly their own types. */
  | "ambiguous"
  /** The chosen overload returns other types than those declared. */
  | "other returns";

/** A call names no overload, or several: `Invalid Arguments`. */
export class OverloadError extends RpcError {
  override name = "OverloadError";
  constructor(
    /** Which step of the rule failed. */
    readonly problem: OverloadProblem,
    /** What went wrong, without the list of valid signatures. */
    readonly summary: string,
    /** `Valid signatures: …`, every overload of the RPC. */
    readonly valid: string,
  ) {
    super(ErrorKind.InvalidArguments, `${summary}. ${valid}`);
  }
}

/** Options of {@linkcode chooseOverload}. */
export interface ChooseOptions {
  /** The service, for messages. */
  service: string;
  /** The RPC, for messages. */
  rpc: string;
  /** Declared argument type names (`argument-types`, `--types`). */
  argumentTypes?: readonly string[] | undefined;
  /** Declared return type names (`return-types`). */
  returnTypes?: readonly string[] | undefined;
}

/** Argument keys of signatures, computed once: the server asks on every call. */
const keys = new WeakMap<readonly RpcType[], string>();

function keyOf(types: readonly RpcType[]): string {
  let key = keys.get(types);
  if (key === undefined) {
    key = argumentKey(types);
    keys.set(types, key);
  }
  return key;
}

/** `Valid signatures: rpc1(int, str) -> str; rpc1(float) -> str` */
export function validSignatures(rpc: string, overloads: readonly Signature[]): string {
  return `Valid signatures: ${
    overloads.map((signature) => formatSignature(rpc, signature)).join("; ")
  }`;
}

function parseNames(
  names: readonly string[],
  field: string,
  rpc: string,
  overloads: readonly Signature[],
): RpcType[] {
  try {
    return names.map(parseType);
  } catch (error) {
    throw new OverloadError(
      "bad type name",
      `Bad ${field}: ${(error as Error).message}`,
      validSignatures(rpc, overloads),
    );
  }
}

/**
 * Applies the rule in the module doc to `args` read by `reader`, and returns
 * the index of the chosen overload among `overloads`.
 *
 * @throws {OverloadError} when no overload, or more than one, is meant.
 */
export function chooseOverload<A>(
  overloads: readonly Signature[],
  args: readonly A[],
  reader: ArgumentReader<A>,
  options: ChooseOptions,
): number {
  const { rpc } = options;
  // Only messages need it: built when one is.
  const name = () => `${options.service}.${rpc}`;
  let chosen = -1;
  if (options.argumentTypes) {
    const declared = parseNames(options.argumentTypes, "argument-types", rpc, overloads);
    const key = argumentKey(declared);
    chosen = overloads.findIndex((overload) => keyOf(overload.args) === key);
    if (chosen < 0) {
      throw new OverloadError(
        "no such types",
        `No overload of ${name()} takes (${options.argumentTypes.join(", ")})`,
        validSignatures(rpc, overloads),
      );
    }
  } else {
    let fitting = 0;
    for (let i = 0; i < overloads.length; i++) {
      const types = overloads[i].args;
      if (types.length !== args.length) continue;
      let fits = true;
      for (let j = 0; j < types.length && fits; j++) fits = reader.fits(types[j], args[j]);
      if (!fits) continue;
      fitting++;
      if (fitting === 1) chosen = i;
      else break;
    }
    if (fitting > 1) chosen = ownTypes(overloads, args, reader);
    if (fitting > 1 && chosen < 0) {
      throw new OverloadError(
        "ambiguous",
        `Call of ${name()} is ambiguous without argument-types`,
        validSignatures(rpc, overloads),
      );
    }
    if (fitting === 0 && overloads.length === 1) chosen = 0;
    if (chosen < 0) {
      throw new OverloadError(
        "no match",
        `No overload of ${name()} accepts these ${args.length} arguments`,
        validSignatures(rpc, overloads),
      );
    }
  }
  if (options.returnTypes) {
    const wanted = parseNames(options.returnTypes, "return-types", rpc, overloads);
    const signature = overloads[chosen];
    if (argumentKey(wanted) !== keyOf(signature.returns)) {
      throw new OverloadError(
        "other returns",
        `${name()}(${formatTypes(signature.args)}) returns (${
          formatTypes(signature.returns)
        }), not (${formatTypes(wanted)})`,
        validSignatures(rpc, overloads),
      );
    }
  }
  return chosen;
}

/** The overload whose argument types are the arguments' own, fitting or not; -1 when none is. */
function ownTypes<A>(
  overloads: readonly Signature[],
  args: readonly A[],
  reader: ArgumentReader<A>,
): number {
  const own: RpcType[] = [];
  for (const argument of args) {
    const type = reader.own(argument);
    if (!type) return -1;
    own.push(type);
  }
  const key = argumentKey(own);
  return overloads.findIndex((overload) =>
    keyOf(overload.args) === key && overload.args.every((type, i) => reader.fits(type, args[i]))
  );
}

/** What {@linkcode coerceTexts} chose and read. */
export interface CoercedCall {
  /** The arguments as typed values. */
  values: unknown[];
  /** The overload they were read for; absent when none was known. */
  signature?: Signature;
}

/**
 * Reads command-line texts as the arguments of the overload among
 * `overloads` that they mean (by the module's rule). Without overloads (an
 * RPC nobody described) the texts are sent as strings and the server
 * answers.
 *
 * @throws {OverloadError} when the texts mean no overload, or several.
 * @throws {RpcError} `Invalid Arguments` naming the argument that cannot be
 * read as the chosen overload's type.
 */
export function coerceTexts(
  overloads: readonly Signature[],
  args: readonly TextArgument[],
  target: { service: string; rpc: string },
): CoercedCall {
  const texts = args.map(textOf);
  if (overloads.length === 0) return { values: texts };
  const signature = overloads[chooseOverload(overloads, args, TEXTS, target)];
  try {
    return { values: coerceWith(signature.args, texts), signature };
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    throw new RpcError(error.kind, `${error.message}. ${validSignatures(target.rpc, overloads)}`);
  }
}

/**
 * Reads texts as values of `types`, one each.
 *
 * @throws {RpcError} `Invalid Arguments` naming the first text that cannot be read.
 */
export function coerceWith(types: readonly RpcType[], texts: readonly string[]): unknown[] {
  if (types.length !== texts.length) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `Expected ${types.length} argument${types.length === 1 ? "" : "s"}, got ${texts.length}`,
    );
  }
  return texts.map((text, i) => {
    try {
      return coerceArgument(types[i], text);
    } catch (error) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `argument ${i + 1}: ${(error as Error).message}`,
      );
    }
  });
}

/** The signatures a server listed (`LIST`) for `service.rpc`, parsed. */
export function describedSignatures(
  services: readonly { name: string; rpcs: readonly RpcDescription[] }[],
  service: string,
  rpc: string,
): Signature[] {
  const found =
    services.find((entry) => entry.name === service)?.rpcs.filter((entry) => entry.name === rpc) ??
      [];
  return found.map((entry) => ({
    args: entry.args.map(parseType),
    returns: entry.returns.map(parseType),
    ...(entry.yields ? { yields: entry.yields.map(parseType) } : {}),
  }));
}
