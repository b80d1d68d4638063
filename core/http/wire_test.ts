import assert from "node:assert/strict";
import { type MemoryConnection, memoryPair } from "../transport/memory.ts";
import { HttpConnection, type HttpReply, type HttpRequest } from "./wire.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An HttpConnection over a pipe, answering with `handle`; returns the client end. */
function serve(
  handle: (request: HttpRequest) => Promise<HttpReply>,
  limits = { maxHeaderBytes: 1024, maxBodyBytes: 64 },
): { client: MemoryConnection; done: Promise<void>; http: HttpConnection } {
  const [client, server] = memoryPair({ remote: { hostname: "127.0.0.1", port: 4000 } });
  const http = new HttpConnection(server, {
    ...limits,
    handle,
    refuse: (refusal) => ({
      status: refusal.status,
      body: JSON.stringify({ kind: refusal.kind, message: refusal.message }),
    }),
  });
  return { client, done: http.serve(), http };
}

async function readAll(client: MemoryConnection): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const count = await client.read(buffer);
    if (count === null) return text;
    text += decoder.decode(buffer.subarray(0, count));
  }
}

const echo = (request: HttpRequest): Promise<HttpReply> =>
  Promise.resolve({
    status: 200,
    body: `${request.method} ${request.path} ${decoder.decode(request.body)}`,
  });

Deno.test("pipelined requests are answered in order, with their bodies, keep-alive", async () => {
  const { client, done } = serve(echo);
  await client.write(encoder.encode(
    "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n" +
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  ));
  const text = await readAll(client);
  await done;
  const bodies = text.split("HTTP/1.1 200 OK\r\n").slice(1).map((reply) =>
    reply.split("\r\n\r\n")[1]
  );
  assert.deepEqual(bodies, ["POST /a abc", "POST /b def", "GET /c "]);
  assert.match(text, /connection: close\r\n\r\nGET \/c $/);
});

Deno.test("a head over the limit is refused with 431, even when it arrives whole", async () => {
  const { client, done } = serve(echo);
  await client.write(encoder.encode(`GET / HTTP/1.1\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`));
  const text = await readAll(client);
  await done;
  assert.match(text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(text, /"kind":"Headers Too Large"/);
  assert.equal(text.match(/HTTP\/1\.1/g)?.length, 1, "the request was answered as well as refused");
});

Deno.test("a body over the limit is refused with 413, by length or as chunks arrive", async () => {
  for (
    const request of [
      "POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
      `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n${"a".repeat(64)}\r\n1\r\nb\r\n`,
    ]
  ) {
    const { client, done } = serve(echo);
    await client.write(encoder.encode(request));
    const text = await readAll(client);
    await done;
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /connection: close/);
  }
});

Deno.test("requests the parser or the framing rules refuse are answered 400", async () => {
  for (
    const request of [
      "NOT HTTP AT ALL\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
      "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ]
  ) {
    const { client, done } = serve(echo);
    await client.write(encoder.encode(request));
    const text = await readAll(client);
    await done;
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/, request);
  }
});

Deno.test("Expect: 100-continue is answered before the body is sent", async () => {
  const { client, done } = serve(echo);
  await client.write(
    encoder.encode("POST /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"),
  );
  const buffer = new Uint8Array(256);
  const count = await client.read(buffer);
  assert.equal(decoder.decode(buffer.subarray(0, count!)), "HTTP/1.1 100 Continue\r\n\r\n");
  await client.write(encoder.encode("hi"));
  await client.closeWrite();
  assert.match(await readAll(client), /POST \/x hi$/);
  await done;
});

Deno.test("a streamed response is chunked; the caller going away stops it", async () => {
  const stopped = Promise.withResolvers<boolean>();
  const { client, done } = serve(() =>
    Promise.resolve({
      status: 200,
      headers: { "content-type": "text/event-stream" },
      async stream(write) {
        for (let i = 0;; i++) {
          if (!(await write(`data: ${i}\n\n`))) break;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        stopped.resolve(true);
      },
    })
  );
  await client.write(encoder.encode("GET /s HTTP/1.1\r\n\r\n"));
  const buffer = new Uint8Array(4096);
  const count = await client.read(buffer);
  const text = decoder.decode(buffer.subarray(0, count!));
  assert.match(text, /transfer-encoding: chunked\r\n/);
  client.close();
  assert.equal(await stopped.promise, true);
  await done;
});

Deno.test("partialSince tells a request that is still arriving", async () => {
  const { client, done, http } = serve(echo);
  assert.equal(http.partialSince, undefined);
  await client.write(encoder.encode("GET / HTTP/1.1\r\nHo"));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(typeof http.partialSince, "number");
  await client.write(encoder.encode("st: x\r\n\r\n"));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(http.partialSince, undefined);
  client.close();
  await done;
});
