/**
 * Runs TypeScript (and JavaScript) procedures in the server's own isolate.
 * A module is imported by the absolute file URL of its source; a source with
 * new content lives at a new path (the store names files by hash), so
 * importing it yields a new module while calls in flight keep the old one.
 *
 * @module
 */

import { toFileUrl } from "../paths.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import {
  isAsyncIterator,
  Pending,
  type Procedure,
  type ProcedureSpec,
  type Runner,
  settleResult,
} from "../server/registry.ts";

/** Finds the function a module exports for an RPC: by the RPC's name, else `default`. */
export function exportedFunction(
  module: Record<string, unknown>,
  spec: ProcedureSpec,
): (...args: unknown[]) => unknown {
  const candidate = module[spec.rpc] ?? module.default;
  if (typeof candidate !== "function") {
    throw new Error(`${spec.path} does not export a function named ${spec.rpc}`);
  }
  return candidate as (...args: unknown[]) => unknown;
}

/** The message a procedure's error shows the caller: never a stack trace. */
export function procedureErrorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message ? `${error.name}: ${error.message}` : error.name;
  }
  return String(error);
}

/** What a procedure's error becomes: an `RpcError` as it is, anything else an `Execution Exception`. */
function executionError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  return new RpcError(ErrorKind.ExecutionException, procedureErrorMessage(error));
}

/** Settles a procedure's result that may be a promise or a stream. */
async function settle(
  result: unknown,
  signal: AbortSignal,
  onPart: ((value: unknown) => void) | undefined,
): Promise<unknown> {
  try {
    return await settleResult(result, signal, onPart);
  } catch (error) {
    throw executionError(error);
  }
}

/** Whether `value` is a primitive, which can be neither a promise nor a stream. */
function isPlain(value: unknown): boolean {
  return value === null || (typeof value !== "object" && typeof value !== "function");
}

/**
 * Whether what a procedure returned is its result as it stands: a primitive,
 * or an object that is neither a thenable nor a stream (what `await` and
 * {@linkcode settleResult} would hand on unchanged).
 */
function finished(value: unknown): boolean {
  if (isPlain(value)) return true;
  try {
    return typeof (value as PromiseLike<unknown>).then !== "function" && !isAsyncIterator(value);
  } catch {
    // A `then` getter that throws: settling it reports the error as awaiting it would.
    return false;
  }
}

/** Loads TypeScript procedures with dynamic `import()`. */
export class InlineTypeScriptRunner implements Runner {
  async load(spec: ProcedureSpec): Promise<Procedure> {
    const module = await import(toFileUrl(spec.path).href) as Record<string, unknown>;
    const fn = exportedFunction(module, spec);
    return {
      spec,
      invoke(args, signal, onPart): Promise<unknown> {
        let result: unknown;
        try {
          result = fn(...args);
        } catch (error) {
          return Promise.reject(executionError(error));
        }
        // Most procedures return a plain value: nothing to wait for and no stream to drive, so
        // the call skips the two async frames below (a primitive cannot be a thenable).
        if (isPlain(result)) return Promise.resolve(result);
        return settle(result, signal, onPart);
      },
      attempt(args): unknown {
        let result: unknown;
        try {
          result = fn(...args);
        } catch (error) {
          throw executionError(error);
        }
        if (finished(result)) return result;
        return new Pending((signal, onPart) => settle(result, signal, onPart));
      },
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The server's TypeScript runner: sandboxed by default, in the server's own
 * isolate for procedures marked `trusted`.
 */
export class TypeScriptRunner implements Runner {
  constructor(readonly sandbox: Runner, readonly inline: Runner = new InlineTypeScriptRunner()) {}

  load(spec: ProcedureSpec): Promise<Procedure> {
    return spec.trusted ? this.inline.load(spec) : this.sandbox.load(spec);
  }

  async close(): Promise<void> {
    await Promise.all([this.sandbox.close(), this.inline.close()]);
  }
}
