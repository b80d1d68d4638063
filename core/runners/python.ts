/**
 * Runs Python procedures in a small pool of long-lived `python3` processes.
 *
 * Each interpreter runs an embedded bridge script that speaks JSON lines:
 * one request per line on its stdin, one reply per line on its stdout, one
 * call at a time. Interpreters start lazily, up to the pool size; calls queue
 * while all are busy. An interpreter that dies (or is killed because its call
 * was aborted) fails only the call it was running and is replaced on demand.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Procedure, ProcedureSpec, Runner } from "../registry.ts";
import { formatType, parseJson, stringifyJson } from "../types.ts";

/**
 * The bridge each interpreter runs. It is passed with `python3 -u -c` rather
 * than written to a temporary file: a compiled binary carries it as this
 * string, and there is no file to create, protect or clean up after a crash.
 * (It is a few kilobytes, far below any argument-length limit.)
 *
 * Protocol (one JSON object per line):
 *   → {"id":1,"op":"load","path":"/abs/x.py","function":"rpc1"}
 *   ← {"id":1,"ok":true,"result":true}        (true when rpc1 is callable)
 *   → {"id":2,"op":"call","path":..,"function":..,"args":[..],"types":["float"]}
 *   ← {"id":2,"ok":true,"result":..} or {"id":2,"ok":false,"error":"ZeroDivisionError: division by zero"}
 *
 * Requests arrive on a private duplicate of fd 0 and replies leave on a
 * private duplicate of fd 1; fd 0 then reads /dev/null and fd 1 writes to
 * stderr, so nothing a procedure prints, reads or spawns touches the protocol.
 */
const BRIDGE = String.raw`
import importlib.util
import inspect
import json
import os
import signal
import sys

modules = {}


def describe(error):
    name = type(error).__name__
    text = str(error)
    return name + ": " + text if text else name


def load(path):
    module = modules.get(path)
    if module is None:
        name = "rpc_procedure_%d" % len(modules)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file: " + path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
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


def handle(line, emit):
    request_id = None
    function_name = "the procedure"
    try:
        request = json.loads(line)
        request_id = request.get("id")
        function_name = request["function"]
        module = load(request["path"])
        function = getattr(module, function_name, None)
        if request.get("op") == "load":
            return encode({"id": request_id, "ok": True, "result": callable(function)})
        if not callable(function):
            raise AttributeError(request["path"] + " does not define a function named " + function_name)
        args = request.get("args") or []
        types = request.get("types") or []
        args = [
            convert(arg, types[i]) if i < len(types) and "float" in types[i] else arg
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
                emit(encode({"id": request_id, "ok": True, "part": True, "result": value}))
        if hasattr(result, "__await__"):
            import asyncio
            result = asyncio.run(result)
    except BaseException as error:  # SystemExit and KeyboardInterrupt included
        return encode({"id": request_id, "ok": False, "error": describe(error)})
    try:
        return encode({"id": request_id, "ok": True, "result": result})
    except BaseException as error:  # NaN, infinity, unserializable objects
        message = function_name + " returned a value that cannot be sent: " + describe(error)
        return encode({"id": request_id, "ok": False, "error": message})


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
    try:
        # Ctrl-C in the server's terminal reaches the whole process group; the
        # server decides when interpreters stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass
    for line in requests:
        if not line.strip():
            continue
        def emit(data):
            replies.write(data)
            replies.flush()

        try:
            emit(handle(line, emit))
        except OSError:
            return


main()
`;

/** Options of {@linkcode PythonRunner}; all optional. */
export interface PythonRunnerOptions {
  /** Most interpreters running at once. Default: the number of cores, at least 1. */
  size?: number;
  /** The interpreter command. Default: `python3`. */
  python?: string;
  /** Time limit for importing a file in `load()`, in milliseconds. Default: 30 000. */
  loadTimeoutMs?: number;
}

interface ResolvedPythonRunnerOptions {
  size: number;
  python: string;
  loadTimeoutMs: number;
}

/** Default time limit for importing a procedure file in `load()`. */
export const DEFAULT_LOAD_TIMEOUT_MS = 30_000;

function resolveOptions(options: PythonRunnerOptions): ResolvedPythonRunnerOptions {
  const size = options.size ?? Math.max(1, navigator.hardwareConcurrency || 1);
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(
      `Cannot create Python runner: pool size ${size} is not a positive integer`,
    );
  }
  return {
    size,
    python: options.python ?? "python3",
    loadTimeoutMs: options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
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
}

function isReply(value: unknown): value is Reply {
  return typeof value === "object" && value !== null &&
    typeof (value as Reply).id === "number" && typeof (value as Reply).ok === "boolean";
}

/** Splits decoded text into lines without the trailing newline, joining chunks once per line. */
class LineSplitter extends TransformStream<string, string> {
  constructor() {
    let parts: string[] = [];
    super({
      transform(chunk, controller) {
        let start = 0;
        for (;;) {
          const end = chunk.indexOf("\n", start);
          if (end < 0) break;
          parts.push(chunk.slice(start, end));
          controller.enqueue(parts.join(""));
          parts = [];
          start = end + 1;
        }
        if (start < chunk.length) parts.push(chunk.slice(start));
      },
      flush(controller) {
        if (parts.length > 0) controller.enqueue(parts.join(""));
      },
    });
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

function describeStatus(status: Deno.CommandStatus): string {
  return status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

const encoder = new TextEncoder();

/** One `python3` process running the bridge, one call at a time. */
class Interpreter {
  /** Settles once the process has exited and its pipes are closed. */
  readonly exited: Promise<void>;
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #pending: PendingCall | undefined;
  #alive = true;
  #killReason: string | undefined;
  #nextId = 0;

  /** @throws {Deno.errors.NotFound} when the interpreter command does not exist. */
  constructor(python: string, onExit: (interpreter: Interpreter) => void) {
    this.#child = new Deno.Command(python, {
      args: ["-u", "-c", BRIDGE],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
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
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
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
    try {
      const lines = this.#child.stdout
        .pipeThrough(new TextDecoderStream())
        .pipeThrough(new LineSplitter());
      for await (const line of lines) {
        if (line.length > 0) this.#receive(line);
      }
    } catch {
      // A broken pipe ends the interpreter like an end of file.
    }
    // Without its reply channel the process is useless, whatever state it is in.
    this.kill();
    const status = await this.#child.status;
    await this.#stdin.close().catch(() => {});
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) {
      pending.reject(
        this.#killReason !== undefined
          ? new RpcError(ErrorKind.Unavailable, this.#killReason)
          : new RpcError(
            ErrorKind.ExecutionException,
            `Python interpreter died while running ${pending.label} (${describeStatus(status)})`,
          ),
      );
    }
  }
}

interface Waiter {
  grant(interpreter: Interpreter): void;
  fail(error: unknown): void;
}

/**
 * Loads Python procedures: a `.py` file defining a function named like the
 * RPC. Arguments declared `float` (also inside lists) arrive as Python
 * floats; a tuple result is a list of return values; integers of any size
 * travel exactly. A Python exception fails the call with
 * `Execution Exception` and `"<ExcType>: <message>"`, never a traceback.
 *
 * @example
 * ```ts ignore
 * import { PythonRunner } from "./python.ts";
 * const runner = new PythonRunner({ size: 2 });
 * const procedure = await runner.load(spec); // spec.path defines `def rpc1(n, s)`
 * console.log(await procedure.invoke([3, "ab"], AbortSignal.timeout(5000))); // "ababab"
 * await runner.close();
 * ```
 */
export class PythonRunner implements Runner {
  readonly #options: ResolvedPythonRunnerOptions;
  /** Interpreters that count against the pool size. */
  #live = new Set<Interpreter>();
  /** Interpreters whose process has not exited yet (includes dying ones). */
  #running = new Set<Interpreter>();
  #idle: Interpreter[] = [];
  #waiting: Waiter[] = [];
  #closed = false;

  constructor(options: PythonRunnerOptions = {}) {
    this.#options = resolveOptions(options);
  }

  async load(spec: ProcedureSpec): Promise<Procedure> {
    const label = `${spec.service}.${spec.rpc}`;
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
    try {
      reply = await this.#request(
        { op: "load", path: spec.path, function: spec.rpc },
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
        const reply = await this.#request(
          { op: "call", path: spec.path, function: spec.rpc, args, types },
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

  async close(): Promise<void> {
    this.#closed = true;
    const closed = this.#closedError();
    for (const waiter of this.#waiting.splice(0)) waiter.fail(closed);
    this.#idle = [];
    const running = [...this.#running];
    for (const interpreter of running) interpreter.kill(closed.message);
    await Promise.all(running.map((interpreter) => interpreter.exited));
  }

  async #request(
    request: Record<string, unknown>,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    signal?.throwIfAborted();
    const interpreter = await this.#acquire(label, signal);
    try {
      return await interpreter.call(request, label, signal, onPart);
    } finally {
      this.#release(interpreter);
    }
  }

  #closedError(): RpcError {
    return new RpcError(ErrorKind.Unavailable, "Python runner is closed");
  }

  #acquire(label: string, signal?: AbortSignal): Promise<Interpreter> {
    if (this.#closed) return Promise.reject(this.#closedError());
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
          reject(this.#startError(error, label));
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
      this.#dispatch();
    });
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

  /** Hands idle or new interpreters to waiting calls, in arrival order. */
  #dispatch(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let interpreter: Interpreter | undefined;
      while (!interpreter && this.#idle.length > 0) {
        const candidate = this.#idle.pop()!;
        if (candidate.alive) interpreter = candidate;
      }
      if (!interpreter) {
        if (this.#live.size >= this.#options.size) return;
        try {
          interpreter = new Interpreter(this.#options.python, (dead) => this.#onExit(dead));
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
    } else {
      this.#live.delete(interpreter);
    }
    this.#dispatch();
  }

  #onExit(interpreter: Interpreter): void {
    this.#live.delete(interpreter);
    this.#running.delete(interpreter);
    const index = this.#idle.indexOf(interpreter);
    if (index >= 0) this.#idle.splice(index, 1);
    this.#dispatch();
  }
}
