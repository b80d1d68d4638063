/**
 * Installs that must not wedge or lose changes, against real `rpc server`
 * processes: a procedure whose module never finishes loading fails its
 * install by name and leaves later installs working (`--load-timeout`);
 * `rpc init --timeout` bounds the whole run; and an install planned against
 * a state that changed meanwhile is refused (compare-and-swap on the
 * generation), whether the two installs are ordered by hand or race; and
 * a reply that is not what a server sends is refused, naming the field.
 *
 * Run: `deno test --allow-all tests/deploy_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { loadCluster } from "../core/deploy/cluster.ts";
import { fetchState } from "../core/deploy/client.ts";
import { desiredStateFor } from "../core/deploy/desired.ts";
import type { DesiredState } from "../core/deploy/plan.ts";
import type { RpcError } from "../core/errors.ts";
import { sha256Hex } from "../core/hash.ts";
import type { AdminRequest } from "../core/wire/message.ts";
import {
  describeResult,
  rpc,
  type RpcResult,
  type ServerProcess,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";
import { oddServer } from "./odd_server.ts";

/** A server that starts empty and takes installs from anyone (the admin secret is not the point). */
function emptyServer(...extraArgs: string[]): Promise<ServerProcess> {
  return startServer({ name: "s1", config: null, extraArgs: ["--insecure", ...extraArgs] });
}

/** An init.yaml for one server `s1` with service `alpha` open to anyone, one procedure per file. */
function cluster(server: ServerProcess, files: Record<string, string>) {
  const rpcs = Object.keys(files).map((file) => ({
    name: file.replace(/\.(ts|py)$/, ""),
    args: [],
    returns: ["str"],
    src: file,
  }));
  return writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: server.port } },
    clients: { c1: { ip: "127.0.0.1" } },
    services: { alpha: { providers: ["s1"], rpcs: rpcs.map((spec) => spec.name) } },
    rpcs,
    files,
  });
}

/** A TypeScript procedure `name` returning `text`. */
function returning(name: string, text: string): string {
  return `export function ${name}() { return ${JSON.stringify(text)}; }\n`;
}

async function call(server: ServerProcess, rpcName: string): Promise<string> {
  const result = await rpc(["call", server.address, "alpha", rpcName]);
  assert.equal(result.code, 0, describeResult(result));
  return result.stdout.trim();
}

async function withClient<T>(server: ServerProcess, use: (client: RpcClient) => Promise<T>) {
  const client = await connect(server.address, { connectTimeoutMs: 10_000 });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** What `rpc init --json` prints. */
interface InitJson {
  servers: {
    server: string;
    ok: boolean;
    error?: { kind: string; message: string };
    plan?: { changed: string[] };
    install?: { generation: number };
  }[];
}

function parseInit(result: RpcResult): InitJson["servers"][number] {
  try {
    return (JSON.parse(result.stdout) as InitJson).servers[0];
  } catch {
    assert.fail(`rpc init --json printed no JSON: ${describeResult(result)}`);
  }
}

Deno.test("a module that never finishes loading fails its install by name; later installs work", async () => {
  const server = await emptyServer("--load-timeout", "2s");
  try {
    // Top-level awaits that never settle: the sandbox's import and Python's import never return.
    await using hangs = await cluster(server, {
      "ok.ts": returning("ok", "first"),
      "hang.ts": `await new Promise(() => {});\n${returning("hang", "never")}`,
    });
    const first = await rpc(["init", hangs.path]);
    assert.equal(first.code, 10, describeResult(first)); // Execution Exception
    assert.match(
      first.stdout,
      /s1: FAILED: Execution Exception: Cannot load the new code: alpha\.hang\(\) did not finish loading within 2000 ms \(the server's load limit\)/,
    );
    await waitFor(() => /alpha\.hang\(\) did not finish loading/.test(server.stderrText()), "log");

    await using pythonHangs = await cluster(server, {
      "ok.ts": returning("ok", "first"),
      "pyhang.py":
        `import time\nwhile True:\n    time.sleep(1)\n\ndef pyhang():\n    return "never"\n`,
    });
    const python = await rpc(["init", pythonHangs.path]);
    assert.equal(python.code, 10, describeResult(python)); // Execution Exception
    assert.match(
      python.stdout,
      /s1: FAILED: .*alpha\.pyhang\(\) did not finish loading within 2000 ms \(the server's load limit\)/,
    );

    // Nothing was installed, and the install queue is not wedged: the next install goes through.
    await using good = await cluster(server, { "ok.ts": returning("ok", "second") });
    const next = await rpc(["init", good.path]);
    assert.equal(next.code, 0, describeResult(next));
    assert.match(next.stdout, /s1: installed generation 1\b/);
    assert.equal(await call(server, "ok"), "second");
  } finally {
    await server.stop();
  }
});

Deno.test("rpc init --timeout bounds the whole run, the install included", async () => {
  // The server would wait ten minutes for the module: only --timeout ends this rpc init.
  const server = await emptyServer("--load-timeout", "10m");
  try {
    await using hangs = await cluster(server, {
      "hang.ts": `await new Promise(() => {});\n${returning("hang", "never")}`,
    });
    const result = await rpc(["init", "--timeout", "2s", hangs.path], { timeoutMs: 30_000 });
    assert.equal(result.code, 4, describeResult(result)); // Timeout
    assert.match(
      result.stdout,
      /s1: FAILED: Timeout: No result from s1 within 2000 ms \(--timeout\); the install was sent and may still complete there/,
    );
    assert.match(result.stderr, /1 of 1 servers failed: s1/);
  } finally {
    await server.stop();
  }
});

Deno.test("an install planned against a generation that is no longer current is refused", async () => {
  const server = await emptyServer();
  try {
    await using base = await cluster(server, {
      "a.ts": returning("a", "a0"),
      "b.ts": returning("b", "b0"),
    });
    assert.equal((await rpc(["init", base.path])).code, 0);
    await using changeA = await cluster(server, {
      "a.ts": returning("a", "a1"),
      "b.ts": returning("b", "b0"),
    });
    await using changeB = await cluster(server, {
      "a.ts": returning("a", "a0"),
      "b.ts": returning("b", "b1"),
    });
    const desired = async (path: string) => {
      const { state, sources } = await desiredStateFor(await loadCluster(path), "s1");
      return { state, sources: Object.fromEntries(sources) };
    };
    const wantA = await desired(changeA.path);
    const wantB = await desired(changeB.path);
    await withClient(server, async (client) => {
      // Both plan against generation 1, then A installs, then B.
      const seenByA = await fetchState(client);
      const seenByB = await fetchState(client);
      assert.equal(seenByA.generation, 1);
      assert.equal(seenByB.generation, 1);
      const installed = await client.admin({
        op: "install",
        generation: seenByA.generation,
        ...wantA,
      }) as { generation: number };
      assert.equal(installed.generation, 2);
      const refused = await client.admin({
        op: "install",
        generation: seenByB.generation,
        ...wantB,
      })
        .then(() => assert.fail("a stale install was accepted"), (error: RpcError) => error);
      assert.equal(refused.kind, "Conflict");
      assert.match(
        refused.message,
        /^Cannot install: it was planned against generation 1, but the server has generation 2 \(installed \d{4}-[^)]+\) since another install came first; nothing was changed/,
      );
      // An install that does not say what it was planned against is refused too.
      const unplanned = await client.admin({ op: "install", ...wantB })
        .then(() => assert.fail("an install without a generation was accepted"), (e) => e);
      assert.equal((unplanned as RpcError).kind, "Invalid Arguments");
      assert.match((unplanned as RpcError).message, /generation must be the generation/);
      // A's change stands: B was not installed over it.
      const after = await fetchState(client);
      assert.equal(after.generation, 2);
      assert.deepEqual(hashes(after), hashes(wantA.state));
    });
    assert.equal(await call(server, "a"), "a1");
    assert.equal(await call(server, "b"), "b0");
    await waitFor(
      () =>
        /install from \S+ failed: Cannot install: it was planned against generation 1, but the server has generation 2/
          .test(server.stderrText()),
      "the refusal in the log",
    );
  } finally {
    await server.stop();
  }
});

function hashes(state: Pick<DesiredState, "procedures">): Record<string, string> {
  return Object.fromEntries(state.procedures.map((p) => [p.rpc, p.hash]));
}

Deno.test("two rpc init at once: the one that planned before the other committed is refused and says to re-run", async () => {
  const server = await emptyServer("--load-timeout", "2m");
  const dir = await Deno.makeTempDir({ prefix: "rpc-gate-" });
  const gate = join(dir, "open");
  try {
    await using base = await cluster(server, {
      "a.ts": returning("a", "a0"),
      "b.ts": returning("b", "b0"),
    });
    assert.equal((await rpc(["init", base.path])).code, 0);
    // X's new procedure runs in the server itself (trusted) and finishes loading only once the
    // test creates the gate file: X's install is held in the middle, deterministically.
    await using changeX = await cluster(server, {
      "a.ts": returning("a", "a0"),
      "b.ts": returning("b", "b0"),
      "held.ts": `while (true) {
  try {
    await Deno.stat(${JSON.stringify(gate)});
    break;
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
${returning("held", "x")}`,
    });
    await Deno.writeTextFile(
      changeX.path,
      (await Deno.readTextFile(changeX.path)).replace(
        /(src: \S+held\.ts)/,
        "$1\n      trusted: true",
      ),
    );
    await using changeY = await cluster(server, {
      "a.ts": returning("a", "a0"),
      "b.ts": returning("b", "b1"),
    });
    const received = () => server.stderrText().match(/received: planned against generation 1/g);
    const x = rpc(["init", changeX.path], { timeoutMs: 60_000 });
    await waitFor(() => received()?.length === 1, "X's install to arrive", 30_000);
    const y = rpc(["init", changeY.path], { timeoutMs: 60_000 });
    // Y read generation 1 too, while X was loading; its install waits behind X's.
    await waitFor(() => received()?.length === 2, "Y's install to arrive", 30_000);
    await Deno.writeTextFile(gate, "");
    const [doneX, doneY] = await Promise.all([x, y]);
    assert.equal(doneX.code, 0, describeResult(doneX));
    assert.match(doneX.stdout, /s1: installed generation 2\b/);
    assert.equal(doneY.code, 20, describeResult(doneY)); // Conflict
    assert.match(
      doneY.stdout,
      /s1: FAILED: Conflict: Cannot install: it was planned against generation 1, but the server has generation 2/,
    );
    assert.match(
      doneY.stdout,
      /s1: another install reached it after this run read its state; run rpc init again/,
    );
    assert.match(doneY.stderr, /hint: s1 changed while this run planned .*: run rpc init again/);
    assert.equal(await call(server, "held"), "x");
    assert.equal(await call(server, "b"), "b0");

    // Run again, Y plans against generation 2: it sees (and says) that it removes X's procedure.
    const again = await rpc(["init", changeY.path]);
    assert.equal(again.code, 0, describeResult(again));
    assert.match(again.stdout, /- alpha\.held\(\) -> str/);
    assert.match(again.stdout, /s1: installed generation 3\b/);
    assert.equal(await call(server, "b"), "b1");
  } finally {
    await Deno.writeTextFile(gate, "").catch(() => {});
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("two rpc init racing, again and again: no change is ever lost unseen", async () => {
  const server = await emptyServer();
  try {
    let current = { a: "a0", b: "b0" };
    await using base = await cluster(server, {
      "a.ts": returning("a", current.a),
      "b.ts": returning("b", current.b),
    });
    assert.equal((await rpc(["init", base.path])).code, 0);
    const TRIALS = 5;
    let conflicts = 0;
    for (let trial = 1; trial <= TRIALS; trial++) {
      // Each run changes one procedure of the state both read; the file is the whole state.
      const files = {
        A: { a: `a${trial}`, b: current.b },
        B: { a: current.a, b: `b${trial}` },
      };
      await using fileA = await cluster(server, {
        "a.ts": returning("a", files.A.a),
        "b.ts": returning("b", files.A.b),
      });
      await using fileB = await cluster(server, {
        "a.ts": returning("a", files.B.a),
        "b.ts": returning("b", files.B.b),
      });
      const runs = await Promise.all(
        [fileA, fileB].map((file) => rpc(["init", "--json", file.path], { timeoutMs: 60_000 })),
      );
      const outcomes = runs.map(parseInit);
      const succeeded = outcomes
        .map((outcome, i) => ({ outcome, name: i === 0 ? "A" as const : "B" as const }))
        .filter(({ outcome }) => outcome.ok)
        .sort((p, q) => p.outcome.install!.generation - q.outcome.install!.generation);
      assert.ok(succeeded.length > 0, `trial ${trial}: neither run installed:\n${runs[0].stdout}`);
      for (const outcome of outcomes.filter((outcome) => !outcome.ok)) {
        assert.equal(outcome.error?.kind, "Conflict", JSON.stringify(outcome));
        conflicts++;
      }
      // The first to commit changed one procedure. A second one that also committed must have
      // planned against the first's result, so its plan shows both procedures changing: had it
      // planned against the older state, it would show one and overwrite the other unseen.
      succeeded.forEach(({ outcome }, i) =>
        assert.equal(
          outcome.plan?.changed.length,
          i + 1,
          `trial ${trial}: ${JSON.stringify(outcomes)}`,
        )
      );
      current = files[succeeded.at(-1)!.name];
      const held = await withClient(server, (client) => fetchState(client));
      assert.deepEqual(hashes(held), {
        a: sha256Hex(returning("a", current.a)),
        b: sha256Hex(returning("b", current.b)),
      });
    }
    console.log(`${conflicts} of ${TRIALS} races ended with a refused install`);
  } finally {
    await server.stop();
  }
});

/**
 * A server on loopback that completes the handshake and answers every
 * `ADMIN` with `reply(request)`: what rpc init sees from a broken or hostile
 * peer. Its `ops` are the admin ops it was asked, in order.
 */
function adminServer(reply: (request: AdminRequest) => unknown) {
  const odd = oddServer((message) =>
    message.type === "ADMIN"
      ? { type: "ADMIN-RES", serial: message.serial, value: reply(message.value) }
      : undefined
  );
  return Object.assign(odd, {
    ops: () =>
      odd.requests.flatMap((message) => message.type === "ADMIN" ? [message.value.op] : []),
  });
}

Deno.test("rpc init refuses a state reply that is not a state report, naming the field, and sends nothing", async () => {
  await using odd = adminServer(() => ({ server: "s1", generation: "7", services: [] }));
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: odd.port } },
    clients: { c1: { ip: "127.0.0.1" } },
    services: { alpha: { providers: ["s1"], rpcs: ["a"] } },
    rpcs: [{ name: "a", args: [], returns: ["str"], src: "a.ts" }],
    files: { "a.ts": returning("a", "a0") },
  });
  const result = await rpc(["init", config.path, "--json"]);
  assert.equal(result.code, 15, describeResult(result)); // Malformed Frame
  const outcome = JSON.parse(result.stdout).servers[0];
  assert.deepEqual(outcome.error, {
    kind: "Malformed Frame",
    message: 'Cannot read the state reply: generation must be a count, got "7"',
  });
  // Nothing was planned against the broken reply, so no install went out.
  assert.deepEqual(odd.ops(), ["state"]);
});

Deno.test("rpc init refuses an install reply that is not an install report", async () => {
  const empty = {
    server: "s1",
    generation: 0,
    installedAt: new Date(0).toISOString(),
    services: [],
    procedures: [],
    clients: [],
    clientsDigest: sha256Hex("[]"),
  };
  await using odd = adminServer((request) =>
    request.op === "state" ? empty : { generation: 1, added: 1, changed: "none" }
  );
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: odd.port } },
    clients: { c1: { ip: "127.0.0.1" } },
    services: { alpha: { providers: ["s1"], rpcs: ["a"] } },
    rpcs: [{ name: "a", args: [], returns: ["str"], src: "a.ts" }],
    files: { "a.ts": returning("a", "a0") },
  });
  const result = await rpc(["init", config.path]);
  assert.equal(result.code, 15, describeResult(result)); // Malformed Frame
  assert.match(
    result.stdout,
    /s1: FAILED: Malformed Frame: Cannot read the install reply: changed must be a count, got "none"/,
  );
  assert.deepEqual(odd.ops(), ["state", "install"]);
});

Deno.test("rpc init fails at once on a reply it cannot decode, instead of waiting out --timeout", async () => {
  // The codec wants an object as an ADMIN-RES value: a bare string does not decode.
  await using odd = adminServer(() => "state?");
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: odd.port } },
    clients: { c1: { ip: "127.0.0.1" } },
    services: { alpha: { providers: ["s1"], rpcs: ["a"] } },
    rpcs: [{ name: "a", args: [], returns: ["str"], src: "a.ts" }],
    files: { "a.ts": returning("a", "a0") },
  });
  // Far beyond the helper's own limit: only a prompt failure passes.
  const result = await rpc(["init", config.path, "--timeout", "10m"]);
  assert.equal(result.code, 15, describeResult(result)); // Malformed Frame
  assert.match(result.stdout, /s1: FAILED: Malformed Frame: .*ADMIN-RES value must be an object/);
});
