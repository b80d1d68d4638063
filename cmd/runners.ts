/**
 * The runners procedures load with, as `rpc server` serves them and as
 * `rpc init --check` and `rpc server --check` load them: TypeScript in
 * sandboxes (or inline when trusted), Python in confined interpreters. The
 * runner modules are loaded only when called.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import type { Runner } from "../core/server/registry.ts";
import type { ServerCommandOptions } from "./server_flags.ts";

/**
 * The process's environment as the runners read it: unlike settings, an empty
 * value is passed on as it is (a procedure granted `TZ=""` sees it empty).
 */
const serverEnvironment = (name: string): string | undefined => Deno.env.get(name);

/** The runners procedures load with: TypeScript in sandboxes (or inline when trusted), Python. */
export async function procedureRunners(
  options: Pick<ServerCommandOptions, "sandboxMemory" | "workers"> & { loadTimeoutMs?: number },
  logger?: Logger,
): Promise<Record<string, Runner>> {
  const [{ PythonRunner }, { SandboxRunner }, { TypeScriptRunner }] = await Promise.all([
    import("../core/runners/python.ts"),
    import("../core/runners/sandbox.ts"),
    import("../core/runners/typescript.ts"),
  ]);
  return {
    typescript: new TypeScriptRunner(
      new SandboxRunner({
        memoryMb: options.sandboxMemory,
        ...(options.workers ? { size: options.workers } : {}),
        // A sandbox stuck loading is killed when the load limit is reached.
        ...(options.loadTimeoutMs !== undefined ? { loadTimeoutMs: options.loadTimeoutMs } : {}),
        ...(logger ? { logger } : {}),
        env: serverEnvironment,
      }),
    ),
    python: new PythonRunner({ memoryMb: options.sandboxMemory, env: serverEnvironment }),
  };
}
