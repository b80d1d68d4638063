/**
 * The flags of `--all` (`--all`, `--servers`, `--parallel`), shared by
 * `rpc call`, `rpc ping` and `rpc hash`; the fan-out itself is in
 * `fanout.ts`. Kept apart so that the parsers need not load the runners.
 *
 * @module
 */

import { message, text } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { flag, option } from "@optique/core/primitives";
import { choice, integer, string } from "@optique/core/valueparser";
import { BALANCE_POLICIES } from "../core/client/balance.ts";
import { DEFAULT_FAN_OUT_PARALLEL } from "../core/client/fanout.ts";
import { PARTIAL_FAILURE_EXIT_CODE } from "./exit_codes.ts";
import { UsageError } from "./settings.ts";

/** `--all`, `--servers`, `--parallel`: spread into a command's `object({...})`. */
export const fanOutOptions = {
  all: withDefault(
    flag("--all", {
      description:
        message`Ask every server at once (with --service: every provider of the service) and print one line per server, in init.yaml's order. Exit 0 when all answered ok, ${
          text(String(PARTIAL_FAILURE_EXIT_CODE))
        } when some failed, a kind's own code when all failed alike.`,
    }),
    false,
  ),
  servers: optional(option("--servers", string({ metavar: "S1,S2" }), {
    description: message`With --all: only these servers (names from init.yaml, comma-separated).`,
  })),
  parallel: optional(option("--parallel", integer({ metavar: "N", min: 1 }), {
    description: message`With --all: ask at most N servers at once (default ${
      text(String(DEFAULT_FAN_OUT_PARALLEL))
    }).`,
  })),
};

/** The flags of {@linkcode fanOutOptions}, as parsed. */
export interface FanOutFlags {
  all: boolean;
  servers?: string;
  parallel?: number;
}

/** Rejects `--servers`/`--parallel` without `--all`. */
export function checkFanOutFlags(flags: FanOutFlags): void {
  if (flags.all) return;
  if (flags.servers !== undefined) throw new UsageError("--servers needs --all");
  if (flags.parallel !== undefined) throw new UsageError("--parallel needs --all");
}

/** `--balance first|round-robin|p2c` of `rpc call --service`. */
export const balanceOption = optional(
  option("--balance", choice(BALANCE_POLICIES, { metavar: "POLICY" }), {
    description:
      message`How to pick the provider with --service: ${"first"} (default) up in init.yaml's order, ${"round-robin"}, or ${"p2c"} (the less loaded of two at random). A provider that fails is skipped for a while and probed before it gets calls again.`,
  }),
);
