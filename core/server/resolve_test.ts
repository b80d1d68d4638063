import assert from "node:assert/strict";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import type { CallRequest } from "../wire/message.ts";
import { formatTypes } from "../types/types.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { authorize } from "./authorize.ts";
import { Registry } from "./registry.ts";
import { resolve } from "./resolve.ts";

const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});

/** Authorizes, then resolves, as the pipeline does; returns the chosen signature and arguments. */
function chosen(args: unknown[], extra: Partial<CallRequest> = {}) {
  const request: CallRequest = { service: "conf", rpc: "add", arguments: args, ...extra };
  const resolved = resolve(registry, request, authorize(registry, undefined, request));
  return [formatTypes(resolved.overload.signature.args), resolved.args];
}

Deno.test("resolve: the overload is chosen by the arguments' own types", () => {
  assert.deepEqual(chosen([1, 2]), ["int, int", [1, 2]]);
  assert.deepEqual(chosen([1.5, 2.5]), ["float, float", [1.5, 2.5]]);
  assert.deepEqual(chosen([[1, 2, 3]]), ["List[int]", [[1, 2, 3]]]);
});

Deno.test("resolve: declared argument-types choose the overload, and the chosen one runs", async () => {
  assert.deepEqual(chosen([1, 2], { "argument-types": ["float", "float"] })[0], "float, float");
  const request: CallRequest = { service: "conf", rpc: "add", arguments: [2, 3] };
  const { overload, args } = resolve(registry, request, authorize(registry, undefined, request));
  assert.equal(await overload.procedure.invoke(args, new AbortController().signal), 5n);
});

Deno.test("resolve: no matching overload is Invalid Arguments naming the valid signatures", () => {
  assert.throws(() => chosen([1, 2, 3]), (error: Error & { kind?: string }) => {
    assert.equal(error.kind, "Invalid Arguments");
    assert.match(error.message, /^No overload of conf\.add accepts these 3 arguments\. /);
    assert.match(error.message, /add\(int, int\)/);
    return true;
  });
  assert.throws(() => chosen(["a", "b"], { "argument-types": ["str", "str"] }), {
    kind: "Invalid Arguments",
  });
});
