import assert from "node:assert/strict";
import { emptyListNote, formatRpc, formatRpcLines, formatServices } from "./list.ts";

Deno.test("formatRpc() writes name(args) -> returns", () => {
  assert.equal(
    formatRpc({ name: "rpc1", args: ["int", "str"], returns: ["str"] }),
    "rpc1(int, str) -> str",
  );
  assert.equal(
    formatRpc({ name: "divmod", args: ["int", "int"], returns: ["int", "int"] }),
    "divmod(int, int) -> (int, int)",
  );
  assert.equal(formatRpc({ name: "ping", args: [], returns: [] }), "ping() -> ()");
  assert.equal(
    formatRpc({ name: "f", args: ["list[int]"], returns: ["str"] }),
    "f(List[int]) -> str",
  );
});

Deno.test("formatRpc() shows types it cannot parse as the server spelled them", () => {
  assert.equal(formatRpc({ name: "f", args: ["Map[str]"], returns: ["x"] }), "f(Map[str]) -> x");
});

Deno.test("formatRpcLines() aligns docs after the longest signature and keeps their first line", () => {
  assert.deepEqual(
    formatRpcLines([
      { name: "a", args: ["int"], returns: ["int"], doc: "Short.\nMore text." },
      { name: "longer", args: ["str", "str"], returns: ["str"], doc: "Long." },
      { name: "bare", args: [], returns: ["str"] },
    ]),
    [
      "  a(int) -> int            Short.",
      "  longer(str, str) -> str  Long.",
      "  bare() -> str",
    ],
  );
});

Deno.test("formatServices() prints each service, then its RPCs indented", () => {
  assert.deepEqual(
    formatServices([
      {
        name: "service1",
        rpcs: [{ name: "rpc1", args: ["int", "str"], returns: ["str"], doc: "Repeat." }],
      },
      { name: "service2", rpcs: [] },
    ]),
    ["service1", "  rpc1(int, str) -> str  Repeat.", "service2"],
  );
});

Deno.test("emptyListNote() suggests --as for an anonymous client", () => {
  assert.match(emptyListNote("s1", undefined), /anonymous client; pass --as CLIENT/);
  assert.equal(emptyListNote("s1", "c1"), "note: s1 offers no services to client c1");
});
