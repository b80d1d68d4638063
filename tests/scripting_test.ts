/**
 * The command line as scripts use it, through real `rpc` processes and a real
 * server on 127.0.0.1: exit codes, one-line errors and hints, `--json` on
 * failure, a closed stdout, negative numbers, relative paths under `deno task
 * rpc`, usage and help width.
 *
 * Run: `deno test --allow-all tests/scripting_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  childEnv,
  describeResult,
  freePort,
  INIT_YAML,
  ROOT,
  rpc,
  rpcArgv,
  type RpcResult,
  startServer,
  writeInitYaml,
} from "./helpers.ts";

function assertSuccess(result: RpcResult): string {
  assert.equal(result.code, 0, describeResult(result));
  return result.stdout;
}

const AS_HINT =
  "hint: the call was anonymous: pass --as CLIENT or set RPC_CLIENT (a client name from init.yaml)";

Deno.test("bare rpc prints the usage on stdout and exits 0", async () => {
  const result = await rpc([]);
  assert.equal(result.code, 0, describeResult(result));
  assert.equal(result.stderr, "");
  assert.match(result.stdout, /^rpc: remote procedure calls over TCP/);
  assert.match(result.stdout, /\nUsage: rpc COMMAND \[ARG\.\.\.\]\n/);
  for (const name of ["server", "call", "list", "bench"]) {
    assert.match(result.stdout, new RegExp(`\\n {2}${name} +\\S`), name);
  }
});

Deno.test("help wraps to 80 columns when not a terminal, else to COLUMNS", async () => {
  // COLUMNS empty counts as unset; stdout is a pipe.
  const narrow = assertSuccess(await rpc(["server", "--help"], { env: { COLUMNS: "" } }));
  const widths = narrow.split("\n").map((line) => line.length);
  assert.ok(Math.max(...widths) <= 80, `widest line ${Math.max(...widths)}`);
  assert.ok(narrow.split("\n").length > 40, "wrapped, not cut");
  const wide = assertSuccess(await rpc(["server", "--help"], { env: { COLUMNS: "140" } }));
  const wideWidths = wide.split("\n").map((line) => line.length);
  assert.ok(Math.max(...wideWidths) <= 140 && Math.max(...wideWidths) > 100, `${wideWidths}`);
});

Deno.test("rpc hash of a file that cannot be read names it and says why: exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-hash-" });
  try {
    const missing = await rpc(["hash", "nope.ts"], { cwd: dir });
    assert.equal(missing.code, 2, describeResult(missing));
    assert.equal(missing.stderr, "error: Cannot hash nope.ts: no such file\n");
    const directory = await rpc(["hash", "."], { cwd: dir });
    assert.equal(directory.code, 2, describeResult(directory));
    assert.equal(directory.stderr, "error: Cannot hash .: it is a directory\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task rpc resolves relative paths where it was run, not in the checkout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-task-cwd-" });
  // As from a shell: under `deno task test`, INIT_CWD is already set, and an inner deno task keeps it.
  const env = childEnv();
  delete env.INIT_CWD;
  const task = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", join(ROOT, "deno.json"), "rpc", ...args],
      cwd: dir,
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
  try {
    // The checkout has an init.yaml; this directory has none.
    const missing = await task(["hash", "init.yaml"]);
    const decoder = new TextDecoder();
    assert.equal(missing.code, 2, decoder.decode(missing.stderr));
    assert.match(decoder.decode(missing.stderr), /error: Cannot hash init\.yaml: no such file\n$/);
    await Deno.writeTextFile(join(dir, "init.yaml"), "# mine\n");
    const mine = await task(["hash", "init.yaml"]);
    assert.equal(mine.code, 0, decoder.decode(mine.stderr));
    assert.equal(
      decoder.decode(mine.stdout),
      // sha256 of "# mine\n"
      `${await sha256("# mine\n")}  init.yaml\n`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "calling commands against a real server",
  sanitizeResources: false,
  async fn(t) {
    const port = freePort();
    await using config = await writeInitYaml({
      base: INIT_YAML,
      servers: { s1: { ip: "127.0.0.1", port } },
    });
    await using server = await startServer({ config: config.path, name: "s1", port });
    const base = ["--config", config.path];

    await t.step("a negative number where an argument is expected is an argument", async () => {
      assert.equal(
        assertSuccess(
          await rpc(["call", ...base, "--as", "c1", "s1", "service1", "add", "-1", "2"]),
        ),
        "1\n",
      );
      assert.equal(
        assertSuccess(
          await rpc([
            "call",
            ...base,
            "--as",
            "c1",
            "s1",
            "service1",
            "add",
            "-1",
            "-2",
            "--json",
            "--timeout",
            "10s",
          ]),
        ),
        `{"return-values":[-3]}\n`,
      );
      assert.equal(
        assertSuccess(
          await rpc(["call", ...base, "--as", "c1", "s1", "service1", "add", "-1.5", "-1e1"]),
        ),
        "-11.5\n",
      );
      // The value of an option is still the option's: --timeout -1 is refused as a duration.
      const bad = await rpc([
        "call",
        ...base,
        "--timeout",
        "-1",
        "s1",
        "service1",
        "add",
        "1",
        "2",
      ]);
      assert.equal(bad.code, 2, describeResult(bad));
      assert.match(bad.stderr, /^error: --timeout: Cannot read duration "-1"/);
    });

    await t.step(
      "forgetting --as hints at --as and RPC_CLIENT; naming a client does not",
      async () => {
        const call = await rpc(["call", ...base, "s1", "service1", "echo", "x"]);
        assert.equal(call.code, 14, describeResult(call));
        assert.equal(
          call.stderr,
          `error: Client Not Registered: Client (anonymous) is not registered for service service1 and may not use it\n${AS_HINT}\n`,
        );
        const describe = await rpc(["describe", ...base, "s1", "service1.echo"]);
        assert.equal(describe.code, 12, describeResult(describe));
        assert.equal(describe.stderr.split("\n")[1], AS_HINT);
        const named = await rpc(["call", ...base, "s1", "service2", "rpc3", "1", "2"], {
          env: { RPC_CLIENT: "c2" },
        });
        assert.equal(named.code, 12, describeResult(named));
        assert.doesNotMatch(named.stderr, /hint:/);
      },
    );

    await t.step("rpc list and describe show a streaming RPC's yields", async () => {
      const described = assertSuccess(
        await rpc(["describe", ...base, "--as", "c1", "s1", "service1.countdown"]),
      );
      assert.equal(
        described,
        "service1.countdown(int) yields int -> str\n    Count down from n, one number every 200 ms.\n",
      );
    });

    await t.step("a closed stdout ends the command quietly, exit 0", async () => {
      // countdown prints 3, then 2 a moment later: by then head has exited.
      const rpcLine = rpcArgv([
        "call",
        ...base,
        "--as",
        "c1",
        "s1",
        "service1",
        "countdown",
        "5",
      ]).map((word) => `'${word}'`).join(" ");
      const output = await new Deno.Command("bash", {
        args: ["-c", `${rpcLine} | head -1; echo "status \${PIPESTATUS[0]}" >&2`],
        env: childEnv(),
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const decoder = new TextDecoder();
      assert.equal(decoder.decode(output.stdout), "5\n");
      assert.equal(decoder.decode(output.stderr), "status 0\n");
    });

    await t.step(
      "rpc ping --json prints JSON when the server answers, and when it does not",
      async () => {
        const up = JSON.parse(assertSuccess(await rpc(["ping", ...base, "--json", "s1"])));
        assert.equal(up.ok, true);
        assert.equal(up.server, "s1");
        const address = `127.0.0.1:${freePort()}`;
        const down = await rpc(["ping", "--json", address]);
        assert.equal(down.code, 3, describeResult(down));
        const report = JSON.parse(down.stdout);
        assert.deepEqual(Object.keys(report), ["ok", "server", "address", "error"]);
        assert.equal(report.ok, false);
        assert.equal(report.address, address);
        assert.equal(report.error.kind, "Unavailable");
        assert.equal(report.error.exitCode, 3);
        assert.match(report.error.message, /^Cannot connect to /);
        assert.match(down.stderr, /^error: Unavailable: Cannot connect to /);
      },
    );

    assert.ok(server.running());
  },
});
