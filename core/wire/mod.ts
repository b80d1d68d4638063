/**
 * The wire: how rpc's messages travel as bytes, with no I/O of its own.
 *
 * - `frame.ts`: length-prefixed frames, the length checked before a body is read;
 * - `message.ts`: the message shapes (`HELLO`, `RPC-REQ`, `RPC-RES`, `RPC-EX`, …) and their codec;
 * - `channel.ts`: a message stream over one transport connection, writes coalesced per tick;
 * - `course.ts`, `course_channel.ts`: the course's unframed one-request form on the same port;
 * - `names.ts`: which service, RPC, client and op names the protocol carries;
 * - `auth.ts`: challenge-response proofs of a secret, so no secret crosses the wire;
 * - `validate.ts`: the checks validators of replies are written with (imported directly, not
 *   re-exported here: their names are generic).
 *
 * docs/protocol.md describes the protocol these implement.
 *
 * @module
 */

export * from "./frame.ts";
export * from "./message.ts";
export * from "./channel.ts";
export * from "./course.ts";
export * from "./names.ts";
export * from "./auth.ts";
