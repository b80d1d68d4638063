/**
 * End-to-end tests of `rpc init` against real `rpc server` processes that
 * start empty (no --config) and receive their code over the network.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import { sha256Hex } from "../core/hash.ts";
import {
  delay,
  describeResult,
  rpc,
  type ServerProcess,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";

const TOKEN = "correct horse battery staple";

interface StateReport {
  generation: number;
  procedures: { service: string; rpc: string; args: string[]; hash: string; language: string }[];
}

/**
 * A fresh, empty server that accepts installs with {@linkcode TOKEN} (or no
 * token at all). Stopping it also removes its token file.
 */
async function emptyServer(name: string, options: { stateDir?: string; token?: boolean } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "rpc-init-" });
  const tokenFile = join(dir, "token");
  await Deno.writeTextFile(tokenFile, `${TOKEN}\n`);
  let started: ServerProcess;
  try {
    started = await startServer({
      name,
      config: null,
      ...(options.stateDir ? { stateDir: options.stateDir } : {}),
      extraArgs: options.token === false ? [] : ["--admin-token-file", tokenFile],
    });
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  const stop = started.stop;
  const server: ServerProcess = Object.assign(started, {
    stop: async () => {
      const status = await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return status;
    },
  });
  return { server };
}

/** A two-service cluster file pointing at running servers, with sources beside it. */
function clusterSpec(
  servers: Record<string, ServerProcess>,
  files: Record<string, string>,
  rpcs: string[],
) {
  const all = [
    { name: "greet", args: ["str"], returns: ["str"], src: "greet.ts" },
    { name: "version", args: [], returns: ["str"], src: "version.ts" },
    { name: "slow", args: ["float"], returns: ["str"], src: "slow.ts" },
    { name: "pyadd", args: ["int", "int"], returns: ["int"], src: "pyadd.py" },
    { name: "pyfail", args: ["str"], returns: ["str"], src: "pyfail.py" },
  ].filter((spec) => rpcs.includes(spec.name));
  return {
    servers: Object.fromEntries(
      Object.entries(servers).map((
        [name, server],
      ) => [name, { ip: "127.0.0.1", port: server.port }]),
    ),
    clients: { c1: { ip: "127.0.0.1" }, c2: { ip: "127.0.0.1" } },
    services: {
      alpha: {
        providers: Object.keys(servers),
        tenants: ["c1"],
        rpcs: all.map((spec) => spec.name),
      },
    },
    rpcs: all,
    files,
  };
}

const FILES = {
  "greet.ts": `export function greet(name: string) { return "hello " + name; }\n`,
  "version.ts": `export function version() { return "v1"; }\n`,
  "slow.ts":
    `export async function slow(s: number) { await new Promise((r) => setTimeout(r, s * 1000)); return "v1"; }\n`,
  "pyadd.py": `def pyadd(a, b):\n    return a + b\n`,
  "pyfail.py":
    `import os\n\ndef pyfail(how):\n    if how == "raise":\n        raise ValueError("no good: " + how)\n    if how == "crash":\n        os._exit(3)\n    return how\n`,
};

async function state(server: ServerProcess): Promise<StateReport> {
  const result = await rpc(["hash", "--server", server.address, "--json"]);
  assert.equal(result.code, 0, describeResult(result));
  return JSON.parse(result.stdout) as StateReport;
}

function init(path: string, ...args: string[]) {
  return rpc(["init", path, ...args], { env: { RPC_ADMIN_TOKEN: TOKEN } });
}

Deno.test("rpc init deploys to every server, and an unchanged re-run sends no code", async () => {
  const a = await emptyServer("s1");
  const b = await emptyServer("s2");
  await using config = await writeInitYaml(
    clusterSpec({ s1: a.server, s2: b.server }, FILES, ["greet", "version", "pyadd"]),
  );
  try {
    const first = await init(config.path);
    assert.equal(first.code, 0, describeResult(first));
    assert.match(first.stdout, /s1: installed generation 1, server received 3 sources/);
    assert.match(first.stdout, /s2: installed generation 1, server received 3 sources/);

    for (const server of [a.server, b.server]) {
      const held = await state(server);
      assert.equal(held.generation, 1);
      const greet = held.procedures.find((procedure) => procedure.rpc === "greet");
      assert.equal(greet?.hash, sha256Hex(FILES["greet.ts"]));
      // rpc hash FILE prints the same hash the server reports.
      const local = await rpc(["hash", join(config.dir, "greet.ts")]);
      assert.equal(local.stdout.split(" ")[0], greet?.hash);
    }
    const call = await rpc([
      "call",
      "--config",
      config.path,
      "--as",
      "c1",
      "s2",
      "alpha",
      "pyadd",
      "2",
      "40",
    ]);
    assert.equal(call.stdout.trim(), "42", describeResult(call));

    const again = await init(config.path);
    assert.equal(again.code, 0, describeResult(again));
    assert.match(again.stdout, /s1: unchanged \(3 procedures\), no code sent/);
    assert.match(again.stdout, /s2: unchanged \(3 procedures\), no code sent/);
    // What the servers report: no new install happened.
    assert.equal((await state(a.server)).generation, 1);
    assert.equal([...a.server.stderrText().matchAll(/installed generation/g)].length, 1);
  } finally {
    await a.server.stop();
    await b.server.stop();
  }
});

Deno.test("rpc init --dry-run prints the plan and changes nothing; a real run removes what the file dropped", async () => {
  const { server } = await emptyServer("s1");
  await using before = await writeInitYaml(
    clusterSpec({ s1: server }, FILES, ["greet", "version"]),
  );
  await using after = await writeInitYaml(
    clusterSpec(
      { s1: server },
      { ...FILES, "greet.ts": FILES["greet.ts"].replace("hello", "hi") },
      [
        "greet",
        "pyadd",
      ],
    ),
  );
  try {
    assert.equal((await init(before.path)).code, 0);
    const plan = await init(after.path, "--dry-run");
    assert.equal(plan.code, 0, describeResult(plan));
    assert.match(plan.stdout, /1 added, 1 changed, 1 removed, 0 unchanged/);
    assert.match(plan.stdout, /\+ alpha\.pyadd\(int, int\) -> int/);
    assert.match(plan.stdout, /~ alpha\.greet\(str\) -> str {2}\(sha256 /);
    assert.match(plan.stdout, /- alpha\.version\(\) -> str/);
    assert.equal((await state(server)).generation, 1, "dry run must not install");
    const still = await rpc(["call", "--as", "c1", server.address, "alpha", "version"]);
    assert.equal(still.stdout.trim(), "v1");

    const real = await init(after.path);
    assert.equal(real.code, 0, describeResult(real));
    assert.match(real.stdout, /server received 2 sources/);
    const gone = await rpc(["call", "--as", "c1", server.address, "alpha", "version"]);
    assert.equal(gone.code, 13, describeResult(gone));
    const changed = await rpc(["call", "--as", "c1", server.address, "alpha", "greet", "you"]);
    assert.equal(changed.stdout.trim(), "hi you");
  } finally {
    await server.stop();
  }
});

Deno.test("a changed procedure is swapped while calls run: none fails, calls in flight finish on the old code", async () => {
  const { server } = await emptyServer("s1");
  await using v1 = await writeInitYaml(clusterSpec({ s1: server }, FILES, ["version", "slow"]));
  const v2Files = {
    ...FILES,
    "version.ts": FILES["version.ts"].replace("v1", "v2"),
    "slow.ts": FILES["slow.ts"].replace("v1", "v2"),
  };
  await using v2 = await writeInitYaml(clusterSpec({ s1: server }, v2Files, ["version", "slow"]));
  try {
    assert.equal((await init(v1.path)).code, 0);
    const client = await connect(server.address, { client: "c1" });
    try {
      const inFlight = client.call("alpha", "slow", [1.5]);
      let stop = false;
      const seen: string[] = [];
      const failures: unknown[] = [];
      const loop = (async () => {
        while (!stop) {
          try {
            const [value] = await client.call("alpha", "version", []);
            seen.push(value as string);
          } catch (error) {
            failures.push(error);
          }
        }
      })();
      await delay(200);
      const swap = await init(v2.path);
      assert.equal(swap.code, 0, describeResult(swap));
      await waitFor(() => seen.at(-1) === "v2", "a call answered by the new code");
      stop = true;
      await loop;
      assert.deepEqual(failures, []);
      assert.ok(seen.includes("v1") && seen.includes("v2"));
      assert.ok(
        seen.indexOf("v2") > seen.lastIndexOf("v1"),
        "once v2 answers, v1 never does again",
      );
      assert.deepEqual(
        await inFlight,
        ["v1"],
        "the call started before the install ends on the old code",
      );
      assert.deepEqual(await client.call("alpha", "slow", [0]), ["v2"]);
    } finally {
      client.close();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("a server killed with SIGKILL during installs restarts with the complete old or new state", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-kill-" });
  // Many procedures with distinct sources make each install take a while.
  const files: Record<string, string> = {};
  const names: string[] = [];
  for (let i = 0; i < 120; i++) {
    files[`p${i}.ts`] = `export function p${i}() { return ${i}; }\n// ${"x".repeat(2000)}\n`;
    names.push(`p${i}`);
  }
  const versions = [0, 1, 2].map((round) =>
    Object.fromEntries(
      Object.entries(files).map((
        [name, text],
      ) => [name, text.replace("return", `return ${round} * 1000 +`)]),
    )
  );
  try {
    for (let round = 0; round < 3; round++) {
      let { server } = await emptyServer("s1", { stateDir });
      const before = await state(server);
      await using config = await writeInitYaml({
        servers: { s1: { ip: "127.0.0.1", port: server.port } },
        services: { alpha: { providers: ["s1"], rpcs: names } },
        rpcs: names.map((name) => ({ name, args: [], returns: ["int"], src: `${name}.ts` })),
        files: versions[round],
      });
      // Round 0 kills the server after its install finished; rounds 1 and 2
      // kill it once the install has written its first (or its 60th) new
      // source file, before it can commit.
      const newBlobs = new Set(
        names.map((name) => `${sha256Hex(versions[round][`${name}.ts`])}.ts`),
      );
      const written = async () => {
        let count = 0;
        try {
          for await (const entry of Deno.readDir(join(stateDir, "blobs"))) {
            if (newBlobs.has(entry.name)) count++;
          }
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
        return count;
      };
      const running = init(config.path);
      if (round > 0) {
        await waitFor(async () => (await written()) >= (round === 1 ? 1 : 60), "new blobs", 15_000);
      } else assert.equal((await running).code, 0);
      server.process.kill("SIGKILL");
      await server.stop();
      await running;
      const blobsAtKill = await written();
      server = (await emptyServer("s1", { stateDir })).server;
      try {
        const after = await state(server);
        const expectedHashes = names.map((name) => sha256Hex(versions[round][`${name}.ts`])).sort();
        const held = after.procedures.map((procedure) => procedure.hash).sort();
        console.log(
          `  round ${round}: killed with ${blobsAtKill} of ${names.length} new sources written; restarted with the ${
            after.generation === before.generation ? "old" : "new"
          } state (generation ${after.generation})`,
        );
        if (round > 0) {
          assert.equal(after.generation, before.generation, "killed before the commit");
        } else assert.equal(after.generation, before.generation + 1);
        if (after.generation === before.generation) {
          assert.deepEqual(
            held,
            before.procedures.map((procedure) => procedure.hash).sort(),
            "old state intact",
          );
        } else {
          assert.equal(after.generation, before.generation + 1);
          assert.deepEqual(held, expectedHashes, "new state complete");
        }
        // It serves the state it has: round 0's code, whatever was killed later.
        const call = await rpc(["call", server.address, "alpha", "p7"]);
        assert.equal(call.stdout.trim(), "7", describeResult(call));
      } finally {
        await server.stop();
      }
    }
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("rpc init rejects a broken file with file:line:column and contacts no server", async () => {
  const { server } = await emptyServer("s1");
  const dir = await Deno.makeTempDir({ prefix: "rpc-broken-" });
  try {
    const path = join(dir, "init.yaml");
    await Deno.writeTextFile(join(dir, "ok.ts"), "export function ok() { return 1; }\n");
    await Deno.writeTextFile(
      path,
      [
        "network:",
        "  servers:",
        `    - s1: {ip: 127.0.0.1, port: ${server.port}}`,
        "  clients:",
        "    - c1: {ip: 127.0.0.1}",
        "service:",
        "  - alpha:",
        "      providers: [s1, s9]",
        "      tenants: [c1, c7]",
        "      rpcs: [ok, ghost, twice]",
        "rpc:",
        "  - ok:",
        "      args: [integer]",
        "      returns: [int]",
        "      src: ok.ts",
        "  - twice:",
        "      args: [int]",
        "      src: missing.ts",
        "  - twice:",
        "      args: [int]",
        "      src: ok.ts",
        "",
      ].join("\n"),
    );
    const result = await init(path);
    assert.equal(result.code, 6, describeResult(result));
    const lines = result.stderr.trim().split("\n");
    const expect = (pattern: RegExp) =>
      assert.ok(lines.some((line) => pattern.test(line)), `${pattern} in:\n${result.stderr}`);
    expect(/init\.yaml:8:23: .*unknown server "s9"/);
    expect(/init\.yaml:9:21: .*unknown client "c7"/);
    expect(/init\.yaml:10:18: .*ghost/);
    expect(/init\.yaml:13:14: .*integer/);
    expect(/init\.yaml:19:5: .*twice.*two overloads/);
    assert.doesNotMatch(server.stderrText(), /connection attempt/, "nothing was sent");

    // A missing source is reported at its src line.
    await Deno.writeTextFile(
      path,
      [
        "network:",
        "  servers:",
        `    - s1: {ip: 127.0.0.1, port: ${server.port}}`,
        "service:",
        "  - alpha:",
        "      providers: [s1]",
        "      rpcs: [ok, twice]",
        "rpc:",
        "  - ok:",
        "      src: ok.ts",
        "  - twice:",
        "      args: [int]",
        "      src: missing.ts",
        "",
      ].join("\n"),
    );
    const missing = await init(path);
    assert.equal(missing.code, 6, describeResult(missing));
    assert.match(missing.stderr, /init\.yaml:13:12: rpc twice: cannot read src missing\.ts/);
    assert.doesNotMatch(server.stderrText(), /connection attempt/);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("Python procedures get the same types, errors and tenants as TypeScript ones", async () => {
  const { server } = await emptyServer("s1");
  await using config = await writeInitYaml(clusterSpec({ s1: server }, FILES, ["pyadd", "pyfail"]));
  try {
    assert.equal((await init(config.path)).code, 0);
    const call = (as: string, ...args: string[]) =>
      rpc(["call", "--config", config.path, "--as", as, "s1", ...args]);
    const ok = await call("c1", "alpha", "pyadd", "12345678901234567890", "1");
    assert.equal(ok.stdout.trim(), "12345678901234567891", describeResult(ok));
    const raised = await call("c1", "alpha", "pyfail", "raise");
    assert.equal(raised.code, 10, describeResult(raised));
    assert.match(raised.stderr, /^error: Execution Exception: ValueError: no good: raise$/m);
    assert.doesNotMatch(raised.stderr, /Traceback|File "/);
    const crashed = await call("c1", "alpha", "pyfail", "crash");
    assert.equal(crashed.code, 10, describeResult(crashed));
    assert.match(crashed.stderr, /interpreter/);
    const afterCrash = await call("c1", "alpha", "pyfail", "fine");
    assert.equal(afterCrash.stdout.trim(), "fine", "the next call gets a fresh interpreter");
    const invalid = await call("c1", "--types", "str,int", "alpha", "pyadd", "x", "1");
    assert.equal(invalid.code, 11, describeResult(invalid));
    assert.match(invalid.stderr, /pyadd\(int, int\) -> int/);
    assert.equal((await call("c1", "beta", "pyadd", "1", "2")).code, 12);
    assert.equal((await call("c1", "alpha", "nope", "1")).code, 13);
    const stranger = await call("c2", "alpha", "pyadd", "1", "2");
    assert.equal(stranger.code, 14, describeResult(stranger));
    await waitFor(
      () => /exception.*|Execution Exception/.test(server.stderrText()),
      "exceptions logged",
    );
    assert.match(server.stderrText(), /c1@\S+ alpha\.pyadd\(int, int\) ok/);
  } finally {
    await server.stop();
  }
});

Deno.test("installs without the admin secret are refused and logged; the state stays", async () => {
  const guarded = await emptyServer("s1");
  const open = await emptyServer("s2", { token: false });
  await using config = await writeInitYaml(clusterSpec({ s1: guarded.server }, FILES, ["greet"]));
  await using config2 = await writeInitYaml(clusterSpec({ s2: open.server }, FILES, ["greet"]));
  try {
    const missing = await rpc(["init", config.path]);
    assert.equal(missing.code, 18, describeResult(missing));
    assert.match(missing.stdout, /s1: FAILED: Unauthorized: Wrong or missing admin token/);
    const wrong = await rpc(["init", config.path], { env: { RPC_ADMIN_TOKEN: "guess" } });
    assert.equal(wrong.code, 18, describeResult(wrong));
    assert.equal((await state(guarded.server)).generation, 0);
    await waitFor(
      () => /unauthorized|admin install refused/.test(guarded.server.stderrText()),
      "refusal logged",
    );

    const none = await init(config2.path);
    assert.equal(none.code, 18, describeResult(none));
    assert.match(none.stdout, /started without an admin token/);
    assert.equal((await state(open.server)).generation, 0);
  } finally {
    await guarded.server.stop();
    await open.server.stop();
  }
});

Deno.test("rpc init exits with the kind's code when every server failed the same way, 1 when they differ", async () => {
  const s1 = await emptyServer("s1");
  const s2 = await emptyServer("s2");
  const servers = { s1: s1.server, s2: s2.server };
  await using same = await writeInitYaml(clusterSpec(servers, FILES, ["greet"]));
  await using mixed = await writeInitYaml({
    ...clusterSpec(servers, FILES, ["greet"]),
    servers: { s1: { ip: "127.0.0.1", port: s1.server.port }, s2: { ip: "127.0.0.1", port: 1 } },
  });
  try {
    // No admin secret: both servers refuse with Unauthorized, so the run exits 18.
    const unauthorized = await rpc(["init", same.path]);
    assert.equal(unauthorized.code, 18, describeResult(unauthorized));
    assert.match(unauthorized.stderr, /2 of 2 servers failed: s1, s2/);
    // Unauthorized on s1, Unavailable on s2: no one kind, so 1.
    const different = await rpc(["init", mixed.path]);
    assert.equal(different.code, 1, describeResult(different));
    assert.match(different.stdout, /s1: FAILED: Unauthorized/);
    assert.match(different.stdout, /s2: FAILED: Unavailable/);
  } finally {
    await s1.server.stop();
    await s2.server.stop();
  }
});

Deno.test("a failed server is named while the others complete", async () => {
  const { server } = await emptyServer("s1");
  await using config = await writeInitYaml({
    ...clusterSpec({ s1: server }, FILES, ["greet"]),
    servers: { s1: { ip: "127.0.0.1", port: server.port }, s2: { ip: "127.0.0.1", port: 1 } },
    services: { alpha: { providers: ["s1", "s2"], tenants: ["c1"], rpcs: ["greet"] } },
  });
  try {
    const result = await init(config.path);
    assert.equal(result.code, 1, describeResult(result));
    assert.match(result.stdout, /s2: FAILED: Unavailable/);
    assert.match(result.stdout, /s1: installed generation 1/);
    assert.match(result.stderr, /1 of 2 servers failed: s2/);
  } finally {
    await server.stop();
  }
});

Deno.test("a syntax error in a deployed Python procedure names its src and place in init.yaml, not the stored blob", async () => {
  const { server } = await emptyServer("py1");
  await using config = await writeInitYaml(
    clusterSpec({ py1: server }, {
      ...FILES,
      "pyadd.py": "def pyadd(a, b):\n    return (a + b\n",
    }, ["greet", "pyadd"]),
  );
  try {
    const result = await init(config.path);
    assert.equal(result.code, 10, describeResult(result));
    const failed = result.stdout.split("\n").find((line) => line.startsWith("py1: FAILED:"));
    assert.ok(failed, describeResult(result));
    assert.doesNotMatch(failed, /[0-9a-f]{64}/, "no blob name");
    assert.doesNotMatch(failed, /blobs/, "no path into the state directory");
    assert.match(failed, /SyntaxError/);
    assert.match(failed, new RegExp(`Cannot load ${config.dir}/pyadd\\.py: SyntaxError`));
    // Where the file says so: the line of that rpc's src in init.yaml.
    const yamlLines = (await Deno.readTextFile(config.path)).split("\n");
    const srcLine = yamlLines.findIndex((line) => line.includes("pyadd.py")) + 1;
    assert.match(
      failed,
      new RegExp(`is src of alpha\\.pyadd at ${config.path}:${srcLine}:\\d+\\]$`),
    );
    // Nothing was installed: the server still holds nothing.
    assert.equal((await state(server)).generation, 0);
  } finally {
    await server.stop();
  }
});
