import assert from "node:assert/strict";
import { parseBrokerUrl, redactBrokerUrl } from "./broker_url.ts";

Deno.test("parseBrokerUrl() takes servers, user and password apart", () => {
  assert.deepEqual(parseBrokerUrl("nats://127.0.0.1:4222"), { servers: ["nats://127.0.0.1:4222"] });
  assert.deepEqual(parseBrokerUrl("nats://vm1:p%40ss@10.0.0.5:4222,nats://10.0.0.6:4222"), {
    servers: ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"],
    user: "vm1",
    pass: "p@ss",
  });
  assert.deepEqual(parseBrokerUrl("127.0.0.1:4222"), { servers: ["nats://127.0.0.1:4222"] });
  for (const bad of ["", "http://127.0.0.1:4222", "nats://"]) {
    assert.throws(() => parseBrokerUrl(bad), { kind: "Invalid Arguments" });
  }
});

Deno.test("redactBrokerUrl() hides passwords, and only them", () => {
  assert.equal(
    redactBrokerUrl("nats://vm1:secret@10.0.0.5:4222,nats://ops:other@10.0.0.6:4222"),
    "nats://vm1:***@10.0.0.5:4222,nats://ops:***@10.0.0.6:4222",
  );
  assert.equal(redactBrokerUrl("nats://10.0.0.5:4222"), "nats://10.0.0.5:4222");
  // The error for a malformed URL does not echo its password either.
  assert.throws(
    () => parseBrokerUrl("http://u:secret@x:1"),
    (error: Error) => !error.message.includes("secret"),
  );
});
