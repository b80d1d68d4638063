/**
 * Naming a server's blobs by the init.yaml sources they were sent from. A
 * server knows a procedure's code only as `<sha256>.<ext>` in its store, so
 * its messages (a syntax error, a traceback) name that file; the deploying
 * side rewrites them to the `src` of init.yaml and says where it is declared.
 *
 * @module
 */

import { type Cluster, type RpcEntry, servicesOf } from "./cluster.ts";
import type { DesiredState } from "./plan.ts";
import { formatType } from "../types/types.ts";

/** Where a source comes from in init.yaml: an RPC entry and its service. */
export interface SourcePlace {
  service: string;
  entry: RpcEntry;
}

/** Each source sent to `server`, by its SHA-256: the init.yaml entries whose `src` it is. */
export function sourcesByHash(
  cluster: Cluster,
  server: string,
  state: DesiredState,
): Map<string, SourcePlace[]> {
  const byHash = new Map<string, SourcePlace[]>();
  for (const service of servicesOf(cluster, server)) {
    for (const entry of service.rpcs) {
      const args = entry.signature.args.map(formatType).join();
      const record = state.procedures.find((procedure) =>
        procedure.service === service.name && procedure.rpc === entry.name &&
        procedure.args.join() === args
      );
      if (!record) continue;
      const places = byHash.get(record.hash) ?? [];
      places.push({ service: service.name, entry });
      byHash.set(record.hash, places);
    }
  }
  return byHash;
}

/**
 * Rewrites a server's message so that each stored blob it names
 * (`…/blobs/<sha256>.py`, or `<sha256>.py` alone, as Python's tracebacks
 * have it) reads as the `src` it was sent from, and adds where that source
 * is declared in init.yaml.
 *
 * @example
 * ```ts ignore
 * nameSources("Cannot load /s/blobs/ae…3a.py: SyntaxError: '(' was never closed (ae…3a.py, line 2)", byHash, "init.yaml")
 * // "Cannot load bad.py: SyntaxError: '(' was never closed (bad.py, line 2) [bad.py is src of
 * //  svc.stats at init.yaml:13:12]"
 * ```
 */
export function nameSources(
  message: string,
  byHash: ReadonlyMap<string, readonly SourcePlace[]>,
  file: string,
): string {
  const named = new Set<string>();
  const text = message.replace(
    /(?:[^\s()'"]*[\\/])?\b([0-9a-f]{64})(?:\.[A-Za-z0-9]+)?\b/g,
    (whole, hash: string) => {
      const places = byHash.get(hash);
      if (!places) return whole;
      named.add(hash);
      return places[0].entry.source;
    },
  );
  const notes = [...named].map((hash) => {
    const places = byHash.get(hash)!;
    const where = places.map(({ service, entry }) =>
      `${service}.${entry.name} at ${file}:${entry.sourcePosition.line}:${entry.sourcePosition.column}`
    );
    return `${places[0].entry.source} is src of ${where.join(", ")}`;
  });
  return notes.length > 0 ? `${text} [${notes.join("; ")}]` : text;
}
