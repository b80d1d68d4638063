/**
 * Python procedures attack their server, end to end: a real `rpc server`
 * process runs real python3 interpreters confined with bubblewrap. Each
 * attack of issue 10 (files, the environment, programs, the state directory,
 * memory, signals, the network) must fail with an `Execution Exception`
 * while the server goes on serving; what `permissions` grant must work; a
 * server without bubblewrap must refuse to run a procedure unconfined.
 *
 * Run: `deno test --allow-all tests/python_sandbox_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import { describeResult, rpc, type ServerProcess, startServer } from "./helpers.ts";

const ADMIN = "python-sandbox-admin-secret";

/** One file of attacks: each function is an RPC of service `py`. */
const ATTACKS = `
import os
import signal
import socket
import subprocess


def echo(text):
    return text


def read(path):
    with open(path) as file:
        return file.read()


def write(path, text):
    with open(path, "w") as file:
        return file.write(text)


def listdir(path):
    return sorted(os.listdir(path))


def getenv(name):
    return os.environ[name]


def envnames():
    return sorted(os.environ)


def identity():
    return [os.getuid(), os.getgid()]


def run(argv):
    return subprocess.run(argv, capture_output=True, check=True).stdout.decode().strip()


def allocate(mib):
    return len(bytearray(mib * 1024 * 1024))


def oom():
    with open("/proc/self/oom_score_adj") as file:
        return int(file.read())


def kill_parent():
    os.kill(os.getppid(), signal.SIGKILL)
    return os.getppid()


def kill(pid):
    os.kill(pid, signal.SIGKILL)
    return pid


def kill_group(pgid):
    os.killpg(pgid, signal.SIGKILL)
    return pgid


def dial(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "connected"
`;

interface Rpc {
  name: string;
  args: string[];
  returns: string[];
  extra?: string;
}

const RPCS: Rpc[] = [
  { name: "echo", args: ["str"], returns: ["str"] },
  { name: "read", args: ["str"], returns: ["str"] },
  { name: "write", args: ["str", "str"], returns: ["int"] },
  { name: "listdir", args: ["str"], returns: ["List[str]"] },
  { name: "getenv", args: ["str"], returns: ["str"] },
  { name: "envnames", args: [], returns: ["List[str]"] },
  { name: "identity", args: [], returns: ["int", "int"] },
  { name: "run", args: ["List[str]"], returns: ["str"] },
  { name: "allocate", args: ["int"], returns: ["int"] },
  { name: "oom", args: [], returns: ["int"] },
  { name: "kill_parent", args: [], returns: ["int"] },
  { name: "kill", args: ["int"], returns: ["int"] },
  { name: "kill_group", args: ["int"], returns: ["int"] },
  { name: "dial", args: ["int"], returns: ["str"] },
];

/**
 * An init.yaml serving `services` (name → RPCs, each from `source`) on one
 * server at `port`; `rpcs` entries may carry YAML lines (permissions, trusted).
 */
function initYaml(port: number, services: Record<string, { rpcs: Rpc[]; source: string }>): string {
  const lines = [
    "network:",
    "  servers:",
    `    - s1: { ip: 127.0.0.1, port: ${port} }`,
    "  clients:",
    "    - c1: { ip: 127.0.0.1 }",
    "service:",
  ];
  for (const [name, { rpcs }] of Object.entries(services)) {
    lines.push(`  - ${name}: { providers: [s1], rpcs: [${rpcs.map((r) => r.name).join(", ")}] }`);
  }
  lines.push("rpc:");
  for (const [name, { rpcs, source }] of Object.entries(services)) {
    lines.push(`  ${name}:`);
    for (const entry of rpcs) {
      lines.push(
        `    - ${entry.name}:`,
        `        args: [${entry.args.map((type) => JSON.stringify(type)).join(", ")}]`,
        `        returns: [${entry.returns.map((type) => JSON.stringify(type)).join(", ")}]`,
        `        src: ${source}`,
      );
      if (entry.extra) lines.push(...entry.extra.split("\n").map((line) => `        ${line}`));
    }
  }
  return lines.join("\n") + "\n";
}

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    return error;
  }
  throw new Error("expected the call to fail");
}

/** Asserts that `promise` fails with an Execution Exception whose message matches `pattern`. */
async function refused(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await rejection(promise);
  assert.equal(error.kind, "Execution Exception", error.message);
  assert.match(error.message, pattern);
}

/** The process group of a process, from /proc. */
async function processGroup(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // pid (comm) state ppid pgrp ...; comm may hold spaces, so count from its closing parenthesis.
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

/** A directory every user may traverse, holding files everyone may read. */
async function publicDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.chmod(dir, 0o755);
  return dir;
}

Deno.test("python sandbox: every attack fails, the server goes on, grants work", async (t) => {
  const dir = await publicDir("rpc-python-sandbox-");
  const stateDir = join(dir, "state");
  const granted = join(dir, "granted");
  await Deno.mkdir(granted);
  await Deno.chmod(granted, 0o755);
  const allowed = join(granted, "allowed.txt");
  const secret = join(granted, "secret.txt");
  for (const [path, text] of [[allowed, "you may read this"], [secret, "not granted"]]) {
    await Deno.writeTextFile(path, text);
    await Deno.chmod(path, 0o644);
  }
  // A directory the interpreter (nobody, when the server is root) may write to once granted.
  const outbox = join(dir, "outbox");
  await Deno.mkdir(outbox);
  await Deno.chmod(outbox, 0o777);
  const source = join(dir, "attacks.py");
  await Deno.writeTextFile(source, ATTACKS);
  const server = await startServer({
    name: "s1",
    config: null,
    stateDir,
    // The admin secret and a variable procedures may be granted sit in the server's environment.
    env: { RPC_ADMIN_TOKEN: ADMIN, RPC_SANDBOX_VISIBLE: "granted value" },
  });
  let client: RpcClient | undefined;
  try {
    const config = join(dir, "init.yaml");
    await Deno.writeTextFile(
      config,
      initYaml(server.port, {
        py: { rpcs: RPCS, source },
        grants: {
          source,
          rpcs: [
            {
              name: "read",
              args: ["str"],
              returns: ["str"],
              extra: `permissions: { read: [${allowed}] }`,
            },
            {
              name: "write",
              args: ["str", "str"],
              returns: ["int"],
              extra: `permissions: { write: [${outbox}] }`,
            },
            {
              name: "getenv",
              args: ["str"],
              returns: ["str"],
              extra: "permissions: { env: [RPC_SANDBOX_VISIBLE] }",
            },
            {
              name: "run",
              args: ["List[str]"],
              returns: ["str"],
              extra: "permissions: { run: [id] }",
            },
            { name: "dial", args: ["int"], returns: ["str"], extra: 'permissions: { net: ["*"] }' },
          ],
        },
      }),
    );
    const installed = await rpc(["init", config], { env: { RPC_ADMIN_TOKEN: ADMIN } });
    assert.equal(installed.code, 0, describeResult(installed));
    client = await connect(server.address, { client: "c1", connectTimeoutMs: 10_000 });
    const call = (rpcName: string, args: unknown[], service = "py") =>
      client!.call(service, rpcName, args);
    const serving = async () =>
      assert.deepEqual(await call("echo", ["still here"]), ["still here"]);

    await t.step("files outside the sandbox do not exist for it", async () => {
      await refused(call("read", ["/etc/passwd"]), /^FileNotFoundError: .*'\/etc\/passwd'$/);
      await refused(call("read", [secret]), /^FileNotFoundError: /);
      await refused(call("read", [allowed]), /^FileNotFoundError: /);
      await refused(call("write", [join(outbox, "note"), "x"]), /^FileNotFoundError: /);
      // Its root is not writable: not by nobody, and read-only in a user namespace.
      await refused(call("write", ["/note", "x"]), /^(PermissionError|OSError): /);
      await refused(call("write", ["/dev/note", "x"]), /^(PermissionError|OSError): /);
      // Its private /tmp is, and it is no one else's.
      assert.deepEqual(await call("write", ["/tmp/note", "private"]), [7]);
      await serving();
    });

    await t.step("the state directory, its manifest and other blobs are out of reach", async () => {
      const blobs = [...Deno.readDirSync(join(stateDir, "blobs"))].map((entry) => entry.name);
      assert.ok(blobs.length > 0);
      await refused(call("read", [join(stateDir, "manifest.json")]), /^FileNotFoundError: /);
      await refused(call("read", [join(stateDir, "blobs", blobs[0])]), /^FileNotFoundError: /);
      await refused(call("listdir", [stateDir]), /^FileNotFoundError: /);
      await serving();
    });

    await t.step("the environment holds no secret of the server", async () => {
      await refused(call("getenv", ["RPC_ADMIN_TOKEN"]), /^KeyError: 'RPC_ADMIN_TOKEN'$/);
      const [names] = await call("envnames", []) as [string[]];
      assert.ok(!names.includes("RPC_ADMIN_TOKEN"), names.join(" "));
      // HOME, the working directory bubblewrap names, and the locale Python sets for itself.
      assert.deepEqual(names.filter((name) => name !== "LC_CTYPE"), ["HOME", "PWD"]);
      await serving();
    });

    await t.step("it runs as nobody and cannot run programs", async () => {
      if (Deno.uid() === 0) assert.deepEqual(await call("identity", []), [65534, 65534]);
      else assert.deepEqual(await call("identity", []), [Deno.uid(), Deno.gid()]);
      await refused(call("run", [["id"]]), /^FileNotFoundError: .*'id'$/);
      await refused(call("run", [["/usr/bin/id"]]), /^FileNotFoundError: .*'\/usr\/bin\/id'$/);
      await refused(call("run", [["/bin/sh", "-c", "id"]]), /^FileNotFoundError: /);
      await serving();
    });

    await t.step(
      "3 GiB is refused by the memory limit; the kernel would kill it first",
      async () => {
        await refused(call("allocate", [3 * 1024]), /^MemoryError$/);
        assert.deepEqual(await call("allocate", [16]), [16 * 1024 * 1024]);
        assert.deepEqual(await call("oom", []), [1000]);
        await serving();
      },
    );

    await t.step("it cannot signal the server or its process group", async () => {
      const pid = server.process.pid;
      const group = await processGroup(pid);
      await refused(call("kill", [pid]), /^ProcessLookupError: /);
      await refused(call("kill_group", [group]), /^ProcessLookupError: /);
      if (Deno.uid() === 0) {
        // Its parent is the sandbox's init, which a process running as nobody may not signal.
        await refused(call("kill_parent", []), /^PermissionError: /);
      } else {
        // Its parent is the sandbox's init, which ignores the signal.
        assert.deepEqual(await call("kill_parent", []), [1]);
      }
      assert.ok(server.running());
      await serving();
    });

    await t.step("it has a network of its own, where the server's port is closed", async () => {
      await refused(
        call("dial", [server.port]),
        /^ConnectionRefusedError: \[Errno 111\] Connection refused$/,
      );
      await serving();
    });

    await t.step("what permissions grant works, and nothing more", async () => {
      assert.deepEqual(await call("read", [allowed], "grants"), ["you may read this"]);
      assert.deepEqual(await call("write", [join(outbox, "note"), "written"], "grants"), [7]);
      assert.equal(await Deno.readTextFile(join(outbox, "note")), "written");
      await refused(call("read", [secret], "grants"), /^FileNotFoundError: /);
      assert.deepEqual(await call("getenv", ["RPC_SANDBOX_VISIBLE"], "grants"), ["granted value"]);
      await refused(call("getenv", ["RPC_ADMIN_TOKEN"], "grants"), /^KeyError: /);
      const uid = Deno.uid() === 0 ? 65534 : Deno.uid();
      assert.deepEqual(await call("run", [["id", "-u"]], "grants"), [String(uid)]);
      assert.deepEqual(await call("dial", [server.port], "grants"), ["connected"]);
    });

    await t.step("a permission bubblewrap cannot express is refused at install", async () => {
      const refusals: [string, RegExp][] = [
        [
          "permissions: { net: [api.example.com:443] }",
          /Cannot confine bad\.echo: net grants api\.example\.com:443, but bubblewrap gives a Python procedure the whole network or none/,
        ],
        [
          `permissions: { read: [${join(dir, "missing")}] }`,
          /Cannot confine bad\.echo: read path \S+missing does not exist on this server/,
        ],
        [
          "permissions: { read: [data] }",
          /Cannot confine bad\.echo: read path data is not absolute/,
        ],
      ];
      for (const [extra, pattern] of refusals) {
        const bad = join(dir, "bad.yaml");
        await Deno.writeTextFile(
          bad,
          initYaml(server.port, {
            py: { rpcs: RPCS, source },
            bad: { source, rpcs: [{ name: "echo", args: ["str"], returns: ["str"], extra }] },
          }),
        );
        const result = await rpc(["init", bad], { env: { RPC_ADMIN_TOKEN: ADMIN } });
        assert.notEqual(result.code, 0, describeResult(result));
        assert.match(result.stdout, pattern, describeResult(result));
      }
      await serving();
    });
  } finally {
    client?.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The interpreter `python3` on PATH really is (pyenv's shim needs PATH to find it). */
async function realPython(): Promise<string> {
  const output = await new Deno.Command("python3", {
    args: ["-c", "import os, sys; print(os.path.realpath(sys.executable))"],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(output.stdout).trim();
}

async function startWithout(
  bin: string,
  stateDir: string,
): Promise<ServerProcess> {
  return await startServer({
    name: "s1",
    config: null,
    stateDir,
    env: { RPC_ADMIN_TOKEN: ADMIN, PATH: bin },
  });
}

Deno.test("python sandbox: without bubblewrap a procedure is refused, unless trusted", async () => {
  const dir = await publicDir("rpc-python-nobwrap-");
  const bin = join(dir, "bin");
  await Deno.mkdir(bin);
  // PATH holds python3 and nothing else: no bwrap.
  await Deno.symlink(await realPython(), join(bin, "python3"));
  const source = join(dir, "attacks.py");
  await Deno.writeTextFile(source, ATTACKS);
  const server = await startWithout(bin, join(dir, "state"));
  try {
    const config = join(dir, "init.yaml");
    const echo = { name: "echo", args: ["str"], returns: ["str"] };
    await Deno.writeTextFile(config, initYaml(server.port, { py: { rpcs: [echo], source } }));
    const refusedInstall = await rpc(["init", config], { env: { RPC_ADMIN_TOKEN: ADMIN } });
    assert.notEqual(refusedInstall.code, 0, describeResult(refusedInstall));
    assert.match(
      refusedInstall.stdout,
      /Cannot run py\.echo confined: bwrap \(bubblewrap\) is not on PATH; install it \(apt-get install bubblewrap\), or mark the procedure trusted: true to run it unconfined/,
    );
    await Deno.writeTextFile(
      config,
      initYaml(server.port, { py: { rpcs: [{ ...echo, extra: "trusted: true" }], source } }),
    );
    const trusted = await rpc(["init", config], { env: { RPC_ADMIN_TOKEN: ADMIN } });
    assert.equal(trusted.code, 0, describeResult(trusted));
    const client = await connect(server.address, { client: "c1", connectTimeoutMs: 10_000 });
    try {
      assert.deepEqual(await client.call("py", "echo", ["unconfined"]), ["unconfined"]);
    } finally {
      client.close();
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
