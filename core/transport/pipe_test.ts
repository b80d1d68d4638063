import assert from "node:assert/strict";
import { memoryPipe } from "./pipe.ts";

const remote = { hostname: "10.0.0.7", port: 4242 };

async function readText(end: { read(buffer: Uint8Array): Promise<number | null> }) {
  const buffer = new Uint8Array(3);
  let text = "";
  for (;;) {
    const count = await end.read(buffer);
    if (count === null) return text;
    text += new TextDecoder().decode(buffer.subarray(0, count));
  }
}

Deno.test("a pipe carries bytes both ways; the server end reports the caller", async () => {
  const via = { peerName: undefined as string | undefined };
  const { server, client } = memoryPipe({ remote, via });
  assert.equal(server.peerName, undefined);
  via.peerName = "c1"; // the TLS handshake finished after the pipe was made
  assert.deepEqual(server.remote, remote);
  assert.equal(server.peerName, "c1");
  const buffer = new Uint8Array([104, 105]);
  await client.write(buffer);
  buffer[0] = 0; // the writer may reuse its buffer at once
  await client.closeWrite();
  assert.equal(await readText(server), "hi");
  await server.write(new TextEncoder().encode("hello"));
  server.close();
  assert.equal(await readText(client), "hello");
});

Deno.test("writing to a closed pipe fails; a writer waits while the reader lags", async () => {
  const { server, client } = memoryPipe({ remote, highWaterBytes: 4 });
  await client.write(new Uint8Array(4));
  let written = false;
  const second = client.write(new Uint8Array(1)).then(() => (written = true));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(written, false);
  await server.read(new Uint8Array(8));
  await second;
  server.close();
  await assert.rejects(client.write(new Uint8Array(1)), /closed/);
  await client.closed;
});
