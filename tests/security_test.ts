/**
 * Security end to end: client secrets, spoofed and non-tenant clients,
 * sandboxed procedures, overdue procedures, the audit log, TLS and mutual
 * TLS. Every refusal must be logged and leave the server serving.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  describeResult,
  rpc,
  type ServerProcess,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";
import { TestPki } from "./pki.ts";

const ADMIN = "admin-secret-for-tests";

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return error;
  }
  throw new Error("expected a failure");
}

async function withClient<T>(
  server: ServerProcess,
  options: Parameters<typeof connect>[1],
  use: (client: RpcClient) => Promise<T>,
): Promise<T> {
  const client = await connect(server.address, { connectTimeoutMs: 5_000, ...options });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

const PROCEDURES = {
  "hello.ts": `export function hello(name: string) { return "hello " + name; }\n`,
  "peek.ts": `export async function peek(path: string) { return await Deno.readTextFile(path); }\n`,
  "spin.ts": `export function spin() { for (;;) {} }\n`,
};

Deno.test("security: secrets, spoofing, tenants, sandbox, overdue calls and the audit log", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-security-" });
  const secretFile = join(dir, "c1.secret");
  const secret = "c1-very-secret-value";
  await Deno.writeTextFile(secretFile, `${secret}\n`);
  const allowed = join(dir, "allowed.txt");
  await Deno.writeTextFile(allowed, "you may read this");
  const tokenFile = join(dir, "admin.token");
  await Deno.writeTextFile(tokenFile, ADMIN);
  const audit = join(dir, "audit.jsonl");
  const stateDir = join(dir, "state");
  const server = await startServer({
    name: "s1",
    config: null,
    stateDir,
    extraArgs: ["--admin-token-file", tokenFile, "--audit-log", audit],
  });
  try {
    await using config = await writeInitYaml({
      servers: { s1: { ip: "127.0.0.1", port: server.port } },
      clients: { c1: { ip: "127.0.0.1" }, c2: { ip: "127.0.0.1" }, c3: { ip: "127.0.0.3" } },
      services: {
        vault: { providers: ["s1"], tenants: ["c1", "c3"], rpcs: ["hello", "peek", "spin"] },
      },
      rpcs: [
        { name: "hello", args: ["str"], returns: ["str"], src: "hello.ts" },
        { name: "peek", args: ["str"], returns: ["str"], src: "peek.ts" },
        { name: "spin", args: [], returns: [], src: "spin.ts", timeout: 0.5 },
      ],
      files: PROCEDURES,
    });
    // The helper writes init.yaml; give c1 its secret file and peek a read permission.
    const text = (await Deno.readTextFile(config.path))
      .replace(/(- c1:\n\s+ip: 127\.0\.0\.1)/, `$1\n        secret-file: ${secretFile}`)
      .replace(/(src: \S+peek\.ts)/, `$1\n      permissions:\n        read: [${allowed}]`);
    await Deno.writeTextFile(config.path, text);
    const deployed = await rpc(["init", config.path], { env: { RPC_ADMIN_TOKEN: ADMIN } });
    assert.equal(deployed.code, 0, describeResult(deployed));

    await t.step("the secret reaches the server only as a hash", async () => {
      for await (const entry of Deno.readDir(stateDir)) {
        if (!entry.isFile) continue;
        const content = await Deno.readTextFile(join(stateDir, entry.name));
        assert.ok(!content.includes(secret), `${entry.name} holds the plaintext secret`);
      }
      const state = await rpc(["hash", "--server", server.address, "--json"]);
      const clients = JSON.parse(state.stdout).clients as Record<string, unknown>[];
      assert.deepEqual(clients.find((client) => client.name === "c1"), {
        name: "c1",
        ip: "127.0.0.1",
        secret: true,
      });
      assert.ok(!state.stdout.includes("secretHash"));
    });

    await t.step(
      "a client with its secret is served; a wrong or missing secret is refused and logged",
      async () => {
        assert.deepEqual(
          await withClient(
            server,
            { client: "c1", secret },
            (client) => client.call("vault", "hello", ["c1"]),
          ),
          ["hello c1"],
        );
        const wrong = await rejection(connect(server.address, { client: "c1", secret: "guess" }));
        assert.equal(wrong.kind, "Unauthorized");
        assert.match(wrong.message, /Wrong secret for client c1/);
        const missing = await rejection(connect(server.address, { client: "c1" }));
        assert.equal(missing.kind, "Unauthorized");
        assert.match(missing.message, /must present its secret/);
        await waitFor(
          () => /WARN .*Wrong secret for client c1/.test(server.stderrText()),
          "the refusal in the log",
        );
      },
    );

    await t.step("rpc call presents the secret from --secret-file or from init.yaml", async () => {
      const viaFile = await rpc([
        "call",
        "--as",
        "c1",
        "--secret-file",
        secretFile,
        server.address,
        "vault",
        "hello",
        "cli",
      ]);
      assert.equal(viaFile.stdout.trim(), "hello cli", describeResult(viaFile));
      // With --config, c1's secret-file in init.yaml is read when it is there.
      const viaConfig = await rpc([
        "call",
        "--config",
        config.path,
        "--as",
        "c1",
        "s1",
        "vault",
        "hello",
        "yaml",
      ]);
      assert.equal(viaConfig.stdout.trim(), "hello yaml", describeResult(viaConfig));
      const wrong = await rpc(["call", "--as", "c1", server.address, "vault", "hello", "x"], {
        env: { RPC_CLIENT_SECRET: "guess" },
      });
      assert.equal(wrong.code, 18, describeResult(wrong));
      assert.match(wrong.stderr, /^error: Unauthorized: Wrong secret for client c1$/m);
    });

    await t.step("a spoofed name and a non-tenant are refused and logged", async () => {
      const spoofed = await rejection(connect(server.address, { client: "c3" }));
      assert.equal(spoofed.kind, "Client Not Registered");
      assert.match(spoofed.message, /may not connect from 127\.0\.0\.1/);
      const stranger = await rejection(
        withClient(server, { client: "c2" }, (client) => client.call("vault", "hello", ["c2"])),
      );
      assert.equal(stranger.kind, "Client Not Registered");
      await waitFor(
        () =>
          /WARN .*c2@\S+ vault\.hello(\(str\))? Client Not Registered/.test(server.stderrText()),
        "the non-tenant in the log",
      );
    });

    await t.step("a procedure cannot read files it was not granted", async () => {
      await withClient(server, { client: "c1", secret }, async (client) => {
        const forbidden = await rejection(client.call("vault", "peek", ["/etc/hostname"]));
        assert.equal(forbidden.kind, "Execution Exception");
        assert.match(forbidden.message, /NotCapable: Requires read access to "\/etc\/hostname"/);
        assert.deepEqual(await client.call("vault", "peek", [allowed]), ["you may read this"]);
      });
    });

    await t.step(
      "an overdue procedure is stopped with Timeout and the server goes on",
      async () => {
        await withClient(server, { client: "c1", secret }, async (client) => {
          const overdue = await rejection(client.call("vault", "spin", []));
          assert.equal(overdue.kind, "Timeout");
          assert.match(overdue.message, /spin did not finish within 500 ms/);
          // The sandbox that spun is replaced; calls go on.
          for (let i = 0; i < 5; i++) {
            assert.deepEqual(await client.call("vault", "hello", [`${i}`]), [`hello ${i}`]);
          }
        });
        await waitFor(() => /spin.* Timeout/.test(server.stderrText()), "the timeout in the log");
      },
    );

    await t.step("the audit log has one JSON line per call, refusal and install", async () => {
      const records = await waitFor(async () => {
        const lines = (await Deno.readTextFile(audit)).trim().split("\n").map((line) =>
          JSON.parse(line)
        );
        return lines.some((record) => record.event === "call" && record.outcome === "Timeout")
          ? lines
          : undefined;
      }, "the audit records");
      const install = records.find((record) => record.event === "install");
      assert.ok(install, "an install record");
      assert.equal(install.generation, 1);
      assert.ok(
        install.added.some((added: { procedure: string; sha256: string }) =>
          added.procedure === "vault.hello(str)" && /^[0-9a-f]{64}$/.test(added.sha256)
        ),
      );
      const ok = records.find((record) => record.event === "call" && record.outcome === "ok");
      assert.equal(ok.client, "c1");
      assert.equal(ok.service, "vault");
      assert.equal(ok.rpc, "hello");
      assert.equal(ok.signature, "str");
      assert.equal(typeof ok.ms, "number");
      assert.match(ok.remote, /^127\.0\.0\.1:\d+$/);
      assert.match(ok.time, /^\d{4}-\d\d-\d\dT/);
      assert.ok(
        records.some((record) => record.event === "unauthorized" && record.reason === "secret"),
      );
      assert.ok(
        records.some((record) =>
          record.event === "call" && record.outcome === "Client Not Registered"
        ),
      );
    });
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// TLS

async function fingerprint(dir: string, file: string): Promise<string> {
  const output = await new Deno.Command("openssl", {
    args: ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"],
    cwd: dir,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(output.stdout).trim().split("=")[1];
}

Deno.test("TLS: clients verify the server by CA or pinned fingerprint; mutual TLS names the client", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-tls-" });
  const pki = await TestPki.create(dir);
  for (const name of ["c1", "c2"]) await pki.issue(name, { subject: `/CN=${name}` });
  await pki.root("rogue", "/CN=c1");
  const read = (name: string) => Deno.readTextFile(join(dir, name));
  const ca = await read("ca.pem");
  const tlsArgs = ["--tls-cert", join(dir, "server.pem"), "--tls-key", join(dir, "server.key")];
  const tls = await startServer({ name: "s1", extraArgs: tlsArgs });
  const mtls = await startServer({
    name: "s1",
    extraArgs: [...tlsArgs, "--tls-client-ca", join(dir, "ca.pem")],
  });
  try {
    await t.step("a client that trusts the CA calls over TLS", async () => {
      assert.match(tls.stderrText(), /listening on 127\.0\.0\.1:\d+ \(TLS\)/);
      const values = await withClient(
        tls,
        { client: "c1", tls: { ca } },
        (client) => client.call("service1", "rpc1", [2, "ab"]),
      );
      assert.deepEqual(values, ["abab"]);
    });

    await t.step("a client that does not trust the server's certificate refuses it", async () => {
      const error = await rejection(connect(tls.address, { client: "c1", tls: {} }));
      assert.equal(error.kind, "Unavailable");
      assert.match(error.message, /certificate|issuer|verify/i);
    });

    await t.step("a pinned fingerprint replaces the CA; a wrong pin is refused", async () => {
      const pin = await fingerprint(dir, "server.pem");
      const values = await withClient(
        tls,
        { client: "c1", tls: { pin } },
        (client) => client.call("service1", "rpc1", [1, "x"]),
      );
      assert.deepEqual(values, ["x"]);
      const wrong = await rejection(
        connect(tls.address, { client: "c1", tls: { pin: await fingerprint(dir, "ca.pem") } }),
      );
      assert.equal(wrong.kind, "Unauthorized");
      assert.match(wrong.message, /not the pinned/);
    });

    await t.step(
      "rpc call speaks TLS with --tls-ca or --tls-pin, and mutual TLS with --tls-cert",
      async () => {
        const call = (server: ServerProcess, ...flags: string[]) =>
          rpc(["call", "--as", "c1", ...flags, server.address, "service1", "rpc1", "2", "t"]);
        const byCa = await call(tls, "--tls-ca", join(dir, "ca.pem"));
        assert.equal(byCa.stdout.trim(), "tt", describeResult(byCa));
        const byPin = await call(tls, "--tls-pin", await fingerprint(dir, "server.pem"));
        assert.equal(byPin.stdout.trim(), "tt", describeResult(byPin));
        const untrusted = await call(tls);
        assert.equal(untrusted.code, 3, describeResult(untrusted));
        assert.match(untrusted.stderr, /serves TLS: connect with TLS\n/);
        // Core names no flags; the command line's hint does.
        assert.match(
          untrusted.stderr,
          /\nhint: the server serves TLS: pass --tls-ca FILE or --tls-pin/,
        );
        const mutual = await rpc([
          "call",
          "--tls-ca",
          join(dir, "ca.pem"),
          "--tls-cert",
          join(dir, "c1.pem"),
          "--tls-key",
          join(dir, "c1.key"),
          mtls.address,
          "service1",
          "rpc1",
          "1",
          "m",
        ]);
        assert.equal(mutual.stdout.trim(), "m", describeResult(mutual));
      },
    );

    await t.step(
      "plain TCP to a TLS server fails cleanly and the server keeps serving",
      async () => {
        await rejection(connect(tls.address, { client: "c1", connectTimeoutMs: 3_000 }));
        const values = await withClient(
          tls,
          { client: "c1", tls: { ca } },
          (client) => client.call("service1", "rpc1", [1, "y"]),
        );
        assert.deepEqual(values, ["y"]);
      },
    );

    await t.step("mutual TLS: the certificate's CN names the client", async () => {
      assert.match(mtls.stderrText(), /\(mutual TLS\)/);
      const cert = { ca, cert: await read("c1.pem"), key: await read("c1.key") };
      // No --as: the certificate says c1, a tenant of service1.
      const values = await withClient(
        mtls,
        { tls: cert },
        (client) => client.call("service1", "rpc1", [3, "z"]),
      );
      assert.deepEqual(values, ["zzz"]);
      await waitFor(
        () => /INFO {2}c1@127\.0\.0\.1:\d+ connected/.test(mtls.stderrText()),
        "c1 named by its certificate",
      );
      const claim = await rejection(connect(mtls.address, { client: "c2", tls: cert }));
      assert.equal(claim.kind, "Unauthorized");
      assert.match(claim.message, /certificate names c1, not c2/);
    });

    await t.step(
      "mutual TLS: no certificate, or one the CA did not sign, is refused and logged",
      async () => {
        await rejection(
          connect(mtls.address, { client: "c1", tls: { ca }, connectTimeoutMs: 3_000 }),
        );
        const rogue = { ca, cert: await read("rogue.pem"), key: await read("rogue.key") };
        await rejection(connect(mtls.address, { tls: rogue, connectTimeoutMs: 3_000 }));
        await waitFor(
          () =>
            /No client certificate/.test(mtls.stderrText()) &&
            /refused by TLS verification: .*not issued by the client CA/.test(mtls.stderrText()),
          "both refusals in the log",
        );
        const cert = { ca, cert: await read("c1.pem"), key: await read("c1.key") };
        const values = await withClient(
          mtls,
          { tls: cert },
          (client) => client.call("service1", "rpc1", [1, "ok"]),
        );
        assert.deepEqual(values, ["ok"]);
      },
    );
  } finally {
    await tls.stop();
    await mtls.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
