import assert from "node:assert/strict";
import { connectOver } from "../client/connect.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { MemoryListener } from "../transport/memory.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { Registry } from "./registry.ts";
import { RpcServer } from "./server.ts";
import { recordingLogger } from "./test_support.ts";

async function serving() {
  const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
    typescript: new InlineTypeScriptRunner(),
  });
  const { logger, records } = recordingLogger();
  const server = new RpcServer({ registry, logger });
  const listener = new MemoryListener("drain");
  server.serve(listener);
  return { server, listener, records };
}

Deno.test("drain: calls in flight finish and are answered; new connections are refused", async () => {
  const { server, listener, records } = await serving();
  const client = await connectOver(listener.connect());
  const call = client.call("conf", "sleep", [0.05]);
  // The call is in flight once the server counts it.
  while (server.inflight === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const abandoned = await server.drain(60_000);
  assert.equal(abandoned, 0);
  assert.deepEqual(await call, ["slept 0.05s"]);
  assert.throws(() => listener.connect(), { kind: "Unavailable" });
  assert.deepEqual(records.filter((r) => r.event === "shutdown").map((r) => r.msg), [
    "draining: refusing new connections, 1 calls in flight on 1 connections, grace 60000 ms",
    "every call in flight finished",
  ]);
  client.close();
});

Deno.test("drain: once the grace period is over, the calls still running are counted and cut", async () => {
  const { server, listener, records } = await serving();
  const client = await connectOver(listener.connect());
  const call = client.call("conf", "sleep", [30]);
  while (server.inflight === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(await server.drain(10), 1);
  await assert.rejects(call);
  assert.equal(
    records.filter((r) => r.event === "shutdown").at(-1)?.msg,
    "grace period over: closing 1 connections with 1 calls still running",
  );
  client.close();
});
