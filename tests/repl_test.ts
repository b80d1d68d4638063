/**
 * `rpc repl` end to end: in a real terminal (tmux: send-keys, capture-pane)
 * and with piped stdin, against real `rpc server` processes.
 *
 * Each terminal test runs its own tmux server (`-L` with a unique socket
 * name), killed in `finally`, so no process outlives a test.
 *
 * Run: `deno test --allow-all tests/repl_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  childEnv,
  delay,
  freePort,
  INIT_YAML,
  ROOT,
  rpcArgv,
  type ServerProcess,
  startServers,
  type TempConfig,
  writeInitYaml,
} from "./helpers.ts";
import { Terminal } from "./terminal.ts";

/** Two servers on free ports, named s1 and s2 in a temporary init.yaml. */
async function cluster(): Promise<{ config: TempConfig; servers: ServerProcess[] }> {
  const ports = [freePort(), freePort()];
  const config = await writeInitYaml({
    base: INIT_YAML,
    servers: {
      s1: { ip: "127.0.0.1", port: ports[0] },
      s2: { ip: "127.0.0.1", port: ports[1] },
    },
  });
  try {
    const servers = await startServers([
      { config: config.path, name: "s1", port: ports[0] },
      { config: config.path, name: "s2", port: ports[1] },
    ]);
    return { config, servers };
  } catch (error) {
    await config.remove();
    throw error;
  }
}

async function stopCluster(running: { config: TempConfig; servers: ServerProcess[] }) {
  await Promise.all(running.servers.map((server) => server.stop()));
  await running.config.remove();
}

Deno.test({
  name: "rpc repl in a real terminal",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const running = await cluster();
    const history = join(running.config.dir, "history");
    const env = { RPC_HISTORY: history, TERM: "xterm-256color" };
    const repl = (extra: string[] = []) =>
      Terminal.start(
        rpcArgv(["repl", "--config", running.config.path, "--as", "c1", ...extra, "s1"]),
        env,
      );
    try {
      await t.step("shows the server and client in the prompt and prints a result", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        assert.match(
          await terminal.screen(),
          /^connected to s1 \(127\.0\.0\.1:\d+\) as c1: 1 service/,
        );
        await terminal.type(`service1.rpc1 3 "a b"`);
        await terminal.press("Enter");
        await terminal.waitForText("a ba ba b");
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("service1.divmod 17 5");
        await terminal.press("Enter");
        const screen = await terminal.waitForText("3\n2\ns1 c1>");
        assert.match(screen, /service1\.divmod 17 5\n3\n2\ns1 c1>/);
      });

      await t.step("prints a streaming RPC's parts, then its result", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("service1.countdown 3");
        await terminal.press("Enter");
        // Before, only liftoff was printed: the parts were dropped.
        await terminal.waitForText("service1.countdown 3\n3\n2\n1\nliftoff\ns1 c1>");
      });

      await t.step("prints failures as Kind: message and keeps going", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("service1.rpc1 x y");
        await terminal.press("Enter");
        await terminal.waitForText(
          `Invalid Arguments: argument 1: Cannot read "x" as int. Valid signatures: rpc1(int, str) -> str`,
        );
        await terminal.type("service1.nope 1");
        await terminal.press("Enter");
        await terminal.waitForText("RPC Not Found: ");
        await terminal.type("service1.echo fine");
        await terminal.press("Enter");
        await terminal.waitForText("\nfine\n");
      });

      await t.step("completes service1.r to its RPCs, then hints the signature", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("service1.r");
        await terminal.press("Tab");
        await terminal.waitForPrompt("s1 c1> ", "service1.rpc");
        await terminal.press("Tab");
        const listed = await terminal.waitForText("service1.rpc1  service1.rpc2");
        assert.match(listed, /service1\.rpc1 {2}service1\.rpc2\ns1 c1> service1\.rpc$/);
        await terminal.type("1");
        await terminal.press("Tab");
        const hinted = await terminal.waitForText(
          "service1.rpc1(int, str) -> str  Repeat a string n times.",
        );
        // (capture-pane drops trailing spaces; the space after rpc1 shows once more is typed)
        assert.match(hinted, /s1 c1> service1\.rpc1$/);
        await terminal.type("2 xy");
        await terminal.waitForPrompt("s1 c1> ", "service1.rpc1 2 xy");
        await terminal.press("Enter");
        await terminal.waitForText("\nxyxy\n");
      });

      await t.step("completes commands and server names, and .use switches server", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type(".u");
        await terminal.press("Tab");
        await terminal.waitForPrompt("s1 c1> ", ".use");
        await terminal.press("Tab"); // s1 and s2 share "s"
        await terminal.waitForPrompt("s1 c1> ", ".use s");
        await terminal.press("Tab");
        await terminal.waitForText("\ns1  s2\n");
        await terminal.type("2");
        await terminal.press("Enter");
        await terminal.waitForPrompt("s2 c1> ");
        await terminal.type(".timing on");
        await terminal.press("Enter");
        await terminal.type("service1.echo timed");
        await terminal.press("Enter");
        await terminal.waitFor((screen) => /\ntimed\n\(\d+\.\d\d ms\)\n/.test(screen), "timing");
      });

      await t.step("Ctrl-C cancels a slow call at once and the REPL goes on", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("service1.sleep 5");
        await terminal.press("Enter");
        await terminal.waitFor(
          (screen) => screen.endsWith("s1 c1> service1.sleep 5"),
          "the call to be running",
        );
        await delay(300);
        const pressed = Date.now();
        await terminal.press("C-c");
        await terminal.waitForText("Cancelled: ");
        await terminal.waitForPrompt("s1 c1> ");
        const elapsed = Date.now() - pressed;
        assert.ok(elapsed < 2_000, `back at the prompt after ${elapsed} ms`);
        await terminal.type("service1.echo still-here");
        await terminal.press("Enter");
        await terminal.waitForText("\nstill-here\n");
        assert.equal(await terminal.exitStatus(), undefined);
      });

      await t.step("Ctrl-C clears the line being typed; Ctrl-D exits with status 0", async () => {
        await using terminal = await repl();
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.type("half a line");
        await terminal.press("C-c");
        await terminal.waitForText("s1 c1> half a line^C\ns1 c1>");
        await terminal.waitForPrompt("s1 c1> ");
        await terminal.press("C-c");
        await terminal.waitForPrompt("s1 c1> ");
        assert.equal(await terminal.exitStatus(), undefined);
        await terminal.press("C-d");
        await terminal.waitFor(async () => (await terminal.exitStatus()) === 0, "exit");
      });

      await t.step(
        "keeps history across sessions: up recalls the last session's line",
        async () => {
          await Deno.remove(history).catch(() => {});
          {
            await using first = await repl();
            await first.waitForPrompt("s1 c1> ");
            await first.type("service1.echo from-the-first-session");
            await first.press("Enter");
            await first.waitForText("\nfrom-the-first-session\n");
            await first.press("C-d");
            await first.waitFor(async () => (await first.exitStatus()) === 0, "exit");
          }
          assert.equal(await Deno.readTextFile(history), "service1.echo from-the-first-session\n");
          await using second = await repl();
          await second.waitForPrompt("s1 c1> ");
          await second.press("Up");
          await second.waitForPrompt("s1 c1> ", "service1.echo from-the-first-session");
          await second.press("C-a");
          await second.type("# ");
          await second.press("End");
          await second.waitForPrompt("s1 c1> ", "# service1.echo from-the-first-session");
          await second.press("Down");
          await second.waitForPrompt("s1 c1> ");
        },
      );
    } finally {
      await stopCluster(running);
    }
  },
});

/** Runs `rpc repl ARGS` with `input` on stdin. */
async function pipedRepl(args: string[], input: string) {
  const [command, ...argv] = rpcArgv(["repl", ...args]);
  const child = new Deno.Command(command, {
    args: argv,
    cwd: ROOT,
    env: childEnv(),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test({
  name:
    "rpc repl with piped stdin runs each line, without prompt, exiting with the first failure's code",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const running = await cluster();
    const args = ["--config", running.config.path, "--as", "c1", "s1"];
    try {
      await t.step("prints only results and exits 0 when every line succeeds", async () => {
        const result = await pipedRepl(
          args,
          [
            "# a comment",
            "service1.rpc1 3 ab",
            "",
            `service1.rpc2 [1, 2] ["a b", "c"]`,
            "service1.add 2.5 3",
            ".describe service1.rpc1",
            ".use s2",
            "service1.echo 'on s2'",
          ].join("\n"),
        );
        assert.equal(result.stderr, "");
        assert.equal(
          result.stdout,
          [
            "ababab",
            "1=a b, 2=c",
            "5.5",
            "service1.rpc1(int, str) -> str",
            "    Repeat a string n times.",
            "on s2",
            "",
          ].join("\n"),
        );
        assert.equal(result.code, 0);
      });

      await t.step("reports each failure as one error line and goes on", async () => {
        const result = await pipedRepl(
          args,
          [
            "service1.rpc1 x y",
            "service1.echo after",
            "service1.nope",
            "nonsense",
          ].join("\n") + "\n",
        );
        assert.equal(result.stdout, "after\n");
        const lines = result.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 3, result.stderr);
        assert.match(lines[0], /^error: Invalid Arguments: /);
        assert.match(lines[1], /^error: RPC Not Found: /);
        assert.match(lines[2], /^error: Syntax error: Expected service\.rpc/);
        assert.equal(result.code, 11);
      });

      await t.step("prints JSON with --json and stops at .exit", async () => {
        const result = await pipedRepl(
          ["--json", ...args],
          "service1.divmod 17 5\n.exit\nservice1.echo never\n",
        );
        assert.equal(result.stdout, `{"return-values":[3,2]}\n`);
        assert.equal(result.code, 0);
      });

      await t.step(
        "prints a streaming RPC's parts, then its result, plain and --json",
        async () => {
          const plain = await pipedRepl(args, "service1.countdown 3\n");
          assert.equal(plain.stderr, "");
          assert.equal(plain.stdout, "3\n2\n1\nliftoff\n");
          assert.equal(plain.code, 0);
          const json = await pipedRepl(["--json", ...args], "service1.countdown 2\n");
          assert.equal(
            json.stdout,
            `{"part":[2]}\n{"part":[1]}\n{"return-values":["liftoff"]}\n`,
          );
          assert.equal(json.code, 0);
        },
      );

      await t.step("an anonymous call that needs a client hints at --as", async () => {
        const result = await pipedRepl(
          ["--config", running.config.path, "s1"],
          "service1.echo x\n",
        );
        assert.equal(result.code, 14, result.stderr);
        assert.equal(
          result.stderr,
          "error: Client Not Registered: Client (anonymous) is not registered for service service1 and may not use it\n" +
            "hint: the call was anonymous: pass --as CLIENT or set RPC_CLIENT (a client name from init.yaml)\n",
        );
      });

      await t.step("fails with exit 3 when the server cannot be reached", async () => {
        const result = await pipedRepl(["--as", "c1", `127.0.0.1:${freePort()}`], "");
        assert.equal(result.code, 3);
        assert.match(result.stderr, /^error: Unavailable: Cannot connect to 127\.0\.0\.1:\d+/);
      });
    } finally {
      await stopCluster(running);
    }
  },
});
