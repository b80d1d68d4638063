/**
 * Secrets never travel: a client's secret and the admin token are proven by
 * challenge-response (`AUTH`, an HMAC over the server's nonce). A loopback
 * proxy records every byte of real sessions over plain TCP — `rpc call` with
 * a secret, `rpc admin` with the token — and neither secret, nor the SHA-256
 * the proofs are keyed with, is among them; replaying the recorded bytes on
 * a new connection is refused, and so is a wrong secret.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  describeResult,
  RawConnection,
  rpc,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";

const SECRET = "c1-secret-that-must-never-travel";
const TOKEN = "admin-token-that-must-never-travel";

/** A loopback TCP proxy to `port` that records what each side sent. */
function recordingProxy(port: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: { up: Uint8Array[]; down: Uint8Array[] }[] = [];
  const conns: Deno.Conn[] = [];
  const pipe = async (from: Deno.Conn, to: Deno.Conn, record: Uint8Array[]) => {
    try {
      for await (const chunk of from.readable) {
        record.push(chunk.slice());
        await to.write(chunk);
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
      const session = { up: [] as Uint8Array[], down: [] as Uint8Array[] };
      sessions.push(session);
      void pipe(client, upstream, session.up);
      void pipe(upstream, client, session.down);
    }
  })().catch(() => {});
  const join = (chunks: Uint8Array[]) => {
    const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  };
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    /** What the client sent and what the server sent, per connection, in order. */
    recorded: () => sessions.map(({ up, down }) => ({ up: join(up), down: join(down) })),
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

/** Whether `needle` occurs in `haystack`, as UTF-8 bytes. */
function contains(haystack: Uint8Array, needle: string): boolean {
  return new TextDecoder("latin1").decode(haystack).includes(needle);
}

/** The frames in `bytes`, parsed. */
function frames(bytes: Uint8Array): { type: string; value: Record<string, unknown> }[] {
  const out = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const length = new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(0);
    out.push(JSON.parse(new TextDecoder().decode(bytes.subarray(at + 4, at + 4 + length))));
    at += 4 + length;
  }
  return out;
}

Deno.test("auth: secrets never travel, a recorded session cannot be replayed, a wrong secret is refused", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-auth-" });
  const secretFile = join(dir, "c1.secret");
  await Deno.writeTextFile(secretFile, SECRET);
  const tokenFile = join(dir, "admin.token");
  await Deno.writeTextFile(tokenFile, TOKEN);
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: 1 } },
    clients: { c1: { ip: "127.0.0.1" } },
    services: { vault: { providers: ["s1"], tenants: ["c1"], rpcs: ["hello"] } },
    rpcs: [{ name: "hello", args: ["str"], returns: ["str"], src: "hello.ts" }],
    files: { "hello.ts": `export function hello(name: string) { return "hello " + name; }\n` },
  });
  await Deno.writeTextFile(
    config.path,
    (await Deno.readTextFile(config.path)).replace(
      /(- c1:\n\s+ip: 127\.0\.0\.1)/,
      `$1\n        secret-file: ${secretFile}`,
    ),
  );
  const server = await startServer({
    name: "s1",
    config: config.path,
    extraArgs: ["--admin-token-file", tokenFile],
  });
  const forbidden = [
    SECRET,
    TOKEN,
    createHash("sha256").update(SECRET).digest("hex"),
    createHash("sha256").update(TOKEN).digest("hex"),
  ];
  try {
    await using proxy = recordingProxy(server.port);

    await t.step("rpc call with the secret, through the proxy, is served", async () => {
      const call = await rpc([
        "call",
        "--as",
        "c1",
        "--secret-file",
        secretFile,
        proxy.address,
        "vault",
        "hello",
        "proxy",
      ]);
      assert.equal(call.stdout.trim(), "hello proxy", describeResult(call));
    });

    await t.step("rpc admin with the token, through the proxy, is served", async () => {
      const clients = await rpc(["admin", proxy.address, "clients"], {
        env: { RPC_ADMIN_TOKEN: TOKEN },
      });
      assert.equal(clients.code, 0, describeResult(clients));
    });

    const recorded = await waitFor(
      () => proxy.recorded().length === 2 && proxy.recorded(),
      "both sessions recorded",
    );

    await t.step("no secret, and no key of a proof, is in any recorded byte", () => {
      for (const { up, down } of recorded) {
        for (const text of forbidden) {
          assert.ok(!contains(up, text) && !contains(down, text), `${text} travelled`);
        }
      }
      const sent = frames(recorded[0].up).map((frame) => frame.type);
      assert.deepEqual(sent.slice(0, 2), ["HELLO", "AUTH"]);
      assert.ok(sent.includes("RPC-REQ"), sent.join(", "));
      const [, auth] = frames(recorded[0].up);
      assert.match(String(auth.value.proof), /^[0-9a-f]{64}$/);
      const [hello] = frames(recorded[0].down);
      assert.equal(typeof hello.value.nonce, "string");
      assert.equal(hello.value["auth-required"], true);
    });

    await t.step("replaying the recorded bytes on a new connection is refused", async () => {
      await using replay = await RawConnection.open(server.port);
      await replay.write(recorded[0].up);
      const replies = await replay.rest(10_000);
      assert.deepEqual(replies.map((reply) => reply.type), ["HELLO", "RPC-EX"]);
      assert.equal(replies[1].value["exception-type"], "Unauthorized");
      assert.equal(replies[1].value["exception-message"], "Wrong secret for client c1");
      // The server's new nonce is what the old proof does not sign.
      assert.notEqual(replies[0].value.nonce, frames(recorded[0].down)[0].value.nonce);
      await waitFor(
        () => /WARN .*Wrong secret for client c1/.test(server.stderrText()),
        "the refusal in the log",
      );
      // The replayed call did not run: the log has only the original one.
      const calls = server.stderrText().split("\n").filter((line) =>
        /c1@\S+ vault\.hello\(str\) ok/.test(line)
      );
      assert.equal(calls.length, 1, calls.join("\n"));
    });

    await t.step("a replayed admin session is refused too", async () => {
      await using replay = await RawConnection.open(server.port);
      await replay.write(recorded[1].up);
      const replies = await replay.rest(10_000);
      assert.deepEqual(replies.map((reply) => reply.type), ["HELLO", "RPC-EX"]);
      assert.equal(replies[1].value["exception-message"], "Wrong or missing admin token");
    });

    await t.step(
      "a wrong secret, or none, is refused; one-shot requests cannot carry one",
      async () => {
        const wrong = await connect(server.address, { client: "c1", secret: "guess" }).then(
          () => undefined,
          (error) => error,
        );
        assert.ok(wrong instanceof RpcError);
        assert.equal(wrong.kind, "Unauthorized");
        assert.equal(wrong.message, "Wrong secret for client c1");
        const none = await connect(server.address, { client: "c1" }).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(none instanceof RpcError);
        assert.equal(none.message, "Client c1 must present its secret");
        await using oneShot = await RawConnection.open(server.port);
        await oneShot.send({
          type: "RPC-REQ",
          serial: 4,
          value: { service: "vault", rpc: "hello", arguments: ["x"], client: "c1", secret: SECRET },
        });
        const [reply] = await oneShot.rest();
        assert.equal(reply.serial, 4);
        assert.equal(reply.value["exception-type"], "Unauthorized");
        assert.match(
          reply.value["exception-message"],
          /must prove its secret: send HELLO, then AUTH/,
        );
        const right = await connect(server.address, { client: "c1", secret: SECRET });
        try {
          assert.deepEqual(await right.call("vault", "hello", ["again"]), ["hello again"]);
          assert.deepEqual(right.authenticated, { client: "c1", admin: false });
        } finally {
          right.close();
        }
      },
    );
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
