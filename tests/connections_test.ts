/**
 * Connections as an attacker holds them: TLS connections that never
 * handshake must count against `--max-connections` from accept and be cut
 * after `--handshake-timeout`; a server out of file descriptors (EMFILE) must
 * log it and accept again, on TCP and on TLS, once descriptors are free; and
 * at the connection limit an operator with the admin token must still get in
 * (a slot kept for admins) to see and disconnect whoever fills the server.
 * Real `rpc server` processes, real sockets, real certificates.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  describeResult,
  RawConnection,
  rpc,
  type ServerProcess,
  startServer,
  waitFor,
} from "./helpers.ts";
import { TestPki } from "./pki.ts";

const TOKEN = "connections test admin token";

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return error;
  }
  throw new Error("expected a failure");
}

/** Counts lines of the server's log matching `pattern`. */
function count(server: ServerProcess, pattern: RegExp): number {
  return server.stderrText().split("\n").filter((line) => pattern.test(line)).length;
}

/** Opens `n` TCP connections that send nothing. */
async function silent(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  return conns;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Already closed by the server.
    }
  }
}

/** Whether the server closed `conn` (a read ends). */
async function closedByServer(conn: Deno.Conn): Promise<boolean> {
  try {
    return (await conn.read(new Uint8Array(64))) === null;
  } catch {
    return true;
  }
}

/** Open descriptors of a process. */
async function descriptors(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** A running process's soft limit on open files. */
async function fileLimit(pid: number): Promise<number> {
  const output = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), "--nofile", "--raw", "--noheadings", "--output", "SOFT"],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(output.stdout).trim());
}

/** Sets a running process's soft limit on open files. */
async function limitFiles(pid: number, limit: number): Promise<void> {
  const output = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--nofile=${limit}:`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
}

Deno.test("connections: TLS connections that never handshake are counted from accept and cut", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-handshake-" });
  const pki = await TestPki.create(dir);
  const ca = await pki.read("ca.pem");
  const server = await startServer({
    name: "s1",
    extraArgs: [
      "--tls-cert",
      pki.path("server.pem"),
      "--tls-key",
      pki.path("server.key"),
      "--max-connections",
      "5",
      "--admin-reserve",
      "0",
      "--handshake-timeout",
      "2s",
      // Every handshake timeout on its own line: repeated ones are summarised by default.
      "--refusal-summary",
      "0",
    ],
  });
  try {
    const held = await silent(server.port, 5);
    try {
      await t.step("five silent TCP connections fill --max-connections 5", async () => {
        await waitFor(() => count(server, /connection attempt from/) === 5, "five accepts");
        const refused = await rejection(
          connect(server.address, { tls: { ca }, connectTimeoutMs: 10_000 }),
        );
        assert.equal(refused.kind, "Unavailable");
        assert.match(
          refused.message,
          /Connection refused: the server has 5 connections \(limit 5\)/,
        );
      });

      await t.step("each is closed once its handshake is 2 s late, and logged", async () => {
        const closed = await Promise.all(held.map((conn) => closedByServer(conn)));
        assert.deepEqual(closed, [true, true, true, true, true]);
        // The log is written a moment after the connections close.
        await waitFor(
          () =>
            count(
              server,
              /WARN .*closing, its TLS handshake did not finish within 2000 ms of connecting/,
            ) === 5,
          "five handshake timeouts in the log",
        );
      });
    } finally {
      closeAll(held);
    }

    await t.step("then TLS clients are served again", async () => {
      const client = await connect(server.address, { client: "c1", tls: { ca } });
      try {
        assert.deepEqual(await client.call("service1", "rpc1", [2, "ok"]), ["okok"]);
      } finally {
        client.close();
      }
    });
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("connections: out of file descriptors, TCP and TLS listeners log it and accept again", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-emfile-" });
  const pki = await TestPki.create(dir);
  const ca = await pki.read("ca.pem");
  const tlsArgs = ["--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")];
  for (const [kind, extraArgs] of [["TCP", []], ["TLS", tlsArgs]] as const) {
    await t.step(`${kind}: exhaust, release, serve`, async () => {
      const server = await startServer({
        name: "s1",
        extraArgs: [...extraArgs, "--handshake-timeout", "1m"],
      });
      const options = kind === "TLS" ? { client: "c1", tls: { ca } } : { client: "c1" };
      try {
        // Warm up (sandboxes started, modules loaded), then leave room for 20 more descriptors.
        const warm = await connect(server.address, options);
        assert.deepEqual(await warm.call("service1", "rpc1", [1, "w"]), ["w"]);
        warm.close();
        const pid = server.process.pid;
        const limit = await fileLimit(pid);
        await limitFiles(pid, (await descriptors(pid)) + 20);
        const held = await silent(server.port, 60);
        try {
          await waitFor(
            () =>
              /ERROR .*Cannot accept connections: Too many open files/.test(server.stderrText()),
            "the accept failure in the log",
            10_000,
          );
        } finally {
          closeAll(held);
        }
        await waitFor(
          () =>
            /WARN .*accepting connections again after \d+ failed accepts/.test(server.stderrText()),
          "the recovery in the log",
          10_000,
        );
        await limitFiles(pid, limit);
        const client = await connect(server.address, options);
        try {
          assert.deepEqual(await client.call("service1", "rpc1", [2, "up"]), ["upup"]);
        } finally {
          client.close();
        }
        // The failures were logged a few times (1, 2, 4, 8, ...), not once per failed accept.
        assert.ok(count(server, /Cannot accept connections/) < 20, server.stderrText());
      } finally {
        await server.stop();
      }
    });
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
});

Deno.test("connections: at the limit, a slot kept for admins lets the operator disconnect the attacker", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-reserve-" });
  const tokenFile = join(dir, "admin-token");
  await Deno.writeTextFile(tokenFile, TOKEN);
  const server = await startServer({
    name: "s1",
    extraArgs: [
      "--admin-token-file",
      tokenFile,
      "--max-connections",
      "3",
      "--admin-reserve",
      "1",
      "--handshake-timeout",
      "1m",
    ],
  });
  const admin = (...args: string[]) =>
    rpc(["admin", server.address, ...args], { env: { RPC_ADMIN_TOKEN: TOKEN } });
  const attackers: RawConnection[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const raw = await RawConnection.open(server.port);
      attackers.push(raw);
      await raw.send({ type: "HELLO", serial: 0, value: { versions: [1] } });
      assert.equal((await raw.next())?.type, "HELLO");
    }

    await t.step("a client, and health without the admin token, are refused", async () => {
      const refused = await rejection(connect(server.address, { client: "c1" }));
      assert.equal(refused.kind, "Unavailable");
      assert.match(refused.message, /the server has 3 connections \(limit 3\)/);
      const ping = await rpc(["ping", server.address]);
      assert.equal(ping.code, 3, describeResult(ping));
      const wrong = await rpc(["admin", server.address, "clients"], {
        env: { RPC_ADMIN_TOKEN: "not the token" },
      });
      assert.equal(wrong.code, 18, describeResult(wrong));
      assert.match(wrong.stderr, /Wrong or missing admin token/);
    });

    await t.step("the operator lists the connections and disconnects one", async () => {
      const listed = await admin("clients", "--json");
      assert.equal(listed.code, 0, describeResult(listed));
      const { clients } = JSON.parse(listed.stdout) as { clients: { id: number }[] };
      assert.equal(clients.length, 4, listed.stdout); // three attackers and the operator
      const gone = await admin("disconnect", String(clients[0].id));
      assert.equal(gone.code, 0, describeResult(gone));
      assert.equal(await attackers[0].next(), null, "the first attacker is disconnected");
      const stats = await admin("stats", "--json");
      assert.equal(stats.code, 0, describeResult(stats));
    });

    await t.step("a silent connection in the slot gives way to the operator", async () => {
      // Two attackers hold their slots; fill the third, then sit in the admin slot.
      const third = await RawConnection.open(server.port);
      attackers.push(third);
      await third.send({ type: "HELLO", serial: 0, value: { versions: [1] } });
      assert.equal((await third.next())?.type, "HELLO");
      const squatter = await RawConnection.open(server.port);
      attackers.push(squatter);
      await waitFor(
        () => /takes a slot kept for admins/.test(server.stderrText()),
        "the squatter in the admin slot",
      );
      const listed = await admin("clients");
      assert.equal(listed.code, 0, describeResult(listed));
      const [reply] = await squatter.rest();
      assert.equal(reply?.type, "RPC-EX", JSON.stringify(reply));
      assert.match(reply.value["exception-message"], /went to newer connections/);
    });
  } finally {
    for (const raw of attackers) raw.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
