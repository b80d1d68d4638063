import assert from "node:assert/strict";
import { parseCluster } from "../deploy/cluster.ts";
import { ServiceClient } from "./failover.ts";

// Port 9 on loopback: nothing is connected to; idempotent() only reads init.yaml.
const cluster = parseCluster(
  `network:
  servers:
    - s1: { ip: 127.0.0.1, port: 9 }
service:
  - service1: { providers: [s1], rpcs: [add, echo] }
rpc:
  - add: { args: [int, int], returns: [int], src: add.ts, idempotent: true }
  - add: { args: [float, float], returns: [float], src: add.ts }
  - add: { args: ["List[int]"], returns: [int], src: add.ts, idempotent: true }
  - echo: { args: [str], returns: [str], src: echo.ts }
`,
  "failover_test.yaml",
);

Deno.test("idempotent() asks only of the overload the server will run, chosen by the server's rule", () => {
  const service = new ServiceClient(cluster, "service1");
  assert.equal(service.idempotent("add", [1, 2]), true, "(int, int) is marked");
  assert.equal(service.idempotent("add", [1.5, 2]), false, "(float, float) is not");
  assert.equal(service.idempotent("add", [[1, 2]]), true);
  assert.equal(service.idempotent("echo", ["x"]), false);
  assert.equal(service.idempotent("nope", []), false, "an RPC init.yaml does not list");
});

Deno.test("idempotent() compares declared argument types parsed, as the server does", () => {
  const service = new ServiceClient(cluster, "service1");
  assert.equal(service.idempotent("add", [1, 2], ["int", "int"]), true);
  assert.equal(service.idempotent("add", [1, 2], ["float", "float"]), false);
  // The server takes list[ int ] for List[int]; a joined-string comparison did not.
  assert.equal(service.idempotent("add", [[1]], ["list[ int ]"]), true);
});

Deno.test("idempotent() needs every overload marked when the call names no one overload", () => {
  const service = new ServiceClient(cluster, "service1");
  // [] fits List[int] only, so that one decides.
  assert.equal(service.idempotent("add", [[]]), true);
  // Three arguments fit no overload: all of them would have to be marked.
  assert.equal(service.idempotent("add", [1, 2, 3]), false);
  assert.equal(service.idempotent("add", [1], ["bool"]), false);
});
