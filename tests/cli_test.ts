/**
 * The command line's conventions, with real processes: help of every
 * subcommand and the shell completion scripts against snapshot files, bash
 * really completing from the sourced script, one-line usage errors, colors,
 * configuration layering, and `rpc list` / `rpc describe` against a server.
 *
 * Snapshots live in `tests/snapshots/`. A missing or different snapshot
 * fails the test; `UPDATE_SNAPSHOTS=1 deno test --allow-all tests/cli_test.ts`
 * writes them instead.
 *
 * Run: `deno test --allow-all tests/cli_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EXIT_CODES, PARTIAL_FAILURE_EXIT_CODE, USAGE_EXIT_CODE } from "../cmd/exit_codes.ts";
import { VERSION } from "../core/version.ts";
import {
  childEnv,
  delay,
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
import { rpcOnPath } from "./terminal.ts";

const SNAPSHOTS = join(ROOT, "tests", "snapshots");
const UPDATE = Deno.env.get("UPDATE_SNAPSHOTS") === "1";

/** Help is wrapped at COLUMNS when stdout is not a terminal: pin it. */
const HELP_ENV = { COLUMNS: "100" };

/** Compares `actual` with the snapshot file, or writes it when UPDATE_SNAPSHOTS=1. */
async function assertSnapshot(name: string, actual: string): Promise<void> {
  const path = join(SNAPSHOTS, name);
  if (UPDATE) {
    await Deno.mkdir(SNAPSHOTS, { recursive: true });
    await Deno.writeTextFile(path, actual);
    return;
  }
  let expected: string;
  try {
    expected = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      assert.fail(`No snapshot ${name}: run with UPDATE_SNAPSHOTS=1 to write it`);
    }
    throw error;
  }
  assert.equal(
    actual,
    expected,
    `${name} differs from its snapshot (UPDATE_SNAPSHOTS=1 rewrites it)`,
  );
}

function assertSuccess(result: RpcResult): string {
  assert.equal(result.code, 0, describeResult(result));
  return result.stdout;
}

/** Every subcommand and its snapshot name. */
const SUBCOMMANDS = [
  "server",
  "call",
  "list",
  "describe",
  "repl",
  "init",
  "hash",
  "ping",
  "admin",
  "bench",
  "up",
  "down",
  "completions",
];

Deno.test("rpc --help lists every subcommand, with examples", async () => {
  const help = assertSuccess(await rpc(["--help"], { env: HELP_ENV }));
  for (const name of SUBCOMMANDS) assert.match(help, new RegExp(`^ {2}${name} `, "m"), name);
  assert.match(help, /^Examples:\n {2}rpc server --config init\.yaml --name s1\n/m);
  await assertSnapshot("help.txt", help);
});

for (const name of SUBCOMMANDS) {
  Deno.test(`rpc ${name} --help matches its snapshot and has examples`, async () => {
    const help = assertSuccess(await rpc([name, "--help"], { env: HELP_ENV }));
    assert.match(help, new RegExp(`^Usage: rpc ${name} `, "m"));
    assert.match(help, /^Examples:/m);
    await assertSnapshot(`help-${name}.txt`, help);
  });
}

Deno.test("rpc help COMMAND prints the same as rpc COMMAND --help", async () => {
  const viaHelp = assertSuccess(await rpc(["help", "describe"], { env: HELP_ENV }));
  const viaFlag = assertSuccess(await rpc(["describe", "--help"], { env: HELP_ENV }));
  assert.equal(viaHelp, viaFlag);
});

Deno.test("every command that prints data takes --json", async () => {
  for (
    const name of ["call", "list", "describe", "repl", "init", "hash", "ping", "admin", "bench"]
  ) {
    const help = assertSuccess(await rpc([name, "--help"], { env: HELP_ENV }));
    assert.match(help, /--json/, name);
  }
});

Deno.test("rpc --version prints the version", async () => {
  assert.equal(assertSuccess(await rpc(["--version"])), `${VERSION}\n`);
});

for (const shell of ["bash", "zsh", "fish"]) {
  Deno.test(`rpc completions ${shell} matches its snapshot`, async () => {
    const script = assertSuccess(await rpc(["completions", shell]));
    assert.ok(script.includes("rpc"), script);
    await assertSnapshot(`completions.${shell}`, script);
  });
}

Deno.test("usage errors are one error: line and a hint line on stderr, exit 2", async () => {
  const cases: [string[], RegExp, string][] = [
    [
      ["call"],
      /^error: Expected a `SERVER` \(or `--service` `SERVICE`\), but too few arguments$/,
      "hint: rpc call --help shows usage and examples",
    ],
    [
      ["list", "--bogus", "s1"],
      /^error: Unexpected option or subcommand: `--bogus`$/,
      "hint: rpc list --help shows usage and examples",
    ],
    [
      ["cal", "s1"],
      /^error: .*`cal`.*Did you mean `call`\?$/,
      "hint: rpc --help shows usage and examples",
    ],
    [
      ["completions"],
      /^error: Missing shell name for completion$/,
      "hint: rpc completions --help shows usage and examples",
    ],
    [
      ["completions", "tcsh"],
      /^error: Unsupported shell "tcsh"/,
      "hint: rpc completions --help shows usage and examples",
    ],
  ];
  for (const [args, error, hint] of cases) {
    const result = await rpc(args);
    assert.equal(result.code, 2, describeResult(result));
    assert.equal(result.stdout, "", describeResult(result));
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, describeResult(result));
    assert.match(lines[0], error);
    assert.equal(lines[1], hint);
  }
});

Deno.test("usage errors found after parsing are one error: line, exit 2", async () => {
  const result = await rpc(["call", "--as", "c1", "nowhere", "service1", "rpc1"], { cwd: "/" });
  assert.equal(result.code, 2, describeResult(result));
  assert.equal(
    result.stderr,
    `error: Unknown server "nowhere": give host:port or unix:/path, or --config init.yaml to use server names\n`,
  );
});

Deno.test("RPC_TIMEOUT is read for client commands and a bad value is a usage error", async () => {
  const result = await rpc(["list", "127.0.0.1:1"], { env: { RPC_TIMEOUT: "soon" } });
  assert.equal(result.code, 2, describeResult(result));
  assert.equal(
    result.stderr,
    `error: RPC_TIMEOUT: Cannot read duration "soon": use e.g. 500ms, 2s, 1m\n`,
  );
  const flagWins = await rpc(["list", "--timeout", "later", "127.0.0.1:1"], {
    env: { RPC_TIMEOUT: "soon" },
  });
  assert.match(flagWins.stderr, /^error: --timeout: Cannot read duration "later"/);
});

Deno.test("output piped or under NO_COLOR has no ANSI escapes", async () => {
  for (const env of [{}, { NO_COLOR: "1" }] as Record<string, string>[]) {
    const result = await rpc(["call", "--help"], { env });
    assert.ok(!result.stdout.includes(ESC), "no escapes in stdout");
    const failed = await rpc(["call"], { env });
    assert.ok(!failed.stderr.includes(ESC), "no escapes in stderr");
  }
});

const ESC = "\x1b";

/** The SGR (color, bold, ...) sequences in text, other than plain resets. */
function colorCodes(text: string): string[] {
  return text.split(`${ESC}[`).slice(1)
    .map((part) => /^[0-9;]*m/.exec(part)?.[0])
    .filter((code): code is string =>
      code !== undefined && code !== "m" && code !== "0m" && code !== "39m"
    );
}

/** Runs `rpc ARGS` in a tmux pane (a real terminal) and returns the screen with escapes. */
async function inTerminal(args: string[], env: Record<string, string>): Promise<string> {
  const socket = `rpc-cli-test-${Deno.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const tmux = (tmuxArgs: string[]) =>
    new Deno.Command("/usr/bin/tmux", {
      args: ["-L", socket, "-f", "/dev/null", ...tmuxArgs],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).output();
  // childEnv sets NO_COLOR=1 for quiet test output; here it is only what `env` says.
  const { NO_COLOR: _, ...inherited } = childEnv({ TERM: "xterm-256color" });
  const vars = Object.entries({ ...inherited, ...env }).map(([k, v]) => `${k}=${v}`);
  try {
    await tmux([
      "new-session",
      "-d",
      "-x",
      "200",
      "-y",
      "50",
      "--",
      "env",
      "-i",
      ...vars,
      "/bin/sh",
      "-c",
      `${rpcArgv(args).map((word) => `'${word}'`).join(" ")}; echo '[done]'; sleep 30`,
    ]);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const screen = new TextDecoder().decode((await tmux(["capture-pane", "-p", "-e"])).stdout);
      if (screen.includes("[done]")) return screen;
      if (Date.now() > deadline) {
        throw new Error(`rpc ${args.join(" ")} did not finish:\n${screen}`);
      }
      await delay(50);
    }
  } finally {
    await tmux(["kill-server"]).catch(() => {});
  }
}

Deno.test("help is colored on a terminal, and not when NO_COLOR is set", async () => {
  const colored = await inTerminal(["call", "--help"], {});
  assert.ok(colorCodes(colored).length > 0, "escapes on a terminal");
  const plain = await inTerminal(["call", "--help"], { NO_COLOR: "1" });
  assert.match(plain, /Usage: rpc call/);
  assert.deepEqual(colorCodes(plain), [], "no color with NO_COLOR");
});

// ---------------------------------------------------------------------------
// bash really completing from the sourced script

/**
 * Sources `rpc completions bash` in a real bash, sets COMP_WORDS for `line`
 * (completing its last word), runs the completion function and returns
 * COMPREPLY.
 */
async function bashComplete(
  bin: string,
  line: string,
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string[]> {
  const script = `
set -u
source <(rpc completions bash)
line=$1
read -r -a COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
COMP_LINE=$line
COMP_POINT=\${#line}
function=$(complete -p rpc | sed -E 's/.*-F ([^ ]+) .*/\\1/')
"$function" rpc "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"
`;
  const output = await new Deno.Command("bash", {
    args: ["-c", script, "bash", line],
    cwd: options.cwd ?? ROOT,
    env: childEnv({ PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`, ...options.env }),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.ok(output.success, `bash failed: ${stderr}`);
  return new TextDecoder().decode(output.stdout).split("\n").filter((word) => word !== "");
}

Deno.test({
  name: "bash completes subcommands, flags and server names from the sourced script",
  sanitizeResources: false,
  async fn(t) {
    const path = await rpcOnPath();
    const config = await writeInitYaml({
      base: INIT_YAML,
      servers: { alpha: { ip: "127.0.0.1", port: 9101 }, beta: { ip: "127.0.0.1", port: 9102 } },
    });
    try {
      await t.step("a subcommand", async () => {
        assert.deepEqual(await bashComplete(path.bin, "rpc des"), ["describe"]);
        const all = await bashComplete(path.bin, "rpc ");
        for (
          const name of [
            "server",
            "call",
            "list",
            "describe",
            "repl",
            "init",
            "hash",
            "ping",
            "admin",
            "bench",
          ]
        ) {
          assert.ok(all.includes(name), `${name} in ${all}`);
        }
      });

      await t.step("a flag", async () => {
        assert.deepEqual(await bashComplete(path.bin, "rpc list --j"), ["--json"]);
        assert.deepEqual(await bashComplete(path.bin, "rpc call --ti"), ["--timeout"]);
      });

      await t.step("server names from the init.yaml given with --config", async () => {
        const words = await bashComplete(path.bin, `rpc call --config ${config.path} `);
        assert.ok(words.includes("alpha") && words.includes("beta"), `${words}`);
        assert.deepEqual(await bashComplete(path.bin, `rpc list -c ${config.path} al`), ["alpha"]);
      });

      await t.step("server names from RPC_CONFIG, and from ./init.yaml", async () => {
        const fromEnv = await bashComplete(path.bin, "rpc repl b", {
          env: { RPC_CONFIG: config.path },
        });
        assert.deepEqual(fromEnv, ["beta"]);
        const here = await bashComplete(path.bin, "rpc describe ", { cwd: config.dir });
        assert.ok(here.includes("alpha") && here.includes("beta"), `${here}`);
        assert.deepEqual(await bashComplete(path.bin, "rpc hash --server s"), ["s1", "s2"]);
      });

      await t.step("service and RPC names for describe", async () => {
        const words = await bashComplete(
          path.bin,
          `rpc describe -c ${config.path} alpha service1.r`,
        );
        assert.deepEqual(words, ["service1.rpc1", "service1.rpc2"]);
      });
    } finally {
      await config.remove();
      await path.remove();
    }
  },
});

// ---------------------------------------------------------------------------
// rpc list and rpc describe against a server

Deno.test({
  name: "rpc list and rpc describe print what the server offers this client",
  sanitizeResources: false,
  async fn(t) {
    const port = freePort();
    const config = await writeInitYaml({
      base: INIT_YAML,
      servers: { s1: { ip: "127.0.0.1", port } },
    });
    const server = await startServer({ config: config.path, name: "s1", port });
    const base = ["--config", config.path];
    try {
      await t.step("rpc list: services, signatures and docs", async () => {
        const out = assertSuccess(await rpc(["list", ...base, "--as", "c1", "s1"]));
        assert.equal(
          out,
          [
            "service1",
            "  rpc1(int, str) -> str              Repeat a string n times.",
            "  rpc2(List[int], List[str]) -> str  Pair numbers with names.",
            "  add(int, int) -> int",
            "  add(float, float) -> float",
            "  add(List[int]) -> int",
            "  divmod(int, int) -> (int, int)",
            "  echo(str) -> str",
            "  sleep(float) -> str",
            "  countdown(int) yields int -> str   Count down from n, one number every 200 ms.",
            "",
          ].join("\n"),
        );
      });

      await t.step("rpc list --json, by host:port and RPC_CLIENT", async () => {
        const out = assertSuccess(
          await rpc(["list", "--json", `127.0.0.1:${port}`], { env: { RPC_CLIENT: "c1" } }),
        );
        const listing = JSON.parse(out);
        assert.deepEqual(listing.services.map((s: { name: string }) => s.name), ["service1"]);
        assert.deepEqual(listing.services[0].rpcs[0], {
          name: "rpc1",
          args: ["int", "str"],
          returns: ["str"],
          doc: "Repeat a string n times.",
        });
      });

      await t.step("rpc list as an anonymous client: nothing, and a note", async () => {
        const result = await rpc(["list", ...base, "s1"]);
        assert.equal(result.code, 0, describeResult(result));
        assert.equal(result.stdout, "");
        assert.match(
          result.stderr,
          /^note: s1 offers no services to an anonymous client; pass --as CLIENT or set RPC_CLIENT\n$/,
        );
      });

      await t.step("rpc describe: every overload with its doc", async () => {
        assert.equal(
          assertSuccess(await rpc(["describe", ...base, "--as", "c1", "s1", "service1.rpc1"])),
          "service1.rpc1(int, str) -> str\n    Repeat a string n times.\n",
        );
        assert.equal(
          assertSuccess(await rpc(["describe", ...base, "--as", "c1", "s1", "service1.add"])),
          "service1.add(int, int) -> int\nservice1.add(float, float) -> float\nservice1.add(List[int]) -> int\n",
        );
        const json = JSON.parse(
          assertSuccess(
            await rpc(["describe", ...base, "--as", "c1", "--json", "s1", "service1.divmod"]),
          ),
        );
        assert.deepEqual(json, {
          service: "service1",
          rpc: "divmod",
          overloads: [{ name: "divmod", args: ["int", "int"], returns: ["int", "int"] }],
        });
      });

      await t.step("rpc describe: unknown RPC exits 13, unseen service 12", async () => {
        const rpcMissing = await rpc(["describe", ...base, "--as", "c1", "s1", "service1.nope"]);
        assert.equal(rpcMissing.code, 13, describeResult(rpcMissing));
        assert.match(
          rpcMissing.stderr,
          /^error: RPC Not Found: No RPC nope in service service1 \(it has rpc1, /,
        );
        const serviceMissing = await rpc([
          "describe",
          ...base,
          "--as",
          "c1",
          "s1",
          "service2.rpc3",
        ]);
        assert.equal(serviceMissing.code, 12, describeResult(serviceMissing));
      });

      await t.step("unreachable server exits 3 with one error line", async () => {
        const result = await rpc(["list", "--as", "c1", `127.0.0.1:${freePort()}`]);
        assert.equal(result.code, 3, describeResult(result));
        assert.equal(result.stderr.split("\n").filter((line) => line !== "").length, 1);
        assert.match(result.stderr, /^error: Unavailable: Cannot connect to /);
      });
    } finally {
      await server.stop();
      await config.remove();
    }
  },
});

// ---------------------------------------------------------------------------
// README stays true

Deno.test("README documents every RPC_ variable the commands read, in its Configuration table", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const section = readme.split(/^## /m).find((part) => part.startsWith("Configuration"));
  assert.ok(section, "README has a Configuration section");
  const used = new Set<string>();
  for await (const entry of Deno.readDir(join(ROOT, "cmd"))) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const source = await Deno.readTextFile(join(ROOT, "cmd", entry.name));
    for (const match of source.matchAll(/\bRPC_[A-Z_]+\b/g)) used.add(match[0]);
  }
  assert.ok(used.size >= 8, `found ${[...used]}`);
  for (const name of used) assert.match(section, new RegExp(`\`${name}\``), `${name} in the table`);
});

Deno.test("README's exit code table matches EXIT_CODES", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  for (const [kind, code] of Object.entries(EXIT_CODES)) {
    if (kind === "Internal Error" || kind === "Unavailable") continue; // described in words
    assert.match(readme, new RegExp(`\\| ${code} +\\| \`${kind}\``), `${code} ${kind}`);
  }
  assert.match(readme, /\| 2 +\| usage error/);
  // One code per kind, none taken by usage errors (2) or a partial fan-out (7).
  const codes = Object.values(EXIT_CODES);
  assert.equal(new Set(codes).size, codes.length, `distinct: ${codes}`);
  assert.ok(!codes.includes(USAGE_EXIT_CODE) && !codes.includes(PARTIAL_FAILURE_EXIT_CODE));
  assert.equal(EXIT_CODES["Config Error"], 6);
  assert.equal(EXIT_CODES["Store Error"], 8);
});
