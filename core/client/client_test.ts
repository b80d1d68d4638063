import assert from "node:assert/strict";
import { connectOver } from "./connect.ts";
import { RpcError } from "../errors.ts";
import { deadlines } from "../deadline.ts";
import { MessageChannel } from "../wire/channel.ts";
import type { Message } from "../wire/message.ts";
import { memoryPair } from "../transport/memory.ts";
import { listenTcp } from "../transport/tcp.ts";
import type { Connection } from "../transport/mod.ts";
import { parseCluster } from "../deploy/cluster.ts";
import { ServiceClient } from "./failover.ts";

/**
 * A server that answers the handshake and then only listens: what a hung
 * server looks like to a client. Every message it receives is kept. With
 * `answer`, it answers the calls that function returns a reply for.
 */
function silentServer(serverEnd: Connection, answer?: (message: Message) => Message | undefined) {
  const channel = new MessageChannel(serverEnd);
  const received: Message[] = [];
  let arrived: (() => void) | undefined;
  // A socket keeps the process alive while a reply is awaited; an in-memory pair does not, and
  // the client's deadlines are unref'd (core/deadline.ts): this timer stands in for the socket.
  const alive = setInterval(() => {}, 1000);
  const reading = channel.readAll({
    onMessage(message) {
      received.push(message);
      arrived?.();
      if (message.type === "HELLO") {
        channel.send({
          type: "HELLO",
          serial: message.serial,
          value: { version: 1, server: "silent", software: "test" },
        });
      } else if (answer) {
        const reply = answer(message);
        if (reply) channel.send(reply);
      }
    },
    onMalformed() {},
  });
  return {
    received,
    /** Resolves with the messages of `type` once `count` of them have arrived. */
    async wait(type: Message["type"], count = 1): Promise<Message[]> {
      for (;;) {
        const found = received.filter((message) => message.type === type);
        if (found.length >= count) return found;
        await new Promise<void>((resolve) => (arrived = resolve));
      }
    },
    async close() {
      clearInterval(alive);
      channel.close();
      await reading.catch(() => {});
    },
  };
}

Deno.test("list() takes timeoutMs: a silent server fails it with Timeout, and is told to cancel", async () => {
  const [clientEnd, serverEnd] = memoryPair("silent");
  const server = silentServer(serverEnd);
  const client = await connectOver(clientEnd);
  try {
    await assert.rejects(client.list({ timeoutMs: 30 }), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.kind, "Timeout");
      assert.equal(error.message, "No reply with the service list within 30 ms");
      return true;
    });
    const [list] = await server.wait("LIST");
    const [cancel] = await server.wait("RPC-CANCEL");
    assert.equal(cancel.serial, list.serial);
    assert.equal(client.pending, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("calls sent together with a time limit: the answered resolve, the rest time out in full and are cancelled", async () => {
  const [clientEnd, serverEnd] = memoryPair("selective");
  // Answers the calls whose first argument is even.
  const server = silentServer(
    serverEnd,
    (message) =>
      message.type === "RPC-REQ" && (message.value.arguments[0] as number) % 2 === 0
        ? { type: "RPC-RES", serial: message.serial, value: { "return-values": ["even"] } }
        : undefined,
  );
  const client = await connectOver(clientEnd);
  try {
    const started = performance.now();
    const settled = (promise: Promise<unknown[]>) =>
      promise.then(
        (values) => ({ values, at: performance.now() - started }),
        (error: RpcError) => ({ error, at: performance.now() - started }),
      );
    // Two time limits in the same tick, and one call cancelled by its signal while the rest wait.
    const controller = new AbortController();
    const calls = [
      ...[0, 1, 2, 3, 4, 5].map((n) => client.call("s", "r", [n], { timeoutMs: 40 })),
      ...[6, 7].map((n) => client.call("s", "r", [n], { timeoutMs: 80 })),
      client.call("s", "r", [9], { timeoutMs: 80, signal: controller.signal }),
    ].map(settled);
    const asked = await server.wait("RPC-REQ", 9);
    controller.abort(new RpcError("Cancelled", "Stopped by the test"));
    const results = await Promise.all(calls);
    for (const [i, n] of [0, 1, 2, 3, 4, 5, 6, 7].entries()) {
      const result = results[i];
      if (n % 2 === 0) {
        assert.deepEqual("values" in result && result.values, ["even"]);
        continue;
      }
      const limit = n < 6 ? 40 : 80;
      assert.ok("error" in result);
      assert.equal(result.error.kind, "Timeout");
      assert.equal(result.error.message, `No reply within ${limit} ms`);
      // A shared deadline may give a call up late, never before its time limit.
      assert.ok(result.at >= limit, `call ${n} gave up after ${result.at} ms, before ${limit} ms`);
    }
    const cancelled = results[8];
    assert.ok("error" in cancelled);
    assert.equal(cancelled.error.message, "Stopped by the test");
    // Every call given up, and only those, was cancelled on the wire, in the order given up.
    await server.wait("RPC-CANCEL", 5);
    // One more answered call: anything sent before it has arrived by its reply.
    assert.deepEqual(await client.call("s", "r", [10], { timeoutMs: 40 }), ["even"]);
    const serialOf = (n: number) =>
      asked.find((m) => m.type === "RPC-REQ" && m.value.arguments[0] === n)!.serial;
    assert.deepEqual(
      server.received.filter((m) => m.type === "RPC-CANCEL").map((m) => m.serial),
      [9, 1, 3, 5, 7].map(serialOf),
    );
    assert.equal(client.pending, 0);
    // Every shared deadline was cancelled or fired; so is one whose calls all ended before it was
    // armed (the connection closed in the same tick).
    assert.equal(deadlines.live, 0);
    const closing = client.call("s", "r", [1], { timeoutMs: 40 });
    client.close();
    await assert.rejects(closing, { kind: "Unavailable" });
    assert.equal(deadlines.live, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("prepare(): each call goes with a serial of its own, the arguments as prepared, and settles as call() does", async () => {
  const [clientEnd, serverEnd] = memoryPair("prepared");
  // Answers a call with its arguments and declared types, unless the arguments say "hang".
  const server = silentServer(
    serverEnd,
    (message) =>
      message.type === "RPC-REQ" && message.value.arguments[0] !== "hang"
        ? {
          type: "RPC-RES",
          serial: message.serial,
          value: { "return-values": [message.value.arguments, message.value["argument-types"]] },
        }
        : undefined,
  );
  const client = await connectOver(clientEnd);
  try {
    const args: unknown[] = ["é", 12345678901234567890n];
    const echo = client.prepare("s", "r", args, { argumentTypes: ["str", "int"], timeoutMs: 5000 });
    args[0] = "changed after prepare";
    const replies = await Promise.all([echo.call(), echo.call(), echo.call()]);
    for (const reply of replies) {
      assert.deepEqual(reply, [["é", 12345678901234567890n], ["str", "int"]]);
    }
    const serials = server.received.filter((m) => m.type === "RPC-REQ").map((m) => m.serial);
    assert.equal(new Set(serials).size, 3);
    // A prepared call past its time limit is given up and cancelled on the wire, like call().
    const hang = client.prepare("s", "r", ["hang"], { timeoutMs: 30 });
    await assert.rejects(hang.call(), { kind: "Timeout", message: "No reply within 30 ms" });
    const [cancel] = await server.wait("RPC-CANCEL");
    assert.equal(cancel.serial, server.received.findLast((m) => m.type === "RPC-REQ")!.serial);
    // An aborted signal cancels it, as it does call().
    const stopped = client.prepare("s", "r", ["hang"], { signal: AbortSignal.abort() });
    await assert.rejects(stopped.call(), { kind: "Cancelled" });
    assert.equal(client.pending, 0);
    // Arguments that cannot be encoded are refused when preparing.
    const circular: unknown[] = [];
    circular.push(circular);
    assert.throws(() => client.prepare("s", "r", circular), RpcError);
    client.close();
    await assert.rejects(echo.call(), { kind: "Unavailable" });
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("service(): a proxy call resolves to nothing, the one value, or the list, and rejects with the server's exception", async () => {
  const [clientEnd, serverEnd] = memoryPair("proxy");
  // Returns as many values as the first argument says; a negative count is refused.
  const server = silentServer(serverEnd, (message) => {
    if (message.type !== "RPC-REQ") return undefined;
    const count = message.value.arguments[0] as number;
    return count < 0
      ? {
        type: "RPC-EX",
        serial: message.serial,
        value: { "exception-type": "Invalid Arguments", "exception-message": "Negative count" },
      }
      : {
        type: "RPC-RES",
        serial: message.serial,
        value: { "return-values": Array.from({ length: count }, (_, i) => `v${i}`) },
      };
  });
  const client = await connectOver(clientEnd);
  try {
    const values = client.service("s");
    assert.deepEqual(
      await Promise.all([values.count(0), values.count(1), values.count(2)]),
      [undefined, "v0", ["v0", "v1"]],
    );
    await assert.rejects(values.count(-1), {
      kind: "Invalid Arguments",
      message: "Negative count",
    });
    const [request] = await server.wait("RPC-REQ");
    assert.deepEqual(request.value, { service: "s", rpc: "count", arguments: [0] });
    client.close();
    await assert.rejects(values.count(1), { kind: "Unavailable" });
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("admin() takes timeoutMs and signal like call()", async () => {
  const [clientEnd, serverEnd] = memoryPair("silent");
  const server = silentServer(serverEnd);
  const client = await connectOver(clientEnd);
  try {
    await assert.rejects(client.admin({ op: "health" }, { timeoutMs: 30 }), {
      kind: "Timeout",
      message: "No reply to admin op health within 30 ms",
    });
    const controller = new AbortController();
    const state = client.admin({ op: "state" }, { signal: controller.signal });
    const asked = await server.wait("ADMIN", 2);
    controller.abort();
    await assert.rejects(state, { kind: "Cancelled" });
    // Both requests were cancelled on the wire: the first by its time limit, the second by its signal.
    const cancels = await server.wait("RPC-CANCEL", 2);
    assert.deepEqual(cancels.map((m) => m.serial), asked.map((m) => m.serial));
    assert.equal(client.pending, 0);
    // An already aborted signal fails at once.
    await assert.rejects(
      client.list({ signal: AbortSignal.abort() }),
      { kind: "Cancelled" },
    );
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("ServiceClient.list() takes timeoutMs and signal: a silent provider over TCP times out", async () => {
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  const cluster = parseCluster(
    [
      "network:",
      "  servers:",
      `    - s1: {ip: 127.0.0.1, port: ${listener.address.port}}`,
      "  clients:",
      "    - c1: {ip: 127.0.0.1, port: 6000}",
      "service:",
      "  - svc: {providers: [s1], rpcs: [hi]}",
      "rpc:",
      "  - hi: {args: [], returns: [str], src: hi.ts}",
      "",
    ].join("\n"),
    "silent.yaml",
  );
  const service = new ServiceClient(cluster, "svc");
  const accepted = listener.accept();
  const listing = service.list({ timeoutMs: 50 });
  const server = silentServer((await accepted)!);
  try {
    // The time limit covers connecting too: what is left of it is what the reply had.
    await assert.rejects(listing, {
      kind: "Timeout",
      message: /^No reply with the service list within \d+ ms$/,
    });
    await server.wait("RPC-CANCEL");
    // A cancelled listing is the caller's choice: it is not failed over, and fails as Cancelled.
    const controller = new AbortController();
    const second = service.list({ signal: controller.signal });
    await server.wait("LIST", 2);
    controller.abort();
    await assert.rejects(second, { kind: "Cancelled" });
  } finally {
    service.close();
    await server.close();
    listener.close();
  }
});

Deno.test("a reply that does not decode fails its request with Malformed Frame instead of leaving it waiting", async () => {
  const [clientEnd, serverEnd] = memoryPair("garbled");
  const channel = new MessageChannel(serverEnd);
  const reading = channel.readAll({
    onMessage(message) {
      if (message.type === "HELLO") {
        channel.send({
          type: "HELLO",
          serial: message.serial,
          value: { version: 1, server: "garbled", software: "test" },
        });
      } else if (message.type === "ADMIN") {
        // The codec wants an object here: the client cannot read this reply.
        channel.send({ type: "ADMIN-RES", serial: message.serial, value: "done" });
      } else if (message.type === "LIST") {
        channel.send({ type: "LIST-RES", serial: message.serial, value: { services: [] } });
      }
    },
    onMalformed() {},
  });
  const client = await connectOver(clientEnd);
  try {
    await assert.rejects(client.admin({ op: "state" }), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.kind, "Malformed Frame");
      assert.match(error.message, /ADMIN-RES value must be an object/);
      return true;
    });
    assert.equal(client.pending, 0);
    // The connection goes on: the next request is answered.
    assert.deepEqual(await client.list(), []);
  } finally {
    client.close();
    channel.close();
    await reading.catch(() => {});
  }
});
