import assert from "node:assert/strict";
import {
  parseAuthReply,
  parseClientsReply,
  parseDisconnectReply,
  parseHealth,
  parseHelloReply,
  parseLogLevelReply,
  parseServiceList,
  parseStatsReply,
} from "./replies.ts";

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

const CLIENT = {
  id: 2,
  client: "c1",
  address: "127.0.0.1:40000",
  connectedAt: "2026-01-01T00:00:00.000Z",
  calls: 4,
};

const STATS = {
  ...HEALTH,
  pid: 123,
  startedAt: "2026-01-01T00:00:00.000Z",
  logLevel: "info",
  callsByClient: { c1: 4, "(anonymous)": 0 },
  memory: { rssBytes: 1000, heapUsedBytes: 100, heapTotalBytes: 200 },
  limits: { maxFrameBytes: 8388608, clientRate: 0.5 },
};

Deno.test("the admin replies are kept when good, and the first wrong field is named", () => {
  const anonymous = { ...CLIENT, client: null };
  assert.deepEqual(parseClientsReply({ clients: [CLIENT, anonymous] }), {
    clients: [CLIENT, anonymous],
  });
  assert.deepEqual(parseDisconnectReply({ disconnected: CLIENT }), { disconnected: CLIENT });
  assert.deepEqual(parseLogLevelReply({ level: "debug", was: "info" }), {
    level: "debug",
    was: "info",
  });
  assert.deepEqual(parseStatsReply(STATS), STATS);
  const cases: [(value: unknown) => unknown, unknown, string][] = [
    [
      parseClientsReply,
      { clients: {} },
      "Cannot read the clients reply: clients must be a list, got {}",
    ],
    [
      parseClientsReply,
      { clients: [{ ...CLIENT, client: 7 }] },
      "Cannot read the clients reply: clients[0].client must be text, got 7",
    ],
    [
      parseDisconnectReply,
      { disconnected: { ...CLIENT, calls: -1 } },
      "Cannot read the disconnect reply: disconnected.calls must be a count, got -1",
    ],
    [
      parseLogLevelReply,
      { level: "loud", was: "info" },
      'Cannot read the log-level reply: level must be one of debug, info, warn, error, got "loud"',
    ],
    [
      parseStatsReply,
      { ...STATS, callsServed: "many", pid: "x" },
      'Cannot read the stats reply: callsServed must be a count, got "many"',
    ],
    [
      parseStatsReply,
      { ...STATS, callsByClient: { c1: "4" } },
      'Cannot read the stats reply: callsByClient["c1"] must be a count, got "4"',
    ],
    [
      parseStatsReply,
      { ...STATS, memory: { ...STATS.memory, heapUsedBytes: null } },
      "Cannot read the stats reply: memory.heapUsedBytes must be a count, got null",
    ],
    [
      parseStatsReply,
      { ...STATS, limits: { maxFrameBytes: "8M" } },
      'Cannot read the stats reply: limits.maxFrameBytes must be a number of 0 or more, got "8M"',
    ],
  ];
  for (const [parse, reply, message] of cases) {
    assert.throws(() => parse(reply), { kind: "Malformed Frame", message });
  }
});

Deno.test("the handshake replies are kept when good, and the first wrong field is named", () => {
  const hello = {
    version: 1,
    server: "s1",
    software: "rpc/0.1.0",
    nonce: "ab",
    "auth-required": true,
  };
  assert.deepEqual(parseHelloReply({ ...hello, extra: 1 }), hello);
  assert.deepEqual(parseHelloReply({ version: 1, server: "s1", software: "x" }), {
    version: 1,
    server: "s1",
    software: "x",
  });
  assert.deepEqual(parseAuthReply({ client: "c1", admin: false }), { client: "c1", admin: false });
  assert.deepEqual(parseAuthReply({ client: null, admin: true }), { client: null, admin: true });
  const cases: [(value: unknown) => unknown, unknown, string][] = [
    [
      parseHelloReply,
      { ...hello, version: "1" },
      'Cannot read the HELLO reply: version must be a count, got "1"',
    ],
    [
      parseHelloReply,
      { ...hello, nonce: 5 },
      "Cannot read the HELLO reply: nonce must be text, got 5",
    ],
    [
      parseHelloReply,
      { ...hello, "auth-required": "yes" },
      'Cannot read the HELLO reply: auth-required must be true or false, got "yes"',
    ],
    [
      parseAuthReply,
      { client: 3, admin: false },
      "Cannot read the AUTH reply: client must be text, got 3",
    ],
    [
      parseAuthReply,
      { client: "c1" },
      "Cannot read the AUTH reply: admin must be true or false, got undefined",
    ],
  ];
  for (const [parse, reply, message] of cases) {
    assert.throws(() => parse(reply), { kind: "Malformed Frame", message });
  }
});
