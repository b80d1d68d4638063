import assert from "node:assert/strict";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { type CallRequest, decodeMessage, hasDeferredArguments } from "../wire/message.ts";
import { formatTypes } from "../types/types.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { authorize } from "./authorize.ts";
import { Registry } from "./registry.ts";

/** The conformance services on the real inline runner: `conf` (open) and `private` (tenant `owner`). */
const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});

const call = (service: string, rpc: string, args: unknown[] = []): CallRequest => ({
  service,
  rpc,
  arguments: args,
});

/** A request as the server decodes it: integers beyond 2^53 left for later. */
function decoded(service: string, rpc: string, argsJson: string): CallRequest {
  const body =
    `{"type":"RPC-REQ","serial":1,"value":{"service":"${service}","rpc":"${rpc}","arguments":[${argsJson}]}}`;
  const message = decodeMessage(new TextEncoder().encode(body), {
    deferArguments: true,
    maxIntegerDigits: 4300,
  });
  return message.value as CallRequest;
}

Deno.test("authorize: an open service gives the RPC's overloads to anyone", () => {
  const overloads = authorize(registry, undefined, call("conf", "add"));
  assert.deepEqual(overloads.map((overload) => formatTypes(overload.signature.args)), [
    "int, int",
    "float, float",
    "List[int]",
  ]);
});

Deno.test("authorize: service, then tenant, then RPC, each with its own kind", () => {
  assert.throws(() => authorize(registry, "owner", call("nope", "echo")), {
    kind: "Service Not Found",
    message: "This server does not provide service nope",
  });
  // Not a tenant: refused before the RPC is looked up, so a stranger learns nothing of it.
  assert.throws(() => authorize(registry, "c9", call("private", "nope")), {
    kind: "Client Not Registered",
    message: "Client c9 is not registered for service private and may not use it",
  });
  assert.throws(() => authorize(registry, undefined, call("private", "echo")), {
    message: "Client (anonymous) is not registered for service private and may not use it",
  });
  assert.throws(() => authorize(registry, "owner", call("private", "nope")), {
    kind: "RPC Not Found",
    message: "Service private has no RPC nope",
  });
  assert.equal(authorize(registry, "owner", call("private", "echo")).length, 1);
});

Deno.test("authorize: big integers are read exactly only once the caller may go ahead", () => {
  const refused = decoded("private", "echo", "123456789012345678901234567890");
  assert.throws(() => authorize(registry, "c9", refused), { kind: "Client Not Registered" });
  assert.equal(hasDeferredArguments(refused), true);

  const allowed = decoded("conf", "add", "123456789012345678901234567890, 1");
  authorize(registry, undefined, allowed);
  assert.equal(hasDeferredArguments(allowed), false);
  assert.deepEqual(allowed.arguments, [123456789012345678901234567890n, 1]);
});
