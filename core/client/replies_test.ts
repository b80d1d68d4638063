import assert from "node:assert/strict";
import { parseHealth, parseServiceList } from "./replies.ts";

const HEALTH = {
  server: "s1",
  version: "0.1.0",
  uptimeMs: 5000,
  connections: 1,
  connectionsAccepted: 3,
  connectionsRefused: 0,
  callsServed: 10,
  callsFailed: 1,
  callsInFlight: 0,
};

Deno.test("parseHealth keeps a good reply, and only the fields it knows", () => {
  assert.deepEqual(parseHealth({ ...HEALTH, extra: "dropped" }), HEALTH);
});

Deno.test("parseHealth names the first wrong field and what it held", () => {
  const cases: [unknown, string][] = [
    ["up", 'the reply must be an object, got "up"'],
    [[HEALTH], "the reply must be an object, got [{"],
    [{ ...HEALTH, server: 1 }, "server must be text, got 1"],
    [{ ...HEALTH, version: undefined }, "version must be text, got undefined"],
    [{ ...HEALTH, uptimeMs: -5 }, "uptimeMs must be a count, got -5"],
    [{ ...HEALTH, connections: 1.5 }, "connections must be a count, got 1.5"],
    [{ ...HEALTH, callsServed: "10" }, 'callsServed must be a count, got "10"'],
    [{ ...HEALTH, callsInFlight: null }, "callsInFlight must be a count, got null"],
    // Two wrong: the first listed is named.
    [
      { ...HEALTH, connectionsRefused: "x", callsFailed: "y" },
      'connectionsRefused must be a count, got "x"',
    ],
  ];
  for (const [reply, message] of cases) {
    assert.throws(() => parseHealth(reply), (error: Error & { kind?: string }) => {
      assert.equal(error.kind, "Malformed Frame");
      assert.ok(
        error.message.startsWith(`Cannot read the health reply: ${message}`),
        `${JSON.stringify(reply)}: ${error.message}`,
      );
      return true;
    });
  }
});

Deno.test("parseServiceList keeps a good list and names the first wrong field", () => {
  const services = [{
    name: "svc",
    rpcs: [
      { name: "add", args: ["int", "int"], returns: ["int"], doc: "Adds" },
      { name: "count", args: [], returns: ["int"], yields: ["int"] },
    ],
  }];
  assert.deepEqual(parseServiceList({ services }), services);
  const cases: [unknown, string][] = [
    [{}, "services must be a list, got undefined"],
    [{ services: [{ name: "svc" }] }, "rpcs of service svc must be a list, got undefined"],
    [{ services: [{ name: 3, rpcs: [] }] }, "services[0].name must be text, got 3"],
    [
      { services: [{ name: "svc", rpcs: [{ name: "add", args: "int", returns: [] }] }] },
      'args of svc.add must be a list, got "int"',
    ],
    [
      { services: [{ name: "svc", rpcs: [{ name: "add", args: [], returns: [7] }] }] },
      "returns of svc.add[0] must be text, got 7",
    ],
    [
      { services: [{ name: "svc", rpcs: [{ name: "f", args: [], returns: [], doc: 1 }] }] },
      "doc of svc.f must be text, got 1",
    ],
  ];
  for (const [reply, message] of cases) {
    assert.throws(() => parseServiceList(reply), {
      kind: "Malformed Frame",
      message: `Cannot read the service list: ${message}`,
    });
  }
});
