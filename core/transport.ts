/**
 * The transports moved to `core/transport/`; this re-export keeps old
 * imports working.
 *
 * @module
 */

export * from "./transport/mod.ts";
