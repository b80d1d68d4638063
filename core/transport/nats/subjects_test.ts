import assert from "node:assert/strict";
import { readAnnouncement } from "./subjects.ts";

Deno.test("readAnnouncement() takes only what it knows", () => {
  const text = JSON.stringify({
    server: "vm1",
    services: ["a", 3, "b"],
    version: "1",
    sessions: 2,
  });
  assert.deepEqual(readAnnouncement(new TextEncoder().encode(text)), {
    server: "vm1",
    services: ["a", "b"],
    version: "1",
    sessions: 2,
    startedAt: "",
  });
  assert.equal(readAnnouncement(new TextEncoder().encode("not json")), undefined);
  assert.equal(readAnnouncement(new TextEncoder().encode('{"services":[]}')), undefined);
});
