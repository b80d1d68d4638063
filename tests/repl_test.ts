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

const TMUX = "/usr/bin/tmux";

/** How long a screen may take to show what a test waits for. */
const SCREEN_TIMEOUT_MS = 15_000;

/** Runs tmux on one socket; throws with its stderr on failure. */
async function tmux(socket: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(TMUX, {
    args: ["-L", socket, "-f", "/dev/null", ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return text;
}

let sockets = 0;

/** Quotes a word for sh. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

/** One `rpc repl` in a 120x40 tmux pane of its own tmux server. */
class Terminal implements AsyncDisposable {
  private constructor(readonly socket: string) {}

  /**
   * Starts `rpc ARGS` in a new pane. A shell around it prints `[exited N]`
   * when it ends: tmux 3.3 sometimes leaves a dead pane's status unknown.
   */
  static async start(args: string[], env: Record<string, string>): Promise<Terminal> {
    const socket = `rpc-repl-test-${Deno.pid}-${++sockets}-${Date.now()}`;
    const terminal = new Terminal(socket);
    const environment = Object.entries(childEnv(env)).map(([key, value]) => `${key}=${value}`);
    const rpc = rpcArgv(args).map(shellQuote).join(" ");
    try {
      await tmux(socket, [
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-c",
        ROOT,
        "--",
        "env",
        "-i",
        ...environment,
        "/bin/sh",
        "-c",
        `${rpc}; echo "[exited $?]"`,
        ";",
        "set-option",
        "remain-on-exit",
        "on",
      ]);
    } catch (error) {
      await terminal.kill();
      throw error;
    }
    return terminal;
  }

  /** Types text literally. */
  async type(text: string): Promise<void> {
    await tmux(this.socket, ["send-keys", "-l", text]);
  }

  /** Presses keys by tmux name: `Enter`, `Tab`, `Up`, `C-c`, `C-d`, ... */
  async press(...keys: string[]): Promise<void> {
    for (const key of keys) await tmux(this.socket, ["send-keys", key]);
  }

  /** The visible screen, trailing blank lines removed. */
  async screen(): Promise<string> {
    return (await tmux(this.socket, ["capture-pane", "-p"])).replace(/\s+$/, "");
  }

  /** The last non-empty line of the screen. */
  async lastLine(): Promise<string> {
    return (await this.screen()).split("\n").at(-1) ?? "";
  }

  /** Waits until `check(screen)` holds; fails with the screen as it was. */
  async waitFor(
    check: (screen: string) => boolean | Promise<boolean>,
    what: string,
    ms = SCREEN_TIMEOUT_MS,
  ): Promise<string> {
    const deadline = Date.now() + ms;
    let screen = "";
    while (Date.now() < deadline) {
      screen = await this.screen();
      if (await check(screen)) return screen;
      await delay(50);
    }
    throw new Error(`Timed out after ${ms} ms waiting for ${what}; the screen:\n${screen}`);
  }

  /** Waits for text on the screen. */
  waitForText(text: string, ms?: number): Promise<string> {
    return this.waitFor((screen) => screen.includes(text), JSON.stringify(text), ms);
  }

  /** Waits for the prompt on the last line, with `line` typed after it. */
  waitForPrompt(prompt: string, line = ""): Promise<string> {
    return this.waitFor(
      (screen) => (screen.split("\n").at(-1) ?? "") === `${prompt}${line}`.trimEnd(),
      `prompt ${JSON.stringify(prompt + line)}`,
    );
  }

  /** The exit status once `rpc` has exited, else `undefined`. */
  async exitStatus(): Promise<number | undefined> {
    const match = /\[exited (\d+)\]/.exec(await this.screen());
    return match ? Number(match[1]) : undefined;
  }

  /** Kills the tmux server and everything in it. Safe to call twice. */
  async kill(): Promise<void> {
    await tmux(this.socket, ["kill-server"]).catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.kill();
  }
}

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
      Terminal.start(["repl", "--config", running.config.path, "--as", "c1", ...extra, "s1"], env);
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
          `Invalid Arguments: Arguments ["x","y"] fit no signature of service1.rpc1: (int, str)`,
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
