/**
 * Writing to stdout and stderr: whole lines, all of their bytes, and a
 * closed stdout (`rpc ping s1 | head -1`) reported as {@linkcode OutputClosed}
 * so that the command ends quietly, as other Unix tools do.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Thrown when stdout was closed by its reader. `main.ts` ends the command
 * with exit 0 and no message; nothing else should catch it.
 */
export class OutputClosed extends Error {
  override name = "OutputClosed";
  constructor() {
    super("Standard output was closed by its reader");
  }
}

/** Writes all of `bytes` (one `writeSync` may write only part of them to a pipe). */
export function writeAll(
  stream: { writeSync(bytes: Uint8Array): number },
  bytes: Uint8Array,
): void {
  let offset = 0;
  while (offset < bytes.length) offset += stream.writeSync(bytes.subarray(offset));
}

/**
 * Writes text to stdout, ending it with a newline.
 *
 * @throws {OutputClosed} when the reader of stdout has gone.
 */
export function print(text: string): void {
  try {
    writeAll(Deno.stdout, encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) throw new OutputClosed();
    throw error;
  }
}

/** Writes text to stderr, ending it with a newline; a closed stderr is ignored. */
export function printError(text: string): void {
  try {
    writeAll(Deno.stderr, encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

/**
 * Makes text fit on one line: line breaks become a visible `\n`, so an
 * error message of several lines still prints as one `error:` line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { oneLine } from "./output.ts";
 * assert.equal(oneLine("first\nsecond"), "first\\nsecond");
 * ```
 */
export function oneLine(text: string): string {
  return text.replace(/\r?\n/g, "\\n").replace(/\r/g, "\\r");
}
