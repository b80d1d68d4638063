/**
 * Deployment: from init.yaml to code serving on a server.
 *
 * - `cluster.ts`: reads init.yaml into a checked model, every problem at once with file:line:column;
 * - `desired.ts`: the state init.yaml wants on one server, with its sources named by SHA-256;
 * - `plan.ts`: the pure planner: given what the server holds and what it should hold, the changes
 *   and the sources to send (only those whose SHA-256 the server lacks);
 * - `client.ts`: `deploy(client, desired, options)`, the client half of `rpc init` over one
 *   connection, and `fetchState`;
 * - `messages.ts`: the `state` and `install` messages, one validator each (no casts of wire data);
 * - `source_names.ts`: a server's messages with its stored blobs named by their init.yaml `src`;
 * - `installer.ts`: the server half: checks, stores and loads an install, then swaps the registry;
 * - `store.ts`: the server's content-addressed store of sources and its manifest;
 * - `state_lock.ts`: one server per state directory;
 * - `check.ts`: loading every procedure as a server would, reporting each failure.
 *
 * @module
 */

export * from "./cluster.ts";
export * from "./desired.ts";
export * from "./plan.ts";
export * from "./client.ts";
export * from "./messages.ts";
export * from "./source_names.ts";
export * from "./installer.ts";
export * from "./store.ts";
export * from "./state_lock.ts";
export * from "./check.ts";
