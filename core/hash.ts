/**
 * The content hash rpc uses everywhere: SHA-256 over the UTF-8 source text,
 * as lowercase hex (the course's `hashlib.sha256(code.encode()).hexdigest()`).
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * Hashes source text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./hash.ts";
 * assert.equal(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
 * ```
 */
export function sha256Hex(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Hashes a secret (an admin token or a client secret) the way servers store
 * it: SHA-256 of the text without surrounding whitespace.
 */
export function hashSecret(secret: string): string {
  return sha256Hex(secret.trim());
}
