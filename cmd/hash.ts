/**
 * `rpc hash`: the SHA-256 of procedure sources, exactly as `rpc init`
 * computes it.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { multiple } from "@optique/core/modifiers";
import { argument, command, constant } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import { sha256Hex } from "../core/hash.ts";
import { stringifyJson } from "../core/types.ts";
import { jsonFlag, print } from "./common.ts";

/** The parser of `rpc hash`. */
export const hashCommand = command(
  "hash",
  object({
    command: constant("hash" as const),
    json: jsonFlag,
    files: multiple(argument(string({ metavar: "FILE" })), { min: 1 }),
  }),
  {
    brief: message`Print the SHA-256 of procedure source files.`,
    description:
      message`The hash is taken over the file's text, as rpc init and the servers compute it, and printed like sha256sum.`,
    footer: message`Examples:
  rpc hash services/service1/rpc1.ts
  rpc hash --json services/*/*.ts`,
  },
);

/** Options of {@linkcode runHash}. */
export interface HashCommandOptions {
  json: boolean;
  files: readonly string[];
}

/** Runs `rpc hash`; returns the exit code. */
export async function runHash(options: HashCommandOptions): Promise<number> {
  const rows: { file: string; sha256: string }[] = [];
  for (const file of options.files) {
    rows.push({ file, sha256: sha256Hex(await Deno.readTextFile(file)) });
  }
  if (options.json) print(stringifyJson(rows));
  else for (const row of rows) print(`${row.sha256}  ${row.file}`);
  return 0;
}
