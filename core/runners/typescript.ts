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

/** Loads TypeScript procedures with dynamic `import()`. */
export class InlineTypeScriptRunner implements Runner {
  async load(spec: ProcedureSpec): Promise<Procedure> {
    const module = await import(toFileUrl(spec.path).href) as Record<string, unknown>;
    const fn = exportedFunction(module, spec);
    return {
      spec,
      async invoke(args, signal, onPart): Promise<unknown> {
        try {
          return await settleResult(fn(...args), signal, onPart);
        } catch (error) {
          if (error instanceof RpcError) throw error;
          throw new RpcError(ErrorKind.ExecutionException, procedureErrorMessage(error));
        }
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
