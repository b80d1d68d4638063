import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import { parseCredential } from "./session.ts";

Deno.test("a bearer credential names a client, with or without its secret", () => {
  assert.deepEqual(parseCredential("Bearer c1:s3cr:et"), {
    client: "c1",
    secret: "s3cr:et",
    key: "Bearer c1:s3cr:et",
  });
  assert.deepEqual(parseCredential("bearer c2"), { client: "c2", key: "bearer c2" });
  assert.deepEqual(parseCredential(undefined), { key: "" });
  assert.deepEqual(parseCredential("  "), { key: "" });
});

Deno.test("other credentials are Unauthorized", () => {
  for (const header of ["Basic YzE6eA==", "Bearer", "Bearer :secret", "Bearer a b"]) {
    assert.throws(
      () => parseCredential(header),
      (error: unknown) => error instanceof RpcError && error.kind === ErrorKind.Unauthorized,
      header,
    );
  }
});
