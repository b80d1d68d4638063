import assert from "node:assert/strict";
import { Interpreter, type Launch, NotStarted } from "./python_interpreter.ts";

/**
 * A python3 peer playing a bridge whose call 2 started just before its cancel
 * arrived, which no timing can arrange with the real bridge: it answers call 1
 * only once it has read the cancel of call 2, then reports nothing more, as a
 * bridge stuck in call 2 would (call 3 waits behind it).
 */
const STARTED_BEFORE_ITS_CANCEL = String.raw`
import json, os, sys, time
out = os.fdopen(os.dup(1), "wb", buffering=0)
out.write(b'{"id":0,"ok":true,"result":"ready"}\n')
for line in sys.stdin.buffer:
    request = json.loads(line)
    if request.get("op") == "cancel" and request["id"] == 2:
        out.write(b'{"id":1,"ok":true,"result":"one"}\n')
        time.sleep(600)
`;

function launch(script: string): Launch {
  return { command: "python3", args: ["-I", "-B", "-c", script], env: {}, confined: false };
}

/** `promise`, or a failure after `ms`: a generous bound so that a regression fails instead of hanging. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

Deno.test("Interpreter ends a process whose cancelled call started anyway, and hands back the calls behind it", async () => {
  let exited = false;
  const interpreter = new Interpreter(
    launch(STARTED_BEFORE_ITS_CANCEL),
    () => exited = true,
  );
  try {
    const controller = new AbortController();
    const first = interpreter.call({ op: "call" }, "first");
    const second = interpreter.call({ op: "call" }, "second", controller.signal);
    const third = interpreter.call({ op: "call" }, "third");
    const reason = new Error("cancelled by the caller");
    controller.abort(reason);
    await assert.rejects(second, (error) => error === reason);
    assert.deepEqual(await first, { id: 1, ok: true, result: "one" });
    // Nobody waits for call 2, which the peer never reports skipped: the interpreter is
    // ended, and call 3, which never started, comes back to be run elsewhere.
    await assert.rejects(within(third, 20_000), (error) => error instanceof NotStarted);
    await within(interpreter.exited, 20_000);
    assert.equal(exited, true);
    assert.equal(interpreter.alive, false);
  } finally {
    interpreter.kill();
    await interpreter.exited;
  }
});
