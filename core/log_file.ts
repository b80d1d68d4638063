/**
 * A log file that rotates by size and can be reopened, for `--log-file` and
 * `--audit-log`. When a write would take the file past `maxBytes`, the file
 * is renamed `FILE.1` (an older `FILE.1` becomes `FILE.2`, and so on; the
 * oldest beyond `keep` is deleted) and a new `FILE` is started. Lines are
 * never split between files, so every file holds whole JSON lines and none
 * grows past `maxBytes` unless one line alone is longer. {@linkcode
 * LogFile.reopen} closes and reopens `FILE`, for logrotate's `postrotate`
 * (`kill -HUP`): after the file was moved away, a fresh one is started.
 *
 * Rotation is written here rather than taken from a library because it is a
 * few renames around the buffered writer the log already has, and must stay
 * in step with it (whole lines, one writer at a time).
 *
 * @module
 */

import type { ByteWriter } from "./log.ts";

/** Options of {@linkcode LogFile.open}. */
export interface LogFileOptions {
  /** Rotate before the file grows past this many bytes; 0 never rotates. Default 64 MiB. */
  maxBytes?: number;
  /** Rotated files kept (`FILE.1` newest … `FILE.N`); 0 keeps none. Default 5. */
  keep?: number;
}

/** Default of {@linkcode LogFileOptions.maxBytes}: 64 MiB. */
export const DEFAULT_LOG_MAX_BYTES = 64 * 1024 * 1024;

/** Default of {@linkcode LogFileOptions.keep}. */
export const DEFAULT_LOG_KEEP = 5;

const NEWLINE = 0x0a;

/** An append-only log file that rotates by size; see the module documentation. */
export class LogFile implements ByteWriter {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  #file: Deno.FsFile;
  #size: number;
  /** Writes, rotations and reopens run one at a time, in order. */
  #turn: Promise<unknown> = Promise.resolve();

  private constructor(
    path: string,
    options: Required<LogFileOptions>,
    file: Deno.FsFile,
    size: number,
  ) {
    this.path = path;
    this.maxBytes = options.maxBytes;
    this.keep = options.keep;
    this.#file = file;
    this.#size = size;
  }

  /** Opens (or creates) `path` for appending. */
  static async open(path: string, options: LogFileOptions = {}): Promise<LogFile> {
    const { file, size } = await openAppend(path);
    return new LogFile(
      path,
      {
        maxBytes: options.maxBytes ?? DEFAULT_LOG_MAX_BYTES,
        keep: options.keep ?? DEFAULT_LOG_KEEP,
      },
      file,
      size,
    );
  }

  /**
   * Appends the longest run of whole lines from the start of `data` that
   * fits, rotating first when none does; returns the bytes written (the
   * caller writes the rest next).
   */
  write(data: Uint8Array): Promise<number> {
    return this.#exclusive(() => this.#write(data));
  }

  /** Closes the file and opens `path` again: a new file if it was moved away. */
  reopen(): Promise<void> {
    return this.#exclusive(async () => {
      this.#file.close();
      ({ file: this.#file, size: this.#size } = await openAppend(this.path));
    });
  }

  /** Closes the file once the writes under way are done. */
  close(): Promise<void> {
    return this.#exclusive(() => {
      this.#file.close();
      return Promise.resolve();
    });
  }

  async #write(data: Uint8Array): Promise<number> {
    const limit = this.maxBytes;
    if (limit > 0 && this.#size + data.length > limit) {
      // The whole lines that still fit; none: start a new file.
      const fits = this.#size === 0 ? 0 : lastLineEnd(data, limit - this.#size);
      if (fits > 0) data = data.subarray(0, fits);
      else {
        if (this.#size > 0) await this.#rotate();
        // A new file takes whole lines up to the limit, and at least one line.
        const end = lastLineEnd(data, limit) || data.indexOf(NEWLINE) + 1 || data.length;
        data = data.subarray(0, end);
      }
    }
    const written = await this.#file.write(data);
    this.#size += written;
    return written;
  }

  async #rotate(): Promise<void> {
    this.#file.close();
    if (this.keep > 0) {
      for (let n = this.keep - 1; n >= 1; n--) {
        await renameIfPresent(`${this.path}.${n}`, `${this.path}.${n + 1}`);
      }
      await renameIfPresent(this.path, `${this.path}.1`);
    } else {
      await Deno.remove(this.path).catch(() => {});
    }
    ({ file: this.#file, size: this.#size } = await openAppend(this.path));
  }

  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#turn.then(work);
    this.#turn = run.catch(() => {});
    return run;
  }
}

/** The end (exclusive) of the last whole line within the first `room` bytes; 0 if none. */
function lastLineEnd(data: Uint8Array, room: number): number {
  if (room <= 0) return 0;
  return data.lastIndexOf(NEWLINE, Math.min(room, data.length) - 1) + 1;
}

async function openAppend(path: string): Promise<{ file: Deno.FsFile; size: number }> {
  const file = await Deno.open(path, { create: true, append: true });
  try {
    return { file, size: (await file.stat()).size };
  } catch (error) {
    file.close();
    throw error;
  }
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, to);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
