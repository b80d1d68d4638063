/**
 * rpc over NATS, end to end: a real nats-server on loopback (with a small
 * max_payload, so every larger message is chunked), real `rpc server
 * --broker` processes with no port of their own, and the real CLI and
 * client library through the broker. Identity, tenants, streaming, cancel,
 * deadlines and frame limits hold as over TCP; an answer from a server that
 * is not a provider is refused; bytes a stranger injects into a session
 * close it; servers announce themselves (discovery, heartbeat); a broker
 * that goes away gives a clear `Unavailable`, and the servers serve again,
 * with their installed code, once it is back; a server killed mid fan-out
 * gets its own line. The second test puts the broker's own authentication
 * (user/password, nkey) underneath.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connectOver } from "../core/client/connect.ts";
import type { RpcError } from "../core/errors.ts";
import { EXIT_CODES, PARTIAL_FAILURE_EXIT_CODE } from "../cmd/exit_codes.ts";
import { Broker } from "../core/transport/nats/mod.ts";
import { connect as natsConnect, nkeys } from "@nats-io/transport-node";
import {
  delay,
  describeResult,
  ROOT,
  rpc,
  type ServerProcess,
  startServers,
  waitFor,
  withTimeout,
} from "./helpers.ts";
import { startNats } from "./nats_helpers.ts";

const C1_SECRET = "c1-fleet-secret";
const C2_SECRET = "c2-fleet-secret";
/** Small enough that a 300 KB argument crosses the broker in several messages. */
const MAX_PAYLOAD = 64 * 1024;
const READY = /serving through broker/;

/** The fleet's init.yaml: a broker, servers without addresses, clients with secrets. */
function fleetYaml(
  broker: string,
  dir: string,
  providers: { service1: string[]; service2: string[] },
): string {
  const src = (file: string) => join(ROOT, "services", file);
  return `network:
  broker: ${broker}
  servers:
    - s1: {}
    - s2: {}
    - s3: {}
  clients:
    - c1: { secret-file: ${join(dir, "c1.secret")} }
    - c2: { secret-file: ${join(dir, "c2.secret")} }
service:
  - service1:
      providers: [${providers.service1.join(", ")}]
      tenants: [c1, c2]
      rpcs: [rpc1, echo, sleep, countdown]
  - service2:
      providers: [${providers.service2.join(", ")}]
      tenants: [c2]
      rpcs: [rpc3]
rpc:
  - rpc1: { args: [int, str], returns: [str], src: ${src("service1/rpc1.ts")} }
  - echo: { args: [str], returns: [str], src: ${src("service1/echo.ts")} }
  - sleep: { args: [float], returns: [str], src: ${src("service1/sleep.ts")} }
  - countdown: { args: [int], yields: [int], returns: [str], src: ${src("service1/countdown.ts")} }
  - rpc3: { args: [float, "List[float]"], returns: [str], src: ${src("service2/rpc3.ts")} }
`;
}

Deno.test("nats: the fleet through a broker", async (t) => {
  const nats = await startNats({ config: `max_payload: ${MAX_PAYLOAD}\n` });
  const dir = await Deno.makeTempDir({ prefix: "rpc-nats-" });
  let servers: ServerProcess[] = [];
  try {
    await Deno.writeTextFile(join(dir, "c1.secret"), C1_SECRET);
    await Deno.writeTextFile(join(dir, "c2.secret"), C2_SECRET);
    // The clients' file: s3 provides nothing. s3's own file makes it serve service1 anyway.
    const config = join(dir, "init.yaml");
    await Deno.writeTextFile(
      config,
      fleetYaml(nats.url, dir, { service1: ["s1", "s2"], service2: ["s2"] }),
    );
    const strayConfig = join(dir, "stray.yaml");
    await Deno.writeTextFile(
      strayConfig,
      fleetYaml(nats.url, dir, { service1: ["s3"], service2: ["s2"] }),
    );
    servers = await startServers([
      { name: "s1", config, port: null, ready: READY, extraArgs: ["--max-frame-bytes", "1048576"] },
      { name: "s2", config, port: null, ready: READY },
      { name: "s3", config: strayConfig, port: null, ready: READY },
    ]);
    const [s1] = servers;
    const as = (client: "c1" | "c2") => ["--config", config, "--as", client];

    await t.step("a call by server name, with no address anywhere", async () => {
      assert.doesNotMatch(s1.stderrText(), /listening on/, "s1 must listen on no port");
      const result = await rpc(["call", ...as("c1"), "s1", "service1", "rpc1", "3", "ab"]);
      assert.equal(result.code, 0, describeResult(result));
      assert.equal(result.stdout.trim(), "ababab");
    });

    await t.step("--broker on the command line, without init.yaml", async () => {
      const result = await rpc(["call", "--broker", nats.url, "s2", "service1", "echo", "hi"], {
        env: { RPC_CLIENT: "c2", RPC_CLIENT_SECRET: C2_SECRET },
      });
      assert.equal(result.code, 0, describeResult(result));
      assert.equal(result.stdout.trim(), "hi");
    });

    await t.step("an unknown client is refused, as over TCP", async () => {
      const result = await rpc([
        "call",
        "--config",
        config,
        "--as",
        "intruder",
        "s1",
        "service1",
        "echo",
        "x",
      ]);
      assert.equal(result.code, EXIT_CODES["Client Not Registered"], describeResult(result));
      assert.match(result.stderr, /intruder/);
      await waitFor(() => /intruder/.test(s1.stderrText()), "s1 logging the refusal");
    });

    await t.step("a wrong secret is refused", async () => {
      const result = await rpc(["call", "--config", config, "s1", "service1", "echo", "x"], {
        env: { RPC_CLIENT: "c1", RPC_CLIENT_SECRET: "guess" },
      });
      assert.notEqual(result.code, 0, describeResult(result));
      assert.match(result.stderr, /Wrong secret for client c1/);
    });

    await t.step("tenants are enforced: c1 may not call service2", async () => {
      const refused = await rpc(["call", ...as("c1"), "s2", "service2", "rpc3", "1.5", "[2]"]);
      assert.equal(refused.code, EXIT_CODES["Client Not Registered"], describeResult(refused));
      const allowed = await rpc(["call", ...as("c2"), "s2", "service2", "rpc3", "1.5", "[2]"]);
      assert.equal(allowed.code, 0, describeResult(allowed));
    });

    await t.step("streaming: each part, then the result", async () => {
      const result = await rpc(["call", ...as("c1"), "s1", "service1", "countdown", "3"]);
      assert.equal(result.code, 0, describeResult(result));
      const lines = result.stdout.trim().split("\n");
      assert.deepEqual(lines.slice(0, 3), ["3", "2", "1"]);
      assert.ok(lines.length > 3, result.stdout);
    });

    await t.step("deadline: a call past --timeout ends Timeout", async () => {
      const result = await rpc([
        "call",
        ...as("c1"),
        "--timeout",
        "500ms",
        "s1",
        "service1",
        "sleep",
        "5",
      ]);
      assert.equal(result.code, EXIT_CODES.Timeout, describeResult(result));
    });

    // The library, through its own connection to the broker.
    const broker = await Broker.connect({ url: nats.url });
    try {
      const open = async (server: string) =>
        await connectOver(await broker.open({ server }), { client: "c1", secret: C1_SECRET });

      await t.step("cancel: the call ends Cancelled and the session goes on", async () => {
        const client = await open("s1");
        try {
          const controller = new AbortController();
          const call = client.call("service1", "sleep", [10], { signal: controller.signal });
          setTimeout(() => controller.abort(), 200);
          await assert.rejects(call, (error: RpcError) => error.kind === "Cancelled");
          assert.deepEqual(await client.call("service1", "echo", ["after"]), ["after"]);
        } finally {
          client.close();
        }
      });

      await t.step(
        "a message over max_payload is chunked; one over the frame limit is refused",
        async () => {
          const client = await open("s1");
          try {
            const big = "x".repeat(300_000);
            assert.ok(big.length > MAX_PAYLOAD * 4);
            const [echoed] = await client.call("service1", "echo", [big]);
            assert.equal(echoed, big);
            // s1 takes frames of at most 1 MiB: this one is refused, as over TCP.
            const tooBig = "y".repeat(1_200_000);
            await assert.rejects(
              client.call("service1", "echo", [tooBig]),
              (error: RpcError) =>
                error.kind === "Frame Too Large" && /exceeds limit 1048576/.test(error.message),
            );
          } finally {
            client.close();
          }
          await waitFor(
            () => /1048576/.test(s1.stderrText()),
            "s1 logging the frame over its limit",
          );
          // s1 serves everyone else as before.
          const after = await open("s1");
          try {
            assert.deepEqual(await after.call("service1", "echo", ["still"]), ["still"]);
          } finally {
            after.close();
          }
        },
      );

      await t.step(
        "bytes injected into a session are dropped, or close it: never corrupt it",
        async () => {
          const session = await broker.open({ server: "s1" });
          const client = await connectOver(session, { client: "c1", secret: C1_SECRET });
          const stranger = await natsConnect({ servers: nats.url });
          try {
            assert.deepEqual(await client.call("service1", "echo", ["before"]), ["before"]);
            // A data message (kind 3) with a sequence number the session is not at.
            const forged = new Uint8Array([3, 0, 0, 3, 231, ...new TextEncoder().encode("junk")]);
            // Not naming s1's inbox as its reply subject: dropped, the session goes on.
            stranger.publish(session.inbox, forged);
            await stranger.flush();
            assert.deepEqual(await client.call("service1", "echo", ["between"]), ["between"]);
            // Posing as s1: the sequence gap closes the session.
            stranger.publish(session.inbox, forged, { reply: session.peerInbox });
            await stranger.flush();
            await assert.rejects(
              client.call("service1", "echo", ["after"]),
              (error: RpcError) =>
                error.kind === "Unavailable" && /Lost messages on the broker/.test(error.message),
            );
          } finally {
            client.close();
            await stranger.close();
          }
          // s1 itself serves on.
          const next = await open("s1");
          try {
            assert.deepEqual(await next.call("service1", "echo", ["fine"]), ["fine"]);
          } finally {
            next.close();
          }
        },
      );

      await t.step("an answer from a server that is not a provider is refused", async () => {
        // s1, s2 and s3 all subscribe to service1's queue group; only s1 and s2 are providers.
        const seen = new Set<string>();
        for (let i = 0; i < 12; i++) {
          const session = await broker.open({ service: "service1" }, { providers: ["s1", "s2"] });
          seen.add(session.peer);
          session.close();
        }
        assert.ok(!seen.has("s3"), `s3 was accepted: ${[...seen]}`);
        await assert.rejects(
          broker.open({ service: "service1" }, { providers: ["s9"], timeoutMs: 3_000 }),
          (error: RpcError) =>
            error.kind === "Unauthorized" && /not a provider of service1/.test(error.message),
        );
        // The command line checks the same against init.yaml.
        for (let i = 0; i < 4; i++) {
          const result = await rpc(["call", ...as("c1"), "--service", "service1", "echo", "ok"]);
          assert.equal(result.code, 0, describeResult(result));
        }
      });
    } finally {
      await broker.close();
    }

    await t.step(
      "two servers of one name: one answers each open, the other is told to close",
      async () => {
        const [twin] = await startServers([{ name: "s1", config, port: null, ready: READY }]);
        servers.push(twin);
        try {
          for (let i = 0; i < 8; i++) {
            const result = await rpc(["call", ...as("c1"), "s1", "service1", "echo", `twin ${i}`]);
            assert.equal(result.code, 0, describeResult(result));
            assert.equal(result.stdout.trim(), `twin ${i}`);
          }
        } finally {
          await twin.stop();
          servers = servers.filter((server) => server !== twin);
        }
      },
    );

    await t.step("--all fans out through the broker", async () => {
      const result = await rpc([
        "call",
        ...as("c1"),
        "--all",
        "--service",
        "service1",
        "rpc1",
        "2",
        "x",
      ]);
      assert.equal(result.code, 0, describeResult(result));
      const lines = result.stdout.trim().split("\n");
      assert.equal(lines.length, 2, result.stdout);
      assert.match(lines[0], /^s1\s+ok\s+xx$/);
      assert.match(lines[1], /^s2\s+ok\s+xx$/);
    });

    await t.step("--balance through the broker reaches the providers by name", async () => {
      for (const balance of ["first", "round-robin", "p2c"]) {
        const result = await rpc([
          "call",
          ...as("c1"),
          "--service",
          "service1",
          "--balance",
          balance,
          "echo",
          balance,
        ]);
        assert.equal(result.code, 0, describeResult(result));
        assert.equal(result.stdout.trim(), balance);
      }
    });

    await t.step("rpc list --broker shows the servers up, without addresses", async () => {
      // Meanwhile, the servers' heartbeats (every 5 s) are heard by anyone on the broker.
      const listener = await natsConnect({ servers: nats.url });
      const heard = new Promise<Record<string, unknown>>((resolve) => {
        listener.subscribe("rpc.heartbeat.s2", {
          callback: (_error, msg) => resolve(msg.json()),
        });
      });
      const result = await rpc(["list", "--broker", nats.url, "--json"]);
      assert.equal(result.code, 0, describeResult(result));
      const { servers: up } = JSON.parse(result.stdout);
      assert.deepEqual(up.map((server: { server: string }) => server.server), ["s1", "s2", "s3"]);
      assert.deepEqual(up[1].services, ["service1", "service2"]);
      const described = await rpc(["describe", ...as("c1"), "s1", "service1.rpc1"]);
      assert.equal(described.code, 0, describeResult(described));
      const pinged = await rpc(["ping", "--broker", nats.url, "s2"]);
      assert.equal(pinged.code, 0, describeResult(pinged));
      // Without init.yaml (a directory without one), --all asks every server that announces itself.
      const bare = join(dir, "bare");
      await Deno.mkdir(bare);
      const fleet = await rpc(["ping", "--all", "--broker", nats.url], { cwd: bare });
      assert.equal(fleet.code, 0, describeResult(fleet));
      assert.deepEqual(
        fleet.stdout.trim().split("\n").map((line) => line.split(/\s+/).slice(0, 2).join(" ")),
        ["s1 ok", "s2 ok", "s3 ok"],
      );
      try {
        const beat = await withTimeout(heard, 20_000, "s2's heartbeat");
        assert.equal(beat.server, "s2");
        assert.deepEqual(beat.services, ["service1", "service2"]);
      } finally {
        await listener.close();
      }
    });

    await t.step("rpc init and rpc bench through the broker", async () => {
      const planned = await rpc(["init", "--config", config, "--dry-run"]);
      assert.equal(planned.code, 0, describeResult(planned));
      assert.match(planned.stdout, /^s1: unchanged/m);
      assert.match(planned.stdout, /^s2: unchanged/m);
      // s3 was started from another file: deploying this one would change it.
      assert.match(planned.stdout, /^s3: .*(add|remove)/m);
      const benched = await rpc([
        "bench",
        "--config",
        config,
        "--as",
        "c1",
        "s1",
        "service1",
        "echo",
        "hi",
        "-n",
        "200",
        "-c",
        "8",
        "--json",
      ], { timeoutMs: 60_000 });
      assert.equal(benched.code, 0, describeResult(benched));
      const report = JSON.parse(benched.stdout);
      assert.equal(report.ok, 200);
    });

    await t.step("broker lost: Unavailable; back: the servers serve again", async () => {
      await nats.kill();
      const down = await rpc(["call", ...as("c1"), "s1", "service1", "rpc1", "1", "z"]);
      assert.equal(down.code, EXIT_CODES.Unavailable, describeResult(down));
      assert.match(
        down.stderr,
        /^error: Unavailable: Cannot reach the broker nats:\/\/127\.0\.0\.1:\d+: /m,
      );
      await waitFor(() => /lost the broker/.test(s1.stderrText()), "s1 noticing", 10_000);
      await nats.restart();
      const back = await waitFor(
        async () => {
          const result = await rpc(["call", ...as("c1"), "s1", "service1", "rpc1", "2", "z"]);
          return result.code === 0 ? result : undefined;
        },
        "s1 serving again through the restarted broker",
        30_000,
      );
      assert.equal(back.stdout.trim(), "zz");
      assert.ok(servers.every((server) => server.running()));
    });

    await t.step("a server that dies mid fan-out: its line says so, the others print", async () => {
      const [, s2] = servers;
      const sessions = () => (s2.stderrText().match(/connection attempt from nats:/g) ?? []).length;
      const before = sessions();
      const fanOut = rpc([
        "call",
        ...as("c1"),
        "--all",
        "--service",
        "service1",
        "sleep",
        "3",
      ], { timeoutMs: 60_000 });
      await waitFor(() => sessions() > before, "the fan-out's session on s2", 15_000);
      // The call is on its way or running there (a 3 s sleep): s2 dies without a word.
      await delay(1_000);
      s2.process.kill("SIGKILL");
      const result = await fanOut;
      assert.equal(result.code, PARTIAL_FAILURE_EXIT_CODE, describeResult(result));
      const lines = result.stdout.trim().split("\n");
      assert.match(lines[0], /^s1\s+ok\s/);
      assert.match(lines[1], /^s2\s+Unavailable: s2 stopped answering through the broker/);
    });
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await nats.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("nats: the broker's own user/password and nkey authentication", async () => {
  const user = nkeys.createUser();
  const nats = await startNats({
    config: `authorization {
  users = [
    { user: "fleet", password: "pw-of-the-fleet" }
    { nkey: "${user.getPublicKey()}" }
  ]
}
`,
  });
  const dir = await Deno.makeTempDir({ prefix: "rpc-nats-auth-" });
  let servers: ServerProcess[] = [];
  try {
    const seedFile = join(dir, "fleet.nk");
    await Deno.writeTextFile(seedFile, new TextDecoder().decode(user.getSeed()));
    const withPassword = nats.url.replace("//", "//fleet:pw-of-the-fleet@");
    servers = await startServers([
      { name: "s1", config: null, port: null, ready: READY, extraArgs: ["--broker", withPassword] },
      {
        name: "s2",
        config: null,
        port: null,
        ready: READY,
        extraArgs: ["--broker", nats.url, "--broker-creds", seedFile],
      },
    ]);
    // Neither server's log shows the password.
    assert.doesNotMatch(servers[0].stderrText(), /pw-of-the-fleet/);
    assert.match(servers[0].stderrText(), /fleet:\*\*\*@/);

    const listed = await rpc(["list", "--broker", nats.url, "--broker-creds", seedFile, "--json"]);
    assert.equal(listed.code, 0, describeResult(listed));
    const names = JSON.parse(listed.stdout).servers.map((s: { server: string }) => s.server);
    assert.deepEqual(names, ["s1", "s2"]);
    const pinged = await rpc(["ping", "--broker", withPassword, "s2"]);
    assert.equal(pinged.code, 0, describeResult(pinged));

    for (const broker of [nats.url, nats.url.replace("//", "//fleet:wrong@")]) {
      const refused = await rpc(["ping", "--broker", broker, "s1"]);
      assert.equal(refused.code, EXIT_CODES.Unavailable, describeResult(refused));
      assert.match(refused.stderr, /Cannot reach the broker .*Authorization Violation/i);
      assert.doesNotMatch(refused.stderr, /wrong/);
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await nats.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
