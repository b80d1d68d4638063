/**
 * Starts and ends one sandbox process: a child OS process that runs the
 * procedures of one service (see `sandbox.ts` for how calls reach it, and
 * `sandbox_entry.ts` for its side).
 *
 * From source the child is `deno run` of `sandbox_entry.ts` with nothing
 * allowed but the procedures' own permissions and the connection back to the
 * server; compiled, it is the same binary with the hidden subcommand
 * `__sandbox` (a compiled binary keeps the permissions it was compiled with,
 * so there the narrowing rests on the worker inside the child, which holds
 * the procedures' permissions in both cases). Its environment is empty but
 * for what Deno needs to find its cache and the variables the procedures may
 * read.
 *
 * The channel is a loopback TCP connection: the server listens on a fresh
 * port for exactly one connection, hands the child the port and a one-time
 * token on its stdin (then closes it), and accepts only a peer that presents
 * the token. It is not the child's stdin and stdout, because a procedure can
 * read and write those.
 *
 * Memory, on Linux: the child's `oom_score_adj` is set to 1000, so that when
 * memory runs out the kernel kills a sandbox rather than the server, and once
 * the child is up its `RLIMIT_DATA` (set with util-linux `prlimit`) is what it
 * uses then plus `memoryMb`. The limit counts every private writable mapping
 * — the JS heap, ArrayBuffers, WebAssembly memory, thread stacks — but not
 * the address space V8 reserves without access; an allocation past it fails
 * (an ArrayBuffer or WebAssembly.Memory throws a RangeError; the JS heap
 * ends the process). The JS heap also gets `--max-old-space-size=memoryMb`.
 *
 * @module
 */

import { FrameDecoder } from "../wire/frame.ts";
import { type Environment, NO_ENVIRONMENT } from "./environment.ts";
import { SANDBOX_COMMAND, type SandboxConfig, TOKEN_LENGTH } from "./sandbox_entry.ts";
import { FrameWriter, READ_BUFFER_BYTES } from "./sandbox_wire.ts";

/** Options of {@linkcode SandboxProcess.start}. */
export interface SandboxProcessOptions {
  /** Names the sandbox in messages, e.g. `service1`. */
  name: string;
  /** The procedures' permissions. */
  permissions: Deno.PermissionOptionsObject;
  /** Memory the sandbox may use beyond what it uses when it starts, in MiB. */
  memoryMb: number;
  /** Receives each frame body the sandbox sends (valid only during the call). */
  onFrame(body: Uint8Array): void;
  /** How long the sandbox may take to start. Default 30 s. */
  startTimeoutMs?: number;
  /** Told once when the sandbox cannot have its memory bounded (no `prlimit`). */
  warn?: (message: string) => void;
  /**
   * The server's environment: the variables Deno needs to start the child
   * (`HOME`, `DENO_DIR`, `PATH`, …) and those the procedures are granted are
   * taken from it. Default: no variables.
   */
  env?: Environment;
}

const ENTRY_URL = new URL("./sandbox_entry.ts", import.meta.url);

/** Largest frame a sandbox may send (a batch of replies); its own memory bounds it first. */
const MAX_REPLY_BYTES = 1024 * 1024 * 1024;

/** Environment variables Deno itself needs to run the child from source. */
const DENO_ENV = [
  "HOME",
  "USERPROFILE",
  "DENO_DIR",
  "XDG_CACHE_HOME",
  "PATH",
  "SystemRoot",
  "TMPDIR",
];

/** What V8 and Rust print when an allocation fails for good. */
const OUT_OF_MEMORY =
  /Fatal (?:JavaScript|process) out of memory|heap out of memory|memory allocation of \d+ bytes failed/;

/**
 * Set to `1` in the server's environment, sandboxes run with V8's perf map
 * (`/tmp/perf-PID.map`), so that `perf` can name the functions of a sandbox
 * and its worker: `deno task bench:profile --sandbox-perf` uses it. Only
 * these fixed V8 flags are added; nothing else passes from the variable.
 */
export const SANDBOX_PERF_VARIABLE = "RPC_BENCH_SANDBOX_PERF";

/**
 * Set to `1` in the server's environment, sandboxes run with V8's
 * `--trace-gc`: a line on their stdout (the server's) for each collection,
 * with the heap's size before and after it. The memory soak of `deno task
 * bench:compare` reads a sandbox's live heap from it, since a sandbox has no
 * inspector. Only this fixed flag is added.
 */
export const SANDBOX_TRACE_GC_VARIABLE = "RPC_BENCH_SANDBOX_TRACE_GC";

/**
 * glibc's malloc in a sandbox keeps the memory it frees for reuse: blocks up
 * to 32 MiB come from its heap rather than a fresh `mmap` each, and freed
 * memory is not handed back to the kernel. Every message between a sandbox's
 * relay and its worker is serialized into a malloc'd buffer as large as the
 * message; with glibc's defaults, large ones were new pages each time, and on
 * this kind of VM a page fault costs microseconds (64 KiB echo calls took 18
 * page faults each in the sandbox, 4 with this). The memory is still bounded:
 * `RLIMIT_DATA` counts the heap whether in use or kept.
 */
const MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:" +
  "glibc.malloc.trim_threshold=4294967296";

/** Whether `prlimit` was found missing (warned about once per process). */
let prlimitMissing = false;

/** The command line that runs a sandbox process. */
export function sandboxCommand(
  name: string,
  permissions: Deno.PermissionOptionsObject,
  port: number,
): { command: string; args: string[] } {
  // The name comes last, so that `ps` shows whose sandbox a process is; the sandbox ignores it.
  if (Deno.build.standalone) return { command: Deno.execPath(), args: [SANDBOX_COMMAND, name] };
  const flags: string[] = [];
  const list = (name: string, value: unknown, extra: string[] = []) => {
    const items = [...(Array.isArray(value) ? value.map(String) : []), ...extra];
    if (value === true || items.some((item) => item.includes(","))) {
      // A comma cannot be written inside a flag's list: allow the kind, the worker narrows it.
      flags.push(`--allow-${name}`);
    } else if (items.length > 0) {
      flags.push(`--allow-${name}=${items.join(",")}`);
    }
  };
  list("read", permissions.read);
  list("write", permissions.write);
  list("net", permissions.net, [`127.0.0.1:${port}`]);
  list("env", permissions.env);
  list("run", permissions.run);
  list("sys", permissions.sys);
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--no-config",
      "--no-lock",
      "--no-prompt",
      "--quiet",
      "--unstable-worker-options",
      ...flags,
      ENTRY_URL.href,
      name,
    ],
  };
}

/** Reads exactly `length` bytes, or fewer if the connection ends first. */
async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const count = await conn.read(out.subarray(filled));
    if (count === null) break;
    filled += count;
  }
  return out.subarray(0, filled);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** Rejects with `what` after `ms`, unless `promise` settles first. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The kilobytes of private writable memory a process has mapped (`VmData`), or undefined. */
async function dataKilobytes(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = /^VmData:\s+(\d+) kB$/m.exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Accepts the one connection that presents `token`, closing any other; closes
 * the listener once it has it.
 */
async function accept(listener: Deno.Listener, token: string): Promise<Deno.Conn> {
  const expected = new TextEncoder().encode(token);
  for (;;) {
    const candidate = await listener.accept();
    const presented = await within(readExactly(candidate, TOKEN_LENGTH), 5_000, "the token")
      .catch(() => new Uint8Array(0));
    if (sameBytes(presented, expected)) {
      listener.close();
      return candidate;
    }
    candidate.close();
  }
}

/** One running sandbox process. */
export class SandboxProcess {
  #child: Deno.ChildProcess;
  #conn: Deno.Conn;
  #writer: FrameWriter;
  #killedFor: string | undefined;
  #stderrTail = "";
  /** Settles when the process has ended, with why, in words. */
  readonly ended: Promise<string>;

  private constructor(
    child: Deno.ChildProcess,
    conn: Deno.Conn,
    decoder: FrameDecoder,
    readonly memoryMb: number,
  ) {
    this.#child = child;
    this.#conn = conn;
    this.#writer = new FrameWriter(conn, () => this.#signalKill());
    const draining = this.#drainStderr();
    const reading = this.#read(decoder);
    this.ended = (async () => {
      const status = await child.status;
      await draining;
      await reading;
      return this.#describeEnd(status);
    })();
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Starts a sandbox and waits until it is ready for procedures: connected,
   * its worker up, and its memory bounded.
   */
  static async start(options: SandboxProcessOptions): Promise<SandboxProcess> {
    const startTimeoutMs = options.startTimeoutMs ?? 30_000;
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    const token = Array.from(crypto.getRandomValues(new Uint8Array(TOKEN_LENGTH / 2)))
      .map((byte) => byte.toString(16).padStart(2, "0")).join("");
    const { command, args } = sandboxCommand(options.name, options.permissions, port);
    const serverEnv = options.env ?? NO_ENVIRONMENT;
    const benchFlags =
      (serverEnv(SANDBOX_PERF_VARIABLE) === "1"
        ? ",--perf-basic-prof,--interpreted-frames-native-stack,--logfile=/dev/null"
        : "") + (serverEnv(SANDBOX_TRACE_GC_VARIABLE) === "1" ? ",--trace-gc" : "");
    const env: Record<string, string> = {
      NO_COLOR: "1",
      DENO_V8_FLAGS: `--max-old-space-size=${options.memoryMb}${benchFlags}`,
    };
    if (Deno.build.os === "linux") env.GLIBC_TUNABLES = MALLOC_TUNABLES;
    const granted = Array.isArray(options.permissions.env) ? options.permissions.env : [];
    for (const name of [...DENO_ENV, ...granted]) {
      const value = serverEnv(name);
      if (value !== undefined) env[name] = value;
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(command, {
        args,
        env,
        clearEnv: true,
        stdin: "piped",
        stdout: "inherit",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      listener.close();
      throw new Error(
        `Cannot start a sandbox for ${options.name}: ${command}: ${(error as Error).message}`,
      );
    }
    if (Deno.build.os === "linux") {
      // Before it allocates anything: under memory pressure the kernel takes a sandbox first.
      await Deno.writeTextFile(`/proc/${child.pid}/oom_score_adj`, "1000").catch(() => {});
    }
    let sandbox: SandboxProcess | undefined;
    let ready = false;
    const readiness = Promise.withResolvers<void>();
    const decoder = new FrameDecoder(MAX_REPLY_BYTES, (body) => {
      if (ready) return options.onFrame(body);
      // The first batch is the host's `{ready: true}`, sent before any procedure can run.
      const first = JSON.parse(new TextDecoder().decode(body));
      if (Array.isArray(first) && first[0]?.ready === true) {
        ready = true;
        readiness.resolve();
      } else readiness.reject(new Error("the sandbox did not report ready"));
    });
    try {
      const stdin = child.stdin.getWriter();
      try {
        await stdin.write(new TextEncoder().encode(JSON.stringify({ port, token })));
      } finally {
        await stdin.close().catch(() => {});
      }
      const conn = await within(accept(listener, token), startTimeoutMs, "connecting");
      (conn as Deno.TcpConn).setNoDelay(true);
      sandbox = new SandboxProcess(child, conn, decoder, options.memoryMb);
      const config: SandboxConfig = { permissions: options.permissions, name: options.name };
      sandbox.send(JSON.stringify(config));
      await within(
        Promise.race([
          readiness.promise,
          sandbox.ended.then((reason) => Promise.reject(new Error(reason))),
        ]),
        startTimeoutMs,
        "starting",
      );
      await sandbox.#boundMemory(options.warn);
      return sandbox;
    } catch (error) {
      let detail = "";
      if (sandbox) {
        sandbox.kill("it failed to start");
        await sandbox.ended;
        detail = sandbox.#stderrTail;
      } else {
        try {
          child.kill("SIGKILL");
        } catch {
          // Ended already.
        }
        detail = await new Response(child.stderr).text().catch(() => "");
        await child.status;
      }
      const lastLine = detail.trim().split("\n").pop();
      throw new Error(
        `Cannot start a sandbox for ${options.name}: ${(error as Error).message}${
          lastLine ? ` (${lastLine})` : ""
        }`,
      );
    } finally {
      try {
        listener.close();
      } catch {
        // Closed once the sandbox connected.
      }
    }
  }

  /** Sets the child's `RLIMIT_DATA` to what it uses now plus its allowance. */
  async #boundMemory(warn: ((message: string) => void) | undefined): Promise<void> {
    if (Deno.build.os !== "linux") return;
    const used = await dataKilobytes(this.pid);
    if (used === undefined) return;
    const limit = used * 1024 + this.memoryMb * 1024 * 1024;
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("prlimit", {
        args: ["--pid", String(this.pid), `--data=${limit}:${limit}`],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      if (!prlimitMissing) {
        prlimitMissing = true;
        warn?.(
          "prlimit was not found (util-linux): sandboxes' ArrayBuffers and WebAssembly memory are not bounded",
        );
      }
      return;
    }
    if (!output.success) {
      throw new Error(
        `prlimit failed: ${new TextDecoder().decode(output.stderr).trim() || output.code}`,
      );
    }
  }

  /** Sends `text` as one frame. */
  send(text: string): void {
    this.#writer.sendText(text);
  }

  /** Ends the process at once (SIGKILL); `reason` is what {@linkcode ended} reports. */
  kill(reason: string): void {
    this.#killedFor ??= reason;
    this.#signalKill();
  }

  #signalKill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Ended already.
    }
  }

  async #read(decoder: FrameDecoder): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      for (;;) {
        const count = await this.#conn.read(buffer);
        if (count === null) break;
        decoder.push(buffer.subarray(0, count));
      }
    } catch (error) {
      // A frame over the limit, or the connection failed: the process cannot go on.
      this.kill(`its connection failed: ${(error as Error).message}`);
    } finally {
      try {
        this.#conn.close();
      } catch {
        // Closed already.
      }
      // Without its connection a sandbox is of no use: it exits by itself, or is made to.
      this.#signalKill();
    }
  }

  /** Passes what the child writes on stderr through to ours, keeping the end of it. */
  async #drainStderr(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#child.stderr) {
        this.#stderrTail = (this.#stderrTail + decoder.decode(chunk, { stream: true })).slice(
          -4096,
        );
        try {
          for (let offset = 0; offset < chunk.length;) {
            offset += await Deno.stderr.write(chunk.subarray(offset));
          }
        } catch {
          // Our stderr is gone; keep reading, so that the sandbox never blocks on a full pipe.
        }
      }
    } catch {
      // The pipe broke with the process.
    }
  }

  #describeEnd(status: Deno.CommandStatus): string {
    if (OUT_OF_MEMORY.test(this.#stderrTail)) {
      return `its sandbox ran out of memory (limit ${this.memoryMb} MiB)`;
    }
    if (this.#killedFor !== undefined) return this.#killedFor;
    return status.signal
      ? `its sandbox was killed by ${status.signal}`
      : `its sandbox exited with code ${status.code}`;
  }
}
