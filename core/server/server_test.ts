import assert from "node:assert/strict";
import { connectOver } from "../client/connect.ts";
import { hashSecret } from "../hash.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { type MemoryConnection, MemoryListener, memoryPair } from "../transport/memory.ts";
import type { Connection } from "../transport/mod.ts";
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

/** One end of an in-memory pair, counting its writes, and saying whether writes are messages. */
function countingEnd(inner: MemoryConnection, writesAreMessages: boolean) {
  const writes: number[] = [];
  const conn: Connection = {
    remote: inner.remote,
    writesAreMessages,
    read: (buffer) => inner.read(buffer),
    write: (data) => {
      writes.push(data.length);
      return inner.write(data);
    },
    close: () => inner.close(),
    closeWrite: () => inner.closeWrite(),
  };
  return { conn, writes };
}

Deno.test("server: replies start leaving within the tick, except where each write is a message (NATS)", async () => {
  const { server } = await serving();
  const replyWrites = async (writesAreMessages: boolean) => {
    const [clientEnd, serverEnd] = memoryPair({ name: `messages-${writesAreMessages}` });
    const { conn, writes } = countingEnd(serverEnd, writesAreMessages);
    server.serveConnection(conn);
    // The client writes its calls in one write, so the server reads them in one read.
    const client = await connectOver(countingEnd(clientEnd, true).conn);
    const before = writes.length;
    // 40 calls (6 KB, one read), whose replies (4 KB) are all produced in the tick that reads them.
    const text = "x".repeat(50);
    const replies = await Promise.all(
      Array.from({ length: 40 }, () => client.call("conf", "echo", [text])),
    );
    assert.ok(replies.every(([value]) => value === text));
    client.close();
    return writes.length - before;
  };
  const early = await replyWrites(false);
  const once = await replyWrites(true);
  assert.ok(early >= 2, `replies left in ${early} writes`);
  assert.equal(once, 1, `replies left in ${once} writes`);
  await server.close();
});
