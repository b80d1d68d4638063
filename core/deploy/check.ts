/**
 * Checking procedures before they serve: load each one with the real runners,
 * exactly as a server would, and report every one that fails instead of
 * stopping at the first. `rpc server --check` checks a state directory (and
 * the init.yaml it would install at start); `rpc init --check` checks every
 * procedure of an init.yaml by staging it in a throwaway state directory.
 *
 * @module
 */

import { basename } from "node:path";
import type { Cluster, RpcEntry } from "./cluster.ts";
import { desiredStateFor } from "./desired.ts";
import { blobName, type DesiredState, procedureKey } from "./plan.ts";
import {
  DEFAULT_LOAD_TIMEOUT_MS,
  loadProcedure,
  type ProcedureSpec,
  type Runner,
  type ServiceSpec,
} from "../server/registry.ts";
import { CodeStore, type Manifest, type ProcedureRecord } from "./store.ts";
import { toFileUrl } from "../paths.ts";
import { formatType } from "../types/types.ts";

/** The outcome of loading one procedure. */
export interface ProcedureCheck {
  /** The procedure as the manifest records it (service, rpc, types, hash, language). */
  record: ProcedureRecord;
  /** Whether it loaded and exports (or defines) the function its RPC names. */
  ok: boolean;
  /** Why it did not, with blob paths replaced by the source they came from. */
  error?: string;
  /** The init.yaml entry it came from, when it came from one. */
  entry?: RpcEntry;
}

/** What a state (a manifest, or what an install would write) loads to. */
export interface StateCheck {
  manifest: Manifest;
  procedures: ProcedureCheck[];
}

/** Whether every procedure of a check loaded. */
export function checkPassed(check: StateCheck): boolean {
  return check.procedures.every((procedure) => procedure.ok);
}

/**
 * Loads every procedure of `manifest`, held in `store`, one at a time with
 * the runner for its language. A procedure whose source is missing, does
 * not compile, or lacks its function is reported, and the others are still
 * tried. `rename` maps a blob path to what the report should call it.
 */
export async function checkManifest(
  store: CodeStore,
  manifest: Manifest,
  runners: Partial<Record<string, Runner>>,
  rename: (path: string) => string = (path) => path,
): Promise<StateCheck> {
  const specs: ServiceSpec[] = store.serviceSpecs(manifest);
  const byKey = new Map<string, ProcedureSpec>();
  for (const service of specs) {
    for (const spec of service.procedures) {
      byKey.set(procedureKey({ ...spec, args: spec.signature.args.map(formatType) }), spec);
    }
  }
  const procedures: ProcedureCheck[] = [];
  for (const record of manifest.procedures) {
    const spec = byKey.get(procedureKey(record));
    procedures.push({ record, ...await loadOne(store, record, spec, runners, rename) });
  }
  return { manifest, procedures };
}

async function loadOne(
  store: CodeStore,
  record: ProcedureRecord,
  spec: ProcedureSpec | undefined,
  runners: Partial<Record<string, Runner>>,
  rename: (path: string) => string,
): Promise<{ ok: boolean; error?: string }> {
  if (!spec) return { ok: false, error: `service ${record.service} is not installed` };
  if (!(await store.has(record.hash, record.extension))) {
    return { ok: false, error: `source ${blobName(record)} is missing from ${store.blobDir}` };
  }
  const runner = runners[record.language];
  if (!runner) return { ok: false, error: `no runner for ${record.language} procedures` };
  try {
    // Bounded as a server bounds it, so that a module that never finishes loading is a failure.
    await loadProcedure(runner, spec, DEFAULT_LOAD_TIMEOUT_MS);
    return { ok: true };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: renamePaths(message, spec.path, rename(spec.path)) };
  }
}

/**
 * Replaces a path (its file URL, the path, and its base name, which Python
 * shows) in a message with another name, and shortens a compiler's code frame
 * to its first line and location: `SyntaxError: Expression expected (at
 * rpc1.ts:2:13)`.
 */
function renamePaths(message: string, path: string, name: string): string {
  let text = message;
  if (name !== path) {
    text = text.split(toFileUrl(path).href).join(name).split(path).join(name)
      .split(basename(path)).join(name);
  }
  const lines = text.split("\n");
  if (lines.length === 1) return text;
  const at = /^\s*at (\S+:\d+:\d+)\s*$/.exec(lines[lines.length - 1]);
  return `${lines[0]}${at ? ` (at ${at[1]})` : ""}`;
}

/** Checks what a server's state directory holds, as `rpc server` would load it at start. */
export async function checkStateDir(
  dir: string,
  runners: Partial<Record<string, Runner>>,
): Promise<StateCheck> {
  const store = new CodeStore(dir);
  return await checkManifest(store, await store.readManifest(), runners);
}

/**
 * Checks a desired state whose sources are given as text: stages it in a
 * new temporary state directory, as an install would (every source stored
 * under its hash), loads every procedure from there, and removes the
 * directory. `origins` maps a blob name to the file it was read from, which
 * error messages name instead of the staged copy.
 */
export async function checkDesiredState(
  state: DesiredState,
  sources: ReadonlyMap<string, string>,
  runners: Partial<Record<string, Runner>>,
  origins: ReadonlyMap<string, string> = new Map(),
): Promise<StateCheck> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-check-" });
  try {
    const store = new CodeStore(dir);
    for (const [name, text] of sources) {
      await store.putBlob(text, name.slice(name.lastIndexOf(".")));
    }
    const manifest: Manifest = {
      format: 1,
      generation: 1,
      installedAt: new Date().toISOString(),
      ...state,
    };
    const blobs = new Map(
      state.procedures.map((record) => [store.blobPath(record.hash, record.extension), record]),
    );
    return await checkManifest(store, manifest, runners, (path) => {
      const record = blobs.get(path);
      return (record && origins.get(blobName(record))) ?? path;
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** A name no server of a cluster has, under which {@linkcode checkCluster} gathers every service. */
const EVERY_SERVICE = "\u0000every-service";

/**
 * Checks every procedure an init.yaml names (or, given `server`, those that
 * server provides), loading each from a staged copy with the real runners.
 * Each result carries the init.yaml entry it came from, for file:line:column.
 * The file's sources must be readable (see `checkSources`).
 */
export async function checkCluster(
  cluster: Cluster,
  runners: Partial<Record<string, Runner>>,
  server?: string,
): Promise<StateCheck> {
  // With no server named, one imaginary server provides every service, so that a service
  // nobody provides yet is checked too.
  const target = server ?? EVERY_SERVICE;
  const view: Cluster = server ? cluster : {
    ...cluster,
    services: new Map(
      [...cluster.services].map(([name, service]) => [name, { ...service, providers: [target] }]),
    ),
  };
  const { state, sources } = await desiredStateFor(view, target);
  const entries = new Map<string, RpcEntry>();
  const origins = new Map<string, string>();
  for (const service of view.services.values()) {
    if (!service.providers.includes(target)) continue;
    for (const entry of service.rpcs) {
      const args = entry.signature.args.map(formatType);
      entries.set(procedureKey({ service: service.name, rpc: entry.name, args }), entry);
    }
  }
  for (const record of state.procedures) {
    const entry = entries.get(procedureKey(record));
    if (entry) origins.set(blobName(record), entry.source);
  }
  const check = await checkDesiredState(state, sources, runners, origins);
  for (const procedure of check.procedures) {
    const entry = entries.get(procedureKey(procedure.record));
    if (entry) procedure.entry = entry;
  }
  return check;
}
