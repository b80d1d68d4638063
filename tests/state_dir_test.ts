/**
 * A server's state directory belongs to one server at a time: real `rpc
 * server` processes on one directory.
 *
 * Run: `deno test --allow-all tests/state_dir_test.ts`
 */

import assert from "node:assert/strict";
import { describeResult, rpc, startServer } from "./helpers.ts";

Deno.test("a second server on a state directory in use fails at once, naming the first's pid; a dead server's lock is taken over", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-state-shared-" });
  try {
    const first = await startServer({ name: "s1", config: null, stateDir });
    try {
      const second = await rpc(["server", "--name", "s1", "--port", "0"], {
        env: { RPC_STATE_DIR: stateDir },
        cwd: stateDir,
      });
      assert.equal(second.code, 2, describeResult(second));
      assert.equal(
        second.stderr,
        `error: State directory ${stateDir} is in use by another server, pid ${first.process.pid}: stop it, or give this server a state directory of its own (--state-dir or RPC_STATE_DIR)\n`,
      );
      assert.doesNotMatch(second.stderr, /listening/);
      assert.ok(first.running(), "the first server keeps serving");
    } finally {
      // Killed, not stopped: the lock file keeps its pid, as after a crash.
      first.process.kill("SIGKILL");
      await first.stop();
    }
    const third = await startServer({ name: "s1", config: null, stateDir });
    try {
      assert.equal(
        (await Deno.readTextFile(`${stateDir}/lock`)).trim(),
        String(third.process.pid),
      );
    } finally {
      await third.stop();
    }
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});
