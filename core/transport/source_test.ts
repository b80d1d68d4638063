/**
 * Connecting from a chosen source address, over TCP and over TLS: the
 * listener must see the connection come from that address. `rpc up` relies
 * on it to make each client of a cluster connect from its own address.
 */

import assert from "node:assert/strict";
import { RpcError } from "../errors.ts";
import { connectTcp, connectTls, listenTcp, listenTls } from "./mod.ts";
import { selfSignedCertificate } from "../../tests/pki.ts";

Deno.test("connectTcp from a local address: the server sees that address", async () => {
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept();
    const conn = await connectTcp(listener.address, undefined, "127.0.2.7");
    const served = (await accepted)!;
    assert.equal(served.remote.hostname, "127.0.2.7");
    // And bytes flow both ways through the node:net adapter.
    await conn.write(new TextEncoder().encode("ping"));
    const buffer = new Uint8Array(4);
    assert.equal(await served.read(buffer), 4);
    await served.write(buffer);
    assert.equal(await conn.read(buffer), 4);
    assert.equal(new TextDecoder().decode(buffer), "ping");
    conn.close();
    served.close();
  } finally {
    listener.close();
  }
});

Deno.test("connectTls from a local address: the server sees that address", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-source-tls-" });
  try {
    const { cert, key } = await selfSignedCertificate(dir);
    const listener = await listenTls({ hostname: "127.0.0.1", port: 0 }, { cert, key });
    try {
      const accepted = listener.accept();
      const conn = await connectTls(listener.address, { ca: cert }, undefined, "127.0.2.8");
      const served = (await accepted)!;
      assert.equal(served.remote.hostname, "127.0.2.8");
      conn.close();
      served.close();
    } finally {
      listener.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a source address that cannot be bound is named in the error", async () => {
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  try {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: binding it fails, nothing is sent.
    await assert.rejects(connectTcp(listener.address, undefined, "192.0.2.1"), (error) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.kind, "Unavailable");
      assert.match(
        error.message,
        new RegExp(
          `^Cannot connect to 127\\.0\\.0\\.1:${listener.address.port} from 192\\.0\\.2\\.1: `,
        ),
      );
      return true;
    });
  } finally {
    listener.close();
  }
});
