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

/** Runs `rpc server s1` on `stateDir` (no init.yaml) and returns how it ended. */
async function serveFrom(stateDir: string, env: Record<string, string> = {}) {
  const cwd = await Deno.makeTempDir({ prefix: "rpc-state-cwd-" });
  try {
    return await rpc(["server", "--name", "s1", "--port", "0"], {
      env: { RPC_STATE_DIR: stateDir, ...env },
      cwd,
    });
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("a state directory that is a file fails as Store Error, exit 8, naming the path and the OS's reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-state-broken-" });
  try {
    const notADirectory = `${dir}/state`;
    await Deno.writeTextFile(notADirectory, "not a directory\n");
    const result = await serveFrom(notADirectory);
    assert.equal(result.code, 8, describeResult(result));
    assert.match(
      result.stderr,
      new RegExp(`^error: Store Error: Cannot lock ${notADirectory}/lock: .+\\n$`),
    );
    assert.doesNotMatch(result.stderr, /Internal Error|listening/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unreadable or damaged manifest fails as Store Error, exit 8, and the server does not start", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-state-manifest-" });
  try {
    // A directory where manifest.json belongs cannot be read, even by root.
    await Deno.mkdir(`${stateDir}/manifest.json`);
    const unreadable = await serveFrom(stateDir);
    assert.equal(unreadable.code, 8, describeResult(unreadable));
    assert.match(
      unreadable.stderr,
      new RegExp(`error: Store Error: Cannot read ${stateDir}/manifest\\.json: `),
    );
    assert.doesNotMatch(unreadable.stderr, /Internal Error/);

    await Deno.remove(`${stateDir}/manifest.json`);
    await Deno.writeTextFile(`${stateDir}/manifest.json`, '{"format": 1, "services": [');
    const damaged = await serveFrom(stateDir);
    assert.equal(damaged.code, 8, describeResult(damaged));
    assert.match(
      damaged.stderr,
      new RegExp(`error: Store Error: Cannot parse ${stateDir}/manifest\\.json: `),
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});
