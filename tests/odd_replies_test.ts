/**
 * The command line against a server that answers wrongly or not at all:
 * every wait is bounded by --timeout, and a reply that is not what it
 * should be is refused with `Malformed Frame` naming the field.
 */

import assert from "node:assert/strict";
import { describeResult, rpc, writeInitYaml } from "./helpers.ts";
import { oddServer } from "./odd_server.ts";

/** Runs rpc in an empty directory, so no init.yaml is read. */
async function rpcAlone(args: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "rpc-odd-" });
  try {
    return await rpc(args, { cwd: dir, timeoutMs: 60_000 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rpc call and rpc bench to a server that never answers LIST end with Timeout at --timeout", async () => {
  // Handshakes, then keeps silent: the list of signatures never comes.
  await using silent = oddServer(() => undefined);
  const address = `127.0.0.1:${silent.port}`;
  const call = await rpcAlone(["call", "--timeout", "1s", address, "svc", "f", "3"]);
  assert.equal(call.code, 4, describeResult(call));
  assert.match(call.stderr, /^error: Timeout: /m);
  const bench = await rpcAlone(["bench", "--timeout", "1s", address, "svc", "f", "3", "-n", "1"]);
  assert.equal(bench.code, 4, describeResult(bench));
  assert.match(bench.stderr, /^error: Timeout: /m);
  // Both asked for the list, gave up on it at the limit, and sent no call on guessed types.
  assert.deepEqual(
    silent.requests.map((request) => request.type),
    ["LIST", "RPC-CANCEL", "LIST", "RPC-CANCEL"],
  );
});

/** Answers `health` with a reply that lacks most of its counters. */
function badHealthServer() {
  return oddServer((request) =>
    request.type === "ADMIN" && request.value.op === "health"
      ? {
        type: "ADMIN-RES",
        serial: request.serial,
        value: { server: "odd", version: "1", uptimeMs: 5, callsServed: "lots" },
      }
      : undefined
  );
}

Deno.test("rpc ping refuses a health reply that is not one, naming the field", async () => {
  await using odd = badHealthServer();
  const ping = await rpcAlone(["ping", "--timeout", "10s", `127.0.0.1:${odd.port}`]);
  assert.equal(ping.code, 15, describeResult(ping));
  assert.match(
    ping.stderr,
    /^error: Malformed Frame: Cannot read the health reply: connections must be a count, got undefined$/m,
  );
  assert.doesNotMatch(ping.stdout, /lots/);
});

Deno.test("rpc ping --all refuses a health reply that is not one, naming the field", async () => {
  await using odd = badHealthServer();
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: odd.port } },
  });
  const ping = await rpc(["ping", "--all", "--config", config.path, "--timeout", "10s"]);
  assert.equal(ping.code, 15, describeResult(ping));
  assert.match(
    ping.stdout,
    /^s1 +Malformed Frame: Cannot read the health reply: connections must be a count, got undefined$/m,
  );
});

Deno.test("rpc list refuses a service list that is not one, naming the field", async () => {
  await using odd = oddServer((request) =>
    request.type === "LIST"
      ? {
        type: "LIST-RES",
        serial: request.serial,
        value: { services: [{ name: "svc", rpcs: [{ name: "f", args: "int", returns: [] }] }] },
      }
      : undefined
  );
  const listed = await rpcAlone(["list", "--timeout", "10s", `127.0.0.1:${odd.port}`]);
  assert.equal(listed.code, 15, describeResult(listed));
  assert.match(
    listed.stderr,
    /^error: Malformed Frame: Cannot read the service list: args of svc\.f must be a list, got "int"$/m,
  );
});

Deno.test("rpc admin refuses a stats reply that is not one, naming the field", async () => {
  await using odd = oddServer((request) =>
    request.type === "ADMIN" && request.value.op === "stats"
      ? {
        type: "ADMIN-RES",
        serial: request.serial,
        value: {
          server: "odd",
          version: "1",
          uptimeMs: 5,
          connections: 1,
          connectionsAccepted: 1,
          connectionsRefused: 0,
          callsServed: 0,
          callsFailed: 0,
          callsInFlight: 0,
          pid: 1,
          startedAt: "2026-01-01T00:00:00.000Z",
          logLevel: "chatty",
        },
      }
      : undefined
  );
  for (const json of [[], ["--json"]]) {
    const stats = await rpcAlone(["admin", ...json, `127.0.0.1:${odd.port}`, "stats"]);
    assert.equal(stats.code, 15, describeResult(stats));
    assert.match(
      stats.stderr,
      /^error: Malformed Frame: Cannot read the stats reply: logLevel must be one of debug, info, warn, error, got "chatty"$/m,
    );
    assert.equal(stats.stdout, "");
  }
});

Deno.test("a HELLO reply that is not one fails the connection, naming the field", async () => {
  await using odd = oddServer(() => undefined, { version: 1, software: "odd" });
  const ping = await rpcAlone(["ping", "--timeout", "10s", `127.0.0.1:${odd.port}`]);
  assert.equal(ping.code, 15, describeResult(ping));
  assert.match(
    ping.stderr,
    /^error: Malformed Frame: Cannot read the HELLO reply: server must be text, got undefined$/m,
  );
  // The handshake failed, so nothing was asked.
  assert.deepEqual(odd.requests, []);
});
