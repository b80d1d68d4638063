/**
 * The client's call path in one process: 64 calls of `echo(str)` at once on
 * one {@linkcode RpcClient} over an in-memory connection, to a peer that
 * answers each with its arguments and does nothing else: with a time limit
 * (what `rpc bench` and `rpc call` give every call), without, and prepared
 * (encoded once, as `rpc bench` calls). Network, server and process
 * scheduling are left out, so a change to the client shows here even when a
 * whole `rpc bench` run is too noisy to tell. The peer's decoding and
 * encoding are in the figures too.
 *
 *     deno bench --allow-all core/client/client_bench.ts
 *
 * @module
 */

import { connectOver } from "./connect.ts";
import { MessageChannel } from "../wire/channel.ts";
import { memoryPair } from "../transport/memory.ts";

const [clientEnd, serverEnd] = memoryPair({ name: "bench" });
const peer = new MessageChannel(serverEnd);
void peer.readAll({
  onMessage(message) {
    if (message.type === "HELLO") {
      peer.send({
        type: "HELLO",
        serial: message.serial,
        value: { version: 1, server: "echo", software: "bench" },
      });
    } else if (message.type === "RPC-REQ") {
      peer.send({
        type: "RPC-RES",
        serial: message.serial,
        value: { "return-values": message.value.arguments },
      });
    }
  },
  onMalformed() {},
});
const client = await connectOver(clientEnd);
const args = ["x".repeat(32)];
const BATCH = 64;

Deno.bench(`client: ${BATCH} echo calls at once, each with a time limit`, async () => {
  const calls = [];
  for (let i = 0; i < BATCH; i++) {
    calls.push(client.call("bench", "echo", args, { timeoutMs: 30_000 }));
  }
  await Promise.all(calls);
});

Deno.bench(`client: ${BATCH} echo calls at once, no time limit`, async () => {
  const calls = [];
  for (let i = 0; i < BATCH; i++) calls.push(client.call("bench", "echo", args));
  await Promise.all(calls);
});

const prepared = client.prepare("bench", "echo", args, { timeoutMs: 30_000 });

Deno.bench(`client: ${BATCH} prepared echo calls at once, each with a time limit`, async () => {
  const calls = [];
  for (let i = 0; i < BATCH; i++) calls.push(prepared.call());
  await Promise.all(calls);
});
