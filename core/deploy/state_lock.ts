/**
 * An exclusive lock on a server's state directory, so that two servers never
 * share one (two `rpc server --name s1` on one machine would otherwise both
 * use `~/.local/state/rpc/s1` and overwrite each other's installed code).
 *
 * The lock is an advisory file lock (`flock`) on `DIR/lock`, which also holds
 * the pid of its owner for the error message. The operating system drops the
 * lock when its process ends, however it ends, so a lock left behind by a
 * server that died (its pid still in the file) is taken over by the next one.
 *
 * @example
 * ```ts ignore
 * import { StateDirLock } from "./state_lock.ts";
 * const lock = await StateDirLock.acquire("/var/lib/rpc/s1"); // throws StateDirLocked
 * try {
 *   // ... serve ...
 * } finally {
 *   lock.release();
 * }
 * ```
 *
 * @module
 */

import { storeError } from "./store.ts";

/** The name of the lock file inside the state directory. */
export const LOCK_FILE_NAME = "lock";

/** Another process holds the lock on a state directory. */
export class StateDirLocked extends Error {
  override name = "StateDirLocked";

  constructor(
    /** The state directory. */
    readonly dir: string,
    /** The pid written by the holder, when it could be read. */
    readonly pid: number | undefined,
  ) {
    super(
      `State directory ${dir} is in use by ${
        pid === undefined ? "another process" : `another server, pid ${pid}`
      }`,
    );
  }
}

/** A held lock on a state directory. */
export class StateDirLock {
  #file: Deno.FsFile | undefined;

  private constructor(readonly dir: string, file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Takes the lock on `dir` (created if missing) at once, or fails.
   *
   * @throws {StateDirLocked} when another process holds it.
   * @throws {RpcError} `Store Error` when the directory or its lock file cannot be made or opened.
   */
  static async acquire(dir: string): Promise<StateDirLock> {
    const path = `${dir.replace(/[\\/]+$/, "")}/${LOCK_FILE_NAME}`;
    let file: Deno.FsFile;
    try {
      await Deno.mkdir(dir, { recursive: true });
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (error) {
      throw storeError("lock", path, error);
    }
    let locked = false;
    try {
      locked = await file.tryLock(true);
    } finally {
      if (!locked) file.close();
    }
    if (!locked) throw new StateDirLocked(dir, await holder(path));
    // Ours now, whoever held it before: write our pid over theirs.
    await file.truncate(0);
    const bytes = new TextEncoder().encode(`${Deno.pid}\n`);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    return new StateDirLock(dir, file);
  }

  /** Lets the lock go (the process ending does so too). Safe to call twice. */
  release(): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return;
    try {
      file.unlockSync();
    } catch {
      // Closing releases it as well.
    }
    file.close();
  }
}

/** The pid in a lock file, when it can be read (Windows refuses reading a locked file). */
async function holder(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
