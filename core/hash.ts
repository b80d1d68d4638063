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
 * import { sha256Hex } from "./hash.ts";
 * console.assert(sha256Hex("").startsWith("e3b0c442"));
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
