import assert from "node:assert/strict";
import { LOCK_FILE_NAME, StateDirLock, StateDirLocked } from "./state_lock.ts";

Deno.test("StateDirLock: one holder at a time; the second learns the first's pid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-lock-" });
  try {
    const first = await StateDirLock.acquire(`${dir}/state`);
    const refused = await StateDirLock.acquire(`${dir}/state`).then(
      () => undefined,
      (error) => error,
    );
    assert.ok(refused instanceof StateDirLocked, String(refused));
    assert.equal(refused.pid, Deno.pid);
    assert.match(refused.message, new RegExp(`in use by another server, pid ${Deno.pid}$`));
    first.release();
    first.release();
    const again = await StateDirLock.acquire(`${dir}/state`);
    again.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateDirLock: a lock file left by a dead process is taken over", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-lock-" });
  try {
    // What a killed server leaves: its pid in the file, and no lock held by anyone.
    await Deno.writeTextFile(`${dir}/${LOCK_FILE_NAME}`, "999999999\n");
    const lock = await StateDirLock.acquire(dir);
    assert.equal((await Deno.readTextFile(`${dir}/${LOCK_FILE_NAME}`)).trim(), String(Deno.pid));
    lock.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
