/**
 * Challenge-response proofs of a secret (a client's secret or the server's
 * admin token), so that no secret ever travels on the connection.
 *
 * The server's `HELLO` carries a fresh random nonce; the client answers with
 * `AUTH`: a nonce of its own and, for each secret it proves, the HMAC-SHA256
 * of the {@linkcode proofMessage} under the key SHA-256(secret). The server
 * stores only that SHA-256 (it never held the plain secret), so it can check
 * the proof; a recorded `AUTH` is worthless on another connection, whose
 * server nonce differs. See docs/protocol.md, "Proving a secret".
 *
 * @module
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** What a proof is for: the client's own secret, or the server's admin token. */
export type ProofRole = "client" | "admin";

/** Everything a proof is bound to. */
export interface ProofContext {
  role: ProofRole;
  /** The client name claimed in `HELLO`, or `""` for none. */
  client: string;
  /** The server's name, as its `HELLO` gave it. */
  server: string;
  /** The nonce of the server's `HELLO`. */
  serverNonce: string;
  /** The nonce of the client's `AUTH`. */
  clientNonce: string;
}

/** Smallest and largest nonce accepted, in characters. */
export const NONCE_CHARS = { min: 16, max: 128 } as const;

/** A fresh nonce: 32 random bytes, base64url. */
export function newNonce(): string {
  return randomBytes(32).toString("base64url");
}

/** The proof key of a secret: SHA-256 of its text without surrounding whitespace, as servers store it. */
export function proofKey(secret: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(secret.trim()).digest());
}

/** The proof key from the SHA-256 (hex) a server stores. */
export function proofKeyFromHash(hashHex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hashHex, "hex"));
}

/**
 * The bytes a proof signs: the UTF-8 JSON array
 * `["rpc-auth-v1", role, client, server, serverNonce, clientNonce]`.
 */
export function proofMessage(context: ProofContext): string {
  return JSON.stringify([
    "rpc-auth-v1",
    context.role,
    context.client,
    context.server,
    context.serverNonce,
    context.clientNonce,
  ]);
}

/**
 * The proof of knowing `key` in `context`: HMAC-SHA256 in lowercase hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { authProof, proofKey, proofMatches } from "./auth.ts";
 * const context = {
 *   role: "client" as const, client: "c1", server: "s1",
 *   serverNonce: "server-nonce-0123456789", clientNonce: "client-nonce-0123456789",
 * };
 * const proof = authProof(proofKey("s3cret"), context);
 * assert.equal(proofMatches(proof, proofKey("s3cret"), context), true);
 * assert.equal(proofMatches(proof, proofKey("other"), context), false);
 * const replayed = { ...context, serverNonce: "another-nonce-0123456" };
 * assert.equal(proofMatches(proof, proofKey("s3cret"), replayed), false);
 * ```
 */
export function authProof(key: Uint8Array, context: ProofContext): string {
  return createHmac("sha256", key).update(proofMessage(context)).digest("hex");
}

/** Whether `proof` proves `key` in `context`, compared in constant time. */
export function proofMatches(proof: unknown, key: Uint8Array, context: ProofContext): boolean {
  if (typeof proof !== "string" || !/^[0-9a-f]{64}$/.test(proof)) return false;
  const expected = Buffer.from(authProof(key, context), "hex");
  return timingSafeEqual(Buffer.from(proof, "hex"), expected);
}
