/**
 * Child `rpc` processes for `rpc up`: starts this same program as
 * `rpc server`, passes on each line it logs with the server's name in front,
 * tells when it listens, and stops it with SIGTERM (SIGKILL after a grace
 * period).
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * How to run this program again: the compiled binary itself, or, from
 * source, `deno run --allow-all main.ts` with the repository's deno.json.
 */
export function selfCommand(): { command: string; args: string[] } {
  const exec = Deno.execPath();
  if (!/^deno(\.exe)?$/i.test(basename(exec)) || !Deno.mainModule.startsWith("file:")) {
    return { command: exec, args: [] };
  }
  const main = fileURLToPath(Deno.mainModule);
  const config = join(dirname(main), "deno.json");
  let hasConfig = false;
  try {
    hasConfig = Deno.statSync(config).isFile;
  } catch {
    // Run without one: Deno looks for it itself.
  }
  return {
    command: exec,
    args: ["run", "--allow-all", ...(hasConfig ? ["--config", config] : []), main],
  };
}

/** The environment of a child: ours without `RPC_*` settings (they would override its flags), plus `extra`. */
export function childEnvironment(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("RPC_")) env[key] = value;
  }
  return { ...env, ...extra };
}

const LISTENING = /listening on (\S+):(\d+)/;

/** One child process whose output lines are passed on with its name in front. */
export class ChildServer {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  /** Resolves once the server logs that it listens. */
  readonly listening: Promise<void>;
  /** Resolves when the process has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Resolves once both output streams have ended. */
  readonly drained: Promise<void>;
  #exited = false;
  #listened = false;

  /**
   * Starts `rpc ARGS` with `env`; each line it writes goes to `emit` as
   * `name | line` (`width` pads the names to one column).
   */
  constructor(
    name: string,
    args: readonly string[],
    env: Record<string, string>,
    emit: (line: string) => void,
    width = name.length,
  ) {
    this.name = name;
    const self = selfCommand();
    this.process = new Deno.Command(self.command, {
      args: [...self.args, ...args],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Its own process group: a Ctrl-C in the terminal reaches rpc up only, which then
      // stops each server once (a second signal would cut a server's grace period short).
      detached: true,
    }).spawn();
    const prefix = `${name.padEnd(width)} | `;
    const listening = Promise.withResolvers<void>();
    this.listening = listening.promise;
    this.status = this.process.status.then((status) => {
      this.#exited = true;
      listening.reject(
        new Error(`Server ${name} exited before it listened (exit code ${status.code})`),
      );
      return status;
    });
    this.listening.then(() => this.#listened = true, () => {});
    const onLine = (line: string) => {
      emit(`${prefix}${line}`);
      if (LISTENING.test(line)) listening.resolve();
    };
    this.drained = Promise.all([
      forEachLine(this.process.stdout, onLine),
      forEachLine(this.process.stderr, onLine),
    ]).then(() => {});
  }

  /** Whether the process still runs. */
  get running(): boolean {
    return !this.#exited;
  }

  /** Whether it has logged that it listens. */
  get listened(): boolean {
    return this.#listened;
  }

  /** The process id. */
  get pid(): number {
    return this.process.pid;
  }

  /**
   * Sends SIGTERM (the server drains, see `rpc server`), then SIGKILL if it
   * has not exited after `graceMs`. Resolves to its exit status.
   */
  async stop(graceMs: number): Promise<Deno.CommandStatus> {
    if (this.running) signal(this.process, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        signal(this.process, "SIGKILL");
        resolve();
      }, graceMs);
    });
    await Promise.race([this.status, killed]);
    clearTimeout(timer);
    const status = await this.status;
    await this.drained;
    return status;
  }

  /** Kills the process at once (SIGKILL). */
  kill(): void {
    if (this.running) signal(this.process, "SIGKILL");
  }
}

function signal(process: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    process.kill(name);
  } catch {
    // It has exited meanwhile.
  }
}

/** Calls `onLine` for each line of a byte stream, the last one even without a line break. */
export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, end).replace(/\r$/, ""));
        pending = pending.slice(end + 1);
      }
    }
  } catch {
    // The stream broke: what arrived has been passed on.
  }
  pending += decoder.decode();
  if (pending !== "") onLine(pending);
}
