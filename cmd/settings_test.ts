import assert from "node:assert/strict";
import type { Cluster } from "../core/deploy/cluster.ts";
import {
  clientName,
  clientSettings,
  colorEnabled,
  configPath,
  DEFAULT_TIMEOUT_MS,
  type Environment,
  historyPath,
  parseDuration,
  replServer,
  timeoutMs,
  UsageError,
} from "./settings.ts";

const env = (values: Record<string, string>): Environment => (name) => values[name] || undefined;
const none = env({});

Deno.test("parseDuration() reads ms, s and m, a bare number being ms", () => {
  assert.equal(parseDuration("250"), 250);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.throws(() => parseDuration("soon"), UsageError);
});

Deno.test("configPath(): the flag wins over RPC_CONFIG", () => {
  const both = env({ RPC_CONFIG: "from-env.yaml" });
  assert.equal(configPath("flag.yaml", false, true, both), "flag.yaml");
  assert.equal(configPath(undefined, false, true, both), "from-env.yaml");
});

Deno.test("configPath(): for rpc server (lookHere false), nothing without flag or variable", () => {
  assert.equal(configPath(undefined, false, false, none), undefined);
});

// The ./init.yaml fallback is tested with real processes in tests/cli_test.ts,
// since it depends on the working directory.

Deno.test("clientName(): --as wins over RPC_CLIENT; neither is anonymous", () => {
  assert.equal(clientName("c1", env({ RPC_CLIENT: "c2" })), "c1");
  assert.equal(clientName(undefined, env({ RPC_CLIENT: "c2" })), "c2");
  assert.equal(clientName(undefined, none), undefined);
});

Deno.test("timeoutMs(): --timeout wins over RPC_TIMEOUT over 30s", () => {
  assert.equal(timeoutMs("2s", env({ RPC_TIMEOUT: "5s" })), 2000);
  assert.equal(timeoutMs(undefined, env({ RPC_TIMEOUT: "5s" })), 5000);
  assert.equal(timeoutMs(undefined, none), DEFAULT_TIMEOUT_MS);
});

Deno.test("timeoutMs() names the source of a bad duration", () => {
  assert.throws(() => timeoutMs("x", none), /^UsageError: --timeout: Cannot read duration "x"/);
  assert.throws(
    () => timeoutMs(undefined, env({ RPC_TIMEOUT: "later" })),
    /RPC_TIMEOUT: Cannot read duration "later"/,
  );
  assert.throws(() => timeoutMs("0s", none), /--timeout: duration must be positive/);
});

Deno.test("historyPath(): RPC_HISTORY, else ~/.rpc_history; off keeps none", () => {
  assert.equal(historyPath(env({ RPC_HISTORY: "/tmp/h", HOME: "/home/u" })), "/tmp/h");
  assert.equal(historyPath(env({ HOME: "/home/u" })), "/home/u/.rpc_history");
  assert.equal(historyPath(env({ RPC_HISTORY: "off", HOME: "/home/u" })), undefined);
  assert.equal(historyPath(none), undefined);
});

Deno.test("replServer(): the argument, else RPC_SERVER, else init.yaml's first server", () => {
  const cluster = { servers: new Map([["s1", {}], ["s2", {}]]) } as unknown as Cluster;
  assert.equal(replServer("s2", cluster, env({ RPC_SERVER: "x:1" })), "s2");
  assert.equal(replServer(undefined, cluster, env({ RPC_SERVER: "x:1" })), "x:1");
  assert.equal(replServer(undefined, cluster, none), "s1");
  assert.throws(() => replServer(undefined, undefined, none), /No server to connect to/);
});

Deno.test("colorEnabled(): only on a terminal and without NO_COLOR", () => {
  const terminal = { isTerminal: () => true };
  const pipe = { isTerminal: () => false };
  assert.equal(colorEnabled(terminal, none), true);
  assert.equal(colorEnabled(pipe, none), false);
  assert.equal(colorEnabled(terminal, env({ NO_COLOR: "1" })), false);
});

Deno.test("clientSettings() applies every layer and loads init.yaml", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/init.yaml`;
    await Deno.writeTextFile(
      file,
      [
        "network:",
        "  servers: [s9: { ip: 127.0.0.1, port: 9999 }]",
        "  clients: [c9: { ip: 127.0.0.1 }]",
        "service: [sv: { providers: [s9], rpcs: [r] }]",
        "rpc: [r: { args: [int], returns: [int], src: r.ts }]",
      ].join("\n"),
    );
    const settings = await clientSettings(
      { as: "c9" },
      env({ RPC_CONFIG: file, RPC_CLIENT: "ignored", RPC_TIMEOUT: "3s" }),
    );
    assert.equal(settings.client, "c9");
    assert.equal(settings.timeoutMs, 3000);
    assert.deepEqual([...settings.cluster!.servers.keys()], ["s9"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
