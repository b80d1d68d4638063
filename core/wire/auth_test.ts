import assert from "node:assert/strict";
import {
  authProof,
  newNonce,
  type ProofContext,
  proofKey,
  proofKeyFromHash,
  proofMatches,
  proofMessage,
} from "./auth.ts";
import { hashSecret } from "../hash.ts";

const CONTEXT: ProofContext = {
  role: "client",
  client: "c1",
  server: "s1",
  serverNonce: "AAAAAAAAAAAAAAAAAAAA",
  clientNonce: "BBBBBBBBBBBBBBBBBBBB",
};

Deno.test("authProof() gives docs/protocol.md's example proof, as openssl computes it", () => {
  assert.equal(
    proofMessage(CONTEXT),
    `["rpc-auth-v1","client","c1","s1","AAAAAAAAAAAAAAAAAAAA","BBBBBBBBBBBBBBBBBBBB"]`,
  );
  assert.equal(
    authProof(proofKey("s3cret"), CONTEXT),
    "872ce1e7e2020eb4161d55cbdd95d4f4172c4e0552c8c7bc0dd44191e950bbeb",
  );
});

Deno.test("proofKey() of a secret is the SHA-256 a server stores for it", () => {
  const key = proofKey("  s3cret\n");
  assert.deepEqual(key, proofKeyFromHash(hashSecret("s3cret")));
  assert.ok(proofMatches(authProof(key, CONTEXT), proofKeyFromHash(hashSecret("s3cret")), CONTEXT));
});

Deno.test("proofMatches() refuses another secret, nonce, role, client or server, and non-proofs", () => {
  const proof = authProof(proofKey("s3cret"), CONTEXT);
  const key = proofKey("s3cret");
  assert.ok(!proofMatches(proof, proofKey("s3cret!"), CONTEXT));
  for (
    const change of [
      { serverNonce: "CCCCCCCCCCCCCCCCCCCC" },
      { clientNonce: "CCCCCCCCCCCCCCCCCCCC" },
      { role: "admin" as const },
      { client: "c2" },
      { server: "s2" },
    ]
  ) {
    assert.ok(!proofMatches(proof, key, { ...CONTEXT, ...change }), JSON.stringify(change));
  }
  for (const bad of [undefined, "", proof.toUpperCase(), proof.slice(1), 42, "s3cret"]) {
    assert.ok(!proofMatches(bad, key, CONTEXT), String(bad));
  }
});

Deno.test("newNonce() is 32 random bytes in base64url", () => {
  const a = newNonce();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, newNonce());
});
