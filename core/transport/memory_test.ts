import assert from "node:assert/strict";
import { connectOver } from "../client/connect.ts";
import { RpcError } from "../errors.ts";
import { Registry } from "../server/registry.ts";
import { RpcServer } from "../server/server.ts";
import { MEMORY_HIGH_WATER, MemoryListener, memoryPair } from "./memory.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

async function readText(conn: { read(b: Uint8Array): Promise<number | null> }): Promise<string> {
  const buffer = new Uint8Array(64);
  const count = await conn.read(buffer);
  return count === null ? "<end>" : new TextDecoder().decode(buffer.subarray(0, count));
}

Deno.test("memoryPair: each end reads what the other wrote, copied at write", async () => {
  const [a, b] = memoryPair("t");
  const data = bytes("hello");
  await a.write(data);
  data.fill(0); // the writer reuses its buffer: what was sent must not change
  assert.equal(await readText(b), "hello");
  await b.write(bytes("back"));
  assert.equal(await readText(a), "back");
  assert.deepEqual(a.remote, { hostname: "memory", port: 0, path: "t" });
});

Deno.test("memoryPair: closeWrite ends the peer's reads after what was sent; close fails writes", async () => {
  const [a, b] = memoryPair();
  await a.write(bytes("last"));
  await a.closeWrite();
  assert.equal(await readText(b), "last");
  assert.equal(await readText(b), "<end>");
  await b.write(bytes("still open")); // a half close leaves the other direction open
  assert.equal(await readText(a), "still open");
  b.close();
  assert.equal(await readText(a), "<end>");
  await assert.rejects(b.write(bytes("x")), (error) => error instanceof RpcError);
});

Deno.test("memoryPair: a writer waits while its reader has the high-water mark unread", async () => {
  const [a, b] = memoryPair();
  await a.write(new Uint8Array(MEMORY_HIGH_WATER));
  let written = false;
  const next = a.write(bytes("more")).then(() => (written = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(written, false);
  const buffer = new Uint8Array(MEMORY_HIGH_WATER);
  let read = 0;
  while (read < MEMORY_HIGH_WATER) read += (await b.read(buffer.subarray(read)))!;
  await next;
  assert.equal(await readText(b), "more");
});

Deno.test("memoryPair: the server end reports the caller and the TLS identity as they are when asked", async () => {
  const via = { peerName: undefined as string | undefined, handshaking: true };
  const caller = { hostname: "10.0.0.7", port: 4242 };
  const [client, server] = memoryPair({ remote: caller, via });
  assert.deepEqual(server.remote, caller);
  assert.equal(server.peerName, undefined);
  assert.equal(server.handshaking, true);
  via.peerName = "c1"; // the TLS handshake finished after the pair was made
  via.handshaking = false;
  assert.equal(server.peerName, "c1");
  assert.equal(server.handshaking, false);
  assert.equal(client.peerName, undefined);
  server.close();
  await client.closed; // either end's close settles both
});

Deno.test("memoryPair: highWaterBytes sets where a writer waits", async () => {
  const [client, server] = memoryPair({ highWaterBytes: 4 });
  await client.write(new Uint8Array(4));
  let written = false;
  const second = client.write(new Uint8Array(1)).then(() => (written = true));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(written, false);
  await server.read(new Uint8Array(8));
  await second;
  assert.equal(written, true);
});

Deno.test("MemoryListener: accepts what connect() opens; once closed, accept ends and connect fails", async () => {
  const listener = new MemoryListener("l");
  const accepting = listener.accept();
  const client = listener.connect();
  const server = (await accepting)!;
  await client.write(bytes("hi"));
  assert.equal(await readText(server), "hi");
  listener.close();
  assert.equal(await listener.accept(), null);
  assert.throws(() => listener.connect(), /Cannot connect to memory:l: the listener is closed/);
});

Deno.test("RpcServer.serveConnection serves one end of a pair; refused once the server stops accepting", async () => {
  const server = new RpcServer({ registry: Registry.empty() });
  const [clientEnd, serverEnd] = memoryPair("embedded");
  assert.equal(server.serveConnection(serverEnd), true);
  const client = await connectOver(clientEnd);
  assert.deepEqual(await client.list(), []);
  assert.equal(server.sessions[0].remote, "memory:embedded");
  client.close();
  server.stopAccepting();
  const [late, lateServer] = memoryPair();
  assert.equal(server.serveConnection(lateServer), false);
  assert.equal(await late.read(new Uint8Array(8)), null);
  await server.close();
});
