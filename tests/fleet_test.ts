/**
 * Fleets, end to end with real `rpc server` processes on loopback:
 * `rpc call --all` (one line per provider, a provider killed mid fan-out,
 * exit codes, `--json`, `--servers`, `--timeout`), `callAll`'s bound on
 * parallelism, and `rpc ping --all` / `rpc hash --all`; balancing: round-robin
 * spreading calls over the providers, and a provider that went away being
 * ejected, probed and readmitted.
 *
 * Run: `deno test --allow-all tests/fleet_test.ts`
 */

import assert from "node:assert/strict";
import { connect } from "../core/client/connect.ts";
import { loadCluster } from "../core/deploy/cluster.ts";
import { ServiceClient } from "../core/client/failover.ts";
import { callAll, fanOut, providersOf } from "../core/client/fanout.ts";
import { PARTIAL_FAILURE_EXIT_CODE } from "../cmd/exit_codes.ts";
import type { Health } from "../core/server/server.ts";
import {
  childEnv,
  describeResult,
  freePort,
  MAIN,
  rpc,
  type RpcResult,
  type ServerProcess,
  startServers,
  type TempConfig,
  waitFor,
  withTimeout,
  writeInitYaml,
} from "./helpers.ts";

const FILES = {
  "echo.ts": `export function echo(text: string): string { return text; }\n`,
  "slow.ts": `export async function slow(seconds: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return "slept " + seconds;
}
`,
  "fail.ts": `export function fail(text: string): string { throw new Error("refused " + text); }\n`,
};

const RPCS = [
  { name: "echo", args: ["str"], returns: ["str"], src: "echo.ts" },
  { name: "slow", args: ["float"], returns: ["str"], src: "slow.ts" },
  { name: "fail", args: ["str"], returns: ["str"], src: "fail.ts" },
];

/** An init.yaml whose servers `names` all provide `svc`, in that order, on ports chosen now. */
async function fleetCluster(
  names: string[],
): Promise<TempConfig & { ports: Record<string, number> }> {
  const ports = Object.fromEntries(names.map((name) => [name, freePort()]));
  const config = await writeInitYaml({
    servers: Object.fromEntries(
      names.map((name) => [name, { ip: "127.0.0.1", port: ports[name] }]),
    ),
    clients: { c1: { ip: "127.0.0.1" } },
    services: { svc: { providers: names, rpcs: RPCS.map((spec) => spec.name) } },
    rpcs: RPCS,
    files: FILES,
  });
  return Object.assign(config, { ports });
}

function startFleet(
  config: { path: string; ports: Record<string, number> },
): Promise<ServerProcess[]> {
  return startServers(
    Object.entries(config.ports).map(([name, port]) => ({ name, config: config.path, port })),
  );
}

function assertExit(result: RpcResult, code: number): void {
  assert.equal(result.code, code, describeResult(result));
}

async function health(port: number): Promise<Health> {
  const client = await connect({ hostname: "127.0.0.1", port });
  try {
    return await withTimeout(client.admin({ op: "health" }), 5_000, "health") as Health;
  } finally {
    client.close();
  }
}

Deno.test("rpc call --all: every provider answers, one line each in init.yaml's order; --json, --servers, exit codes", async () => {
  await using config = await fleetCluster(["a", "bb", "c"]);
  const servers = await startFleet(config);
  const base = ["call", "--config", config.path, "--as", "c1", "--all", "--service", "svc"];
  try {
    const all = await rpc([...base, "echo", "hi there"]);
    assertExit(all, 0);
    assert.equal(all.stdout, "a   ok hi there\nbb  ok hi there\nc   ok hi there\n");

    const json = await rpc([...base, "echo", "x", "--json"]);
    assertExit(json, 0);
    const objects = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(objects.map((object) => object.server), ["a", "bb", "c"]);
    for (const object of objects) {
      assert.deepEqual(Object.keys(object).sort(), [
        "address",
        "ms",
        "ok",
        "return-values",
        "server",
      ]);
      assert.equal(object.ok, true);
      assert.deepEqual(object["return-values"], ["x"]);
      assert.equal(object.address, `127.0.0.1:${config.ports[object.server]}`);
    }

    const some = await rpc([...base, "--servers", "c,a", "echo", "y"]);
    assertExit(some, 0);
    assert.equal(some.stdout, "a  ok y\nc  ok y\n", "the file's order, only the subset");
    for (const name of ["a", "bb", "c"]) {
      // echo: 1 + 1 + (a and c only) 1; health counts every call served.
      assert.equal((await health(config.ports[name])).callsServed, name === "bb" ? 2 : 3);
    }

    const stranger = await rpc([...base, "--servers", "a,zz", "echo", "y"]);
    assertExit(stranger, 11);
    assert.match(
      stranger.stderr,
      /^error: Invalid Arguments: zz is not among the providers of svc: a, bb, c$/m,
    );
    assert.equal(stranger.stdout, "");

    // Every provider failing the same way exits with that kind's code, and still prints each.
    const failed = await rpc([...base, "fail", "z"]);
    assertExit(failed, 10);
    const failures = failed.stdout.trimEnd().split("\n");
    assert.deepEqual(failures.map((line) => line.split(" ")[0]), ["a", "bb", "c"]);
    for (const line of failures) assert.match(line, /^\S+ +Execution Exception: .*refused z/);

    const usage = await rpc([
      "call",
      "--config",
      config.path,
      "--service",
      "svc",
      "--parallel",
      "2",
      "echo",
      "y",
    ]);
    assertExit(usage, 2);
    assert.match(usage.stderr, /^error: --parallel needs --all$/m);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

Deno.test("rpc call --all: a provider killed mid fan-out says so, the others still answer; partial failure exits 7", async () => {
  await using config = await fleetCluster(["a", "b", "c"]);
  const [a, b, c] = await startFleet(config);
  try {
    const running = rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "--all",
      "--service",
      "svc",
      "slow",
      "2",
    ], { timeoutMs: 60_000 });
    // Kill b once the call is running on it.
    await waitFor(
      async () => (await health(b.port)).callsInFlight >= 1 || undefined,
      "the call on b",
      30_000,
    );
    b.process.kill("SIGKILL");
    const result = await running;
    assertExit(result, PARTIAL_FAILURE_EXIT_CODE);
    const lines = result.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3, describeResult(result));
    assert.equal(lines[0], "a  ok slept 2");
    assert.match(lines[1], /^b {2}Unavailable: \S/);
    assert.equal(lines[2], "c  ok slept 2");

    // With b gone for good: JSON says which one failed and how.
    const json = await rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "--all",
      "--service",
      "svc",
      "echo",
      "e",
      "--json",
    ]);
    assertExit(json, PARTIAL_FAILURE_EXIT_CODE);
    const [, down] = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.equal(down.server, "b");
    assert.equal(down.ok, false);
    assert.equal(down.error.kind, "Unavailable");
    assert.match(down.error.message, /Connection refused|refused/i);
    assert.equal("return-values" in down, false);

    // ping and hash report the whole fleet the same way.
    const ping = await rpc(["ping", "--config", config.path, "--all"]);
    assertExit(ping, PARTIAL_FAILURE_EXIT_CODE);
    const pings = ping.stdout.trimEnd().split("\n");
    assert.match(pings[0], /^a {2}ok rpc \S+, up \S+.*round trip [\d.]+ ms/);
    assert.match(pings[1], /^b {2}Unavailable: /);
    assert.match(pings[2], /^c {2}ok rpc /);
    const hash = await rpc(["hash", "--config", config.path, "--all", "--servers", "a,c"]);
    assertExit(hash, 0);
    const [hashA, hashC] = hash.stdout.trimEnd().split("\n");
    assert.match(hashA, /^a {2}ok generation \d+, \d+ procedures, code [0-9a-f]{16}$/);
    assert.equal(hashC.replace(/^c /, "a "), hashA, "the same code, the same fingerprint");

    // Every provider down: all lines, and Unavailable's own exit code.
    await Promise.all([a.stop(), c.stop()]);
    const none = await rpc(["ping", "--config", config.path, "--all", "--json"]);
    assertExit(none, 3);
    assert.deepEqual(
      none.stdout.trimEnd().split("\n").map((line) => JSON.parse(line)).map((
        o,
      ) => [o.server, o.error.kind]),
      [["a", "Unavailable"], ["b", "Unavailable"], ["c", "Unavailable"]],
    );
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
});

Deno.test("rpc call --all --timeout bounds the whole fan-out: late servers are Timeout, exit 4", async () => {
  await using config = await fleetCluster(["a", "b"]);
  const servers = await startFleet(config);
  try {
    const result = await rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "--all",
      "--service",
      "svc",
      "--timeout",
      "1s",
      "slow",
      "30",
    ], { timeoutMs: 40_000 });
    assertExit(result, 4);
    const lines = result.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 2, describeResult(result));
    for (const line of lines) assert.match(line, /^[ab] {2}Timeout: /);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

Deno.test("callAll keeps every answer, and fanOut asks at most `parallel` servers at once", async () => {
  await using config = await fleetCluster(["a", "b", "c"]);
  const servers = await startFleet(config);
  const cluster = await loadCluster(config.path);
  try {
    const results = await callAll(cluster, "svc", "echo", ["q"], {
      client: "c1",
      servers: ["c", "b"],
    });
    assert.deepEqual(results.map((r) => [r.server, r.ok && r.value]), [["b", ["q"]], ["c", ["q"]]]);

    let active = 0;
    let most = 0;
    const order: string[] = [];
    const bounded = await fanOut(providersOf(cluster, "svc"), async (client) => {
      active++;
      most = Math.max(most, active);
      try {
        return await client.call("svc", "slow", [1]);
      } finally {
        active--;
      }
    }, { client: "c1", parallel: 2, onResult: (result) => order.push(result.server) });
    assert.equal(most, 2);
    assert.deepEqual(bounded.map((r) => r.ok), [true, true, true]);
    assert.equal(order.length, 3);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

Deno.test("round-robin spreads calls evenly over the providers; rpc call --balance takes the policies", async () => {
  await using config = await fleetCluster(["a", "b", "c"]);
  const servers = await startFleet(config);
  const cluster = await loadCluster(config.path);
  const service = new ServiceClient(cluster, "svc", { client: "c1", balance: "round-robin" });
  try {
    for (let i = 0; i < 9; i++) assert.deepEqual(await service.call("echo", [`m${i}`]), [`m${i}`]);
    for (const name of ["a", "b", "c"]) {
      assert.equal((await health(config.ports[name])).callsServed, 3, `calls served by ${name}`);
    }
    for (const policy of ["first", "round-robin", "p2c"]) {
      const result = await rpc([
        "call",
        "--config",
        config.path,
        "--as",
        "c1",
        "--service",
        "svc",
        "--balance",
        policy,
        "echo",
        policy,
      ]);
      assertExit(result, 0);
      assert.equal(result.stdout, `${policy}\n`);
    }
    const bad = await rpc([
      "call",
      "--config",
      config.path,
      "--service",
      "svc",
      "--balance",
      "random",
      "echo",
      "x",
    ]);
    assertExit(bad, 2);
    const both = await rpc([
      "call",
      "--config",
      config.path,
      "--service",
      "svc",
      "--all",
      "--balance",
      "p2c",
      "echo",
      "x",
    ]);
    assertExit(both, 2);
    assert.match(both.stderr, /^error: --balance picks one provider; --all calls them all/m);
  } finally {
    service.close();
    await Promise.all(servers.map((server) => server.stop()));
  }
});

Deno.test("a provider that goes away is ejected, probed once it is back, and only then gets calls again", async () => {
  await using config = await fleetCluster(["a", "b"]);
  let [a, b] = await startFleet(config);
  const cluster = await loadCluster(config.path);
  const events: string[] = [];
  const service = new ServiceClient(cluster, "svc", {
    client: "c1",
    balance: "round-robin",
    random: () => 0,
    ejectMs: 200,
    maxEjectMs: 1_000,
    onBalance: (provider, event) => events.push(`${provider} ${event}`),
  });
  try {
    assert.deepEqual(await service.call("echo", ["1"]), ["1"]); // a
    assert.deepEqual(await service.call("echo", ["2"]), ["2"]); // b
    await b.stop();
    // b is tried, cannot be reached, is ejected, and the call is answered by a.
    await waitFor(
      async () => {
        assert.deepEqual(await service.call("echo", ["3"]), ["3"]);
        return events.includes("b ejected") || undefined;
      },
      "b ejected",
      20_000,
    );
    [b] = await startServers([{ name: "b", config: config.path, port: config.ports.b }]);
    const onA = (await health(a.port)).callsServed;
    let calls = 0;
    await waitFor(
      async () => {
        // Calls keep coming (each lets the client probe b when due) until b is readmitted.
        if (events.includes("b readmitted")) return true;
        assert.deepEqual(await service.call("echo", ["4"]), ["4"]);
        calls++;
        return undefined;
      },
      "b readmitted",
      30_000,
    );
    assert.equal((await health(b.port)).callsServed, 0, "the probe came before any call");
    assert.equal(
      (await health(a.port)).callsServed,
      onA + calls,
      "a answered every call meanwhile",
    );
    for (let i = 0; i < 4; i++) await service.call("echo", ["5"]);
    assert.equal((await health(b.port)).callsServed, 2, "round-robin again once readmitted");
    assert.equal(events[0], "b ejected");
    assert.equal(events.at(-1), "b readmitted");
    assert.ok(events.slice(1, -1).every((event) => event === "b probe failed"), events.join(", "));
  } finally {
    service.close();
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("--all shows a progress line on a terminal for ten servers or more, and none on a pipe", async () => {
  // Ten servers that are all down answer quickly, each with its own line.
  const names = Array.from({ length: 10 }, (_, i) => `n${i}`);
  await using config = await fleetCluster(names);
  const piped = await rpc(["ping", "--config", config.path, "--all"]);
  assertExit(piped, 3);
  assert.equal(piped.stdout.trimEnd().split("\n").length, 10);
  assert.doesNotMatch(piped.stderr, /answered/);

  // script(1) gives the command a terminal and copies what it wrote there to our pipe.
  const command = [
    Deno.execPath(),
    "run",
    "--allow-all",
    MAIN,
    "ping",
    "--config",
    config.path,
    "--all",
  ]
    .map((word) => `'${word}'`).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    env: childEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 3, text);
  // The progress line is redrawn in place: carriage return, then erase to the end of the line.
  assert.ok(text.includes("\r\x1b[K10/10 answered, 10 failed\r\x1b[K"), JSON.stringify(text));
  assert.match(text, /n9 {2}Unavailable: /);
});
