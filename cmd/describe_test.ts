import assert from "node:assert/strict";
import type { RpcError } from "../core/errors.ts";
import type { ServiceDescription } from "../core/wire/message.ts";
import { describedJson, describeTarget, formatDescribed, splitTarget } from "./describe.ts";

const services: ServiceDescription[] = [{
  name: "service1",
  rpcs: [
    { name: "rpc1", args: ["int", "str"], returns: ["str"], doc: "Repeat a string n times." },
    { name: "add", args: ["int", "int"], returns: ["int"] },
    { name: "add", args: ["float", "float"], returns: ["float"], doc: "Add." },
  ],
}];

function kindOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as RpcError).kind;
  }
  return "none";
}

Deno.test("splitTarget() splits service.rpc at the last dot; a bare name is a service", () => {
  assert.deepEqual(splitTarget("service1.rpc1"), { service: "service1", rpc: "rpc1" });
  assert.deepEqual(splitTarget("a.b.c"), { service: "a.b", rpc: "c" });
  assert.deepEqual(splitTarget("service1"), { service: "service1" });
  assert.throws(() => splitTarget("service1."), /expected service\.rpc or service/);
});

Deno.test("describeTarget() finds every overload of an RPC", () => {
  const described = describeTarget(services, "service1.add");
  assert.equal(described.rpcs.length, 2);
  assert.deepEqual(formatDescribed(described), [
    "service1.add(int, int) -> int",
    "service1.add(float, float) -> float",
    "    Add.",
  ]);
});

Deno.test("describeTarget() describes a whole service like list does", () => {
  assert.deepEqual(formatDescribed(describeTarget(services, "service1")), [
    "service1",
    "  rpc1(int, str) -> str       Repeat a string n times.",
    "  add(int, int) -> int",
    "  add(float, float) -> float  Add.",
  ]);
});

Deno.test("describeTarget() fails with Service Not Found or RPC Not Found, naming what exists", () => {
  assert.equal(kindOf(() => describeTarget(services, "service9.rpc1")), "Service Not Found");
  assert.equal(kindOf(() => describeTarget(services, "service1.nope")), "RPC Not Found");
  assert.throws(() => describeTarget(services, "service1.nope"), /it has rpc1, add/);
  assert.throws(() => describeTarget([], "service1"), /\(none\)/);
});

Deno.test("describedJson() gives the overloads of an RPC, or the RPCs of a service", () => {
  assert.deepEqual(describedJson(describeTarget(services, "service1.rpc1")), {
    service: "service1",
    rpc: "rpc1",
    overloads: [services[0].rpcs[0]],
  });
  assert.deepEqual(describedJson(describeTarget(services, "service1")), {
    service: "service1",
    rpcs: services[0].rpcs,
  });
});
