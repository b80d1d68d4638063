/**
 * Tab completion for the REPL, without I/O: given the line, the cursor and
 * what the session knows (servers, clients, the services it may call), the
 * words that could stand at the cursor, and the signature of an RPC once it
 * is complete.
 *
 * @module
 */

import type { ServiceDescription } from "../core/wire/message.ts";
import { formatRpcLines } from "./list.ts";
import { DOT_COMMAND_NAMES, splitCallTarget } from "./repl_syntax.ts";

/** What completion draws from. */
export interface CompletionContext {
  /** Server names from init.yaml. */
  servers: readonly string[];
  /** Client names from init.yaml. */
  clients: readonly string[];
  /** The services the current client may call, as the server listed them. */
  services: readonly ServiceDescription[];
}

/** The words that may replace `line.slice(start, end)`, and lines to show as a hint. */
export interface Completion {
  start: number;
  end: number;
  /** Whole words, each a candidate for the replaced range. */
  candidates: string[];
  /** The signatures of the RPC being called, when it is complete. */
  hint?: string[];
}

/** The signature lines of `service.rpc`, or `undefined` when it is not known. */
export function signatureHint(
  services: readonly ServiceDescription[],
  word: string,
): string[] | undefined {
  const target = splitCallTarget(word);
  if (!target) return undefined;
  const rpcs = services.find((service) => service.name === target.service)?.rpcs
    .filter((rpc) => rpc.name === target.rpc) ?? [];
  if (rpcs.length === 0) return undefined;
  return formatRpcLines(rpcs.map((rpc) => ({ ...rpc, name: `${target.service}.${rpc.name}` })), "");
}

function callTargets(services: readonly ServiceDescription[], word: string): string[] {
  const dot = word.lastIndexOf(".");
  if (dot < 0) {
    return services.map((service) => `${service.name}.`).filter((name) => name.startsWith(word));
  }
  const service = services.find((entry) => entry.name === word.slice(0, dot));
  if (!service) return [];
  const names = [...new Set(service.rpcs.map((rpc) => `${service.name}.${rpc.name}`))];
  return names.filter((name) => name.startsWith(word));
}

function describeTargets(services: readonly ServiceDescription[], word: string): string[] {
  const all: string[] = [];
  for (const service of services) {
    all.push(service.name);
    for (const name of new Set(service.rpcs.map((rpc) => rpc.name))) {
      all.push(`${service.name}.${name}`);
    }
  }
  return all.filter((name) => name.startsWith(word));
}

/**
 * Completes the word before the cursor.
 *
 * - first word starting with `.`: the commands;
 * - first word otherwise: `service.` names, then, after the dot, that
 *   service's `service.rpc` names;
 * - after `.use`: servers; `.as`: clients; `.describe`: services and RPCs;
 *   `.timing`: `on`, `off`;
 * - after a known `service.rpc`: no words, but its signatures as a hint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./repl_completion.ts";
 * const services = [{ name: "service1", rpcs: [{ name: "rpc1", args: ["int"], returns: ["str"] }] }];
 * const done = completeLine("service1.r", 10, { servers: [], clients: [], services });
 * assert.deepEqual(done.candidates, ["service1.rpc1"]);
 * assert.equal(done.start, 0);
 * ```
 */
export function completeLine(line: string, cursor: number, context: CompletionContext): Completion {
  const before = line.slice(0, cursor);
  const start = Math.max(before.lastIndexOf(" "), before.lastIndexOf("\t")) + 1;
  const word = before.slice(start);
  const previous = before.slice(0, start).trim().split(/\s+/).filter((part) => part !== "");
  const none: Completion = { start, end: cursor, candidates: [] };
  if (previous.length === 0) {
    if (word.startsWith(".")) {
      return { ...none, candidates: DOT_COMMAND_NAMES.filter((name) => name.startsWith(word)) };
    }
    const candidates = callTargets(context.services, word);
    const hint = candidates.length === 1
      ? signatureHint(context.services, candidates[0])
      : undefined;
    return { ...none, candidates, ...(hint ? { hint } : {}) };
  }
  const first = previous[0];
  if (previous.length === 1) {
    const pick = (all: readonly string[]) => all.filter((name) => name.startsWith(word));
    switch (first) {
      case ".use":
        return { ...none, candidates: pick(context.servers) };
      case ".as":
        return { ...none, candidates: pick(context.clients) };
      case ".describe":
        return { ...none, candidates: describeTargets(context.services, word) };
      case ".timing":
        return { ...none, candidates: pick(["on", "off"]) };
    }
  }
  const hint = first.startsWith(".") ? undefined : signatureHint(context.services, first);
  return { ...none, ...(hint ? { hint } : {}) };
}
