import assert from "node:assert/strict";
import { ErrorKind } from "../errors.ts";
import { HTTP_STATUS, statusOf } from "./status.ts";

Deno.test("every error kind has its own row in the gateway's status table", () => {
  const missing = Object.values(ErrorKind).filter((kind) => !(kind in HTTP_STATUS));
  assert.deepEqual(missing, [], `kinds with no status: ${missing.join(", ")}`);
});

Deno.test("a conflict is 409; config and store faults are the server's own 500, never a retryable 503", () => {
  assert.equal(statusOf(ErrorKind.Conflict), 409);
  assert.equal(statusOf(ErrorKind.Config), 500);
  assert.equal(statusOf(ErrorKind.Store), 500);
  assert.equal(statusOf(ErrorKind.Unavailable), 503);
});
