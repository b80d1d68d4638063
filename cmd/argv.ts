/**
 * The command line as the parser should see it: negative numbers where an
 * argument is expected are arguments (`rpc call s1 service1 add -1 2`), not
 * unknown options.
 *
 * The parser takes any word that starts with a dash and a letter or digit
 * for an option. No option of rpc starts with a digit, so a word such as
 * `-1` or `-2e3` can only be a value: either the value of the option before
 * it (`--port -1`, left alone) or an argument. When there is such an
 * argument, the options are moved in front of a `--` and the arguments,
 * in their order, after it.
 *
 * @module
 */

import type { Usage } from "@optique/core/usage";

/** A word that is a negative number, never an option. */
const NEGATIVE_NUMBER = /^-\d/;

/**
 * The long and short option names in `usage` that take a value
 * (`--timeout DURATION`), as opposed to flags (`--json`).
 */
export function valuedOptions(usage: Usage, into: Set<string> = new Set()): Set<string> {
  for (const term of usage) {
    switch (term.type) {
      case "option":
        if (term.metavar !== undefined) { for (const name of term.names) into.add(name); }
        break;
      case "optional":
      case "multiple":
      case "sequence":
        valuedOptions(term.terms, into);
        break;
      case "exclusive":
        for (const terms of term.terms) valuedOptions(terms, into);
        break;
    }
  }
  return into;
}

/**
 * Rewrites `args` (a subcommand name, then its words) so that negative
 * numbers given as arguments reach the parser as arguments. Returns `args`
 * itself when there is none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { negativeNumbersAsArguments } from "./argv.ts";
 * const args = ["call", "s1", "service1", "add", "-1", "2", "--json"];
 * const valued = new Set(["--timeout"]);
 * assert.equal(
 *   negativeNumbersAsArguments(args, valued).join(" "),
 *   "call --json -- s1 service1 add -1 2",
 * );
 * ```
 */
export function negativeNumbersAsArguments(
  args: readonly string[],
  valued: ReadonlySet<string>,
): readonly string[] {
  const options: string[] = [];
  const positionals: string[] = [];
  let negative = false;
  for (let i = 1; i < args.length; i++) {
    const word = args[i];
    if (word === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (NEGATIVE_NUMBER.test(word)) {
      negative = true;
      positionals.push(word);
    } else if (word.startsWith("-") && word !== "-") {
      options.push(word);
      if (!word.includes("=") && valued.has(word) && i + 1 < args.length) options.push(args[++i]);
    } else {
      positionals.push(word);
    }
  }
  return negative ? [args[0], ...options, "--", ...positionals] : args;
}
