import assert from "node:assert/strict";
import { parseCluster } from "../deploy/cluster.ts";
import {
  localEndpoint,
  localizeCluster,
  type LocalRun,
  localRunOf,
  localSource,
  planLocal,
  runDirOf,
} from "./local.ts";

const FILE = `
network:
  servers:
    - s1: { ip: 192.168.0.1, port: 8181 }
    - s2: { ip: 192.168.0.2, port: 8282 }
  clients:
    - c1: { ip: 192.168.1.1, port: 6000 }
    - c2: { ip: 192.168.1.1, port: 6001 }
    - c3: { ip: 192.168.1.3, port: 6002 }
    - c4: { port: 6003 }
service:
  - service1: { providers: [s1, s2], tenants: [c1, c2, c3], rpcs: [] }
rpc: []
`;

Deno.test("planLocal maps by place in the file, keeps free ports, shares shared client addresses", () => {
  const cluster = parseCluster(FILE, "/srv/course/init.yaml");
  const plan = planLocal(cluster, "/run/x", {
    free: (host, port) => !(host === "127.0.1.2" && port === 8282),
    any: () => 40000,
  });
  assert.deepEqual(plan.servers, [
    {
      name: "s1",
      host: "127.0.1.1",
      port: 8181,
      fileHost: "192.168.0.1",
      filePort: 8181,
      stateDir: "/run/x/servers/s1",
    },
    {
      name: "s2",
      host: "127.0.1.2",
      port: 40000,
      fileHost: "192.168.0.2",
      filePort: 8282,
      stateDir: "/run/x/servers/s2",
    },
  ]);
  assert.deepEqual(plan.clients, [
    { name: "c1", ip: "127.0.2.1", fileIp: "192.168.1.1" },
    { name: "c2", ip: "127.0.2.1", fileIp: "192.168.1.1" },
    { name: "c3", ip: "127.0.2.2", fileIp: "192.168.1.3" },
    { name: "c4", ip: "127.0.2.3" },
  ]);
});

Deno.test("localizeCluster: names, file addresses and client sources resolve to the mapping", () => {
  const cluster = parseCluster(FILE, "/srv/course/init.yaml");
  const run: LocalRun = {
    format: 1,
    file: "/srv/course/init.yaml",
    dir: "/run/x",
    pid: 1,
    startedAt: "",
    ready: true,
    token: "t",
    ...planLocal(cluster, "/run/x", { free: () => true, any: () => 0 }),
  };
  const local = localizeCluster(cluster, run);
  assert.equal(localRunOf(local), run);
  assert.equal(localRunOf(cluster), undefined, "the file's own cluster is untouched");
  assert.deepEqual(
    [...local.servers.values()].map((server) => `${server.host}:${server.port}`),
    ["127.0.1.1:8181", "127.0.1.2:8282"],
  );
  assert.equal(cluster.servers.get("s1")?.host, "192.168.0.1");
  assert.deepEqual([...local.clients.values()].map((client) => client.ip), [
    "127.0.2.1",
    "127.0.2.1",
    "127.0.2.2",
    undefined, // no address in the file: still none, so servers check none
  ]);
  assert.equal(localSource(local, "c3"), "127.0.2.2");
  assert.equal(localSource(local, "c4"), "127.0.2.3", "it still connects from its own address");
  assert.equal(localSource(local, "nobody"), undefined);
  assert.equal(localSource(local, undefined), undefined);
  assert.equal(localSource(cluster, "c3"), undefined, "only under rpc up");
  assert.deepEqual(localEndpoint(local, { hostname: "192.168.0.2", port: 8282 }), {
    hostname: "127.0.1.2",
    port: 8282,
  });
  assert.deepEqual(localEndpoint(local, { hostname: "10.0.0.9", port: 1 }), {
    hostname: "10.0.0.9",
    port: 1,
  });
});

Deno.test("runDirOf gives each file its own directory", () => {
  const a = runDirOf("/srv/a/init.yaml", "/base");
  const b = runDirOf("/srv/b/init.yaml", "/base");
  assert.match(a, /^\/base\/a-[0-9a-f]{16}$/);
  assert.notEqual(a, b);
  assert.equal(runDirOf("/srv/a/../a/init.yaml", "/base"), a);
});
