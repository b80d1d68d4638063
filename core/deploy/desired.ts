/**
 * The desired state of one server from init.yaml: its services, procedures
 * and client table as an install carries them, with the source text of each
 * procedure read once and named by its SHA-256.
 *
 * @module
 */

import { extname } from "node:path";
import { clientSecret, type Cluster, servicesOf } from "./cluster.ts";
import { hashSecret, sha256Hex } from "../hash.ts";
import { blobName, type Desired, type DesiredState } from "./plan.ts";
import type { ProcedureRecord } from "./store.ts";
import { formatType } from "../types/types.ts";

/** The desired state of `server` from init.yaml, with the source text of each blob. */
export async function desiredStateFor(
  cluster: Cluster,
  server: string,
): Promise<Desired & { sources: Map<string, string> }> {
  const sources = new Map<string, string>();
  const texts = new Map<string, string>();
  const state: DesiredState = {
    services: [],
    procedures: [],
    clients: [],
  };
  for (const client of cluster.clients.values()) {
    const secret = await clientSecret(client);
    state.clients.push({
      name: client.name,
      ...(client.ip ? { ip: client.ip } : {}),
      ...(secret ? { secretHash: hashSecret(secret) } : {}),
    });
  }
  for (const service of servicesOf(cluster, server)) {
    state.services.push({
      name: service.name,
      ...(service.tenants ? { tenants: service.tenants } : {}),
    });
    for (const rpc of service.rpcs) {
      let text = texts.get(rpc.path);
      if (text === undefined) {
        text = await Deno.readTextFile(rpc.path);
        texts.set(rpc.path, text);
      }
      const procedure: ProcedureRecord = {
        service: service.name,
        rpc: rpc.name,
        args: rpc.signature.args.map(formatType),
        returns: rpc.signature.returns.map(formatType),
        ...(rpc.signature.yields ? { yields: rpc.signature.yields.map(formatType) } : {}),
        language: rpc.language,
        hash: sha256Hex(text),
        extension: extname(rpc.path),
        ...(rpc.doc ? { doc: rpc.doc } : {}),
        ...(rpc.timeoutMs ? { timeoutMs: rpc.timeoutMs } : {}),
        ...(rpc.trusted ? { trusted: true } : {}),
        ...(rpc.permissions ? { permissions: rpc.permissions } : {}),
      };
      state.procedures.push(procedure);
      sources.set(blobName(procedure), text);
    }
  }
  return { state, sources };
}
