import assert from "node:assert/strict";
import { join } from "node:path";
import type { ServerCommandOptions } from "./server_flags.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  limitsFrom,
  listenAddress,
  serverName,
  serverSettings,
  stateDirFor,
} from "./server_settings.ts";
import { adminToken, type Environment, UsageError } from "./settings.ts";

const env = (values: Record<string, string>): Environment => (name) => values[name] || undefined;
const none = env({});

/** The options of `rpc server` with no flag given, as the parser yields them. */
function flags(given: Partial<ServerCommandOptions> = {}): ServerCommandOptions {
  return {
    logMaxBytes: 10_000_000,
    logKeep: 5,
    refusalSummary: "10s",
    logLevel: "info",
    logFormat: "text",
    check: false,
    grace: "10s",
    sandboxMemory: 256,
    callTimeout: "60s",
    loadTimeout: "30s",
    insecure: false,
    ...given,
  };
}

/** An init.yaml naming servers s1 at 127.0.0.5:9005 and s2 at 127.0.0.6:9006, in a temporary directory. */
async function withCluster(run: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-server-settings-" });
  try {
    const path = join(dir, "init.yaml");
    await Deno.writeTextFile(
      path,
      [
        "network:",
        "  servers:",
        "    - s1: {ip: 127.0.0.5, port: 9005}",
        "    - s2: {ip: 127.0.0.6, port: 9006}",
        "  clients:",
        "    - c1: {ip: 127.0.0.1, port: 6000}",
        "service:",
        "  - svc: {providers: [s1, s2], tenants: [c1], rpcs: [hi]}",
        "rpc:",
        "  - hi: {args: [], returns: [str], src: hi.ts}",
        "",
      ].join("\n"),
    );
    await run(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("serverName(): --name wins over RPC_SERVER_NAME over rpc", () => {
  assert.equal(serverName("s1", env({ RPC_SERVER_NAME: "s2" })), "s1");
  assert.equal(serverName(undefined, env({ RPC_SERVER_NAME: "s2" })), "s2");
  assert.equal(serverName(undefined, none), "rpc");
});

Deno.test("listenAddress(): flag > environment > init.yaml > default, each naming its source", () => {
  const entry = {
    entry: { name: "s1", host: "127.0.0.5", port: 9005, position: { line: 3, column: 7 } },
    name: "s1",
    path: "init.yaml",
  };
  const both = env({ RPC_HOST: "127.0.0.7", RPC_PORT: "9007" });
  assert.deepEqual(listenAddress({ host: "127.0.0.8", port: 9008 }, entry, both), {
    hostname: "127.0.0.8",
    hostSource: "--host",
    port: 9008,
    portSource: "--port",
  });
  assert.deepEqual(listenAddress({}, entry, both), {
    hostname: "127.0.0.7",
    hostSource: "RPC_HOST",
    port: 9007,
    portSource: "RPC_PORT",
  });
  assert.deepEqual(listenAddress({}, entry, none), {
    hostname: "127.0.0.5",
    hostSource: "server s1's ip in init.yaml",
    port: 9005,
    portSource: "server s1's port in init.yaml",
  });
  assert.deepEqual(listenAddress({}, undefined, none), {
    hostname: DEFAULT_HOST,
    hostSource: "the default",
    port: DEFAULT_PORT,
    portSource: "the default",
  });
  // Port 0 from a flag is a choice (a free port), not "unset".
  assert.equal(listenAddress({ port: 0 }, entry, both).port, 0);
});

Deno.test("listenAddress(): RPC_PORT that is not a port is a usage error naming it", () => {
  for (const text of ["http", "-1", "65536", "1e3"]) {
    assert.throws(
      () => listenAddress({}, undefined, env({ RPC_PORT: text })),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message === `RPC_PORT=${text} is not a port (0 to 65535)`,
    );
  }
});

Deno.test("stateDirFor(): --state-dir > RPC_STATE_DIR > XDG_STATE_HOME > HOME", () => {
  const all = env({ RPC_STATE_DIR: "/srv/rpc", XDG_STATE_HOME: "/xdg/", HOME: "/home/u" });
  assert.equal(stateDirFor("/flag", "s1", all), "/flag");
  assert.equal(stateDirFor(undefined, "s1", all), "/srv/rpc");
  assert.equal(
    stateDirFor(undefined, "s1", env({ XDG_STATE_HOME: "/xdg/", HOME: "/h" })),
    "/xdg/rpc/s1",
  );
  assert.equal(
    stateDirFor(undefined, "s1", env({ HOME: "/home/u" })),
    "/home/u/.local/state/rpc/s1",
  );
});

Deno.test("adminToken(): --admin-token-file > RPC_ADMIN_TOKEN; an empty file is refused", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "from-file\n");
    assert.equal(await adminToken(file, env({ RPC_ADMIN_TOKEN: "from-env" })), "from-file");
    assert.equal(await adminToken(undefined, env({ RPC_ADMIN_TOKEN: " from-env " })), "from-env");
    assert.equal(await adminToken(undefined, none), undefined);
    await Deno.writeTextFile(file, "  \n");
    await assert.rejects(
      adminToken(file, none),
      (error: unknown) =>
        error instanceof UsageError && error.message === `Admin token file ${file} is empty`,
    );
    await assert.rejects(adminToken(`${file}.missing`, none), UsageError);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("limitsFrom(): durations name their flag; a frame limit past the largest is refused", () => {
  assert.equal(limitsFrom(flags({ idleTimeout: "2m" })).idleTimeoutMs, 120_000);
  assert.throws(() => limitsFrom(flags({ idleTimeout: "soon" })), /^UsageError: --idle-timeout: /);
  assert.throws(
    () => limitsFrom(flags({ maxFrameBytes: 2 ** 40 })),
    /^UsageError: --max-frame-bytes: /,
  );
});

Deno.test("serverSettings(): RPC_CONFIG and RPC_SERVER_NAME pick the entry; flags override it", async () => {
  await withCluster(async (path) => {
    const fromEnv = env({ RPC_CONFIG: path, RPC_SERVER_NAME: "s2", HOME: "/home/u" });
    const settings = await serverSettings(flags(), fromEnv);
    assert.equal(settings.name, "s2");
    assert.equal(settings.cluster?.file, path);
    assert.equal(settings.hostname, "127.0.0.6");
    assert.equal(settings.port, 9006);
    assert.equal(settings.portSource, `server s2's port in ${path}`);
    assert.equal(settings.stateDir, "/home/u/.local/state/rpc/s2");
    assert.equal(settings.callTimeoutMs, 60_000);

    const overridden = await serverSettings(
      flags({ name: "s1", port: 0, stateDir: "/tmp/s", callTimeout: "5s" }),
      env({ RPC_CONFIG: path, RPC_SERVER_NAME: "s2", RPC_PORT: "9999" }),
    );
    assert.equal(overridden.name, "s1");
    assert.equal(overridden.hostname, "127.0.0.5");
    assert.equal(overridden.port, 0);
    assert.equal(overridden.stateDir, "/tmp/s");
    assert.equal(overridden.callTimeoutMs, 5000);
  });
});

Deno.test("serverSettings(): --name absent from init.yaml is a usage error listing the names", async () => {
  await withCluster(async (path) => {
    await assert.rejects(
      serverSettings(flags({ config: path, name: "s9" }), none),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message === `No server "s9" in ${path}: it names s1, s2`,
    );
  });
});

Deno.test("serverSettings(): the admin secret's source is told; bad flag combinations are refused", async () => {
  const secret = await serverSettings(flags(), env({ RPC_ADMIN_TOKEN: "t0ken" }));
  assert.equal(secret.token, "t0ken");
  assert.equal(secret.tokenSource, "from RPC_ADMIN_TOKEN");
  assert.equal((await serverSettings(flags(), none)).token, undefined);
  await assert.rejects(serverSettings(flags({ tlsCert: "c.pem" }), none), /go together/);
  await assert.rejects(serverSettings(flags({ socketMode: "600" }), none), /needs --listen/);
  await assert.rejects(
    serverSettings(flags({ listen: "unix:/tmp/x.sock", port: 1 }), none),
    /takes no --host or --port/,
  );
  await assert.rejects(
    serverSettings(flags({ tlsCert: "/nonexistent/c.pem", tlsKey: "/nonexistent/k.pem" }), none),
    (error: unknown) =>
      error instanceof UsageError && error.message.startsWith("--tls-cert /nonexistent/c.pem: "),
  );
  await assert.rejects(serverSettings(flags({ grace: "later" }), none), /^UsageError: --grace: /);
  const unix = await serverSettings(flags({ listen: "unix:rel.sock", socketMode: "660" }), none);
  assert.equal(unix.unix?.mode, 0o660);
  assert.ok(unix.unix?.path.endsWith("/rel.sock") && unix.unix.path.startsWith("/"));
});
