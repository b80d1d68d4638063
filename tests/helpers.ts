/**
 * Test utilities for end-to-end tests: real `rpc server` and `rpc call`
 * processes, temporary init.yaml files, and raw framed TCP connections.
 *
 * Every helper is bounded in time, and everything that starts a process or
 * opens a socket also knows how to clean it up (`stop()`, `close()`, or
 * `await using`).
 *
 * @module
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";

/** The repository root. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Absolute path of the command line's entry point. */
export const MAIN: string = join(ROOT, "main.ts");

/**
 * The compiled `rpc` under test, from `RPC_BIN` (e.g. `RPC_BIN=dist/rpc`,
 * relative to where the tests run); unset, the process tests run `deno run
 * --allow-all main.ts` from source.
 */
export const RPC_BIN: string | undefined = Deno.env.get("RPC_BIN")
  ? resolve(Deno.env.get("RPC_BIN")!)
  : undefined;

/** The command line that runs `rpc ARGS...`: the binary under test, else main.ts from source. */
export function rpcArgv(args: readonly string[]): [string, ...string[]] {
  return RPC_BIN ? [RPC_BIN, ...args] : [Deno.execPath(), "run", "--allow-all", MAIN, ...args];
}

/** Absolute path of the repository's init.yaml. */
export const INIT_YAML: string = join(ROOT, "init.yaml");

/** How long a server may take to log its listening line. */
export const LISTEN_TIMEOUT_MS = 20_000;

/** How long `stop()` waits after SIGTERM before SIGKILL. */
export const STOP_GRACE_MS = 5_000;

/** Default ceiling of one `rpc` command-line run. */
export const RPC_TIMEOUT_MS = 20_000;

/** The environment of a child: ours without `RPC_*` variables, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("RPC_")) env[key] = value;
  }
  return { NO_COLOR: "1", ...env, ...extra };
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Settles like `promise`, or rejects after `ms` with a message naming `what`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` every 25 ms until it returns a truthy value, and returns
 * that value. Throws after `ms`, naming `what`.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  ms = 5_000,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await delay(25);
  }
}

// ---------------------------------------------------------------------------
// rpc server

/** Options of {@linkcode startServer}. */
export interface StartServerOptions {
  /**
   * init.yaml to serve from. Default: the repository's. `null`: none at all,
   * no `--config`, and (unless `cwd` is given) a temporary working directory,
   * so that no `./init.yaml` is picked up either.
   */
  config?: string | null;
  /** The server's name in init.yaml. */
  name: string;
  /** More arguments for `rpc server`, e.g. `["--log-file", path]`. */
  extraArgs?: string[];
  /** Extra environment variables (`RPC_*` of the test process are not passed on). */
  env?: Record<string, string>;
  /** The port to bind. Default 0: a free one. `null`: no `--port` (a server serving only through a broker). */
  port?: number | null;
  /** The log line that says the server is ready, instead of its `listening on` line (e.g. a broker's). */
  ready?: RegExp;
  /** `unix:/path`: listen on that unix socket (`--listen`) instead of a port. */
  listen?: string;
  /** Working directory. Default: the repository root (see `config` for `null`). */
  cwd?: string;
  /** How long to wait for the listening line. Default {@linkcode LISTEN_TIMEOUT_MS}. */
  timeoutMs?: number;
  /**
   * The server's state directory, passed as `RPC_STATE_DIR`. Default: a new
   * temporary directory, removed when the server stops, so tests never touch
   * the user's own state.
   */
  stateDir?: string;
}

/** A running `rpc server` process. */
export interface ServerProcess extends AsyncDisposable {
  /** The bound port. */
  port: number;
  /** The bound address as the server logged it, e.g. `127.0.0.1:41234` or `unix:/tmp/rpc.sock`. */
  address: string;
  /** The bound host. */
  hostname: string;
  /** The child process. */
  process: Deno.ChildProcess;
  /** Everything the server has written to stderr so far. */
  stderrText(): string;
  /** Whether the process is still running. */
  running(): boolean;
  /** SIGTERM, then wait; SIGKILL after {@linkcode STOP_GRACE_MS}. Safe to call twice. */
  stop(): Promise<Deno.CommandStatus>;
}

const LISTENING = /listening on (\S+):(\d+)/;
const LISTENING_UNIX = /listening on unix:(\S+)/;

/**
 * Spawns `rpc server --port 0` (or the given port) and waits for
 * its `listening on` line. On failure the process is stopped and the error
 * includes everything it logged.
 */
export async function startServer(options: StartServerOptions): Promise<ServerProcess> {
  const [command, ...args] = rpcArgv([
    "server",
    ...(options.config === null ? [] : ["--config", options.config ?? INIT_YAML]),
    "--name",
    options.name,
    ...(options.extraArgs ?? []),
    ...(options.listen
      ? ["--listen", options.listen]
      : options.port === null
      ? []
      : ["--port", String(options.port ?? 0)]),
  ]);
  const ownStateDir = options.stateDir === undefined
    ? await Deno.makeTempDir({ prefix: `rpc-state-${options.name}-` })
    : undefined;
  const stateDir = options.stateDir ?? ownStateDir!;
  const ownCwd = options.config === null && options.cwd === undefined
    ? await Deno.makeTempDir({ prefix: `rpc-cwd-${options.name}-` })
    : undefined;
  const removeOwnDirs = async () => {
    for (const dir of [ownStateDir, ownCwd]) {
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command(command, {
      args,
      cwd: options.cwd ?? ownCwd ?? ROOT,
      env: childEnv({ RPC_STATE_DIR: stateDir, ...options.env }),
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await removeOwnDirs();
    throw error;
  }
  let text = "";
  const listening = Promise.withResolvers<{ hostname: string; port: number; path?: string }>();
  const reader = process.stderr.getReader();
  const reading = (async () => {
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (options.ready?.test(text)) listening.resolve({ hostname: "", port: 0 });
      const match = options.ready ? null : LISTENING.exec(text);
      if (match) listening.resolve({ hostname: match[1], port: Number(match[2]) });
      const unix = LISTENING_UNIX.exec(text);
      if (unix) listening.resolve({ hostname: "unix", port: 0, path: unix[1] });
    }
    text += decoder.decode();
  })();
  let exited = false;
  const statusPromise = process.status.then((result) => {
    exited = true;
    return result;
  });
  statusPromise.then(() =>
    listening.reject(new Error(`rpc server ${options.name} exited before listening`))
  );
  // The rejection above is expected after a normal stop: keep it from being unhandled.
  listening.promise.catch(() => {});

  let stopping: Promise<Deno.CommandStatus> | undefined;
  const stop = (): Promise<Deno.CommandStatus> => {
    stopping ??= (async () => {
      if (!exited) {
        try {
          process.kill("SIGTERM");
        } catch {
          // Exited meanwhile.
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            try {
              process.kill("SIGKILL");
            } catch {
              // Exited meanwhile.
            }
            resolve();
          }, STOP_GRACE_MS);
        });
        await Promise.race([statusPromise, killed]);
        clearTimeout(timer);
      }
      const result = await statusPromise;
      // stderr ends with the process, unless a child of it still holds the pipe.
      await withTimeout(reading, 2_000, "end of server stderr").catch(() => reader.cancel());
      await reading.catch(() => {});
      await removeOwnDirs();
      return result;
    })();
    return stopping;
  };

  let bound: { hostname: string; port: number; path?: string };
  try {
    bound = await withTimeout(
      listening.promise,
      options.timeoutMs ?? LISTEN_TIMEOUT_MS,
      `rpc server ${options.name} listening line`,
    );
  } catch (error) {
    const result = await stop();
    throw new Error(
      `${(error as Error).message} (exit code ${result.code}); it logged:\n${text}`,
      { cause: error },
    );
  }
  return {
    port: bound.port,
    hostname: bound.hostname,
    address: bound.path !== undefined ? `unix:${bound.path}` : `${bound.hostname}:${bound.port}`,
    process,
    stderrText: () => text,
    running: () => !exited,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/**
 * Starts several servers at once. If any fails to start, the others are
 * stopped before the error is thrown.
 */
export async function startServers(list: StartServerOptions[]): Promise<ServerProcess[]> {
  const results = await Promise.allSettled(list.map(startServer));
  const failed = results.find((result) => result.status === "rejected");
  if (failed) {
    await Promise.all(
      results.map((result) => result.status === "fulfilled" ? result.value.stop() : undefined),
    );
    throw failed.reason;
  }
  return results.map((result) => (result as PromiseFulfilledResult<ServerProcess>).value);
}

// ---------------------------------------------------------------------------
// rpc (any subcommand) as a process

/** What a command-line run printed and how it exited. */
export interface RpcResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode rpc}. */
export interface RpcOptions {
  env?: Record<string, string>;
  /** Working directory. Default: the repository root. */
  cwd?: string;
  /** Kill the process and fail after this long. Default {@linkcode RPC_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Kills the process (SIGTERM) when aborted; the call then throws. */
  signal?: AbortSignal;
}

/** Runs `rpc ARGS...` (see {@linkcode rpcArgv}) and collects its output. */
export async function rpc(args: readonly string[], options: RpcOptions = {}): Promise<RpcResult> {
  const timeoutMs = options.timeoutMs ?? RPC_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onAbort = () => controller.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) controller.abort();
  try {
    const [command, ...argv] = rpcArgv(args);
    const output = await new Deno.Command(command, {
      args: argv,
      cwd: options.cwd ?? ROOT,
      env: childEnv(options.env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).output();
    const decoder = new TextDecoder();
    const result = {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
    if (options.signal?.aborted) throw new Error(`rpc ${args.join(" ")} was interrupted`);
    if (controller.signal.aborted) {
      throw new Error(
        `rpc ${args.join(" ")} did not finish within ${timeoutMs} ms; stderr:\n${result.stderr}`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** Formats a result for assertion messages. */
export function describeResult(result: RpcResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
}

// ---------------------------------------------------------------------------
// Temporary init.yaml

/** One RPC signature to add to a temporary init.yaml. */
export interface RpcSpec {
  name: string;
  args: string[];
  returns: string[];
  /** A file named in `files`, or a path relative to the repository root, or absolute. */
  src: string;
  doc?: string;
  /** Seconds. */
  timeout?: number;
  /** Whether a call may be repeated on another provider after its connection was lost. */
  idempotent?: boolean;
}

/** What a temporary init.yaml holds. */
export interface InitYamlSpec {
  /** Start from this init.yaml (default: none); its `src` paths are made absolute. */
  base?: string;
  /** Servers added to (or replacing those of) the base. */
  servers?: Record<string, { ip: string; port: number }>;
  /** Clients added to (or replacing those of) the base. */
  clients?: Record<string, { ip?: string; port?: number }>;
  /** Services added to (or replacing those of) the base. */
  services?: Record<string, { providers: string[]; tenants?: string[]; rpcs: string[] }>;
  /** RPC signatures appended to the base's. */
  rpcs?: RpcSpec[];
  /** Source files to write next to the init.yaml, by file name. */
  files?: Record<string, string>;
}

/** A temporary directory holding an init.yaml. */
export interface TempConfig extends AsyncDisposable {
  dir: string;
  /** Absolute path of the init.yaml. */
  path: string;
  /** Removes the directory. */
  remove(): Promise<void>;
}

type NamedList = Record<string, unknown>[];

function upsert(list: NamedList, name: string, value: unknown): void {
  const index = list.findIndex((item) => Object.keys(item)[0] === name);
  if (index >= 0) list[index] = { [name]: value };
  else list.push({ [name]: value });
}

/**
 * Writes an init.yaml (and any procedure sources) into a new temporary
 * directory. Every `src` in it is absolute, so the file works from any
 * working directory.
 */
export async function writeInitYaml(spec: InitYamlSpec): Promise<TempConfig> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-e2e-" });
  const remove = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    for (const [name, text] of Object.entries(spec.files ?? {})) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    let doc: {
      network: { servers: NamedList; clients: NamedList };
      service: NamedList;
      rpc: NamedList;
    } = { network: { servers: [], clients: [] }, service: [], rpc: [] };
    if (spec.base) {
      const baseDir = dirname(resolve(spec.base));
      doc = parseYaml(await Deno.readTextFile(spec.base));
      doc.network.servers ??= [];
      doc.network.clients ??= [];
      doc.service ??= [];
      doc.rpc ??= [];
      for (const item of doc.rpc) {
        const entry = Object.values(item)[0] as { src: string };
        if (!isAbsolute(entry.src)) entry.src = resolve(baseDir, entry.src);
      }
    }
    for (const [name, server] of Object.entries(spec.servers ?? {})) {
      upsert(doc.network.servers, name, server);
    }
    for (const [name, client] of Object.entries(spec.clients ?? {})) {
      upsert(doc.network.clients, name, client);
    }
    for (const [name, service] of Object.entries(spec.services ?? {})) {
      upsert(doc.service, name, service);
    }
    for (const { name, src, ...rest } of spec.rpcs ?? []) {
      const path = spec.files && Object.hasOwn(spec.files, src)
        ? join(dir, src)
        : isAbsolute(src)
        ? src
        : resolve(ROOT, src);
      doc.rpc.push({ [name]: { ...rest, src: path } });
    }
    const path = join(dir, "init.yaml");
    await Deno.writeTextFile(path, stringifyYaml(doc));
    return { dir, path, remove, [Symbol.asyncDispose]: remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Raw framed connections, written independently of core/wire/frame.ts

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes one frame: a 4-byte big-endian length, then the body. */
export function frame(body: string | Uint8Array): Uint8Array {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Encodes a message object as one frame. */
export function messageFrame(message: Record<string, unknown>): Uint8Array {
  return frame(JSON.stringify(message));
}

/** A received message, as parsed JSON. */
export interface RawMessage {
  type: string;
  serial: number;
  // deno-lint-ignore no-explicit-any
  value: any;
}

/** A plain TCP connection that writes bytes and reads frames, each read bounded in time. */
export class RawConnection implements AsyncDisposable {
  #buffer = new Uint8Array(0);
  #eof = false;

  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connects to `127.0.0.1:port` (or the given host). */
  static async open(port: number, hostname = "127.0.0.1"): Promise<RawConnection> {
    const conn = await withTimeout(
      Deno.connect({ hostname, port }),
      5_000,
      `connect to ${hostname}:${port}`,
    );
    return new RawConnection(conn);
  }

  /** Writes all of `data`. */
  async write(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) offset += await this.conn.write(data.subarray(offset));
  }

  /** Writes one message as a frame. */
  send(message: Record<string, unknown>): Promise<void> {
    return this.write(messageFrame(message));
  }

  /** Closes our sending side; the server sees end of stream. */
  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  async #fill(deadline: number): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("Timed out reading from the server");
    const count = await withTimeout(this.conn.read(chunk), left, "read from the server");
    if (count === null) {
      this.#eof = true;
      return false;
    }
    const joined = new Uint8Array(this.#buffer.length + count);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = joined;
    return true;
  }

  /**
   * Reads the next frame and parses its body as JSON; `null` at a clean end
   * of stream. Throws after `timeoutMs`.
   */
  async next(timeoutMs = 5_000): Promise<RawMessage | null> {
    const text = await this.nextText(timeoutMs);
    return text === null ? null : JSON.parse(text);
  }

  /**
   * Reads the next frame and returns its body as text, unparsed (to see
   * integers beyond 2^53 as they were written); `null` at a clean end of
   * stream. Throws after `timeoutMs`.
   */
  async nextText(timeoutMs = 5_000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#buffer.length >= 4) {
        const length = new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getUint32(0);
        if (this.#buffer.length >= 4 + length) {
          const body = this.#buffer.subarray(4, 4 + length);
          this.#buffer = this.#buffer.slice(4 + length);
          return decoder.decode(body);
        }
      }
      if (!(await this.#fill(deadline))) {
        if (this.#buffer.length > 0) {
          throw new Error(`Stream ended inside a frame (${this.#buffer.length} bytes left)`);
        }
        return null;
      }
    }
  }

  /** Reads frames until end of stream (bounded by `timeoutMs` overall). */
  async rest(timeoutMs = 5_000): Promise<RawMessage[]> {
    const deadline = Date.now() + timeoutMs;
    const out: RawMessage[] = [];
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()));
      if (message === null) return out;
      out.push(message);
    }
  }

  /** Closes the connection. Safe to call twice. */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Whether `127.0.0.1:port` is taken (cannot be bound). */
export function portInUse(port: number, hostname = "127.0.0.1"): boolean {
  try {
    const listener = Deno.listen({ hostname, port });
    listener.close();
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return true;
    throw error;
  }
}
