import assert from "node:assert/strict";
import { connectOver } from "../client/connect.ts";
import { hashSecret } from "../hash.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { MemoryListener } from "../transport/memory.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { Registry } from "./registry.ts";
import { RpcServer } from "./server.ts";
import { recordingLogger } from "./test_support.ts";

/**
 * The stages composed: one server over an in-memory listener, driven by the
 * real client library, checked by what the client gets and what the log says.
 */
async function serving(options: { maxConnectionsPerIp?: number } = {}) {
  const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
    typescript: new InlineTypeScriptRunner(),
  });
  const log = recordingLogger();
  const audit = recordingLogger();
  const observed: string[] = [];
  const server = new RpcServer({
    name: "s1",
    registry,
    logger: log.logger,
    audit: audit.logger,
    clients: new Map([
      ["owner", { name: "owner", secretHash: hashSecret("owner-secret") }],
    ]),
    limits: { adminReserve: 0, ...options },
  });
  server.observer = {
    called: (service, rpc, outcome) => observed.push(`${service}.${rpc} ${outcome}`),
  };
  const listener = new MemoryListener("composed");
  server.serve(listener);
  return { server, listener, log: log.records, audit: audit.records, observed };
}

Deno.test("server: a client proves its secret, calls a tenant-only service, and every stage leaves its trace", async () => {
  const { server, listener, log, audit, observed } = await serving();
  const client = await connectOver(listener.connect(), { client: "owner", secret: "owner-secret" });
  assert.deepEqual(await client.call("private", "echo", ["mine"]), ["mine"]);
  await assert.rejects(client.call("conf", "fail", ["boom"]), { kind: "Execution Exception" });
  assert.equal(server.sessions[0].client, "owner");
  assert.equal(server.health().callsServed, 1);
  assert.equal(server.health().callsFailed, 1);
  client.close();
  await server.close();
  assert.deepEqual(log.map((r) => r.event), [
    "listen",
    "connect",
    "client",
    "call",
    "exception",
    "disconnect",
  ]);
  assert.equal(log[2].msg, "owner@memory:composed connected");
  assert.match(log[3].msg, /^owner@memory:composed private\.echo\(str\) ok \d+\.\d\d ms$/);
  assert.equal(log[4].msg, "owner@memory:composed conf.fail(str) Execution Exception: Error: boom");
  assert.equal(log[5].msg, "owner@memory:composed disconnected after 2 calls");
  assert.deepEqual(audit.map((r) => [r.event, r.msg]), [
    ["call", "ok"],
    ["call", "Execution Exception"],
  ]);
  assert.deepEqual(observed, ["private.echo ok", "conf.fail Execution Exception"]);
});

Deno.test("server: the gate counts connections per peer, and a refused one leaves others served", async () => {
  const { server, listener, log } = await serving({ maxConnectionsPerIp: 1 });
  const first = await connectOver(listener.connect());
  await assert.rejects(connectOver(listener.connect()), {
    kind: "Unavailable",
    message: "Connection refused: memory:composed has 1 connections (limit 1)",
  });
  assert.deepEqual(await first.call("conf", "echo", ["still served"]), ["still served"]);
  assert.ok(log.some((r) => r.event === "refused"));
  first.close();
  await server.close();
});

Deno.test("server: a wrong secret is refused at identify; no call reaches the pipeline", async () => {
  const { server, listener, log, observed } = await serving();
  await assert.rejects(
    connectOver(listener.connect(), { client: "owner", secret: "guess" }),
    { kind: "Unauthorized", message: "Wrong secret for client owner" },
  );
  await server.close();
  assert.equal(server.stats.refused, 1);
  assert.deepEqual(observed, []);
  assert.ok(
    log.some((r) => r.event === "unauthorized" && r.msg.endsWith("Wrong secret for client owner")),
  );
});
