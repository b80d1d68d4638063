/**
 * A real `nats-server` on loopback for the tests that run rpc over NATS:
 * a free port (`-p -1`, read back from its log), optional settings
 * (max_payload, users) in a config file, and a restart on the same port.
 *
 * @module
 */

import { join } from "node:path";
import { delay, withTimeout } from "./helpers.ts";

/** Options of {@linkcode startNats}. */
export interface NatsOptions {
  /** The port to bind; default a free one. */
  port?: number;
  /** Lines of a nats-server config file (e.g. `max_payload: 65536`). */
  config?: string;
}

/** A running nats-server. */
export interface NatsProcess extends AsyncDisposable {
  /** `nats://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** Kills it (SIGKILL: a broker that goes away without notice). */
  kill(): Promise<void>;
  /** Starts it again on the same port, with the same settings. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const LISTENING = /Listening for client connections on [^\s]*:(\d+)/;

/** Whether nats-server is installed (tests are skipped without it only outside CI). */
export function natsServerPath(): string {
  for (
    const path of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
  ) {
    try {
      Deno.statSync(path);
      return path;
    } catch {
      // Not there.
    }
  }
  return "nats-server";
}

async function spawn(
  port: number,
  configFile: string | undefined,
): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(natsServerPath(), {
    args: [
      ...(configFile ? ["-c", configFile] : []),
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  let text = "";
  const decoder = new TextDecoder();
  const found = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`nats-server exited before listening:\n${text}`);
      text += decoder.decode(value, { stream: true });
      const match = LISTENING.exec(text);
      if (match) return Number(match[1]);
    }
  })();
  try {
    const bound = await withTimeout(found, 10_000, "nats-server listening line");
    // Keep draining its log so it never blocks on a full pipe.
    (async () => {
      try {
        while (!(await reader.read()).done) { /* drain */ }
      } catch {
        // Closed.
      }
    })();
    return { child, port: bound };
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
    await child.status;
    throw error;
  }
}

/** Starts nats-server on 127.0.0.1. */
export async function startNats(options: NatsOptions = {}): Promise<NatsProcess> {
  let dir: string | undefined;
  let configFile: string | undefined;
  if (options.config) {
    dir = await Deno.makeTempDir({ prefix: "rpc-nats-" });
    configFile = join(dir, "nats.conf");
    await Deno.writeTextFile(configFile, options.config);
  }
  let { child, port } = await spawn(options.port ?? -1, configFile);
  let running = true;
  const kill = async (signal: Deno.Signal) => {
    if (!running) return;
    running = false;
    try {
      child.kill(signal);
    } catch {
      // Gone.
    }
    await child.status;
  };
  const process: NatsProcess = {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill: () => kill("SIGKILL"),
    async restart() {
      await kill("SIGKILL");
      // The port was just released; a moment for the kernel, then bind it again.
      for (let attempt = 0;; attempt++) {
        try {
          ({ child } = await spawn(port, configFile));
          running = true;
          return;
        } catch (error) {
          if (attempt >= 20) throw error;
          await delay(100);
        }
      }
    },
    async stop() {
      await kill("SIGTERM");
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    async [Symbol.asyncDispose]() {
      await process.stop();
    },
  };
  return process;
}
