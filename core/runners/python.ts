/**
 * Runs Python procedures in pools of long-lived `python3` processes.
 *
 * Each interpreter runs an embedded bridge script that speaks JSON lines:
 * one request per line on its stdin, one reply per line on its stdout, one
 * call at a time. Interpreters start lazily, up to the pool size; calls queue
 * while all are busy. An interpreter that dies (or is killed because its call
 * was aborted) fails only the call it was running and is replaced on demand.
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
import { formatType, parseJson, stringifyJson } from "../types/types.ts";
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

/**
 * The bridge each interpreter runs. It is passed with `python3 -c` rather
 * than written to a temporary file: a compiled binary carries it as this
 * string, and there is no file to create, protect or clean up after a crash.
 * (It is a few kilobytes, far below any argument-length limit.) Its one
 * argument is a JSON object of limits, applied before any procedure runs:
 * `oomScoreAdj`, `memoryBytes` (RLIMIT_DATA), and `uid`/`gid` to switch to.
 *
 * Protocol (one JSON object per line):
 *   ← {"id":0,"ok":true,"result":"ready"}     (or "ok":false and why it could not confine itself)
 *   → {"id":1,"op":"load","path":"/abs/x.py","source":"def rpc1(...","function":"rpc1"}
 *   ← {"id":1,"ok":true,"result":true,"loaded":true}   (result: rpc1 is callable)
 *   → {"id":2,"op":"call","path":..,"function":..,"args":[..],"types":["float"]}
 *   ← {"id":2,"ok":true,"result":..} or {"id":2,"ok":false,"error":"ZeroDivisionError: division by zero"}
 *
 * A request carries `source` when the runner does not know the interpreter
 * to hold the module yet; the reply's `loaded` says whether it does now. The
 * source never needs to be a file the interpreter can open.
 *
 * Requests arrive on a private duplicate of fd 0 and replies leave on a
 * private duplicate of fd 1; fd 0 then reads /dev/null and fd 1 writes to
 * stderr, so nothing a procedure prints, reads or spawns touches the protocol.
 */
const BRIDGE = String.raw`
import inspect
import json
import os
import signal
import sys
import types

modules = {}
loaded_count = 0


def describe(error):
    name = type(error).__name__
    text = str(error)
    return name + ": " + text if text else name


def load(path, source):
    global loaded_count
    module = modules.get(path)
    if module is None:
        if source is None:
            raise ImportError("the source of " + path + " was not sent")
        loaded_count += 1
        name = "rpc_procedure_%d" % loaded_count
        module = types.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
        modules[path] = module
    return module


def convert(value, type_name):
    if type_name == "float":
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    elif type_name.startswith("List[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [convert(item, inner) for item in value]
    return value


def to_json(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__index__"):
        return value.__index__()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError("Object of type " + type(value).__name__ + " is not JSON serializable")


def encode(reply):
    text = json.dumps(reply, allow_nan=False, default=to_json, separators=(",", ":"))
    return (text + "\n").encode("ascii")


def run(request, emit):
    function_name = request["function"]
    module = load(request["path"], request.get("source"))
    function = getattr(module, function_name, None)
    if request.get("op") == "load":
        return callable(function)
    if not callable(function):
        raise AttributeError(request["path"] + " does not define a function named " + function_name)
    args = request.get("args") or []
    types_ = request.get("types") or []
    args = [
        convert(arg, types_[i]) if i < len(types_) and "float" in types_[i] else arg
        for i, arg in enumerate(args)
    ]
    result = function(*args)
    if inspect.isgenerator(result):
        # A streaming procedure: each value it yields goes out at once,
        # its return value is the final result.
        generator = result
        while True:
            try:
                value = next(generator)
            except StopIteration as stop:
                result = stop.value
                break
            emit(encode({"id": request["id"], "ok": True, "part": True, "result": value}))
    if hasattr(result, "__await__"):
        import asyncio
        result = asyncio.run(result)
    return result


def handle(line, emit):
    request = {}
    function_name = "the procedure"
    try:
        parsed = json.loads(line)
        if not isinstance(parsed, dict):
            raise ValueError("a request must be an object")
        request = parsed
        function_name = request["function"]
        reply = {"id": request.get("id"), "ok": True, "result": run(request, emit)}
    except BaseException as error:  # SystemExit and KeyboardInterrupt included
        reply = {"id": request.get("id"), "ok": False, "error": describe(error)}
    if "source" in request:
        reply["loaded"] = request.get("path") in modules
    try:
        return encode(reply)
    except BaseException as error:  # NaN, infinity, unserializable objects
        message = function_name + " returned a value that cannot be sent: " + describe(error)
        reply = {"id": request.get("id"), "ok": False, "error": message}
        if "source" in request:
            reply["loaded"] = request.get("path") in modules
        return encode(reply)


def confine(limits):
    # In this order: a process may raise its own oom_score_adj and lower its own
    # limits, but once it has switched user it can no longer open its /proc files.
    adjust = "/proc/self/oom_score_adj"
    if limits.get("oomScoreAdj") is not None and os.path.exists(adjust):
        with open(adjust, "w") as file:
            file.write(str(limits["oomScoreAdj"]))
    memory = limits.get("memoryBytes")
    if memory:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            memory = min(memory, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    uid = limits.get("uid")
    if uid is not None:
        gid = limits["gid"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise OSError("the switch to uid %d did not take" % uid)


def main():
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    if sys.path and sys.path[0] == "":
        del sys.path[0]

    def emit(data):
        replies.write(data)
        replies.flush()

    try:
        confine(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    except BaseException as error:
        emit(encode({"id": 0, "ok": False, "error": describe(error)}))
        sys.exit(1)
    emit(encode({"id": 0, "ok": True, "result": "ready"}))
    try:
        # The server decides when interpreters stop, whoever else sends Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass
    for line in requests:
        if not line.strip():
            continue
        try:
            emit(handle(line, emit))
        except OSError:
            return


main()
`;

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
  env: Environment;
}

/** Default time limit for importing a procedure file in `load()`. */
export const DEFAULT_LOAD_TIMEOUT_MS = 30_000;

/** Default memory limit of one interpreter, in MiB (the same as a TypeScript sandbox's). */
export const DEFAULT_PYTHON_MEMORY_MB = 256;

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
  return {
    size,
    python: options.python ?? "python3",
    bwrap: options.bwrap ?? "bwrap",
    loadTimeoutMs: options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
    memoryMb,
    uid: options.uid ?? NOBODY,
    gid: options.gid ?? NOBODY,
    idleMs: options.idleMs ?? 60_000,
    env: options.env ?? NO_ENVIRONMENT,
  };
}

/** A reply line from the bridge. */
interface Reply {
  id: number;
  ok: boolean;
  /** Set on each value a generator yields; the final reply follows. */
  part?: boolean;
  result?: unknown;
  error?: string;
  /** On a reply to a request that carried source: whether the module is now loaded. */
  loaded?: boolean;
}

function isReply(value: unknown): value is Reply {
  return typeof value === "object" && value !== null &&
    typeof (value as Reply).id === "number" && typeof (value as Reply).ok === "boolean";
}

/**
 * Splits decoded text into non-empty lines without the trailing newline,
 * joining the pieces of a line split across chunks once, when it ends.
 */
export class LineSplitter {
  #parts: string[] = [];

  constructor(readonly onLine: (line: string) => void) {}

  /** Takes the next chunk of text. */
  push(chunk: string): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf("\n", start);
      if (end < 0) break;
      let line = chunk.slice(start, end);
      if (this.#parts.length > 0) {
        this.#parts.push(line);
        line = this.#parts.join("");
        this.#parts = [];
      }
      start = end + 1;
      if (line.length > 0) this.onLine(line);
    }
    if (start < chunk.length) this.#parts.push(chunk.slice(start));
  }

  /** The text ended: what remains is the last line. */
  end(): void {
    const line = this.#parts.join("");
    this.#parts = [];
    if (line.length > 0) this.onLine(line);
  }
}

interface PendingCall {
  id: number;
  label: string;
  resolve(reply: Reply): void;
  reject(error: unknown): void;
  /** Receives what a generator yields. */
  onPart?: (value: unknown) => void;
}

/** Linux signal numbers, to read bubblewrap's exit code 128 + N of a killed interpreter. */
const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  31: "SIGSYS",
};

function describeStatus(status: Deno.CommandStatus, confined: boolean): string {
  if (status.signal) return `killed by ${status.signal}`;
  const signal = confined && status.code > 128 ? SIGNALS[status.code - 128] : undefined;
  return signal ? `killed by ${signal}` : `exit code ${status.code}`;
}

const encoder = new TextEncoder();

/** How to start one interpreter. */
interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Started inside bubblewrap, which reports a killed child as exit code 128 + N. */
  confined: boolean;
}

/** At most this much of what an interpreter wrote to stderr before it was ready is kept for errors. */
const STARTUP_ERROR_CHARS = 1000;

/** One interpreter running the bridge, one call at a time. */
class Interpreter {
  /** Settles once the process has exited and its reply pipe is closed. */
  readonly exited: Promise<void>;
  /** Paths of the modules this interpreter has loaded. */
  readonly known = new Set<string>();
  /** Set while it waits in its pool's idle list. */
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  #child: Deno.ChildProcess;
  #confined: boolean;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #pending: PendingCall | undefined;
  #alive = true;
  #ready = false;
  /** Why it could not start: its own report, else the end of what it wrote to stderr. */
  #startupError: string | undefined;
  #startupOutput = "";
  #stderrDone: Promise<void>;
  #killReason: string | undefined;
  #nextId = 0;

  /** @throws {Deno.errors.NotFound} when the command does not exist. */
  constructor(launch: Launch, onExit: (interpreter: Interpreter) => void) {
    this.#confined = launch.confined;
    this.#child = new Deno.Command(launch.command, {
      args: launch.args,
      env: launch.env,
      clearEnv: true,
      // A session of its own: no signal meant for the server's process group reaches it.
      detached: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stderrDone = this.#forwardStderr();
    // Not waiting for stderr to close: a trusted procedure's child may keep it open.
    this.exited = this.#readReplies().then(() => onExit(this));
  }

  /** False once the process has died or is being killed. */
  get alive(): boolean {
    return this.#alive;
  }

  /** Sends one request and resolves to its reply; `signal` kills the process. */
  call(
    request: Record<string, unknown>,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    const id = ++this.#nextId;
    return new Promise<Reply>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      if (!this.#alive) {
        return reject(
          new RpcError(
            ErrorKind.ExecutionException,
            `Python interpreter died before running ${label}`,
          ),
        );
      }
      const onAbort = () => {
        if (this.#pending?.id !== id) return;
        this.#pending = undefined;
        reject(signal!.reason);
        // A running Python call cannot be interrupted safely: end the process.
        this.kill();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = () => signal?.removeEventListener("abort", onAbort);
      this.#pending = {
        id,
        label,
        ...(onPart ? { onPart } : {}),
        resolve: (reply) => {
          settle();
          resolve(reply);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      const line = stringifyJson({ id, ...request }) + "\n";
      // A failed write means the process died; #readReplies reports that.
      this.#stdin.write(encoder.encode(line)).catch(() => {});
    });
  }

  /** Kills the process; a call in flight fails with `reason` when given. */
  kill(reason?: string): void {
    if (reason !== undefined) this.#killReason ??= reason;
    this.#alive = false;
    clearTimeout(this.idleTimer);
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  /** Passes what the interpreter writes to stderr on to the server's, keeping its start for errors. */
  async #forwardStderr(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#child.stderr) {
        if (!this.#ready) {
          this.#startupOutput = (this.#startupOutput + decoder.decode(chunk, { stream: true }))
            .slice(-STARTUP_ERROR_CHARS);
        }
        await Deno.stderr.write(chunk).catch(() => {});
      }
    } catch {
      // The pipe broke with the process.
    }
  }

  #receive(line: string): void {
    let reply: unknown;
    try {
      reply = parseJson(line);
    } catch {
      reply = undefined;
    }
    if (!isReply(reply)) {
      this.kill();
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.reject(
        new RpcError(
          ErrorKind.Internal,
          `Python interpreter sent a malformed reply while running ${pending.label}`,
        ),
      );
      return;
    }
    if (reply.id === 0) {
      // The bridge reports whether it could confine itself before it reads a request.
      if (reply.ok) this.#ready = true;
      else this.#startupError = reply.error ?? "unknown error";
      return;
    }
    const pending = this.#pending;
    if (pending?.id !== reply.id) return;
    if (reply.part) {
      try {
        if (!pending.onPart) {
          throw new RpcError(
            ErrorKind.ExecutionException,
            `${pending.label} yields results, but its signature declares no yields`,
          );
        }
        pending.onPart(reply.result);
      } catch (error) {
        // The generator cannot be stopped from outside: end the interpreter.
        this.#pending = undefined;
        pending.reject(error);
        this.kill();
      }
      return;
    }
    this.#pending = undefined;
    pending.resolve(reply);
  }

  async #readReplies(): Promise<void> {
    // One read and one decode per chunk: two piped TransformStreams cost several promises each.
    const reader = this.#child.stdout.getReader();
    const decoder = new TextDecoder();
    const lines = new LineSplitter((line) => this.#receive(line));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        lines.push(decoder.decode(value, { stream: true }));
      }
      lines.end();
    } catch {
      // A broken pipe ends the interpreter like an end of file.
    }
    // Without its reply channel the process is useless, whatever state it is in.
    this.kill();
    const status = await this.#child.status;
    await this.#stdin.close().catch(() => {});
    const pending = this.#pending;
    this.#pending = undefined;
    if (!pending) return;
    if (this.#killReason !== undefined) {
      pending.reject(new RpcError(ErrorKind.Unavailable, this.#killReason));
    } else if (!this.#ready) {
      // It died before running any procedure code, so nothing else holds its stderr.
      await this.#stderrDone;
      const detail = this.#startupError ?? this.#startupOutput.trim().split("\n").pop();
      pending.reject(
        new RpcError(
          ErrorKind.ExecutionException,
          `Cannot start a Python interpreter for ${pending.label} (${
            describeStatus(status, this.#confined)
          })${detail ? `: ${detail}` : ""}`,
        ),
      );
    } else {
      pending.reject(
        new RpcError(
          ErrorKind.ExecutionException,
          `Python interpreter died while running ${pending.label} (${
            describeStatus(status, this.#confined)
          })`,
        ),
      );
    }
  }
}

interface Waiter {
  grant(interpreter: Interpreter): void;
  fail(error: unknown): void;
}

/** The interpreters of one service and permission set. */
class Pool {
  /** Interpreters that count against the pool size. */
  #live = new Set<Interpreter>();
  /** Interpreters whose process has not exited yet (includes dying ones). */
  #running = new Set<Interpreter>();
  #idle: Interpreter[] = [];
  #waiting: Waiter[] = [];
  /** Why later requests fail, once closed. */
  #closed: RpcError | undefined;
  /** Interpreters ended for being idle: their exit is no restart. */
  #retired = new WeakSet<Interpreter>();
  /** Interpreters that ended while the pool was open (crashed, killed for a time limit or a cancel). */
  ended = 0;

  constructor(
    readonly launch: Launch,
    readonly options: Pick<ResolvedPythonRunnerOptions, "size" | "idleMs">,
    readonly startError: (error: unknown, label: string) => unknown,
  ) {}

  /** Sends a request to an interpreter, attaching `source` when that one has not loaded `path`. */
  async request(
    request: Record<string, unknown> & { path: string },
    source: string,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    signal?.throwIfAborted();
    const interpreter = await this.#acquire(label, signal);
    try {
      const sent = interpreter.known.has(request.path) ? request : { ...request, source };
      const reply = await interpreter.call(sent, label, signal, onPart);
      if (reply.loaded) interpreter.known.add(request.path);
      return reply;
    } finally {
      this.#release(interpreter);
    }
  }

  async close(reason: RpcError): Promise<void> {
    this.#closed = reason;
    for (const waiter of this.#waiting.splice(0)) waiter.fail(reason);
    this.#idle = [];
    const running = [...this.#running];
    for (const interpreter of running) interpreter.kill(reason.message);
    await Promise.all(running.map((interpreter) => interpreter.exited));
  }

  #acquire(label: string, signal?: AbortSignal): Promise<Interpreter> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<Interpreter>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant(interpreter) {
          signal?.removeEventListener("abort", onAbort);
          resolve(interpreter);
        },
        fail: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(this.startError(error, label));
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
      this.#dispatch();
    });
  }

  /** Hands idle or new interpreters to waiting calls, in arrival order. */
  #dispatch(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let interpreter: Interpreter | undefined;
      while (!interpreter && this.#idle.length > 0) {
        const candidate = this.#idle.pop()!;
        clearTimeout(candidate.idleTimer);
        if (candidate.alive) interpreter = candidate;
      }
      if (!interpreter) {
        if (this.#live.size >= this.options.size) return;
        try {
          interpreter = new Interpreter(this.launch, (dead) => this.#onExit(dead));
        } catch (error) {
          this.#waiting.shift()!.fail(error);
          continue;
        }
        this.#live.add(interpreter);
        this.#running.add(interpreter);
      }
      this.#waiting.shift()!.grant(interpreter);
    }
  }

  #release(interpreter: Interpreter): void {
    if (interpreter.alive && !this.#closed) {
      this.#idle.push(interpreter);
      // An interpreter nobody needs for a while gives its memory back.
      interpreter.idleTimer = setTimeout(() => {
        const index = this.#idle.indexOf(interpreter);
        if (index >= 0) this.#idle.splice(index, 1);
        this.#retired.add(interpreter);
        interpreter.kill();
      }, this.options.idleMs);
      Deno.unrefTimer(Number(interpreter.idleTimer));
    } else {
      this.#live.delete(interpreter);
    }
    this.#dispatch();
  }

  /** Interpreters whose process has not exited yet. */
  get alive(): number {
    return this.#running.size;
  }

  #onExit(interpreter: Interpreter): void {
    if (!this.#closed && !this.#retired.has(interpreter)) this.ended++;
    this.#live.delete(interpreter);
    this.#running.delete(interpreter);
    const index = this.#idle.indexOf(interpreter);
    if (index >= 0) this.#idle.splice(index, 1);
    this.#dispatch();
  }
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
    const python = ["-I", "-B", "-u", "-c", BRIDGE, JSON.stringify(limits)];
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
