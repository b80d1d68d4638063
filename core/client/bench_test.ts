import assert from "node:assert/strict";
import { runBench } from "./bench.ts";
import { MessageChannel } from "../wire/channel.ts";
import { memoryPair } from "../transport/memory.ts";
import type { Connection } from "../transport/mod.ts";

/** Dials an in-memory peer that answers the handshake and echoes every call's arguments. */
function echoPeer() {
  const channels: MessageChannel[] = [];
  const peer = {
    requests: 0,
    /** The serials of the calls received, one set per connection. */
    serials: [] as Set<number>[],
    dial: () => {
      const [clientEnd, serverEnd] = memoryPair("bench");
      const channel = new MessageChannel(serverEnd);
      channels.push(channel);
      const serials = new Set<number>();
      peer.serials.push(serials);
      void channel.readAll({
        onMessage(message) {
          if (message.type === "HELLO") {
            channel.send({
              type: "HELLO",
              serial: message.serial,
              value: { version: 1, server: "echo", software: "test" },
            });
          } else if (message.type === "RPC-REQ") {
            peer.requests++;
            serials.add(message.serial);
            channel.send({
              type: "RPC-RES",
              serial: message.serial,
              value: { "return-values": message.value.arguments },
            });
          }
        },
        onMalformed() {},
      }).catch(() => {});
      return Promise.resolve<Connection>(clientEnd);
    },
    close: () => channels.forEach((channel) => channel.close()),
  };
  return peer;
}

Deno.test("runBench sends every call with a serial of its own over each connection, and counts them", async () => {
  const peer = echoPeer();
  try {
    const report = await runBench({
      endpoint: { hostname: "memory", port: 1 },
      dial: peer.dial,
      service: "bench",
      rpc: "echo",
      args: ["x"],
      concurrency: 8,
      connections: 2,
      total: 500,
      timeoutMs: 10_000,
    });
    assert.equal(report.count, 500);
    assert.equal(report.ok, 500);
    assert.deepEqual(report.errors, {});
    assert.equal(peer.requests, 500);
    // Two connections, each call with a serial unlike any other on its connection.
    assert.equal(peer.serials.length, 2);
    assert.equal(peer.serials.reduce((sum, serials) => sum + serials.size, 0), 500);
  } finally {
    peer.close();
  }
});

Deno.test("runBench counts calls whose arguments cannot be encoded as failures, one by one", async () => {
  const peer = echoPeer();
  const circular: unknown[] = [];
  circular.push(circular);
  try {
    const report = await runBench({
      endpoint: { hostname: "memory", port: 1 },
      dial: peer.dial,
      service: "bench",
      rpc: "echo",
      args: [circular],
      concurrency: 4,
      total: 20,
    });
    assert.equal(report.count, 20);
    assert.equal(report.ok, 0);
    assert.equal(Object.values(report.errors).reduce((sum, count) => sum + count, 0), 20);
    assert.equal(peer.requests, 0);
  } finally {
    peer.close();
  }
});
