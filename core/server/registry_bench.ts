/**
 * Overload resolution: {@linkcode Registry.resolve} choosing among three
 * overloads of one RPC, with the caller's `argument-types` and without them
 * (inferred from the values), plus a tenant check. A fake runner stands in
 * for procedures: nothing runs, only resolution is measured.
 *
 *     deno bench core/server/registry_bench.ts
 *
 * @module
 */

import type { CallRequest } from "../wire/message.ts";
import { type Procedure, type ProcedureSpec, Registry, type Runner } from "./registry.ts";
import { parseSignature } from "../types/types.ts";

/** Loads nothing: each procedure resolves to its RPC name. */
const fakeRunner: Runner = {
  load: (spec: ProcedureSpec): Promise<Procedure> =>
    Promise.resolve({ spec, invoke: () => Promise.resolve(spec.rpc) }),
  close: () => Promise.resolve(),
};

function overload(args: string[], returns: string[]): ProcedureSpec {
  return {
    service: "service1",
    rpc: "add",
    signature: parseSignature(args, returns),
    language: "typescript",
    path: "/srv/service1/add.ts",
    hash: "0".repeat(64),
  };
}

const registry = await Registry.load([
  {
    name: "service1",
    tenants: ["c1", "c2"],
    procedures: [
      overload(["int", "int"], ["int"]),
      overload(["float", "float"], ["float"]),
      overload(["str", "str"], ["str"]),
    ],
  },
], { typescript: fakeRunner });

const request = (args: unknown[], types?: string[]): CallRequest => ({
  service: "service1",
  rpc: "add",
  arguments: args,
  ...(types ? { "argument-types": types } : {}),
});

const declaredFloat = request([2.5, 3.5], ["float", "float"]);
const inferredFloat = request([2.5, 3.5]);
const inferredInt = request([2, 3]);
const inferredStr = request(["a", "b"]);

Deno.bench("resolve: declared (float, float)", { group: "resolve", baseline: true }, () => {
  registry.resolve("c1", declaredFloat);
});
Deno.bench("resolve: inferred (float, float): one overload fits", {
  group: "resolve",
}, () => {
  registry.resolve("c1", inferredFloat);
});
Deno.bench("resolve: inferred (int, int): fits int and float, exact type wins", {
  group: "resolve",
}, () => {
  registry.resolve("c1", inferredInt);
});
Deno.bench("resolve: inferred (str, str): one overload fits", { group: "resolve" }, () => {
  registry.resolve("c1", inferredStr);
});
