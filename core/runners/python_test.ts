import assert from "node:assert/strict";
import { join } from "node:path";
import { ErrorKind, RpcError } from "../errors.ts";
import { type ProcedureSpec, returnValues } from "../server/registry.ts";
import { parseSignature } from "../types/types.ts";
import { LineSplitter, PythonRunner, type PythonRunnerOptions } from "./python.ts";

const FIXTURES: Record<string, string> = {
  "arith.py": "def add(a, b):\n    return a + b\n",
  "repeat.py": "def rpc1(n, s):\n    return s * n\n",
  "kinds.py": [
    "def kind(x):",
    "    return type(x).__name__",
    "",
    "def kinds(xs):",
    "    return [type(x).__name__ for x in xs]",
    "",
    "def total(xs):",
    "    return sum(xs)",
  ].join("\n"),
  "divmod.py": "def split(a, b):\n    return a // b, a % b\n",
  "big.py": "def power(n):\n    return 2 ** n\n\ndef succ(n):\n    return n + 1\n",
  "fail.py": [
    "import sys",
    "",
    "def divide(a, b):",
    "    return a / b",
    "",
    "def leave():",
    "    sys.exit()",
    "",
    "def nan():",
    "    return float('nan')",
  ].join("\n"),
  "crash.py": [
    "import ctypes",
    "import os",
    "",
    "def crash():",
    "    os._exit(3)",
    "",
    "def segfault():",
    "    ctypes.string_at(0)",
    "",
    "def ok():",
    "    return 'ok'",
  ].join("\n"),
  "hang.py": "import time\n\ntime.sleep(30)\n\ndef rpc1():\n    return 1\n",
  // Each interpreter loads the module once, so its token names the interpreter
  // (a process ID would not: every confined interpreter is PID 2 in its namespace).
  "slow.py": [
    "import random",
    "import time",
    "",
    "TOKEN = random.getrandbits(52)",
    "",
    "def nap(seconds, value):",
    "    time.sleep(seconds)",
    "    return [value, TOKEN]",
  ].join("\n"),
  "noisy.py": [
    "import os",
    "import sys",
    "",
    "def chatty(x):",
    "    print('hello from print', x)",
    '    print(\'{"id": 0, "ok": true, "result": 1}\')',
    "    os.write(1, b'raw bytes on fd 1\\n')",
    "    sys.stdout.flush()",
    "    return x * 2",
  ].join("\n"),
  "memo.py": [
    "import os",
    "import resource",
    "",
    "seen = []",
    "",
    "def remember(x):",
    "    seen.append(x)",
    "    return list(seen)",
    "",
    "def source():",
    "    with open(__file__) as file:",
    "        return file.read()",
    "",
    "def peek(path):",
    "    with open(path) as file:",
    "        return file.read()",
    "",
    "def environ():",
    "    return sorted(os.environ)",
    "",
    "def limit():",
    "    return resource.getrlimit(resource.RLIMIT_DATA)[0]",
  ].join("\n"),
  // What one interpreter ran, in order: a call that never ran leaves no trace.
  "queue.py": [
    "import os",
    "import time",
    "",
    "seen = []",
    "",
    "def note(seconds, x):",
    "    time.sleep(seconds)",
    "    seen.append(x)",
    "    return list(seen)",
    "",
    "def count(n):",
    "    for i in range(n):",
    "        yield i",
    "    return n",
    "",
    "def crash():",
    "    os._exit(3)",
    "",
    "def pid():",
    "    return os.getpid()",
  ].join("\n"),
  "nothing.py": "rpc1 = 5\n\ndef other():\n    return 1\n",
  "broken.py": "def rpc1(:\n",
};

interface Fixture {
  dir: string;
  runner: PythonRunner;
  load(
    file: string,
    rpc: string,
    args: string[],
    returns: string[],
    extra?: Partial<ProcedureSpec>,
  ): ReturnType<PythonRunner["load"]>;
}

/** Runs `body` with fixture files in a temp dir and a runner, within `ms`, cleaning up after. */
async function withRunner(
  options: PythonRunnerOptions,
  ms: number,
  body: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rpc_python_test_" });
  const runner = new PythonRunner({ env: (name) => Deno.env.get(name), ...options });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (const [name, text] of Object.entries(FIXTURES)) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    const fixture: Fixture = {
      dir,
      runner,
      load: (file, rpc, args, returns, extra) =>
        runner.load({ ...spec(join(dir, file), rpc, args, returns), ...extra }),
    };
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Test took longer than ${ms} ms`)), ms);
    });
    await Promise.race([body(fixture), timeout]);
  } finally {
    clearTimeout(timer);
    await runner.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function spec(path: string, rpc: string, args: string[], returns: string[]): ProcedureSpec {
  return {
    service: "service1",
    rpc,
    signature: parseSignature(args, returns),
    language: "python",
    path,
    hash: "0".repeat(64),
  };
}

function never(): AbortSignal {
  return new AbortController().signal;
}

async function assertExecutionError(promise: Promise<unknown>, pattern: RegExp): Promise<RpcError> {
  const error = await promise.then(
    () => assert.fail("expected the call to fail"),
    (error: unknown) => error,
  );
  assert.ok(error instanceof RpcError, `expected RpcError, got ${error}`);
  assert.equal(error.kind, ErrorKind.ExecutionException);
  assert.match(error.message, pattern);
  return error;
}

Deno.test("PythonRunner runs arithmetic", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const add = await load("arith.py", "add", ["int", "int"], ["int"]);
    assert.equal(await add.invoke([2, 3], never()), 5);
    assert.equal(await add.invoke([-7, 10], never()), 3);
  });
});

Deno.test("PythonRunner passes str, list and float arguments as Python types", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const repeat = await load("repeat.py", "rpc1", ["int", "str"], ["str"]);
    assert.equal(await repeat.invoke([3, "ab"], never()), "ababab");

    const kind = await load("kinds.py", "kind", ["float"], ["str"]);
    assert.equal(await kind.invoke([2], never()), "float");
    assert.equal(await kind.invoke([2.5], never()), "float");

    const intKind = await load("kinds.py", "kind", ["int"], ["str"]);
    assert.equal(await intKind.invoke([2], never()), "int");

    const kinds = await load("kinds.py", "kinds", ["List[float]"], ["List[str]"]);
    assert.deepEqual(await kinds.invoke([[1, 2.5, 3]], never()), ["float", "float", "float"]);

    const total = await load("kinds.py", "total", ["List[int]"], ["int"]);
    assert.equal(await total.invoke([[1, 2, 3, 4]], never()), 10);

    const nested = await load("kinds.py", "kinds", ["List[List[float]]"], ["List[str]"]);
    assert.deepEqual(await nested.invoke([[[1], [2]]], never()), ["list", "list"]);
  });
});

Deno.test("PythonRunner returns a tuple as multiple return values", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const split = await load("divmod.py", "split", ["int", "int"], ["int", "int"]);
    const result = await split.invoke([17, 5], never());
    assert.deepEqual(result, [3, 2]);
    assert.deepEqual(returnValues(split.spec, result), [3, 2]);
  });
});

Deno.test("PythonRunner carries integers beyond 2^53 exactly", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const power = await load("big.py", "power", ["int"], ["int"]);
    assert.equal(await power.invoke([70], never()), 1180591620717411303424n);
    const succ = await load("big.py", "succ", ["int"], ["int"]);
    assert.equal(await succ.invoke([2n ** 70n], never()), 2n ** 70n + 1n);
    assert.equal(await succ.invoke([1], never()), 2);
  });
});

Deno.test("PythonRunner reports an exception as its type and message, no traceback", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const divide = await load("fail.py", "divide", ["int", "int"], ["float"]);
    const error = await assertExecutionError(
      divide.invoke([1, 0], never()),
      /^ZeroDivisionError: division by zero$/,
    );
    assert.doesNotMatch(error.message, /Traceback/);
    assert.equal(await divide.invoke([1, 4], never()), 0.25);

    const leave = await load("fail.py", "leave", [], []);
    await assertExecutionError(leave.invoke([], never()), /^SystemExit$/);
    assert.equal(await divide.invoke([3, 4], never()), 0.75);

    const nan = await load("fail.py", "nan", [], ["float"]);
    await assertExecutionError(nan.invoke([], never()), /cannot be sent: ValueError: Out of range/);
  });
});

Deno.test("PythonRunner fails only the call whose interpreter died, then recovers", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const crash = await load("crash.py", "crash", [], []);
    const ok = await load("crash.py", "ok", [], ["str"]);
    // With one interpreter, the second call queues behind the crash and must still run.
    const [crashed, queued] = await Promise.allSettled([
      crash.invoke([], never()),
      ok.invoke([], never()),
    ]);
    assert.equal(crashed.status, "rejected");
    await assertExecutionError(
      Promise.reject(crashed.reason),
      /^Python interpreter died while running service1\.crash \(exit code 3\)$/,
    );
    assert.deepEqual(queued, { status: "fulfilled", value: "ok" });
    assert.equal(await ok.invoke([], never()), "ok");

    const segfault = await load("crash.py", "segfault", [], []);
    await assertExecutionError(
      segfault.invoke([], never()),
      /^Python interpreter died while running service1\.segfault \(killed by SIGSEGV\)$/,
    );
    assert.equal(await ok.invoke([], never()), "ok");
  });
});

Deno.test("PythonRunner queues 20 concurrent calls on a pool of 2", async () => {
  await withRunner({ size: 2 }, 20_000, async ({ load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => nap.invoke([0.02, i], never())),
    ) as [number, number][];
    assert.deepEqual(results.map(([value]) => value), Array.from({ length: 20 }, (_, i) => i));
    const tokens = new Set(results.map(([, token]) => token));
    assert.ok(
      tokens.size >= 1 && tokens.size <= 2,
      `expected at most 2 interpreters, got ${tokens.size}`,
    );
  });
});

Deno.test("PythonRunner reuses one interpreter for sequential calls", async () => {
  await withRunner({ size: 3 }, 10_000, async ({ load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const tokens = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const [, token] = await nap.invoke([0, i], never()) as [number, number];
      tokens.add(token);
    }
    assert.equal(tokens.size, 1);
  });
});

Deno.test("PythonRunner keeps the protocol intact when a procedure prints", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const chatty = await load("noisy.py", "chatty", ["int"], ["int"]);
    assert.equal(await chatty.invoke([21], never()), 42);
    assert.equal(await chatty.invoke([5], never()), 10);
  });
});

Deno.test("PythonRunner kills an aborted call and keeps working", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const [, firstToken] = await nap.invoke([0, 0], never()) as [number, number];
    const controller = new AbortController();
    const reason = new RpcError(ErrorKind.Timeout, "Call took longer than 200 ms");
    const started = Date.now();
    setTimeout(() => controller.abort(reason), 200);
    await assert.rejects(nap.invoke([30, 1], controller.signal), (error) => error === reason);
    assert.ok(Date.now() - started < 5_000);
    const [value, token] = await nap.invoke([0, 2], never()) as [number, number];
    assert.equal(value, 2);
    assert.notEqual(token, firstToken);
  });
});

Deno.test("PythonRunner drops a queued call whose signal aborts", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const busy = nap.invoke([0.3, 1], never());
    const controller = new AbortController();
    const queued = nap.invoke([0, 2], controller.signal);
    controller.abort(new Error("cancelled"));
    await assert.rejects(queued, /cancelled/);
    assert.equal(((await busy) as number[])[0], 1);
    const aborted = AbortSignal.abort(new Error("already"));
    await assert.rejects(nap.invoke([0, 3], aborted), /already/);
  });
});

Deno.test("PythonRunner pipelines 200 concurrent calls into one interpreter, each answered by id", async () => {
  await withRunner({ size: 1 }, 30_000, async ({ runner, load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const count = await load("queue.py", "count", ["int"], ["int"], {
      signature: parseSignature(["int"], ["int"], ["int"]),
    });
    // A generator among them: its parts reach its caller only, its result comes last.
    const parts: unknown[] = [];
    const streamed = count.invoke([5], never(), (value) => parts.push(value));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => nap.invoke([0, i], never())),
    ) as [number, number][];
    assert.deepEqual(results.map(([value]) => value), Array.from({ length: 200 }, (_, i) => i));
    assert.equal(new Set(results.map(([, token]) => token)).size, 1);
    assert.equal(await streamed, 5);
    assert.deepEqual(parts, [0, 1, 2, 3, 4]);
    assert.deepEqual(runner.stats, { alive: 1, restarted: 0 });
  });
});

Deno.test("PythonRunner: a running call that times out ends its interpreter, the calls queued behind it run elsewhere", async () => {
  await withRunner({ size: 1 }, 30_000, async ({ runner, load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const [, firstToken] = await nap.invoke([0, 0], never()) as [number, number];
    const controller = new AbortController();
    const reason = new RpcError(ErrorKind.Timeout, "Call took longer than 300 ms");
    const hanging = nap.invoke([30, 1], controller.signal);
    const queued = Array.from({ length: 10 }, (_, i) => nap.invoke([0, 10 + i], never()));
    setTimeout(() => controller.abort(reason), 300);
    await assert.rejects(hanging, (error) => error === reason);
    const results = await Promise.all(queued) as [number, number][];
    assert.deepEqual(results.map(([value]) => value), Array.from({ length: 10 }, (_, i) => 10 + i));
    // They ran on a new interpreter: the one that held them was ended with the hanging call.
    const tokens = new Set(results.map(([, token]) => token));
    assert.equal(tokens.size, 1);
    assert.ok(!tokens.has(firstToken), "the queued calls ran on the interpreter that was ended");
    assert.equal(runner.stats.restarted, 1);
  });
});

Deno.test("PythonRunner answers the cancel of a queued call at once, skips it and keeps the interpreter", async () => {
  await withRunner({ size: 1 }, 30_000, async ({ runner, load }) => {
    const note = await load("queue.py", "note", ["float", "int"], ["List[int]"]);
    const pid = await load("queue.py", "pid", [], ["int"]);
    const firstPid = await pid.invoke([], never());
    let busyDone = false;
    const busy = note.invoke([2, 1], never()).finally(() => busyDone = true);
    const controller = new AbortController();
    const queued = note.invoke([0, 2], controller.signal);
    const behind = note.invoke([0, 3], never());
    controller.abort(new Error("cancelled by the caller"));
    await assert.rejects(queued, /cancelled by the caller/);
    assert.equal(busyDone, false, "the cancel waited for the running call");
    assert.deepEqual(await busy, [1]);
    // The cancelled call never ran; the one behind it did, in the same interpreter.
    assert.deepEqual(await behind, [1, 3]);
    assert.deepEqual(await note.invoke([0, 4], never()), [1, 3, 4]);
    assert.equal(await pid.invoke([], never()), firstPid);
    assert.deepEqual(runner.stats, { alive: 1, restarted: 0 });
  });
});

Deno.test("PythonRunner: when an interpreter crashes, only its running call fails; the queued ones run once elsewhere", async () => {
  await withRunner({ size: 1 }, 30_000, async ({ runner, load }) => {
    const crash = await load("queue.py", "crash", [], []);
    const note = await load("queue.py", "note", ["float", "int"], ["List[int]"]);
    const crashed = crash.invoke([], never());
    const queued = Array.from({ length: 10 }, (_, i) => note.invoke([0, i], never()));
    await assertExecutionError(
      crashed,
      /^Python interpreter died while running service1\.crash \(exit code 3\)$/,
    );
    const settled = await Promise.allSettled(queued);
    assert.deepEqual(settled.map((result) => result.status), Array(10).fill("fulfilled"));
    // Each queued call ran exactly once, all in the interpreter that replaced the crashed one.
    const seen = await note.invoke([0, 100], never()) as number[];
    assert.deepEqual(
      seen.slice(0, -1).sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, i) => i),
    );
    assert.equal(seen.at(-1), 100);
    assert.equal(runner.stats.restarted, 1);
  });
});

Deno.test("PythonRunner: calls queued behind a long call are taken back by an interpreter that goes idle", async () => {
  await withRunner({ size: 2 }, 25_000, async ({ runner, load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const controller = new AbortController();
    const long = nap.invoke([600, 0], controller.signal);
    // The pool fills both interpreters, so some of these are queued behind the long call.
    const fast = Array.from({ length: 20 }, (_, i) => nap.invoke([0, 1 + i], never()));
    const results = await Promise.all(fast) as [number, number][];
    assert.deepEqual(results.map(([value]) => value), Array.from({ length: 20 }, (_, i) => 1 + i));
    // All ran on the other interpreter, while the long call still runs.
    assert.equal(new Set(results.map(([, token]) => token)).size, 1);
    assert.equal(runner.stats.restarted, 0);
    controller.abort(new Error("done"));
    await assert.rejects(long, /done/);
  });
});

Deno.test("PythonRunner refuses a queue depth that is not a positive integer", () => {
  for (const depth of [0, -1, 1.5]) {
    assert.throws(() => new PythonRunner({ depth }), {
      name: "RangeError",
      message: `Cannot create Python runner: queue depth ${depth} is not a positive integer`,
    });
  }
});

Deno.test("PythonRunner.load() rejects a file without the function", async () => {
  await withRunner({ size: 1 }, 10_000, async ({ dir, load }) => {
    await assert.rejects(
      load("nothing.py", "rpc1", [], []),
      { message: `${join(dir, "nothing.py")} does not define a function named rpc1` },
    );
    await assert.rejects(
      load("nothing.py", "rpc2", [], []),
      { message: `${join(dir, "nothing.py")} does not define a function named rpc2` },
    );
    await assert.rejects(load("broken.py", "rpc1", [], []), /^Error: Cannot load .*SyntaxError/);
    await assert.rejects(load("missing.py", "rpc1", [], []), /Cannot load .*missing\.py/);
    const other = await load("nothing.py", "other", [], ["int"]);
    assert.equal(await other.invoke([], never()), 1);
  });
});

Deno.test("PythonRunner.load() gives up on a file whose import hangs", async () => {
  // The limit also covers starting a fresh interpreter for the next load, which a
  // loaded 2-core machine can take a good part of a second to do.
  await withRunner({ size: 1, loadTimeoutMs: 1500 }, 10_000, async ({ load }) => {
    await assert.rejects(
      load("hang.py", "rpc1", [], ["int"]),
      /importing took longer than 1500 ms/,
    );
    const add = await load("arith.py", "add", ["int", "int"], ["int"]);
    assert.equal(await add.invoke([1, 1], never()), 2);
  });
});

Deno.test("PythonRunner.load() says when the interpreter is not on PATH", async () => {
  await withRunner({ python: "python3-not-installed-here" }, 10_000, async ({ load }) => {
    await assert.rejects(
      load("arith.py", "add", ["int", "int"], ["int"]),
      { message: "python3-not-installed-here not found on PATH: needed for rpc service1.add" },
    );
  });
});

Deno.test("PythonRunner looks the interpreter up on the injected PATH, not the process's", async () => {
  // python3 is on this process's PATH, but not on the one the runner is given.
  const empty = await Deno.makeTempDir({ prefix: "rpc_python_path_" });
  try {
    const env = (name: string) => name === "PATH" ? empty : Deno.env.get(name);
    await withRunner({ env }, 10_000, async ({ load }) => {
      await assert.rejects(
        load("arith.py", "add", ["int", "int"], ["int"], { trusted: true }),
        { message: "python3 not found on PATH: needed for rpc service1.add" },
      );
    });
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("PythonRunner.close() stops running calls and later calls fail", async () => {
  await withRunner({ size: 2 }, 10_000, async ({ runner, load }) => {
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"]);
    const running = nap.invoke([30, 1], never());
    await new Promise((resolve) => setTimeout(resolve, 100));
    await runner.close();
    await assert.rejects(running, { kind: ErrorKind.Unavailable });
    await assert.rejects(nap.invoke([0, 2], never()), { kind: ErrorKind.Unavailable });
  });
});

Deno.test("PythonRunner keeps services apart: each has interpreters of its own", async () => {
  await withRunner({ size: 1 }, 20_000, async ({ load }) => {
    const a = await load("memo.py", "remember", ["int"], ["List[int]"], { service: "a" });
    const b = await load("memo.py", "remember", ["int"], ["List[int]"], { service: "b" });
    assert.deepEqual(await a.invoke([1], never()), [1]);
    assert.deepEqual(await b.invoke([2], never()), [2]);
    assert.deepEqual(await a.invoke([3], never()), [1, 3]);
  });
});

Deno.test("PythonRunner confines a procedure: not even its own source is a file it can open", async () => {
  await withRunner({ size: 1, memoryMb: 64 }, 10_000, async ({ dir, load }) => {
    const source = await load("memo.py", "source", [], ["str"]);
    await assertExecutionError(source.invoke([], never()), /^FileNotFoundError: /);
    const peek = await load("memo.py", "peek", ["str"], ["str"]);
    await assertExecutionError(
      peek.invoke([join(dir, "arith.py")], never()),
      /^FileNotFoundError: /,
    );
    const limit = await load("memo.py", "limit", [], ["int"]);
    assert.equal(await limit.invoke([], never()), 64 * 1024 * 1024);
  });
});

Deno.test("PythonRunner runs a trusted procedure unconfined, with an empty environment and a memory limit", async () => {
  await withRunner({ size: 1, memoryMb: 64 }, 10_000, async ({ dir, load }) => {
    const trusted = { trusted: true };
    const peek = await load("memo.py", "peek", ["str"], ["str"], trusted);
    assert.equal(await peek.invoke([join(dir, "arith.py")], never()), FIXTURES["arith.py"]);
    const environ = await load("memo.py", "environ", [], ["List[str]"], trusted);
    const names = await environ.invoke([], never()) as string[];
    assert.deepEqual(names.filter((name) => name !== "LC_CTYPE"), ["HOME", "PATH"]);
    const limit = await load("memo.py", "limit", [], ["int"], trusted);
    assert.equal(await limit.invoke([], never()), 64 * 1024 * 1024);
  });
});

Deno.test("PythonRunner refuses to run a procedure unconfined where bubblewrap is missing", async () => {
  await withRunner({ size: 1, bwrap: "bwrap-not-installed-here" }, 10_000, async ({ load }) => {
    await assert.rejects(load("arith.py", "add", ["int", "int"], ["int"]), {
      message:
        "Cannot run service1.add confined: bwrap-not-installed-here (bubblewrap) is not on PATH; install it (apt-get install bubblewrap), or mark the procedure trusted: true to run it unconfined",
    });
    const add = await load("arith.py", "add", ["int", "int"], ["int"], { trusted: true });
    assert.equal(await add.invoke([2, 2], never()), 4);
  });
});

Deno.test("PythonRunner says why an interpreter could not start", async () => {
  await withRunner({ size: 1 }, 20_000, async ({ dir, load }) => {
    const granted = join(dir, "granted");
    await Deno.mkdir(granted);
    const nap = await load("slow.py", "nap", ["float", "int"], ["int", "int"], {
      permissions: { read: [granted] },
    });
    // The granted directory goes away; the interpreter that bound it is killed.
    await Deno.remove(granted);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(nap.invoke([30, 1], controller.signal), /stop/);
    await assertExecutionError(
      nap.invoke([0, 2], never()),
      /^Cannot start a Python interpreter for service1\.nap \(exit code 1\): bwrap: Can't find source path \S+granted: No such file or directory$/,
    );
  });
});

Deno.test("LineSplitter: lines across chunks joined once, empty lines dropped, the last line kept", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of ['{"id":1}\n{"id"', ":2", '}\n\n{"id":3}\n', "", "tail"]) {
    splitter.push(chunk);
  }
  splitter.end();
  assert.deepEqual(lines, ['{"id":1}', '{"id":2}', '{"id":3}', "tail"]);
  // A long line split into many chunks comes out whole.
  const long = "x".repeat(100_000);
  const more: string[] = [];
  const again = new LineSplitter((line) => more.push(line));
  for (let i = 0; i < long.length; i += 4096) again.push(long.slice(i, i + 4096));
  again.push("\n");
  assert.deepEqual(more, [long]);
});
