/**
 * Mutual TLS attacked: client certificates that try to name another client
 * (a CN hidden in another attribute, two CNs, spaces around the CN), that
 * are not client certificates at all (the CA's, the server's own, no
 * clientAuth usage), that the CA did not issue or that are out of date or
 * tampered with, and a certificate presented without its key. Each runs
 * against a real `rpc server` with certificates made by openssl; a chain
 * through an intermediate CA, and a name given by subjectAltName, must work.
 */

import assert from "node:assert/strict";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import { startServer, waitFor, writeInitYaml } from "./helpers.ts";
import { type Issued, TestPki } from "./pki.ts";

/** Connects with a client certificate and calls vault.hello, which only c6 may call. */
async function callAs(
  address: string,
  ca: string,
  issued: Issued,
): Promise<{ connected: boolean; result?: unknown[]; error?: RpcError }> {
  let client;
  try {
    client = await connect(address, {
      connectTimeoutMs: 10_000,
      tls: {
        ca,
        cert: await Deno.readTextFile(issued.cert),
        key: await Deno.readTextFile(issued.key),
      },
    });
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return { connected: false, error };
  }
  try {
    return { connected: true, result: await client.call("vault", "hello", ["x"]) };
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return { connected: true, error };
  } finally {
    client.close();
  }
}

Deno.test("mutual TLS: only a proper client certificate from the client CA names a client, exactly", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-mtls-" });
  const pki = await TestPki.create(dir);
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: 1 } },
    clients: { c1: {}, c6: {} },
    services: { vault: { providers: ["s1"], tenants: ["c6"], rpcs: ["hello"] } },
    rpcs: [{ name: "hello", args: ["str"], returns: ["str"], src: "hello.ts" }],
    files: { "hello.ts": `export function hello(name: string) { return "hello " + name; }\n` },
  });
  const server = await startServer({
    name: "s1",
    config: config.path,
    extraArgs: [
      "--tls-cert",
      pki.path("server.pem"),
      "--tls-key",
      pki.path("server.key"),
      "--tls-client-ca",
      pki.path("ca.pem"),
    ],
  });
  const ca = await pki.read("ca.pem");
  /** What the server logged since `from`. */
  const logSince = (from: number) => server.stderrText().slice(from);

  /** The certificate is refused during the handshake, with `reason` in the log. */
  const refused = async (issued: Issued, reason: RegExp) => {
    const from = server.stderrText().length;
    const outcome = await callAs(server.address, ca, issued);
    assert.equal(outcome.connected, false, `connected: ${JSON.stringify(outcome.result)}`);
    await waitFor(
      () =>
        new RegExp(
          String.raw`WARN .*TLS connection from 127\.0\.0\.1:\d+ refused: .*${reason.source}`,
        )
          .test(logSince(from)),
      `the refusal (${reason.source}) in the log`,
      10_000,
    );
    assert.doesNotMatch(logSince(from), /connected\n/);
  };

  /** The certificate is accepted and names `name` exactly; vault (only c6's) is refused to it. */
  const named = async (issued: Issued, name: string) => {
    const from = server.stderrText().length;
    const outcome = await callAs(server.address, ca, issued);
    assert.equal(outcome.connected, true, outcome.error?.message);
    assert.equal(outcome.error?.kind, "Client Not Registered", JSON.stringify(outcome.result));
    const connected = await waitFor(
      () => /INFO {2}(.*)@127\.0\.0\.1:\d+ connected/.exec(logSince(from)),
      "the connection in the log",
    );
    assert.equal(connected[1], name);
  };

  try {
    await t.step("the client CA's own client certificate for c6 is c6", async () => {
      const outcome = await callAs(
        server.address,
        ca,
        await pki.issue("c6", { subject: "/CN=c6" }),
      );
      assert.deepEqual(outcome.result, ["hello x"]);
    });

    await t.step(
      "a CN hidden in another attribute after a comma names mallory, not c6",
      async () => {
        await named(await pki.issue("comma", { subject: "/O=x, CN=c6/CN=mallory" }), "mallory");
      },
    );

    await t.step(
      "a CN hidden in another attribute after a newline names mallory, not c6",
      async () => {
        await named(await pki.issue("newline", { subject: "/O=x\nCN=c6/CN=mallory" }), "mallory");
      },
    );

    await t.step("spaces around the CN are part of the name", async () => {
      await named(await pki.issue("spaces", { subject: "/CN= c6 " }), " c6 ");
    });

    await t.step("a subject with two CN attributes is refused", async () => {
      await refused(
        await pki.issue("two", { subject: "/CN=c6/CN=mallory" }),
        /2 CN attributes/,
      );
    });

    await t.step("the CA's certificate is not a client certificate", async () => {
      await refused({ cert: pki.path("ca.pem"), key: pki.path("ca.key") }, /CA certificate/);
    });

    await t.step("the server's own certificate is not a client certificate", async () => {
      await refused(
        { cert: pki.path("server.pem"), key: pki.path("server.key") },
        /this server's own certificate/,
      );
    });

    await t.step("a certificate without the clientAuth usage is refused", async () => {
      await refused(
        await pki.issue("noeku", { subject: "/CN=c6", profile: "noEku" }),
        /no extended key usage/,
      );
      await refused(
        await pki.issue("servereku", { subject: "/CN=c6", profile: "serverEku" }),
        /clientAuth|TLS verification/,
      );
    });

    await t.step("expired and not yet valid certificates are refused", async () => {
      await refused(
        await pki.issue("expired", {
          subject: "/CN=c6",
          start: "20200101000000Z",
          end: "20200201000000Z",
        }),
        /TLS verification: .*expired at 2020-02-01T00:00:00\.000Z/,
      );
      await refused(
        await pki.issue("future", {
          subject: "/CN=c6",
          start: "20400101000000Z",
          end: "20410101000000Z",
        }),
        /TLS verification: .*not valid before 2040-01-01T00:00:00\.000Z/,
      );
    });

    await t.step("a certificate from another CA is refused", async () => {
      await pki.root("other", "/CN=rpc test CA");
      await refused(
        await pki.issue("stranger", { subject: "/CN=c6", issuer: "other" }),
        /TLS verification: .*not issued by the client CA/,
      );
    });

    await t.step("a certificate whose signature was tampered with is refused", async () => {
      await refused(
        await pki.tamper("c6", "tampered"),
        /TLS verification: .*signature does not verify/,
      );
    });

    await t.step("a chain through an intermediate CA is accepted", async () => {
      await pki.intermediate("inter", "/CN=rpc test intermediate");
      const outcome = await callAs(
        server.address,
        ca,
        await pki.issue("chained", { subject: "/CN=c6", issuer: "inter" }),
      );
      assert.deepEqual(outcome.result, ["hello x"], outcome.error?.message);
    });

    await t.step(
      "a subject without CN names the client by its subjectAltName DNS name",
      async () => {
        await named(await pki.issue("san", { subject: "/O=rpc tests", profile: "san" }), "c1");
      },
    );

    await t.step("c6's certificate without c6's key is refused", async () => {
      // Tools refuse to pair a certificate with another key, so the attacker (a legitimate
      // client, mallory) completes a TLS 1.2 handshake with its own certificate and key, and a
      // proxy swaps c6's certificate into the Certificate message: the key that signs the
      // handshake is not c6's.
      const mallory = await pki.issue("mallory", { subject: "/CN=mallory" });
      const c6 = await pki.read("c6.pem");
      await using proxy = certificateSwapProxy(server.port, pemToDer(c6));
      const from = server.stderrText().length;
      const attack = await new Deno.Command("openssl", {
        args: [
          "s_client",
          "-connect",
          `127.0.0.1:${proxy.port}`,
          "-tls1_2",
          "-cert",
          mallory.cert,
          "-key",
          mallory.key,
          "-CAfile",
          pki.path("ca.pem"),
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(proxy.swapped(), "the proxy swapped in c6's certificate");
      assert.ok(!attack.success || /alert/i.test(new TextDecoder().decode(attack.stderr)));
      await waitFor(
        () =>
          /TLS connection from 127\.0\.0\.1:\d+ refused: TLS handshake failed/.test(logSince(from)),
        "the refusal in the log",
        10_000,
      );
      assert.doesNotMatch(logSince(from), /c6@.* connected/);
    });

    await t.step("the server serves a proper client after all that", async () => {
      const outcome = await callAs(server.address, ca, {
        cert: pki.path("c6.pem"),
        key: pki.path("c6.key"),
      });
      assert.deepEqual(outcome.result, ["hello x"]);
    });
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

function pemToDer(pem: string): Uint8Array {
  const body = pem.split("-----END CERTIFICATE-----")[0]
    .replace(/-----BEGIN CERTIFICATE-----/, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (char) => char.charCodeAt(0));
}

/**
 * A loopback TCP proxy to `port` that replaces the certificate list of the
 * client's TLS 1.2 Certificate handshake message with `der`.
 */
function certificateSwapProxy(port: number, der: Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  let swapped = false;
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      for await (const chunk of from.readable) await to.write(chunk);
    } catch {
      // Either side closed.
    }
    await to.closeWrite().catch(() => {}); // the other side may be gone already
  };
  const rewrite = async (from: Deno.Conn, to: Deno.Conn) => {
    let buffer: Uint8Array = new Uint8Array(0);
    const reader = from.readable.getReader();
    try {
      // Handshake records until the client's ChangeCipherSpec; then bytes as they come.
      for (;;) {
        while (buffer.length >= 5 && buffer.length >= 5 + ((buffer[3] << 8) | buffer[4])) {
          const length = (buffer[3] << 8) | buffer[4];
          let record: Uint8Array = buffer.subarray(0, 5 + length);
          buffer = buffer.slice(5 + length);
          if (record[0] === 22) record = swapCertificate(record, der, () => (swapped = true));
          await to.write(record);
          if (record[0] === 20) {
            await to.write(buffer);
            reader.releaseLock();
            return await pipe(from, to);
          }
        }
        const { value, done } = await reader.read();
        if (done) break;
        const joined = new Uint8Array(buffer.length + value.length);
        joined.set(buffer);
        joined.set(value, buffer.length);
        buffer = joined;
      }
    } catch {
      // Either side closed.
    }
    await to.closeWrite().catch(() => {}); // the other side may be gone already
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(client, upstream);
      void rewrite(client, upstream);
      void pipe(upstream, client);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    swapped: () => swapped,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await accepting;
    },
  };
}

/** A handshake record with any Certificate message's list replaced by the one certificate `der`. */
function swapCertificate(record: Uint8Array, der: Uint8Array, onSwap: () => void): Uint8Array {
  const parts: Uint8Array[] = [];
  let offset = 5;
  while (offset + 4 <= record.length) {
    const type = record[offset];
    const length = (record[offset + 1] << 16) | (record[offset + 2] << 8) | record[offset + 3];
    const message = record.subarray(offset, offset + 4 + length);
    offset += 4 + length;
    if (type !== 11) {
      parts.push(message);
      continue;
    }
    onSwap();
    const body = new Uint8Array(3 + 3 + der.length);
    const u24 = (at: number, value: number) =>
      body.set([value >> 16, (value >> 8) & 255, value & 255], at);
    u24(0, 3 + der.length);
    u24(3, der.length);
    body.set(der, 6);
    const header = new Uint8Array([
      11,
      body.length >> 16,
      (body.length >> 8) & 255,
      body.length & 255,
    ]);
    parts.push(header, body);
  }
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(5 + total);
  out.set(record.subarray(0, 3));
  out[3] = total >> 8;
  out[4] = total & 255;
  let at = 5;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
