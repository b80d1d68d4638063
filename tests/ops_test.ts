/**
 * Operations, end to end with real processes: `rpc server --check` and
 * `rpc init --check`, graceful shutdown on SIGTERM with a pidfile, JSON logs
 * on stderr, `rpc ping`, the admin channel (`rpc admin`), and calls addressed
 * to a service failing over when a provider is killed.
 *
 * Run: `deno test --allow-all tests/ops_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { loadCluster } from "../core/deploy/cluster.ts";
import type { RpcError } from "../core/errors.ts";
import { ServiceClient } from "../core/client/failover.ts";
import { sha256Hex } from "../core/hash.ts";
import type { Health } from "../core/server/server.ts";
import { CodeStore } from "../core/deploy/store.ts";
import { VERSION } from "../core/version.ts";
import {
  describeResult,
  freePort,
  rpc,
  type RpcResult,
  type ServerProcess,
  startServers,
  type TempConfig,
  waitFor,
  withTimeout,
  writeInitYaml,
} from "./helpers.ts";

const TOKEN = "ops test admin secret";

/** Procedures of the test service `svc`. */
const FILES = {
  "echo.ts": `export function echo(text: string): string { return text; }\n`,
  "slow.ts": `export async function slow(seconds: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return "slept " + seconds;
}
export const slowsafe = slow;
`,
  "pyadd.py": `def pyadd(a, b):\n    return a + b\n`,
};

const RPCS = [
  { name: "echo", args: ["str"], returns: ["str"], src: "echo.ts", idempotent: true },
  { name: "slow", args: ["float"], returns: ["str"], src: "slow.ts" },
  { name: "slowsafe", args: ["float"], returns: ["str"], src: "slow.ts", idempotent: true },
  { name: "pyadd", args: ["int", "int"], returns: ["int"], src: "pyadd.py" },
];

/**
 * An init.yaml whose servers (named `names`) listen on ports chosen now and
 * all provide `svc`, in that order, plus a file holding {@linkcode TOKEN}.
 */
async function opsCluster(
  names: string[],
  extra: { files?: Record<string, string>; rpcs?: typeof RPCS } = {},
): Promise<TempConfig & { ports: Record<string, number>; tokenFile: string }> {
  const ports = Object.fromEntries(names.map((name) => [name, freePort()]));
  const rpcs = [...RPCS, ...(extra.rpcs ?? [])];
  const config = await writeInitYaml({
    servers: Object.fromEntries(
      names.map((name) => [name, { ip: "127.0.0.1", port: ports[name] }]),
    ),
    clients: { c1: { ip: "127.0.0.1" } },
    services: { svc: { providers: names, rpcs: [...new Set(rpcs.map((spec) => spec.name))] } },
    rpcs,
    files: { ...FILES, ...extra.files },
  });
  const tokenFile = join(config.dir, "admin-token");
  await Deno.writeTextFile(tokenFile, `${TOKEN}\n`);
  return Object.assign(config, { ports, tokenFile });
}

/** Starts the servers of an {@linkcode opsCluster} on their ports, with the admin token. */
function startCluster(
  config: Awaited<ReturnType<typeof opsCluster>>,
  extraArgs: string[] = [],
): Promise<ServerProcess[]> {
  return startServers(
    Object.entries(config.ports).map(([name, port]) => ({
      name,
      config: config.path,
      port,
      extraArgs: ["--admin-token-file", config.tokenFile, ...extraArgs],
    })),
  );
}

function assertExit(result: RpcResult, code: number): void {
  assert.equal(result.code, code, describeResult(result));
}

/** Asks a server's public health op over a new connection. */
async function health(port: number): Promise<Health> {
  const client = await connect({ hostname: "127.0.0.1", port });
  try {
    return await withTimeout(client.admin({ op: "health" }), 5_000, "health") as Health;
  } finally {
    client.close();
  }
}

/** Waits until `port` has `count` calls in flight. */
function callsInFlight(port: number, count = 1): Promise<Health> {
  return waitFor(
    async () => {
      const report = await health(port);
      return report.callsInFlight >= count ? report : undefined;
    },
    `${count} calls in flight on port ${port}`,
    10_000,
  );
}

// ---------------------------------------------------------------------------
// --check

Deno.test("rpc server --check lists a good state dir with hashes and binds no port", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-check-good-" });
  // The port the server would bind is taken: --check must not try to bind it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const store = new CodeStore(dir);
    const echo = await store.putBlob(FILES["echo.ts"], ".ts");
    const pyadd = await store.putBlob(FILES["pyadd.py"], ".py");
    await store.writeManifest({
      format: 1,
      generation: 4,
      installedAt: new Date().toISOString(),
      services: [{ name: "svc", tenants: ["c1"] }],
      procedures: [
        {
          service: "svc",
          rpc: "echo",
          args: ["str"],
          returns: ["str"],
          language: "typescript",
          hash: echo,
          extension: ".ts",
        },
        {
          service: "svc",
          rpc: "pyadd",
          args: ["int", "int"],
          returns: ["int"],
          language: "python",
          hash: pyadd,
          extension: ".py",
        },
      ],
      clients: [{ name: "c1", ip: "127.0.0.1" }],
    });
    const port = (listener.addr as Deno.NetAddr).port;
    const result = await rpc([
      "server",
      "--check",
      "--name",
      "s9",
      "--state-dir",
      dir,
      "--port",
      String(port),
    ]);
    assertExit(result, 0);
    assert.match(result.stdout, /no port is bound/);
    assert.match(result.stdout, new RegExp(`listen +127\\.0\\.0\\.1:${port}`));
    assert.match(result.stdout, /installed: generation 4/);
    assert.match(result.stdout, /^ {2}svc \(tenants c1\)$/m);
    assert.match(
      result.stdout,
      new RegExp(`ok +${echo} +svc\\.echo\\(str\\) -> str +\\[typescript\\]`),
    );
    assert.match(
      result.stdout,
      new RegExp(`ok +${pyadd} +svc\\.pyadd\\(int, int\\) -> int +\\[python\\]`),
    );
    assert.match(result.stdout, /^ok: would serve 1 services, 2 procedures$/m);
    assert.equal(result.stderr, "", describeResult(result));
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rpc server --check names each procedure of a broken state dir and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-check-broken-" });
  try {
    const store = new CodeStore(dir);
    const good = await store.putBlob(FILES["echo.ts"], ".ts");
    const syntax = await store.putBlob(
      `export function bad(s: string) {\n  return s +;\n}\n`,
      ".ts",
    );
    const noExport = await store.putBlob(`export function other() { return 1; }\n`, ".ts");
    const missing = sha256Hex("never stored");
    const record = (rpc: string, hash: string) => ({
      service: "svc",
      rpc,
      args: ["str"],
      returns: ["str"],
      language: "typescript" as const,
      hash,
      extension: ".ts",
    });
    await store.writeManifest({
      format: 1,
      generation: 2,
      installedAt: new Date().toISOString(),
      services: [{ name: "svc" }],
      procedures: [
        record("echo", good),
        record("bad", syntax),
        record("lost", noExport),
        record("gone", missing),
      ],
      clients: [],
    });
    const result = await rpc(["server", "--check", "--name", "s9", "--state-dir", dir]);
    assertExit(result, 1);
    assert.match(result.stdout, /ok +\S+ +svc\.echo\(str\) -> str/);
    assert.match(result.stdout, /FAIL +\S+ +svc\.bad\(str\) -> str/);
    assert.match(result.stdout, /^FAILED: 3 problems$/m);
    const errors = result.stderr.trim().split("\n");
    assert.equal(errors.length, 3, describeResult(result));
    assert.match(errors[0], /^error: installed svc\.bad\(str\): .*SyntaxError.*:2:\d+/);
    assert.match(
      errors[1],
      /^error: installed svc\.lost\(str\): .*does not export a function named lost/,
    );
    assert.match(errors[2], /^error: installed svc\.gone\(str\): source \S+ is missing/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rpc server --check with init.yaml loads the file's procedures and names them by file:line:column", async () => {
  await using config = await opsCluster(["s1"], {
    files: { "broken.ts": `export function notIt() { return "x"; }\n` },
    rpcs: [{ name: "broken", args: [], returns: ["str"], src: "broken.ts" }],
  });
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-check-state-" });
  try {
    const result = await rpc([
      "server",
      "--check",
      "--config",
      config.path,
      "--name",
      "s1",
      "--state-dir",
      stateDir,
      "--admin-token-file",
      config.tokenFile,
    ]);
    assertExit(result, 1);
    assert.match(result.stdout, /installed at start/);
    assert.match(result.stdout, /admin +from .*admin-token/);
    assert.match(result.stdout, /ok +\S+ +svc\.pyadd\(int, int\) -> int +\[python\]/);
    const line = (await Deno.readTextFile(config.path)).split("\n")
      .findIndex((text) => text.includes("broken.ts")) + 1;
    assert.match(
      result.stderr,
      new RegExp(
        `^error: ${config.path}:${line}:\\d+: svc\\.broken\\(\\) \\(src \\S*broken\\.ts\\): .*does not export a function named broken$`,
        "m",
      ),
    );
    // Nothing was installed: a check changes nothing.
    assert.deepEqual([...Deno.readDirSync(stateDir)], []);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("rpc server --check rejects bad flags before loading anything", async () => {
  const result = await rpc(["server", "--check", "--name", "s9", "--grace", "soon"]);
  assertExit(result, 2);
  assert.match(result.stderr, /^error: --grace: Cannot read duration "soon"/m);
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-check-flags-" });
  try {
    const noDir = await rpc([
      "server",
      "--check",
      "--name",
      "s9",
      "--state-dir",
      stateDir,
      "--pidfile",
      "/nonexistent-dir/rpc.pid",
    ]);
    assertExit(noDir, 1);
    assert.match(
      noDir.stderr,
      /^error: --pidfile \/nonexistent-dir\/rpc\.pid: directory \S+ does not exist$/m,
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("rpc init --check loads every procedure and names the bad ones with file:line:column", async () => {
  await using good = await opsCluster(["s1", "s2"]);
  const ok = await rpc(["init", "--check", good.path]);
  assertExit(ok, 0);
  assert.match(ok.stdout, new RegExp(`${sha256Hex(FILES["echo.ts"])} +svc\\.echo\\(str\\) -> str`));
  assert.match(ok.stdout, /^ok: 4 procedures load; ready to deploy$/m);
  const json = await rpc(["init", "--check", good.path, "--json"]);
  assertExit(json, 0);
  const report = JSON.parse(json.stdout);
  assert.equal(report.ok, true);
  assert.equal(report.procedures.length, 4);

  await using bad = await opsCluster(["s1"], {
    files: {
      "syntax.ts": `export function syntax(s: string) {\n  return s +;\n}\n`,
      "missing.py": `def something_else():\n    return 1\n`,
    },
    rpcs: [
      { name: "syntax", args: ["str"], returns: ["str"], src: "syntax.ts" },
      { name: "missing", args: [], returns: ["int"], src: "missing.py" },
    ],
  });
  const failed = await rpc(["init", "--check", bad.path]);
  assertExit(failed, 1);
  const lines = (await Deno.readTextFile(bad.path)).split("\n");
  const lineOf = (file: string) => lines.findIndex((text) => text.includes(file)) + 1;
  const errors = failed.stderr.trim().split("\n");
  assert.equal(errors.length, 2, describeResult(failed));
  assert.match(
    errors[0],
    new RegExp(
      `^error: ${bad.path}:${
        lineOf("syntax.ts")
      }:\\d+: svc\\.syntax\\(str\\) \\(src \\S*syntax\\.ts\\): .*SyntaxError.* \\(at \\S*syntax\\.ts:2:\\d+\\)$`,
    ),
  );
  assert.match(
    errors[1],
    new RegExp(
      `^error: ${bad.path}:${
        lineOf("missing.py")
      }:\\d+: svc\\.missing\\(\\) \\(src \\S*missing\\.py\\): .*does not define a function named missing$`,
    ),
  );
  assert.match(failed.stdout, /^FAILED: 2 of 6 procedures cannot load$/m);
});

// ---------------------------------------------------------------------------
// Graceful shutdown

Deno.test("SIGTERM: a slow call finishes, new connections are refused, exit 0, pidfile removed", async () => {
  await using config = await opsCluster(["s1"]);
  const pidfile = join(config.dir, "s1.pid");
  const [server] = await startCluster(config, ["--pidfile", pidfile, "--grace", "20s"]);
  let client: RpcClient | undefined;
  try {
    assert.equal((await Deno.readTextFile(pidfile)).trim(), String(server.process.pid));
    client = await connect(server.address, { client: "c1" });
    const slow = client.call("svc", "slow", [3]);
    await callsInFlight(server.port);
    server.process.kill("SIGTERM");
    await waitFor(() => /draining/.test(server.stderrText()), "the draining log line", 5_000);
    // During the grace period nobody new gets in.
    await assert.rejects(
      connect(server.address, { connectTimeoutMs: 2_000 }),
      (error: RpcError) => error.kind === "Unavailable" && /refused/i.test(error.message),
    );
    assert.deepEqual(await withTimeout(slow, 10_000, "the slow call"), ["slept 3"]);
    const status = await withTimeout(server.process.status, 10_000, "server exit");
    assert.equal(status.code, 0, server.stderrText());
    await assert.rejects(Deno.stat(pidfile), Deno.errors.NotFound);
    assert.match(server.stderrText(), /received SIGTERM/);
    assert.match(server.stderrText(), /every call in flight finished/);
  } finally {
    client?.close();
    await server.stop();
  }
});

Deno.test("SIGTERM: calls still running when the grace period ends are cut short", async () => {
  await using config = await opsCluster(["s1"]);
  const [server] = await startCluster(config, ["--grace", "200ms"]);
  const client = await connect(server.address, { client: "c1" });
  try {
    const slow = client.call("svc", "slow", [30]);
    await callsInFlight(server.port);
    server.process.kill("SIGTERM");
    await assert.rejects(
      withTimeout(slow, 10_000, "the cut call"),
      (error: RpcError) => error.kind === "Unavailable",
    );
    const status = await withTimeout(server.process.status, 10_000, "server exit");
    assert.equal(status.code, 0, server.stderrText());
    assert.match(server.stderrText(), /grace period over: closing \d+ connections with 1 calls/);
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("--log-format json writes the log on stderr as JSON lines", async () => {
  await using config = await opsCluster(["s1"]);
  const [server] = await startCluster(config, ["--log-format", "json"]);
  try {
    const call = await rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "s1",
      "svc",
      "echo",
      "hi",
    ]);
    assertExit(call, 0);
    await waitFor(() => /"event":"call"/.test(server.stderrText()), "a call record");
  } finally {
    await server.stop();
  }
  const records = server.stderrText().trim().split("\n").map((line) => JSON.parse(line));
  assert.ok(records.every((record) => typeof record.time === "string" && record.level));
  assert.ok(records.some((record) => record.event === "listen"));
  const call = records.find((record) => record.event === "call");
  assert.equal(call.client, "c1");
  assert.equal(call.rpc, "echo");
  assert.ok(records.some((record) => record.event === "shutdown"));
});

// ---------------------------------------------------------------------------
// rpc ping

Deno.test("rpc ping shows version, uptime, connections, calls and the deployed hashes", async () => {
  await using config = await opsCluster(["s1"]);
  const [server] = await startCluster(config);
  try {
    assertExit(
      await rpc(["call", "--config", config.path, "--as", "c1", "s1", "svc", "echo", "x"]),
      0,
    );
    // An RPC init.yaml does not name is sent as is, and the server fails it.
    const failed = await rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "s1",
      "svc",
      "nosuch",
    ]);
    assertExit(failed, 13);

    const text = await rpc(["ping", "--config", config.path, "s1"]);
    assertExit(text, 0);
    assert.match(
      text.stdout,
      new RegExp(
        `^s1 \\(127\\.0\\.0\\.1:${server.port}\\): rpc ${VERSION}, up \\S+, round trip [\\d.]+ ms$`,
        "m",
      ),
    );
    assert.match(text.stdout, /^ {2}connections +1 open, \d+ accepted, 0 refused since start$/m);
    assert.match(text.stdout, /^ {2}calls +1 served, 1 failed, 0 in flight$/m);
    assert.match(text.stdout, /^ {2}deployed +generation 1, installed \S+, 4 procedures$/m);
    assert.match(
      text.stdout,
      new RegExp(`^ {4}${sha256Hex(FILES["pyadd.py"])} +svc\\.pyadd\\(int, int\\)$`, "m"),
    );

    const json = await rpc(["ping", server.address, "--json"]);
    assertExit(json, 0);
    const report = JSON.parse(json.stdout);
    assert.equal(report.server, "s1");
    assert.equal(report.version, VERSION);
    assert.equal(report.callsServed, 1);
    assert.equal(report.callsFailed, 1);
    assert.equal(report.connections, 1);
    assert.ok(report.uptimeMs > 0 && report.roundTripMs >= 0);
    assert.equal(report.generation, 1);
    assert.equal(report.code["svc.echo(str)"], sha256Hex(FILES["echo.ts"]));
    assert.equal(report.code["svc.slow(float)"], sha256Hex(FILES["slow.ts"]));
  } finally {
    await server.stop();
  }
  const down = await rpc(["ping", server.address]);
  assertExit(down, 3);
  assert.match(down.stderr, /^error: Unavailable: /m);
});

// ---------------------------------------------------------------------------
// rpc admin

Deno.test("rpc admin: every op is refused without the admin token, and the refusal is logged", async () => {
  await using config = await opsCluster(["s1"]);
  const [server] = await startCluster(config);
  try {
    for (const args of [["clients"], ["disconnect", "1"], ["log-level", "debug"], ["stats"]]) {
      const missing = await rpc(["admin", server.address, ...args]);
      assertExit(missing, 18);
      assert.match(missing.stderr, /^error: Unauthorized: Wrong or missing admin token$/m);
      const wrong = await rpc(["admin", server.address, ...args], {
        env: { RPC_ADMIN_TOKEN: "not the token" },
      });
      assertExit(wrong, 18);
      await waitFor(
        () =>
          server.stderrText().includes(`admin ${args[0]} refused: Wrong or missing admin token`),
        `the unauthorized ${args[0]} in the log`,
      );
    }
    assert.match(server.stderrText(), /WARN +c1@127\.0\.0\.1:\d+ admin stats refused/);
    // The refused log-level changed nothing.
    const stats = await rpc(["admin", server.address, "stats", "--json"], {
      env: { RPC_ADMIN_TOKEN: TOKEN },
    });
    assertExit(stats, 0);
    assert.equal(JSON.parse(stats.stdout).logLevel, "info");
  } finally {
    await server.stop();
  }
});

Deno.test("rpc admin with the token: clients, stats, log-level and disconnect", async () => {
  await using config = await opsCluster(["s1"]);
  const [server] = await startCluster(config);
  const admin = (...args: string[]) =>
    rpc(["admin", "--admin-token-file", config.tokenFile, server.address, ...args]);
  const client = await connect(server.address, { client: "c1" });
  try {
    assert.deepEqual(await client.call("svc", "echo", ["one"]), ["one"]);
    assert.deepEqual(await client.call("svc", "echo", ["two"]), ["two"]);

    const listed = await admin("clients", "--json");
    assertExit(listed, 0);
    const { clients } = JSON.parse(listed.stdout);
    const c1 = clients.find((entry: { client: string }) => entry.client === "c1");
    assert.ok(c1, listed.stdout);
    assert.equal(c1.calls, 2);
    assert.match(c1.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(!Number.isNaN(Date.parse(c1.connectedAt)));
    const table = await admin("clients");
    assertExit(table, 0);
    assert.match(table.stdout, /^ID +CLIENT +ADDRESS +CONNECTED SINCE +CALLS$/m);
    assert.match(table.stdout, new RegExp(`^${c1.id} +c1 +127\\.0\\.0\\.1:\\d+ +\\S+ +2$`, "m"));

    const stats = await admin("stats");
    assertExit(stats, 0);
    assert.match(stats.stdout, /^calls +2 served, 0 failed, 0 in flight$/m);
    assert.match(stats.stdout, /^by client +.*c1 2/m);
    assert.match(stats.stdout, /^log level +info$/m);

    const level = await admin("log-level", "debug");
    assertExit(level, 0);
    assert.equal(level.stdout, "log level info -> debug\n");
    assert.equal(JSON.parse((await admin("stats", "--json")).stdout).logLevel, "debug");
    const badLevel = await admin("log-level", "loud");
    assertExit(badLevel, 2);

    const cut = await admin("disconnect", String(c1.id));
    assertExit(cut, 0);
    assert.match(
      cut.stdout,
      new RegExp(`^disconnected ${c1.id}: c1 from 127\\.0\\.0\\.1:\\d+, 2 calls$`, "m"),
    );
    await withTimeout(client.done, 5_000, "the disconnected client's end");
    await assert.rejects(
      client.call("svc", "echo", ["three"]),
      (error: RpcError) => error.kind === "Unavailable",
    );
    await waitFor(
      () => /c1@127\.0\.0\.1:\d+: closing, disconnected by admin/.test(server.stderrText()),
      "the disconnect in the log",
    );
    const again = await admin("disconnect", String(c1.id));
    assertExit(again, 11);
    assert.match(again.stderr, new RegExp(`No connection ${c1.id} is open`));
  } finally {
    client.close();
    await server.stop();
  }
});

// ---------------------------------------------------------------------------
// Several providers

Deno.test("rpc call --service fails over when a provider is killed, and calls keep succeeding", async () => {
  await using config = await opsCluster(["a", "b"]);
  const [a, b] = await startCluster(config);
  try {
    const call = (text: string) =>
      rpc(["call", "--config", config.path, "--as", "c1", "--service", "svc", "echo", text]);
    const first = await call("first");
    assertExit(first, 0);
    assert.equal(first.stdout, "first\n");
    assert.equal((await health(a.port)).callsServed, 1, "file order: a serves first");

    // A long-lived library client, connected to a.
    const service = new ServiceClient(await loadCluster(config.path), "svc", { client: "c1" });
    try {
      assert.deepEqual(await service.call("echo", ["via a"]), ["via a"]);
      assert.equal(service.provider, "a");

      a.process.kill("SIGKILL");
      await withTimeout(a.process.status, 10_000, "a's exit");

      for (const text of ["second", "third"]) {
        const result = await call(text);
        assertExit(result, 0);
        assert.equal(result.stdout, `${text}\n`);
        assert.match(result.stderr, /^note: a is unavailable .*trying the next provider$/m);
      }
      // The library client moves to b; slow is not idempotent, but this call was never sent to a.
      assert.deepEqual(await service.call("slow", [0]), ["slept 0"]);
      assert.equal(service.provider, "b");
      assert.deepEqual(await service.proxy().echo("proxied"), "proxied");
    } finally {
      service.close();
    }
    assert.equal((await health(b.port)).callsServed, 4);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("a non-idempotent call in flight when its server dies is not retried; an idempotent one is", async () => {
  await using config = await opsCluster(["a", "b"]);
  const [a, b] = await startCluster(config);
  const cluster = await loadCluster(config.path);
  try {
    const service = new ServiceClient(cluster, "svc", { client: "c1" });
    try {
      const slow = service.call("slow", [30]);
      const inflight = await callsInFlight(a.port);
      assert.equal(inflight.callsInFlight, 1);
      a.process.kill("SIGKILL");
      await assert.rejects(
        withTimeout(slow, 10_000, "the lost call"),
        (error: RpcError) =>
          error.kind === "Unavailable" && /it may have run there/.test(error.message) &&
          /not marked idempotent/.test(error.message),
      );
      const onB = await health(b.port);
      assert.equal(onB.callsServed + onB.callsInFlight + onB.callsFailed, 0, "never sent to b");
    } finally {
      service.close();
    }
    assert.doesNotMatch(b.stderrText(), /svc\.slow/);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }

  // Again with an idempotent RPC: the call is repeated on the next provider.
  const [a2, b2] = await startCluster(config);
  const failovers: string[] = [];
  const service = new ServiceClient(cluster, "svc", {
    client: "c1",
    onFailover: (provider) => failovers.push(provider),
  });
  try {
    const retried = service.call("slowsafe", [3]);
    await callsInFlight(a2.port);
    a2.process.kill("SIGKILL");
    assert.deepEqual(await withTimeout(retried, 15_000, "the retried call"), ["slept 3"]);
    assert.deepEqual(failovers, ["a"]);
    assert.equal(service.provider, "b");
    await waitFor(() => /svc\.slowsafe\(float\) ok/.test(b2.stderrText()), "slowsafe on b");
  } finally {
    service.close();
    await Promise.all([a2.stop(), b2.stop()]);
  }
});

Deno.test("rpc call --service without init.yaml is a usage error; an unknown service is named", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "rpc-noconfig-" });
  try {
    const none = await rpc(["call", "--service", "svc", "echo", "x"], { cwd });
    assertExit(none, 2);
    assert.match(none.stderr, /^error: --service needs init\.yaml/m);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
  await using config = await opsCluster(["s1"]);
  const unknown = await rpc(["call", "--config", config.path, "--service", "nope", "echo", "x"]);
  assertExit(unknown, 12);
  assert.match(unknown.stderr, /^error: Service Not Found: .* has no service nope/m);
  // Nobody listens on s1's port: every provider is down.
  const down = await rpc([
    "call",
    "--config",
    config.path,
    "--as",
    "c1",
    "--service",
    "svc",
    "echo",
    "x",
  ]);
  assertExit(down, 3);
  assert.match(
    down.stderr,
    /^error: Unavailable: No provider of svc could be reached: s1 \(127\.0\.0\.1:\d+\): /m,
  );
});
