/**
 * `rpc up` and `rpc down` as processes: the course's example init.yaml
 * (only its `src` paths changed) brought up on this machine and called by a
 * Python client written from the course text; every `--local` command
 * against a file whose addresses are loopback sentinels that fail the test
 * when anything connects to them; the foreground mode and its signals; two
 * files that both name `s1`.
 *
 * Each test gives its processes `XDG_STATE_HOME` in a temporary directory,
 * so run files and state directories never touch the user's own.
 *
 * Run: `deno test --allow-all tests/up_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import type { RpcError } from "../core/errors.ts";
import {
  childEnv,
  describeResult,
  MAIN,
  ROOT,
  rpc,
  type RpcResult,
  waitFor,
  withTimeout,
  writeInitYaml,
} from "./helpers.ts";

const FIXTURES = join(ROOT, "tests", "fixtures", "course");

/** How long `rpc up` may take to start servers and deploy, on a loaded machine. */
const UP_TIMEOUT_MS = 120_000;

/** A temporary `XDG_STATE_HOME`, and `rpc` run with it. */
async function stateHome() {
  const dir = await Deno.makeTempDir({ prefix: "rpc-up-home-" });
  const env = { XDG_STATE_HOME: dir };
  return {
    dir,
    env,
    run: (args: string[], timeoutMs = 30_000) => rpc(args, { env, timeoutMs }),
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** The mapping `rpc up --json` prints. */
interface Mapping {
  file: string;
  dir: string;
  pid: number;
  servers: { name: string; address: string; file: string; stateDir: string; pid: number }[];
  clients: { name: string; address: string; file?: string }[];
}

/** `rpc up --detach --json FILE`; returns the mapping. */
async function upDetached(home: Awaited<ReturnType<typeof stateHome>>, file: string) {
  const result = await home.run(["up", "--detach", "--json", file], UP_TIMEOUT_MS);
  assert.equal(result.code, 0, describeResult(result));
  return JSON.parse(result.stdout) as Mapping;
}

/** Running processes whose command line mentions `text` (Linux: /proc). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const line = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (line.includes(text) && alive(Number(entry.name))) pids.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Whether process `pid` runs (and is not a zombie). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** `rpc down FILE`, then checks every process of the mapping has gone and the run file with them. */
async function down(home: Awaited<ReturnType<typeof stateHome>>, mapping: Mapping) {
  const result = await home.run(["down", mapping.file], 60_000);
  assert.equal(result.code, 0, describeResult(result));
  assert.match(result.stdout, /^stopped .*: \d+ servers?/);
  for (const pid of [mapping.pid, ...mapping.servers.map((server) => server.pid)]) {
    await waitFor(() => !alive(pid), `process ${pid} to exit`, 10_000);
  }
  await assert.rejects(Deno.stat(join(mapping.dir, "run.json")), Deno.errors.NotFound);
}

/** One call of the Python course client. */
interface CourseCall {
  server: string;
  from?: string;
  header?: boolean;
  value: Record<string, unknown>;
}

/** Runs tests/fixtures/course/course_client.py over `calls`; returns one reply per call. */
// deno-lint-ignore no-explicit-any
async function pythonClient(calls: CourseCall[]): Promise<any[]> {
  const child = new Deno.Command("python3", {
    args: [join(FIXTURES, "course_client.py")],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(calls.map((call) => {
    const [host, port] = call.server.split(":");
    return { ...call, server: [host, Number(port)], from: call.from ?? null };
  }))));
  await writer.close();
  const output = await withTimeout(child.output(), 60_000, "the Python course client");
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `the Python client failed:\n${stderr}`);
  return new TextDecoder().decode(output.stdout).trim().split("\n").map((line) => JSON.parse(line));
}

/** The course's example init.yaml with only its `src` paths changed, in a new directory. */
async function courseExample(): Promise<{ path: string; dir: string; remove(): Promise<void> }> {
  const original = await Deno.readTextFile(join(FIXTURES, "init.example.yaml"));
  const copy = original.replaceAll("path/to/", `${FIXTURES}/`);
  const before = original.split("\n");
  const after = copy.split("\n");
  assert.equal(after.length, before.length);
  const changed = after.filter((line, index) => line !== before[index]);
  assert.deepEqual(changed.map((line) => line.trim().split(" ")[0]), ["src:", "src:", "src:"]);
  const dir = await Deno.makeTempDir({ prefix: "rpc-up-course-" });
  const path = join(dir, "init.yaml");
  await Deno.writeTextFile(path, copy);
  return { path, dir, remove: () => Deno.remove(dir, { recursive: true }) };
}

function assertValues(reply: unknown, values: unknown[], what: string): void {
  assert.deepEqual(reply, { type: "RPC-RES", value: { "return values": values } }, what);
}

function assertKind(reply: { type?: string; value?: Record<string, string> }, kind: string): void {
  assert.equal(reply.type, "RPC-EX", JSON.stringify(reply));
  assert.equal(reply.value?.["exception-type"], kind, JSON.stringify(reply));
}

Deno.test("rpc up: the course's example file serves a client written from the course text", async () => {
  await using home = await stateHome();
  const example = await courseExample();
  try {
    const mapping = await upDetached(home, example.path);
    assert.deepEqual(
      mapping.servers.map((server) => [server.name, server.address.split(":")[0], server.file]),
      [["s1", "127.0.1.1", "192.168.0.1:8181"], ["s2", "127.0.1.2", "192.168.0.2:8282"]],
    );
    assert.deepEqual(mapping.clients, [
      { name: "c1", address: "127.0.2.1", file: "192.168.1.1" },
      { name: "c2", address: "127.0.2.2", file: "192.168.1.2" },
      { name: "c3", address: "127.0.2.3", file: "192.168.1.3" },
    ]);
    assert.notEqual(mapping.servers[0].stateDir, mapping.servers[1].stateDir);
    const [s1, s2] = mapping.servers.map((server) => server.address);
    const [c1, c2, c3] = mapping.clients.map((client) => client.address);
    const call = (
      server: string,
      from: string | undefined,
      service: string,
      rpc: string,
      args: unknown[],
      types?: [string[], string[]],
    ): CourseCall => ({
      server,
      ...(from ? { from } : {}),
      value: {
        service,
        rpc,
        arguments: args,
        ...(types ? { "argument-types": types[0], "return-types": types[1] } : {}),
      },
    });
    const rpc1Types: [string[], string[]] = [["int", "str"], ["str"]];
    const rpc2Types: [string[], string[]] = [["List[int]", "List[str]"], ["str"]];
    const rpc3Types: [string[], string[]] = [["float", "List[float]"], ["str"]];
    const replies = await pythonClient([
      // Every RPC on every provider, as its tenants; values, then the same as strings.
      call(s1, c1, "service1", "rpc1", [3, "ab"], rpc1Types),
      call(s2, c2, "service1", "rpc1", ["2", "xy"], rpc1Types),
      call(s1, c3, "service1", "rpc2", [[1, 2], ["a", "b"]], rpc2Types),
      call(s2, c1, "service1", "rpc2", [str([1, 2]), "['a', 'b c']"], rpc2Types),
      call(s2, c2, "service2", "rpc3", [2, [1.5, 2.5]], rpc3Types),
      { ...call(s2, c3, "service2", "rpc3", ["0.5", "[4.0, 6.0]"], rpc3Types), header: true },
      // The five course exceptions.
      call(s2, c3, "service2", "rpc3", [1.0, []], rpc3Types),
      call(s1, c1, "service1", "rpc1", ["three", "ab"], rpc1Types),
      call(s1, c2, "service2", "rpc3", [1.0, [1.0]], rpc3Types),
      call(s1, c1, "service1", "rpc3", [1.0, [1.0]], rpc3Types),
      call(s2, c1, "service2", "rpc3", [1.0, [1.0]], rpc3Types),
      // From an address that is no client of the file: anonymous, and no tenant.
      call(s1, undefined, "service1", "rpc1", [1, "a"], rpc1Types),
    ]);
    assertValues(replies[0], ["ababab"], "rpc1 on s1");
    assertValues(replies[1], ["xyxy"], "rpc1 on s2, string arguments");
    assertValues(replies[2], ["1=a, 2=b"], "rpc2 on s1");
    assertValues(replies[3], ["1=a, 2=b c"], "rpc2 on s2, lists as Python writes them");
    assertValues(replies[4], ["4.00"], "rpc3 on s2");
    assert.deepEqual(replies[5], { header: "RPC-RES", value: { "return values": ["2.50"] } });
    assertKind(replies[6], "Execution Exception");
    assert.match(replies[6].value["exception-message"], /rpc3 needs at least one value/);
    assertKind(replies[7], "Invalid Arguments");
    assert.match(replies[7].value["exception-message"], /rpc1\(int, str\) -> str/);
    assertKind(replies[8], "Service Not Found");
    assertKind(replies[9], "RPC Not Found");
    assertKind(replies[10], "Client Not Registered");
    assert.match(
      replies[10].value["exception-message"],
      /Client c1 is not registered for service service2/,
    );
    assertKind(replies[11], "Client Not Registered");
    assert.match(replies[11].value["exception-message"], /Client \(anonymous\)/);

    // The framed protocol as well: --local binds the --as client's address.
    const local = (...args: string[]) =>
      home.run(["call", "--local", "--config", example.path, ...args]);
    const c2Call = await local("--as", "c2", "s2", "service2", "rpc3", "2", "1,2");
    assert.equal(c2Call.code, 0, describeResult(c2Call));
    assert.equal(c2Call.stdout, "3.00\n");
    const c1Call = await local("--as", "c1", "s2", "service2", "rpc3", "2", "1,2");
    assert.equal(c1Call.code, 14, describeResult(c1Call));
    assert.match(c1Call.stderr, /Client Not Registered: Client c1 is not registered/);
    const failover = await local("--as", "c3", "--service", "service1", "rpc1", "2", "x");
    assert.equal(failover.code, 0, describeResult(failover));
    assert.equal(failover.stdout, "xx\n");
    // A claim from another client's address is refused, as it would be in the real cluster.
    await assert.rejects(
      connect(s1, { client: "c1", connectTimeoutMs: 10_000 }),
      (error: RpcError) => {
        assert.equal(error.kind, "Client Not Registered");
        assert.match(error.message, /Client c1 may not connect from 127\.0\.0\.1/);
        return true;
      },
    );
    await down(home, mapping);
    const after = await local("--as", "c1", "s1", "service1", "rpc1", "1", "a");
    assert.equal(after.code, 3, describeResult(after));
    assert.match(
      after.stderr,
      /Nothing is up for .*init\.yaml on this machine: start it with rpc up/,
    );
  } finally {
    await home.run(["down", example.path]).catch(() => {});
    await example.remove();
  }
});

/** What Python's str() writes for a list of ints. */
function str(list: number[]): string {
  return `[${list.join(", ")}]`;
}

/** A listener that counts every connection made to it, and closes it at once. */
function sentinel(hostname: string) {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let count = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      count++;
      conn.close();
    }
  })().catch(() => {});
  return {
    hostname,
    port,
    get count() {
      return count;
    },
    async close() {
      listener.close();
      await accepting;
    },
  };
}

/** Runs `rpc repl` with `script` on stdin. */
async function replScript(env: Record<string, string>, args: string[], script: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "repl", ...args],
    cwd: ROOT,
    env: childEnv(env),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const output = await withTimeout(child.output(), 60_000, "rpc repl");
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  } satisfies RpcResult;
}

Deno.test("rpc up: --local never sends anything to an address from the file", async () => {
  await using home = await stateHome();
  // The file's servers are sentinels: anything that connects to them is a failure.
  const sentinels = [sentinel("127.0.3.1"), sentinel("127.0.3.2")];
  await using config = await writeInitYaml({
    servers: {
      s1: { ip: "127.0.3.1", port: sentinels[0].port },
      s2: { ip: "127.0.3.2", port: sentinels[1].port },
    },
    clients: { c1: { ip: "127.0.4.1" }, c2: { ip: "127.0.4.2" } },
    services: {
      service1: { providers: ["s1", "s2"], tenants: ["c1", "c2"], rpcs: ["rpc1", "echo"] },
      service2: { providers: ["s2"], tenants: ["c2"], rpcs: ["rpc3"] },
    },
    rpcs: [
      { name: "rpc1", args: ["int", "str"], returns: ["str"], src: join(FIXTURES, "rpc1.py") },
      { name: "echo", args: ["str"], returns: ["str"], src: "services/service1/echo.ts" },
      {
        name: "rpc3",
        args: ["float", "List[float]"],
        returns: ["str"],
        src: join(FIXTURES, "rpc3.py"),
      },
    ],
  });
  try {
    const mapping = await upDetached(home, config.path);
    // The file's ports are free on the mapped addresses, so they are kept.
    assert.deepEqual(mapping.servers.map((server) => server.address), [
      `127.0.1.1:${sentinels[0].port}`,
      `127.0.1.2:${sentinels[1].port}`,
    ]);
    const local = ["--local", "--config", config.path];
    const expect = (result: RpcResult, code: number, stdout?: RegExp) => {
      assert.equal(result.code, code, describeResult(result));
      if (stdout) assert.match(result.stdout, stdout);
    };
    expect(
      await home.run(["call", ...local, "--as", "c1", "s1", "service1", "rpc1", "2", "ab"]),
      0,
      /^abab\n$/,
    );
    // A sandboxed TypeScript procedure, from servers rpc up started.
    expect(
      await home.run(["call", ...local, "--as", "c2", "s2", "service1", "echo", "hi"]),
      0,
      /^hi\n$/,
    );
    expect(
      await home.run(["call", ...local, "--as", "c2", "--service", "service2", "rpc3", "1", "2"]),
      0,
      /^2\.00\n$/,
    );
    // An address written in the file stands for its server.
    expect(
      await home.run([
        "call",
        ...local,
        "--as",
        "c1",
        `127.0.3.1:${sentinels[0].port}`,
        "service1",
        "rpc1",
        "1",
        "z",
      ]),
      0,
      /^z\n$/,
    );
    expect(
      await home.run([
        "call",
        ...local,
        "--wire",
        "course",
        "--as",
        "c2",
        "s2",
        "service2",
        "rpc3",
        "2",
        "3",
      ]),
      0,
      /^6\.00\n$/,
    );
    expect(await home.run(["list", ...local, "--as", "c2", "s2"]), 0, /service2\n {2}rpc3/);
    expect(
      await home.run(["describe", ...local, "--as", "c1", "s1", "service1.rpc1"]),
      0,
      /rpc1\(int, str\) -> str/,
    );
    expect(await home.run(["ping", ...local, "s2"]), 0, /^s2 \(127\.0\.1\.2:\d+\): rpc /);
    expect(await home.run(["hash", ...local, "--server", "s1"]), 0, /service1\.rpc1\(int, str\)/);
    expect(await home.run(["admin", ...local, "s1", "clients"]), 0, /ID\s+CLIENT/);
    expect(
      await home.run(["bench", ...local, "--as", "c1", "s1", "service1", "echo", "x", "-n", "20"]),
      0,
      /Count:\s+20/,
    );
    expect(await home.run(["init", ...local]), 0, /s1: unchanged \(2 procedures\), no code sent/);
    const repl = await replScript(
      home.env,
      [...local, "--as", "c2", "s2"],
      "service2.rpc3 1 4,6\n",
    );
    expect(repl, 0, /^5\.00\n$/);
    // Every command went to the mapped servers; the sentinels saw nothing.
    assert.deepEqual(sentinels.map((s) => s.count), [0, 0]);
    // And the sentinels do see a command run without --local: this test can fail.
    await home.run(["ping", "--config", config.path, "s1", "--timeout", "5s"]);
    await waitFor(
      () => sentinels[0].count === 1,
      "the sentinel to see the command without --local",
    );
    await down(home, mapping);
  } finally {
    await home.run(["down", config.path]).catch(() => {});
    await Promise.all(sentinels.map((s) => s.close()));
  }
});

Deno.test("rpc up in the foreground: mapping, prefixed logs, and SIGTERM stops every server", async () => {
  await using home = await stateHome();
  await using config = await writeInitYaml({
    servers: { alpha: { ip: "10.1.0.1", port: 8181 }, b: { ip: "10.1.0.2", port: 8282 } },
    clients: { c1: { ip: "10.2.0.1" } },
    services: { service1: { providers: ["alpha", "b"], tenants: ["c1"], rpcs: ["rpc1"] } },
    rpcs: [
      { name: "rpc1", args: ["int", "str"], returns: ["str"], src: join(FIXTURES, "rpc1.py") },
    ],
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "up", config.path],
    cwd: ROOT,
    env: childEnv(home.env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const stderr = new Response(child.stderr).text();
  try {
    await waitFor(() => /^ready: /m.test(out), "rpc up to be ready", UP_TIMEOUT_MS);
    assert.match(out, /^rpc up: .*init\.yaml on this machine; nothing is sent to the addresses/m);
    assert.match(out, /^ {2}server alpha {2}127\.0\.1\.1:\d+ +for 10\.1\.0\.1:8181$/m);
    assert.match(out, /^ {2}client c1 {5}127\.0\.2\.1 +for 10\.2\.0\.1$/m);
    assert.match(out, /^alpha \| .* server alpha listening on 127\.0\.1\.1:\d+$/m);
    assert.match(out, /^b {5}\| .* server b listening on 127\.0\.1\.2:\d+$/m);
    const called = await home.run([
      "call",
      "--local",
      "--config",
      config.path,
      "--as",
      "c1",
      "b",
      "service1",
      "rpc1",
      "2",
      "q",
    ]);
    assert.equal(called.code, 0, describeResult(called));
    await waitFor(
      () => /^b {5}\| .* c1@127\.0\.2\.1:\d+ service1\.rpc1\(int, str\) ok/m.test(out),
      "the call in b's log, from c1's address",
    );
    assert.equal(called.stdout, "qq\n");
    const run = JSON.parse(await Deno.readTextFile(join(runDir(home.dir), "run.json")));
    const pids: number[] = run.servers.map((server: { pid: number }) => server.pid);
    assert.equal(pids.length, 2);
    child.kill("SIGTERM");
    const status = await withTimeout(child.status, 60_000, "rpc up to stop");
    await reading;
    assert.equal(status.code, 0, `${out}\n${await stderr}`);
    assert.match(out, /^stopping 2 servers$/m);
    assert.match(out, /^alpha \| .* stopped$/m);
    for (const pid of pids) assert.ok(!alive(pid), `server ${pid} has exited`);
    await assert.rejects(Deno.stat(join(run.dir, "run.json")), Deno.errors.NotFound);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited.
    }
    await withTimeout(child.status, 60_000, "rpc up to stop").catch(() => child.kill("SIGKILL"));
    await child.status;
    await reading.catch(() => {});
    await stderr.catch(() => {});
    // Servers a killed rpc up left behind.
    await home.run(["down", config.path]).catch(() => {});
  }
});

/** The one run directory under a state home. */
function runDir(home: string): string {
  const base = join(home, "rpc-up");
  const entries = [...Deno.readDirSync(base)].filter((entry) => entry.isDirectory);
  assert.equal(entries.length, 1, `one run directory in ${base}`);
  return join(base, entries[0].name);
}

Deno.test("rpc up: two files that both name s1 get a server and a state directory each", async () => {
  await using home = await stateHome();
  // A port both files ask for on s1; the second gets another one.
  const probe = Deno.listen({ hostname: "127.0.1.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const cluster = async (label: string) =>
    await writeInitYaml({
      servers: { s1: { ip: "10.9.0.1", port } },
      clients: {},
      services: { service1: { providers: ["s1"], rpcs: ["which"] } },
      rpcs: [{ name: "which", args: [], returns: ["str"], src: "which.py" }],
      files: { "which.py": `def which():\n    return "${label}"\n` },
    });
  await using first = await cluster("first");
  await using second = await cluster("second");
  try {
    const a = await upDetached(home, first.path);
    const again = await home.run(["up", "--detach", first.path]);
    assert.equal(again.code, 2, describeResult(again));
    assert.match(again.stderr, /is already up \(rpc up, pid \d+\): stop it with rpc down/);
    const b = await upDetached(home, second.path);
    assert.equal(a.servers[0].address, `127.0.1.1:${port}`);
    assert.notEqual(b.servers[0].address, a.servers[0].address);
    assert.match(b.servers[0].address, /^127\.0\.1\.1:\d+$/);
    assert.notEqual(a.servers[0].stateDir, b.servers[0].stateDir);
    for (const [file, label] of [[first.path, "first"], [second.path, "second"]]) {
      const result = await home.run([
        "call",
        "--local",
        "--config",
        file,
        "s1",
        "service1",
        "which",
      ]);
      assert.equal(result.code, 0, describeResult(result));
      assert.equal(result.stdout, `${label}\n`);
    }
    await down(home, a);
    await down(home, b);
    const nothing = await home.run(["down", first.path]);
    assert.equal(nothing.code, 0, describeResult(nothing));
    assert.match(nothing.stderr, /note: nothing is up for/);
  } finally {
    await home.run(["down", first.path]).catch(() => {});
    await home.run(["down", second.path]).catch(() => {});
  }
});

Deno.test("rpc up: a file that cannot be deployed fails, naming why, and leaves nothing running", async () => {
  await using home = await stateHome();
  await using config = await writeInitYaml({
    servers: { s1: { ip: "10.9.0.1", port: 8181 } },
    clients: {},
    services: { service1: { providers: ["s1"], rpcs: ["broken"] } },
    rpcs: [{ name: "broken", args: [], returns: ["str"], src: "broken.py" }],
    files: { "broken.py": "def broken()\n    return 'no colon above'\n" },
  });
  const result = await home.run(["up", "--detach", config.path], UP_TIMEOUT_MS);
  assert.equal(result.code, 10, describeResult(result));
  assert.match(
    result.stderr,
    /s1: FAILED: Execution Exception: Cannot load the new code: .*SyntaxError/,
  );
  assert.match(result.stderr, /^s1 \| .* stopped$/m);
  assert.match(
    result.stderr,
    /error: rpc up stopped before the cluster was ready \(exit code 10\)/,
  );
  const dir = runDir(home.dir);
  await assert.rejects(Deno.stat(join(dir, "run.json")), Deno.errors.NotFound);
  assert.match(await Deno.readTextFile(join(dir, "up.log")), /server s1 listening on 127\.0\.1\.1/);
  await waitFor(() => processesMentioning(dir).length === 0, "no process left running from it");
  const local = await home.run([
    "call",
    "--local",
    "--config",
    config.path,
    "s1",
    "service1",
    "broken",
  ]);
  assert.equal(local.code, 3, describeResult(local));
  assert.match(local.stderr, /Nothing is up for/);
});
