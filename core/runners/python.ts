/**
 * Runs Python procedures in pools of long-lived `python3` processes.
 *
 * Each interpreter runs an embedded bridge script that speaks JSON lines:
 * one request per line on its stdin, one reply per line on its stdout, one
 * call running at a time. Interpreters start lazily, up to the pool size; a
 * call goes to an idle interpreter, else a new one, else is queued into the
 * least loaded one (up to `depth` calls each), else waits in the pool, so an
 * interpreter under load always has its next request in its pipe. An
 * interpreter that dies (or is killed because its running call was aborted)
 * fails only the call it was running: the calls queued behind it had not
 * started and go to another interpreter. A queued call that is aborted is
 * answered at once and skipped by the bridge, which keeps running.
 *
 * Every service (and set of `permissions`) has a pool of its own, so no
 * interpreter ever runs two services' code. Interpreters are confined with
 * bubblewrap (see `python_sandbox.ts`) unless the procedure is `trusted`;
 * either way they start with an empty environment, in a session of their
 * own, with a memory limit and the highest `oom_score_adj`, and a confined
 * one drops to an unprivileged user when the server runs as root. Where
 * bubblewrap is missing, a procedure that is not `trusted` is refused at
 * install rather than run unconfined.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Procedure, ProcedureSpec, Runner } from "../server/registry.ts";
import { formatType } from "../types/types.ts";
import { PYTHON_BRIDGE } from "./python_bridge.ts";
import type { Launch, Reply } from "./python_interpreter.ts";
import { Pool } from "./python_pool.ts";
import {
  bwrapArguments,
  type BwrapFeatures,
  bwrapFeatures,
  bwrapMissing,
  findProgram,
  interpreterEnv,
  probePython,
  type PythonInstall,
  resolveGrants,
} from "./python_sandbox.ts";
import { type Environment, NO_ENVIRONMENT } from "./environment.ts";

export { LineSplitter } from "./python_interpreter.ts";

/** Options of {@linkcode PythonRunner}; all optional. */
export interface PythonRunnerOptions {
  /** Most interpreters running at once in one pool (one service and permission set). Default: the number of cores, at least 1. */
  size?: number;
  /** The interpreter command, looked up on `PATH` of `env`. Default: `python3`. */
  python?: string;
  /** The bubblewrap command, looked up on `PATH` of `env`. Default: `bwrap`. */
  bwrap?: string;
  /** Time limit for importing a file in `load()`, in milliseconds. Default: 30 000. */
  loadTimeoutMs?: number;
  /** Memory limit of one interpreter (RLIMIT_DATA) and size of its private `/tmp`, in MiB. Default 256. */
  memoryMb?: number;
  /** The user a confined interpreter runs as when the server runs as root. Default 65534 (nobody). */
  uid?: number;
  /** The group it runs as then. Default 65534 (nogroup). */
  gid?: number;
  /** An interpreter idle this long is stopped, in milliseconds. Default 60 000. */
  idleMs?: number;
  /**
   * Most calls queued into one interpreter at once, the running one included,
   * once every interpreter of the pool is busy; more wait in the pool.
   * Default {@linkcode DEFAULT_PYTHON_DEPTH}.
   */
  depth?: number;
  /**
   * The server's environment: `PATH` to find `bwrap` and programs a procedure
   * may run (and the `PATH` of a trusted interpreter), and the variables a
   * procedure is granted. Default: no variables (`rpc server` passes its own).
   */
  env?: Environment;
}

interface ResolvedPythonRunnerOptions {
  size: number;
  python: string;
  bwrap: string;
  loadTimeoutMs: number;
  memoryMb: number;
  uid: number;
  gid: number;
  idleMs: number;
  depth: number;
  env: Environment;
}

/** Default time limit for importing a procedure file in `load()`. */
export const DEFAULT_LOAD_TIMEOUT_MS = 30_000;

/** Default memory limit of one interpreter, in MiB (the same as a TypeScript sandbox's). */
export const DEFAULT_PYTHON_MEMORY_MB = 256;

/** Default for how many calls one interpreter holds queued (see {@linkcode PythonRunnerOptions.depth}). */
export const DEFAULT_PYTHON_DEPTH = 32;

/** The user (and group) `nobody` on Debian and most Linux systems. */
export const NOBODY = 65534;

/** The highest `oom_score_adj`: the kernel kills an interpreter before anything else. */
const OOM_SCORE_ADJ = 1000;

function resolveOptions(options: PythonRunnerOptions): ResolvedPythonRunnerOptions {
  const size = options.size ?? Math.max(1, navigator.hardwareConcurrency || 1);
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(
      `Cannot create Python runner: pool size ${size} is not a positive integer`,
    );
  }
  const memoryMb = options.memoryMb ?? DEFAULT_PYTHON_MEMORY_MB;
  if (!Number.isSafeInteger(memoryMb) || memoryMb < 16) {
    throw new RangeError(
      `Cannot create Python runner: memory limit ${memoryMb} MiB is below 16 MiB`,
    );
  }
  const depth = options.depth ?? DEFAULT_PYTHON_DEPTH;
  if (!Number.isSafeInteger(depth) || depth < 1) {
    throw new RangeError(
      `Cannot create Python runner: queue depth ${depth} is not a positive integer`,
    );
  }
  return {
    size,
    python: options.python ?? "python3",
    bwrap: options.bwrap ?? "bwrap",
    loadTimeoutMs: options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
    memoryMb,
    uid: options.uid ?? NOBODY,
    gid: options.gid ?? NOBODY,
    idleMs: options.idleMs ?? 60_000,
    depth,
    env: options.env ?? NO_ENVIRONMENT,
  };
}

/**
 * Loads Python procedures: a `.py` file defining a function named like the
 * RPC. Arguments declared `float` (also inside lists) arrive as Python
 * floats; a tuple result is a list of return values; integers of any size
 * travel exactly. A Python exception fails the call with
 * `Execution Exception` and `"<ExcType>: <message>"`, never a traceback.
 *
 * A procedure runs confined (see the module documentation) unless its spec
 * is `trusted`; its `permissions` say what the sandbox shows it, and a
 * permission bubblewrap cannot express is refused by `load()`.
 *
 * @example The demo's `stats`, confined (needs python3 and bubblewrap)
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { sha256Hex } from "../hash.ts";
 * import { parseSignature } from "../types/types.ts";
 * import { PythonRunner } from "./python.ts";
 *
 * const path = fileURLToPath(new URL("../../services/service2/stats.py", import.meta.url));
 * const runner = new PythonRunner({ size: 2, env: (name) => Deno.env.get(name) });
 * const procedure = await runner.load({
 *   service: "service2", rpc: "stats", signature: parseSignature(["List[float]"], ["float", "float"]),
 *   language: "python", path, hash: sha256Hex(await Deno.readTextFile(path)),
 * });
 * const result = await procedure.invoke([[1, 2, 6]], AbortSignal.timeout(30_000));
 * assert.deepEqual(result, [3, 6]); // the tuple (mean, max)
 * await assert.rejects(procedure.invoke([[]], AbortSignal.timeout(30_000)), {
 *   kind: "Execution Exception",
 *   message: "ValueError: stats needs at least one value",
 * });
 * await runner.close();
 * ```
 */
export class PythonRunner implements Runner {
  readonly #options: ResolvedPythonRunnerOptions;
  #pools = new Map<string, Pool>();
  #install: Promise<PythonInstall> | undefined;
  #bwrapFeatures: Promise<BwrapFeatures> | undefined;
  #closed = false;

  constructor(options: PythonRunnerOptions = {}) {
    this.#options = resolveOptions(options);
  }

  async load(spec: ProcedureSpec): Promise<Procedure> {
    const label = `${spec.service}.${spec.rpc}`;
    if (this.#closed) throw this.#closedError();
    const timeoutMs = this.#options.loadTimeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(
      () =>
        controller.abort(
          new Error(`Cannot load ${spec.path}: importing took longer than ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    let reply: Reply;
    let pool: Pool;
    let source: string;
    try {
      pool = await this.#pool(spec, label);
      try {
        source = await Deno.readTextFile(spec.path);
      } catch (error) {
        throw new Error(`Cannot load ${spec.path}: ${(error as Error).message}`);
      }
      reply = await pool.request(
        { op: "load", path: spec.path, function: spec.rpc },
        source,
        label,
        controller.signal,
      );
    } finally {
      clearTimeout(timer);
    }
    if (!reply.ok) throw new Error(`Cannot load ${spec.path}: ${reply.error}`);
    if (reply.result !== true) {
      throw new Error(`${spec.path} does not define a function named ${spec.rpc}`);
    }
    const types = spec.signature.args.map(formatType);
    return {
      spec,
      invoke: async (args, signal, onPart): Promise<unknown> => {
        const reply = await pool.request(
          { op: "call", path: spec.path, function: spec.rpc, args, types },
          source,
          label,
          signal,
          onPart,
        );
        if (!reply.ok) {
          throw new RpcError(ErrorKind.ExecutionException, reply.error ?? "Unknown Python error");
        }
        return reply.result;
      },
    };
  }

  /**
   * Interpreters running now, and how many ended while in use (crashed, or
   * killed for a time limit or a cancel); each is replaced when a call needs
   * one. Interpreters ended for being idle are not counted.
   */
  get stats(): { alive: number; restarted: number } {
    let alive = 0;
    let restarted = 0;
    for (const pool of this.#pools.values()) {
      alive += pool.alive;
      restarted += pool.ended;
    }
    return { alive, restarted };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close(this.#closedError())));
  }

  /** The pool of a procedure's service and permissions, started with the launch they need. */
  async #pool(spec: ProcedureSpec, label: string): Promise<Pool> {
    const key = JSON.stringify([spec.service, spec.trusted === true, spec.permissions ?? {}]);
    const existing = this.#pools.get(key);
    if (existing) return existing;
    const launch = await this.#launch(spec, label);
    if (this.#closed) throw this.#closedError();
    // Another load may have made it meanwhile.
    const pool = this.#pools.get(key) ??
      new Pool(launch, this.#options, (error, label) => this.#startError(error, label));
    this.#pools.set(key, pool);
    return pool;
  }

  /** How to start an interpreter for `spec`: confined unless trusted, refused where that cannot be. */
  async #launch(spec: ProcedureSpec, label: string): Promise<Launch> {
    const { bwrap, memoryMb, uid, gid, env: serverEnv } = this.#options;
    const confined = spec.trusted !== true;
    let command: string | undefined;
    if (confined) {
      if (Deno.build.os !== "linux") {
        throw new Error(
          `Cannot run ${label} confined: bubblewrap needs Linux and this server runs on ${Deno.build.os}; mark the procedure trusted: true to run it unconfined`,
        );
      }
      command = await findProgram(bwrap, serverEnv("PATH"));
      if (!command) throw new Error(bwrapMissing(label, bwrap));
    }
    const grants = await resolveGrants(
      confined ? spec.permissions : { env: spec.permissions?.env ?? [] },
      label,
      serverEnv,
    );
    const install = await this.#probe(label);
    const dropsPrivileges = confined && Deno.uid() === 0;
    const limits = {
      oomScoreAdj: OOM_SCORE_ADJ,
      memoryBytes: memoryMb * 1024 * 1024,
      ...(dropsPrivileges ? { uid, gid } : {}),
    };
    const python = ["-I", "-B", "-u", "-c", PYTHON_BRIDGE, JSON.stringify(limits)];
    const env = interpreterEnv(grants, confined, serverEnv);
    if (!confined) return { command: install.executable, args: python, env, confined };
    this.#bwrapFeatures ??= bwrapFeatures(command!);
    const features = await this.#bwrapFeatures;
    const sandbox = bwrapArguments(install, grants, {
      tmpBytes: features.sizesTmpfs ? memoryMb * 1024 * 1024 : undefined,
      dropsPrivileges,
      disablesUserns: features.disablesUserns,
    });
    return { command: command!, args: [...sandbox, ...python], env, confined };
  }

  /** What the interpreter needs to run, asked of it once. */
  async #probe(label: string): Promise<PythonInstall> {
    this.#install ??= this.#findPython().then(probePython);
    try {
      return await this.#install;
    } catch (error) {
      // Try again next time: python3 may be installed meanwhile.
      this.#install = undefined;
      throw this.#startError(error, label);
    }
  }

  /** The interpreter, looked up on the injected environment's `PATH`, not the process's. */
  async #findPython(): Promise<string> {
    const { python, env } = this.#options;
    const found = await findProgram(python, env("PATH"));
    if (!found) throw new Deno.errors.NotFound(`${python} is not on PATH`);
    return found;
  }

  #closedError(): RpcError {
    return new RpcError(ErrorKind.Unavailable, "Python runner is closed");
  }

  #startError(error: unknown, label: string): unknown {
    if (error instanceof RpcError) return error;
    const python = this.#options.python;
    if (error instanceof Deno.errors.NotFound) {
      return new RpcError(
        ErrorKind.Internal,
        `${python} not found on PATH: needed for rpc ${label}`,
        { cause: error },
      );
    }
    return new RpcError(
      ErrorKind.Internal,
      `Cannot start ${python} for rpc ${label}: ${(error as Error)?.message ?? error}`,
      { cause: error },
    );
  }
}
