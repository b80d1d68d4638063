/**
 * The server: takes connections from any transport and serves calls through a pipeline of small
 * stages, one module each (docs/design.md, "The server's call pipeline", draws them).
 *
 * - `server.ts`: {@linkcode RpcServer}, which binds or takes a listener and composes the stages;
 * - `session.ts`: the per-connection record every stage shares;
 * - `gate.ts`: connection limits per server and per peer, and the slots kept for admins;
 * - `dispatch.ts`: reads a connection's messages and routes each to its stage;
 * - `identify.ts`: `HELLO`, `AUTH` proofs, certificate names, address-bound clients;
 * - `pipeline.ts`: one call through `admit.ts` (limits and rates), `authorize.ts` (tenants),
 *   `resolve.ts` (the overload), `run.ts` (time limit, parts, reply) and `record.ts` (counters,
 *   log, audit, metrics hook);
 * - `admin_route.ts` (`ADMIN` messages) and `admin.ts` (the privileged ops);
 * - `sweep.ts` (timeouts), `drain.ts` (graceful shutdown), `health.ts`, `listen_events.ts`;
 * - `registry.ts`: the procedures served; `limits.ts`, `backpressure.ts`, `refusals.ts`: the
 *   limits, the reply budget, and the summaries of repeated refusals.
 *
 * `test_support.ts` holds the real parts the stages' unit tests are built from.
 *
 * @module
 */

export * from "./server.ts";
export * from "./registry.ts";
export * from "./admin.ts";
export * from "./limits.ts";
