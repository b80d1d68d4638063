/**
 * A real terminal for process tests: a command in a tmux pane (send-keys,
 * capture-pane), each in a tmux server of its own (`-L` with a unique socket
 * name) that `kill()` ends, so no process outlives a test. Used by the REPL
 * tests and by the shell completion tests (bash, zsh and fish at a prompt).
 *
 * @module
 */

import { join } from "node:path";
import { childEnv, delay, ROOT, rpcArgv } from "./helpers.ts";

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
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

/** One command in a 120x40 tmux pane of its own tmux server. */
export class Terminal implements AsyncDisposable {
  private constructor(readonly socket: string) {}

  /**
   * Starts `argv` (e.g. `rpcArgv(["repl", ...])`, or a shell) in a new pane,
   * in `cwd` (default: the repository). A shell around it prints `[exited N]`
   * when it ends: tmux 3.3 sometimes leaves a dead pane's status unknown.
   */
  static async start(
    argv: readonly string[],
    env: Record<string, string>,
    cwd: string = ROOT,
  ): Promise<Terminal> {
    const socket = `rpc-test-${Deno.pid}-${++sockets}-${Date.now()}`;
    const terminal = new Terminal(socket);
    const environment = Object.entries(childEnv(env)).map(([key, value]) => `${key}=${value}`);
    const command = argv.map(shellQuote).join(" ");
    try {
      await tmux(socket, [
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-c",
        cwd,
        "--",
        "env",
        "-i",
        ...environment,
        "/bin/sh",
        "-c",
        `${command}; echo "[exited $?]"`,
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

/**
 * A directory holding an `rpc` that runs the rpc under test, to put first on
 * `PATH` for completion scripts, which call `rpc` at every Tab.
 */
export async function rpcOnPath(): Promise<{ bin: string; remove(): Promise<void> }> {
  const bin = await Deno.makeTempDir({ prefix: "rpc-bin-" });
  await Deno.writeTextFile(
    join(bin, "rpc"),
    `#!/bin/sh\nexec ${rpcArgv([]).map(shellQuote).join(" ")} "$@"\n`,
    { mode: 0o755 },
  );
  return { bin, remove: () => Deno.remove(bin, { recursive: true }) };
}
