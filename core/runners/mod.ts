/**
 * Runners: how a procedure's code runs when a call reaches it. A runner loads a procedure from its
 * source and returns a function the server calls.
 *
 * - `typescript.ts`: inline, in the server's own isolate (`trusted: true`);
 * - `sandbox.ts` (with `sandbox_slot.ts`, `sandbox_process.ts`, `sandbox_entry.ts`, `sandbox_host.ts`,
 *   `sandbox_codec.ts`, `sandbox_wire.ts`): TypeScript in child processes, a pool per service,
 *   each with a Web Worker holding the procedure's Deno permissions; the default;
 * - `python.ts`: pools of `python3` interpreters inside bubblewrap (`python_pool.ts`), each
 *   running the bridge script (`python_bridge.ts`), with calls pipelined into it and run one at a
 *   time (`python_interpreter.ts`), confined by `python_sandbox.ts`.
 *
 * docs/security.md says what each sandbox holds and what it does not.
 *
 * @module
 */

export * from "./typescript.ts";
export * from "./sandbox.ts";
export * from "./python.ts";
export * from "./environment.ts";
