/**
 * The deploy planner: given what a server holds and what it should hold,
 * what changes and what to send. Pure: no I/O, no clock; procedures are compared by key
 * (service, RPC, argument types) and sources by SHA-256, so a source the
 * server holds already is never sent again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planInstall, planIsEmpty, sourcesToSend } from "./plan.ts";
 * const hash = "a".repeat(64);
 * const desired = {
 *   services: [{ name: "svc" }],
 *   procedures: [{
 *     service: "svc", rpc: "hi", args: [], returns: ["str"],
 *     language: "typescript" as const, hash, extension: ".ts",
 *   }],
 *   clients: [],
 * };
 * const plan = planInstall({ services: [], procedures: [], clients: [] }, desired);
 * assert.equal(plan.added.length, 1);
 * assert.deepEqual(plan.missing, [`${hash}.ts`]);
 * const sources = new Map([[`${hash}.ts`, "export const hi = () => 'hi';"]]);
 * assert.deepEqual(Object.keys(sourcesToSend(plan, sources)), [`${hash}.ts`]);
 * assert.ok(planIsEmpty(planInstall(desired, desired)));
 * ```
 *
 * @module
 */

import { sha256Hex } from "../hash.ts";
import type { ClientRecord, ProcedureRecord, ServiceRecord } from "./store.ts";

/** The state a server should be in: what an install carries. */
export interface DesiredState {
  services: ServiceRecord[];
  procedures: ProcedureRecord[];
  clients: ClientRecord[];
}

/** A desired state with the source text of each of its blobs, by blob name. */
export interface Desired {
  state: DesiredState;
  sources: ReadonlyMap<string, string>;
}

/**
 * What a server holds, as the planner needs it: its services and procedures,
 * and its client table, or only the digest of it (a `state` reply leaves
 * out the secret hashes and carries {@linkcode clientsDigest} instead).
 */
export type HeldState =
  & Pick<DesiredState, "services" | "procedures">
  & ({ clientsDigest: string } | { clients: readonly ClientRecord[] });

/** What an install changes. */
export interface Plan {
  added: ProcedureRecord[];
  changed: { from: ProcedureRecord; to: ProcedureRecord }[];
  removed: ProcedureRecord[];
  unchanged: ProcedureRecord[];
  /** Services whose tenants change, or that appear or disappear. */
  services: string[];
  clientsChanged: boolean;
  /** Blob names the server lacks: the sources to send. */
  missing: string[];
}

/** A digest of a client table, secret hashes included, independent of order. */
export function clientsDigest(clients: readonly ClientRecord[]): string {
  return sha256Hex(canonicalJson([...clients].sort((a, b) => a.name.localeCompare(b.name))));
}

/** The name of a blob: hash plus extension. */
export function blobName(procedure: Pick<ProcedureRecord, "hash" | "extension">): string {
  return `${procedure.hash}${procedure.extension}`;
}

/** Identifies a procedure within a server: service, RPC and argument types. */
export function procedureKey(procedure: Pick<ProcedureRecord, "service" | "rpc" | "args">): string {
  return `${procedure.service}.${procedure.rpc}(${procedure.args.join(", ")})`;
}

/** Formats a procedure as `service.rpc(int, str) -> str`. */
export function describeProcedure(procedure: ProcedureRecord): string {
  const returns = procedure.returns.length === 1
    ? procedure.returns[0]
    : `(${procedure.returns.join(", ")})`;
  const yields = procedure.yields
    ? ` yields ${
      procedure.yields.length === 1 ? procedure.yields[0] : `(${procedure.yields.join(", ")})`
    }`
    : "";
  return `${procedureKey(procedure)}${yields} -> ${returns}`;
}

function sameProcedure(a: ProcedureRecord, b: ProcedureRecord): boolean {
  return a.hash === b.hash && a.extension === b.extension && a.language === b.language &&
    a.returns.join() === b.returns.join() && (a.yields ?? []).join() === (b.yields ?? []).join() &&
    (a.doc ?? "") === (b.doc ?? "") &&
    (a.timeoutMs ?? 0) === (b.timeoutMs ?? 0) && (a.trusted ?? false) === (b.trusted ?? false) &&
    canonicalJson(a.permissions ?? {}) === canonicalJson(b.permissions ?? {});
}

/** JSON with the keys of every object sorted, so that equal values give equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, item) =>
      item && typeof item === "object" && !Array.isArray(item)
        ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)))
        : item,
  );
}

/** Compares what a server holds with the desired state. */
export function planInstall(current: HeldState, desired: DesiredState): Plan {
  const held = new Map(current.procedures.map((procedure) => [procedureKey(procedure), procedure]));
  const blobs = new Set(current.procedures.map(blobName));
  const plan: Plan = {
    added: [],
    changed: [],
    removed: [],
    unchanged: [],
    services: [],
    clientsChanged: false,
    missing: [],
  };
  const wanted = new Set<string>();
  for (const procedure of desired.procedures) {
    const key = procedureKey(procedure);
    wanted.add(key);
    const before = held.get(key);
    if (!before) plan.added.push(procedure);
    else if (!sameProcedure(before, procedure)) plan.changed.push({ from: before, to: procedure });
    else plan.unchanged.push(procedure);
    const blob = blobName(procedure);
    if (!blobs.has(blob) && !plan.missing.includes(blob)) plan.missing.push(blob);
  }
  for (const [key, procedure] of held) if (!wanted.has(key)) plan.removed.push(procedure);
  const before = new Map(current.services.map((service) => [service.name, canonicalJson(service)]));
  for (const service of desired.services) {
    if (before.get(service.name) !== canonicalJson(service)) plan.services.push(service.name);
    before.delete(service.name);
  }
  plan.services.push(...before.keys());
  const heldDigest = "clientsDigest" in current
    ? current.clientsDigest
    : clientsDigest(current.clients);
  plan.clientsChanged = heldDigest !== clientsDigest(desired.clients);
  return plan;
}

/** Whether a plan changes nothing. */
export function planIsEmpty(plan: Plan): boolean {
  return plan.added.length === 0 && plan.changed.length === 0 && plan.removed.length === 0 &&
    plan.services.length === 0 && !plan.clientsChanged;
}

/**
 * The sources an install carries: the text of each blob the plan names as
 * missing, by blob name.
 *
 * @throws {Error} when `sources` lacks one of them (the desired state and
 * its sources do not belong together).
 */
export function sourcesToSend(
  plan: Plan,
  sources: ReadonlyMap<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const blob of plan.missing) {
    const text = sources.get(blob);
    if (text === undefined) throw new Error(`No source text for ${blob} in the desired state`);
    out[blob] = text;
  }
  return out;
}
