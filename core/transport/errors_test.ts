/**
 * Transport failures are classified by their error code, alike on every
 * transport: real sockets on loopback, a real certificate (openssl). A peer
 * that closes while this end writes is `Unavailable` over TCP, TLS and a
 * unix socket, so failover treats them the same.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ErrorKind, RpcError } from "../errors.ts";
import { kindOfCode, transportError } from "./errors.ts";
import {
  type Connection,
  connectTcp,
  connectTls,
  connectUnix,
  type Listener,
  listenTcp,
  listenTls,
  listenUnix,
} from "./mod.ts";
import { selfSignedCertificate } from "../../tests/pki.ts";

/** The codes a write to a peer that has closed fails with: a broken pipe, or a reset. */
const PEER_GONE = new Set(["EPIPE", "ECONNRESET"]);

/**
 * Accepts one connection, has the server end close it, and writes from the
 * client until a write fails (the first writes may still be buffered by the
 * kernel); returns that failure.
 */
async function writeAfterPeerCloses(
  listener: Listener,
  connect: () => Promise<Connection>,
): Promise<unknown> {
  const accepted = listener.accept();
  const client = await connect();
  const served = (await accepted)!;
  // A TLS connection is returned before its handshake: a read waits for it to finish.
  const greeting = client.write(new TextEncoder().encode("hi"));
  assert.equal(await served.read(new Uint8Array(2)), 2);
  await greeting;
  served.close();
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (let i = 0; i < 10_000; i++) {
      await client.write(chunk);
      // Let the peer's reset arrive between writes.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } catch (error) {
    return error;
  } finally {
    client.close();
  }
  assert.fail("writes to a closed peer kept succeeding");
}

function assertPeerGone(error: unknown, transport: string): void {
  assert.ok(error instanceof RpcError, `${transport}: an RpcError, got ${error}`);
  assert.equal(error.kind, ErrorKind.Unavailable, `${transport}: ${error.message}`);
  assert.ok(
    error.code !== undefined && PEER_GONE.has(error.code),
    `${transport}: code ${error.code}`,
  );
}

Deno.test("kindOfCode() classes OS and node codes, and knows nothing else", () => {
  for (const code of ["ECONNRESET", "EPIPE", "ECONNREFUSED", "ENOENT", "ERR_STREAM_DESTROYED"]) {
    assert.equal(kindOfCode(code), ErrorKind.Unavailable, code);
  }
  assert.equal(kindOfCode("ETIMEDOUT"), ErrorKind.Timeout);
  assert.equal(kindOfCode("EACCES"), ErrorKind.Unauthorized);
  assert.equal(kindOfCode("EWHATEVER"), undefined);
  assert.equal(kindOfCode("toString"), undefined, "not an inherited property");
  assert.equal(kindOfCode(undefined), undefined);
});

Deno.test("transportError() decides by code, not by message text", () => {
  // The message says "reset"; the code says otherwise, and the code decides.
  const timedOut = Object.assign(new Error("connection reset by peer"), { code: "ETIMEDOUT" });
  assert.equal(transportError(timedOut).kind, ErrorKind.Timeout);
  const noCode = new Error("EPIPE broken pipe");
  assert.equal(transportError(noCode).kind, ErrorKind.Internal);
  assert.equal(transportError(noCode, { fallback: ErrorKind.Unavailable }).kind, "Unavailable");
  const kept = new RpcError(ErrorKind.Conflict, "as it was");
  assert.equal(transportError(kept), kept);
});

Deno.test("TCP: a write to a peer that closed is Unavailable with EPIPE or ECONNRESET", async () => {
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  try {
    assertPeerGone(await writeAfterPeerCloses(listener, () => connectTcp(listener.address)), "TCP");
  } finally {
    listener.close();
  }
});

Deno.test("TLS: a node:tls write to a peer that closed is Unavailable with EPIPE or ECONNRESET, as over TCP", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-tls-epipe-" });
  try {
    const { cert, key } = await selfSignedCertificate(dir);
    const listener = await listenTls({ hostname: "127.0.0.1", port: 0 }, { cert, key });
    try {
      const error = await writeAfterPeerCloses(
        listener,
        () => connectTls(listener.address, { ca: cert }),
      );
      assertPeerGone(error, "TLS");
    } finally {
      listener.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unix: a write to a peer that closed is Unavailable; a missing socket is Unavailable with ENOENT", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-unix-epipe-" });
  try {
    const path = join(dir, "rpc.sock");
    const listener = await listenUnix(path);
    try {
      assertPeerGone(await writeAfterPeerCloses(listener, () => connectUnix(path)), "unix");
    } finally {
      listener.close();
    }
    const missing = await connectUnix(join(dir, "none.sock")).then(
      () => assert.fail("connected to a socket that does not exist"),
      (error) => error,
    );
    assert.ok(missing instanceof RpcError);
    assert.equal(missing.kind, ErrorKind.Unavailable);
    assert.equal(missing.code, "ENOENT");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
