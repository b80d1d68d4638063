/**
 * Deployment: from init.yaml to code serving on a server.
 *
 * - `cluster.ts`: reads init.yaml into a checked model, every problem at once with file:line:column;
 * - `deploy.ts`: what `rpc init` sends (only sources whose SHA-256 the server lacks) and what the
 *   server does with it;
 * - `store.ts`: the server's content-addressed store of sources and its manifest;
 * - `state_lock.ts`: one server per state directory;
 * - `check.ts`: loading every procedure as a server would, reporting each failure.
 *
 * @module
 */

export * from "./cluster.ts";
export * from "./deploy.ts";
export * from "./store.ts";
export * from "./state_lock.ts";
export * from "./check.ts";
