import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { checkSources, type Cluster, loadCluster, parseCluster, servicesOf } from "./cluster.ts";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import { formatSignature } from "../types/types.ts";

const EXAMPLE_URL = new URL("../../tests/fixtures/course/init.example.yaml", import.meta.url);
const REPO_INIT_URL = new URL("../../init.yaml", import.meta.url);
const FILE = "/cluster/init.yaml";

/** Fails a test that takes longer than `ms` instead of letting it hang. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses `text`, expecting a ConfigError; returns its problems. */
function problemsOf(text: string, file = FILE): ConfigProblem[] {
  try {
    parseCluster(text, file);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.ok(error instanceof SyntaxError, "ConfigError is a SyntaxError");
    assert.ok(error.problems.length > 0);
    return [...error.problems];
  }
  assert.fail("expected a ConfigError, the text parsed");
}

/** `line:column: message` for each problem, in order. */
function positions(problems: readonly ConfigProblem[]): string[] {
  return problems.map((problem) => `${problem.line}:${problem.column}: ${problem.message}`);
}

/** 1-based line and column of the `nth` occurrence of `needle` in `text`. */
function locate(text: string, needle: string, nth = 1): { line: number; column: number } {
  let index = -1;
  for (let i = 0; i < nth; i++) {
    index = text.indexOf(needle, index + 1);
    assert.ok(index >= 0, `${JSON.stringify(needle)} occurs ${nth} times`);
  }
  const before = text.slice(0, index).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function signatures(cluster: Cluster, service: string): string[] {
  return cluster.services.get(service)!.rpcs.map((rpc) => formatSignature(rpc.name, rpc.signature));
}

/** A small valid cluster; tests break one thing at a time. */
const VALID = `network:
  servers:
    - s1:
        ip: 127.0.0.1
        port: 8181
  clients:
    - c1:
        ip: 127.0.0.1
        port: 6000
service:
  - service1:
      providers: [s1]
      tenants: [c1]
      rpcs: [rpc1]
rpc:
  - rpc1:
      args: [int, str]
      returns: [str]
      src: rpc1.ts
`;

// ---------------------------------------------------------------------------
// Accepted files

Deno.test("parseCluster() accepts the course's init.example.yaml exactly as it is", async () => {
  const path = fromFileUrl(EXAMPLE_URL);
  const text = await within(5000, Deno.readTextFile(path));
  const cluster = parseCluster(text, path);
  assert.equal(cluster.file, path);
  assert.deepEqual(
    [...cluster.servers.values()].map(({ name, host, port }) => ({ name, host, port })),
    [
      { name: "s1", host: "192.168.0.1", port: 8181 },
      { name: "s2", host: "192.168.0.2", port: 8282 },
    ],
  );
  assert.deepEqual(
    [...cluster.clients.values()].map(({ name, ip, port }) => ({ name, ip, port })),
    [
      { name: "c1", ip: "192.168.1.1", port: 6000 },
      { name: "c2", ip: "192.168.1.2", port: 6001 },
      { name: "c3", ip: "192.168.1.3", port: 6002 },
    ],
  );
  const service1 = cluster.services.get("service1")!;
  assert.deepEqual(service1.providers, ["s1", "s2"]);
  assert.deepEqual(service1.tenants, ["c1", "c2", "c3"]);
  assert.deepEqual(signatures(cluster, "service1"), [
    "rpc1(int, str) -> str",
    "rpc2(List[int], List[str]) -> str",
  ]);
  const service2 = cluster.services.get("service2")!;
  assert.deepEqual(service2.providers, ["s2"]);
  assert.deepEqual(service2.tenants, ["c2", "c3"]);
  assert.deepEqual(signatures(cluster, "service2"), ["rpc3(float, List[float]) -> str"]);
  const rpc1 = service1.rpcs[0];
  assert.equal(rpc1.source, "path/to/rpc1.py");
  assert.equal(rpc1.path, fromFileUrl(new URL("path/to/rpc1.py", EXAMPLE_URL)));
  assert.equal(rpc1.language, "python");
  assert.equal(rpc1.idempotent, false);
  assert.deepEqual(rpc1.position, locate(text, "rpc1:"));
  const src = locate(text, "path/to/rpc1.py");
  assert.deepEqual(rpc1.sourcePosition, src);
});

Deno.test("parseCluster() accepts the repository's init.yaml with its add overloads", async () => {
  const path = fromFileUrl(REPO_INIT_URL);
  const text = await within(5000, Deno.readTextFile(path));
  const cluster = parseCluster(text, path);
  assert.deepEqual([...cluster.servers.keys()], ["s1", "s2"]);
  assert.deepEqual([...cluster.clients.keys()], ["c1", "c2", "c3"]);
  assert.equal(cluster.clients.get("c3")!.ip, "127.0.0.3");
  const service1 = cluster.services.get("service1")!;
  assert.deepEqual(service1.providers, ["s1", "s2"]);
  const adds = service1.rpcs.filter((rpc) => rpc.name === "add");
  assert.deepEqual(adds.map((rpc) => formatSignature(rpc.name, rpc.signature)), [
    "add(int, int) -> int",
    "add(float, float) -> float",
    "add(List[int]) -> int",
  ]);
  assert.ok(
    service1.rpcs.some((rpc) =>
      formatSignature(rpc.name, rpc.signature) === "divmod(int, int) -> (int, int)"
    ),
  );
  assert.equal(service1.rpcs.find((rpc) => rpc.name === "rpc1")!.doc, "Repeat a string n times.");
  assert.ok(signatures(cluster, "service1").includes("countdown(int) yields int -> str"));
  assert.deepEqual(signatures(cluster, "service2"), [
    "rpc3(float, List[float]) -> str",
    "stats(List[float]) -> (float, float)",
  ]);
  for (const rpc of service1.rpcs) assert.equal(rpc.language, "typescript");
  assert.equal(cluster.services.get("service2")!.rpcs[1].language, "python");
});

Deno.test("loadCluster() reads the repository's init.yaml and every src it names exists", async () => {
  const path = fromFileUrl(REPO_INIT_URL);
  const cluster = await within(5000, loadCluster(path));
  assert.deepEqual(await within(5000, checkSources(cluster)), []);
});

Deno.test("loadCluster() reports an unreadable file as a problem at 1:1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = join(dir, "missing.yaml");
    await assert.rejects(() => within(5000, loadCluster(missing)), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 1);
      assert.equal(error.problems[0].file, missing);
      assert.equal(error.problems[0].line, 1);
      assert.equal(error.problems[0].column, 1);
      assert.match(error.problems[0].message, /^Cannot read file: /);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCluster() accepts maps wherever the course writes lists of single-key maps", () => {
  const cluster = parseCluster(
    `network:
  servers:
    s1: {ip: 127.0.0.1, port: 8181}
  clients:
    c1: {ip: 127.0.0.1, port: 6000}
    c2:
service:
  service1:
    providers: [s1]
    tenants: [c1, c2]
    rpcs: [rpc1]
rpc:
  rpc1:
    args: [int]
    returns: []
    src: rpc1.ts
`,
    FILE,
  );
  assert.deepEqual([...cluster.clients.keys()], ["c1", "c2"]);
  assert.equal(cluster.clients.get("c2")!.ip, undefined);
  assert.deepEqual(signatures(cluster, "service1"), ["rpc1(int) -> ()"]);
});

Deno.test("parseCluster() reads the map form of rpc, service name to its RPC overloads", () => {
  const cluster = parseCluster(
    `network:
  servers:
    - s1: {ip: 127.0.0.1, port: 8181}
  clients:
    - c1: {ip: 127.0.0.1, port: 6000}
service:
  - service1:
      providers: [s1]
  - service2:
      providers: [s1]
      tenants: [c1]
      rpcs: [add]
rpc:
  service1:
    - add: {args: [int, int], returns: [int], src: add.ts}
    - add: {args: [float, float], returns: [float], src: add.ts}
    - add:
        args:
          - list[int]
        returns: [int]
        src: add.ts
    - echo: {args: [str], returns: [str], src: echo.py, doc: Echo it., timeout: 1.5, idempotent: true}
  service2:
    - add: {args: [str, str], returns: [str], src: concat.ts}
`,
    FILE,
  );
  assert.deepEqual(signatures(cluster, "service1"), [
    "add(int, int) -> int",
    "add(float, float) -> float",
    "add(List[int]) -> int",
    "echo(str) -> str",
  ]);
  assert.deepEqual(signatures(cluster, "service2"), ["add(str, str) -> str"]);
  const service1 = cluster.services.get("service1")!;
  assert.equal(service1.tenants, undefined, "no tenants: any client may call");
  const echo = service1.rpcs.find((rpc) => rpc.name === "echo")!;
  assert.equal(echo.language, "python");
  assert.equal(echo.doc, "Echo it.");
  assert.equal(echo.timeoutMs, 1500);
  assert.equal(echo.idempotent, true);
  assert.equal(echo.path, "/cluster/echo.py");
});

Deno.test("parseCluster() resolves src against the directory of the file", () => {
  const cluster = parseCluster(
    VALID.replace("src: rpc1.ts", "src: ../lib/rpc1.ts"),
    "/a/b/init.yaml",
  );
  const rpc = cluster.services.get("service1")!.rpcs[0];
  assert.equal(rpc.source, "../lib/rpc1.ts");
  assert.equal(rpc.path, "/a/lib/rpc1.ts");
});

Deno.test("servicesOf() gives the services a server provides", () => {
  const cluster = parseCluster(VALID, FILE);
  assert.deepEqual(servicesOf(cluster, "s1").map((service) => service.name), ["service1"]);
  assert.deepEqual(servicesOf(cluster, "s9"), []);
});

// ---------------------------------------------------------------------------
// Problems with file:line:column

Deno.test("parseCluster() reports a YAML syntax error at the offending token", () => {
  const text = VALID.replace("returns: [str]", "returns: [str]]");
  const problems = problemsOf(text);
  assert.equal(problems[0].file, FILE);
  assert.equal(`${problems[0].line}:${problems[0].column}`, "18:21");
  assert.deepEqual(locate(text, "]]", 1), { line: 18, column: 20 });
  assert.match(problems[0].message, /flow-seq-end/);
});

Deno.test("parseCluster() reports a nested mapping on one line at its value", () => {
  const problems = problemsOf(VALID.replace("src: rpc1.ts", "src: rpc1.ts: x"));
  assert.deepEqual(positions(problems), [
    "19:12: Nested mappings are not allowed in compact mappings",
  ]);
});

Deno.test("parseCluster() reports misaligned keys on the misaligned line", () => {
  const problems = problemsOf(VALID.replace("        port: 8181", "       port: 8181"));
  assert.deepEqual(positions(problems), ["5:1: All mapping items must start at the same column"]);
});

Deno.test("parseCluster() reports an unclosed quote as a YAML error, not a crash", () => {
  const problems = problemsOf(VALID.replace("    - c1:\n", '    - c1: {ip: "127.0.0.1\n'));
  assert.match(problems[0].message, /quote/i);
  for (const problem of problems) {
    assert.equal(problem.file, FILE);
    assert.ok(problem.line >= 7, `line ${problem.line} is at or after the bad line`);
  }
});

Deno.test("parseCluster() reports a duplicate key at the second key", () => {
  const text = "network:\n  servers: []\nnetwork:\n  servers: []\n";
  const problems = problemsOf(text);
  assert.equal(problems.length, 1);
  assert.equal(problems[0].line, 3);
  assert.equal(problems[0].column, 1);
  assert.match(problems[0].message, /unique/i);
});

Deno.test("parseCluster() reports tab indentation as a YAML error", () => {
  const problems = problemsOf("network:\n\tservers: []\n");
  assert.equal(problems[0].line, 2);
  assert.match(problems[0].message, /tab/i);
});

Deno.test("ConfigError's message lists each problem as file:line:column: message", () => {
  try {
    parseCluster(VALID.replace("providers: [s1]", "providers: [s9]"), FILE);
    assert.fail("expected a ConfigError");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.message, '/cluster/init.yaml:12:19: service service1: unknown server "s9"');
  }
});

Deno.test("parseCluster() reports an unknown provider server at the name", () => {
  const text = VALID.replace("providers: [s1]", "providers: [s1, s9]");
  assert.deepEqual(positions(problemsOf(text)), [
    `12:${locate(text, "s9").column}: service service1: unknown server "s9"`,
  ]);
});

Deno.test("parseCluster() reports an unknown provider in a block list at its item", () => {
  const text = VALID.replace("providers: [s1]", "providers:\n        - s1\n        - s2");
  assert.deepEqual(positions(problemsOf(text)), ['14:11: service service1: unknown server "s2"']);
});

Deno.test("parseCluster() reports client, service and rpc names the protocol cannot carry", () => {
  const text = VALID.replace("- c1:", '- "c 1":').replace("- service1:", `- ${"s".repeat(129)}:`)
    .replace("- rpc1:", '- "rpc\\n1":');
  assert.deepEqual(positions(problemsOf(text)).filter((line) => /name/.test(line)), [
    `7:7: client name "c 1" may hold only letters, digits and _ . - @ :`,
    `16:5: rpc name "rpc\\n1" may hold only letters, digits and _ . - @ :`,
    `11:5: service name of 129 characters exceeds limit 128`,
  ]);
});

Deno.test("parseCluster() reports an unknown tenant client at the name", () => {
  const text = VALID.replace("tenants: [c1]", "tenants: [c7, c1]");
  assert.deepEqual(positions(problemsOf(text)), ['13:17: service service1: unknown client "c7"']);
});

Deno.test("parseCluster() reports an rpc a service lists but nobody declares", () => {
  const text = VALID.replace("rpcs: [rpc1]", "rpcs: [rpc1, rpc9]");
  assert.deepEqual(positions(problemsOf(text)), [
    "14:20: service service1 lists rpc rpc9, which the rpc section does not declare",
  ]);
});

Deno.test("parseCluster() reports a bad type name once, at the type name", () => {
  const text = VALID.replace("args: [int, str]", "args: [int, string]");
  assert.deepEqual(positions(problemsOf(text)), [
    '17:19: rpc rpc1: args: Cannot parse type "string": expected one of int, float, str, bool or List[...]',
  ]);
});

Deno.test("parseCluster() reports an unclosed bracket in a return type", () => {
  const text = VALID.replace("returns: [str]", 'returns: ["List[str"]');
  const problems = problemsOf(text);
  assert.equal(problems.length, 1);
  assert.equal(problems[0].line, 18);
  assert.equal(problems[0].column, 17);
  assert.match(
    problems[0].message,
    /rpc rpc1: returns: Cannot parse type "List\[str": missing "\]"/,
  );
});

Deno.test("parseCluster() reports a type nested past the depth limit", () => {
  const deep = "List[".repeat(9) + "int" + "]".repeat(9);
  const problems = problemsOf(VALID.replace("args: [int, str]", `args: ["${deep}", str]`));
  assert.equal(problems.length, 1);
  assert.match(problems[0].message, /nesting 9 exceeds limit 8/);
});

Deno.test("parseCluster() reports a duplicate overload at the second declaration", () => {
  const text = VALID + `  - rpc1:
      args: [int, str]
      returns: [int]
      src: other.ts
`;
  assert.deepEqual(positions(problemsOf(text)), [
    "20:5: rpc rpc1 of service service1 has two overloads taking (int, str); the other is at line 16",
  ]);
});

Deno.test("parseCluster() treats list[...] and List[...] as the same overload", () => {
  const text = VALID.replace("args: [int, str]", 'args: ["List[int]"]') + `  - rpc1:
      args: [" list[ int ] "]
      returns: [str]
      src: other.ts
`;
  const problems = problemsOf(text);
  assert.equal(problems.length, 1);
  assert.equal(problems[0].line, 20);
  assert.match(problems[0].message, /two overloads taking \(List\[int\]\)/);
});

Deno.test("parseCluster() reports a duplicate overload in the map form of rpc", () => {
  const text = VALID.replace(
    /rpc:\n[\s\S]*$/,
    `rpc:
  service1:
    - rpc1: {args: [int], returns: [int], src: a.ts}
    - rpc1: {args: [int], returns: [str], src: b.ts}
`,
  );
  assert.deepEqual(positions(problemsOf(text)), [
    "18:7: rpc rpc1 of service service1 has two overloads taking (int); the other is at line 17",
  ]);
});

Deno.test("parseCluster() reports a missing src at the rpc name, once", () => {
  const text = VALID.replace("      src: rpc1.ts\n", "");
  assert.deepEqual(positions(problemsOf(text)), [
    "16:5: rpc rpc1 needs src, the path of its source file",
  ]);
});

Deno.test("parseCluster() reports an empty src at the src value", () => {
  const text = VALID.replace("src: rpc1.ts", 'src: ""');
  assert.deepEqual(positions(problemsOf(text)), [
    "19:12: rpc rpc1 needs src, the path of its source file",
  ]);
});

Deno.test("parseCluster() reports a src in an unsupported language at the src", () => {
  const text = VALID.replace("src: rpc1.ts", "src: rpc1.rb");
  assert.deepEqual(positions(problemsOf(text)), [
    "19:12: rpc rpc1: src must be a .ts, .js or .py file",
  ]);
});

Deno.test("parseCluster() reports an unknown rpc field at the field name", () => {
  const text = VALID.replace("      src: rpc1.ts\n", "      src: rpc1.ts\n      sauce: hot\n");
  assert.deepEqual(positions(problemsOf(text)), [
    '20:7: rpc rpc1: unknown field "sauce" (expected args, returns, yields, src, doc, timeout, idempotent, trusted, permissions)',
  ]);
});

Deno.test("parseCluster() reports an unknown top-level section at its key", () => {
  const text = VALID + "extra: 1\n";
  assert.deepEqual(positions(problemsOf(text)), [
    '20:1: unknown section "extra" (expected network, service or rpc)',
  ]);
});

Deno.test("parseCluster() reports a bad timeout and idempotent flag at their values", () => {
  const text = VALID.replace(
    "      src: rpc1.ts\n",
    "      src: rpc1.ts\n      timeout: -1\n      idempotent: maybe\n",
  );
  assert.deepEqual(positions(problemsOf(text)), [
    "20:16: rpc rpc1: timeout must be a positive number of seconds",
    "21:19: rpc rpc1: idempotent must be true or false",
  ]);
});

Deno.test("parseCluster() reports bad server entries", () => {
  const text = VALID.replace("port: 8181", "port: 70000");
  assert.deepEqual(positions(problemsOf(text)), [
    "5:15: server s1 needs a port from 1 to 65535",
    '12:19: service service1: unknown server "s1"',
  ]);
  const noIp = VALID.replace("        ip: 127.0.0.1\n        port: 8181", "        port: 8181");
  assert.equal(positions(problemsOf(noIp))[0], "3:7: server s1 needs an ip");
});

Deno.test("parseCluster() lets servers omit ip and port when the file names a broker", () => {
  const brokered = VALID.replace(
    "  servers:\n    - s1:\n        ip: 127.0.0.1\n        port: 8181\n",
    "  broker: nats://127.0.0.1:4222\n  servers:\n    - s1: {}\n    - s2:\n",
  );
  const cluster = parseCluster(brokered, "init.yaml");
  assert.equal(cluster.broker, "nats://127.0.0.1:4222");
  assert.deepEqual(
    [...cluster.servers.values()].map(({ name, host, port }) => ({ name, host, port })),
    [{ name: "s1", host: "", port: 0 }, { name: "s2", host: "", port: 0 }],
  );
  // Without a broker, an address is still needed.
  const bare = VALID.replace(
    "    - s1:\n        ip: 127.0.0.1\n        port: 8181\n",
    "    - s1: {}\n",
  );
  assert.match(problemsOf(bare)[0].message, /server s1 needs an ip/);
  // A broker URL is checked, and may not carry a password (the file is shared).
  for (
    const [broker, problem] of [
      ["http://x:80", /network.broker must be a URL like nats:\/\/host:4222/],
      ["nats://u:secret@127.0.0.1:4222", /must not hold a password/],
    ] as const
  ) {
    const text = VALID.replace("  servers:\n", `  broker: ${broker}\n  servers:\n`);
    assert.match(problemsOf(text)[0].message, problem);
  }
});

Deno.test("parseCluster() reports a server or client declared twice", () => {
  const text = VALID.replace(
    "  clients:\n",
    "    - s1:\n        ip: 127.0.0.2\n        port: 8182\n  clients:\n",
  );
  assert.deepEqual(positions(problemsOf(text)), ["6:7: server s1 is declared twice"]);
});

Deno.test("parseCluster() reports missing sections", () => {
  assert.deepEqual(positions(problemsOf("rpc: []\n")), [
    "1:1: missing section network",
    "1:1: missing section service",
  ]);
  assert.match(positions(problemsOf("- 1\n"))[0], /^1:1: init\.yaml must be a map/);
});

Deno.test("parseCluster() reports an rpc declared for an unknown service", () => {
  const text = VALID + `  # (map form below replaces the list above)
`;
  const mapForm = text.replace(
    /rpc:\n[\s\S]*$/,
    `rpc:
  service1:
    - rpc1: {args: [int], returns: [int], src: a.ts}
  service7:
    - rpc2: {args: [int], returns: [int], src: b.ts}
`,
  );
  assert.deepEqual(positions(problemsOf(mapForm)), [
    '19:7: rpc rpc2 is declared for unknown service "service7"',
  ]);
});

Deno.test("parseCluster() reports an rpc declared for a service that does not list it", () => {
  const text = VALID.replace(
    /rpc:\n[\s\S]*$/,
    `rpc:
  service1:
    - rpc1: {args: [int], returns: [int], src: a.ts}
    - rpc2: {args: [int], returns: [int], src: b.ts}
`,
  );
  assert.deepEqual(positions(problemsOf(text)), [
    "18:7: rpc rpc2 is declared for service service1 but not listed in its rpcs",
  ]);
});

Deno.test("parseCluster() reports several problems at once, each with its position", () => {
  const text = `network:
  servers:
    - s1: {ip: 127.0.0.1, port: 8181}
  clients:
    - c1: {ip: 127.0.0.1, port: 6000}
service:
  - service1:
      providers: [s1, s9]
      tenants: [c1, c7]
      rpcs: [rpc1, rpc2, rpc9]
rpc:
  - rpc1:
      args: [int, integer]
      returns: [str]
      src: a.ts
  - rpc2:
      args: [int]
      returns: [str]
      color: red
      src: b.ts
  - rpc1:
      args: [int, str]
      returns: [str]
      src: b.ts
  - rpc1:
      args: [int, str]
      returns: [str]
      src: c.ts
`;
  const problems = problemsOf(text, "/etc/rpc/init.yaml");
  for (const problem of problems) assert.equal(problem.file, "/etc/rpc/init.yaml");
  assert.deepEqual(
    positions(problems).sort(),
    [
      '13:19: rpc rpc1: args: Cannot parse type "integer": expected one of int, float, str, bool or List[...]',
      '19:7: rpc rpc2: unknown field "color" (expected args, returns, yields, src, doc, timeout, idempotent, trusted, permissions)',
      "25:5: rpc rpc1 of service service1 has two overloads taking (int, str); the other is at line 21",
      '8:23: service service1: unknown server "s9"',
      '9:21: service service1: unknown client "c7"',
      "10:26: service service1 lists rpc rpc9, which the rpc section does not declare",
    ].sort(),
  );
});

// ---------------------------------------------------------------------------
// checkSources

Deno.test("checkSources() reports each unreadable src at the src's line and column", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "a.ts"), "export default () => 1;\n");
    await Deno.mkdir(join(dir, "folder.ts"));
    const text = `network:
  servers:
    - s1: {ip: 127.0.0.1, port: 8181}
    - s2: {ip: 127.0.0.1, port: 8282}
service:
  - service1:
      providers: [s1]
      rpcs: [ok, gone, folder]
  - service2:
      providers: [s2]
      rpcs: [elsewhere]
rpc:
  - ok:
      args: []
      returns: []
      src: a.ts
  - gone:
      args: []
      returns: []
      src: missing/gone.py
  - folder:
      args: []
      returns: []
      src: folder.ts
  - elsewhere:
      args: []
      returns: []
      src:   nowhere.ts
`;
    const file = join(dir, "init.yaml");
    const cluster = parseCluster(text, file);
    const problems = await within(5000, checkSources(cluster));
    assert.deepEqual(positions(problems), [
      "20:12: rpc gone: cannot read src missing/gone.py: no such file",
      "24:12: rpc folder: cannot read src folder.ts: not a file",
      "28:14: rpc elsewhere: cannot read src nowhere.ts: no such file",
    ]);
    for (const problem of problems) assert.equal(problem.file, file);
    // Only the services of the named servers are checked.
    const onlyS2 = await within(5000, checkSources(cluster, ["s2"]));
    assert.deepEqual(positions(onlyS2), [
      "28:14: rpc elsewhere: cannot read src nowhere.ts: no such file",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkSources() reports a src shared by overloads only once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = VALID.replace("rpcs: [rpc1]", "rpcs: [add]").replace(
      /rpc:\n[\s\S]*$/,
      `rpc:
  - add: {args: [int, int], returns: [int], src: add.ts}
  - add: {args: [float, float], returns: [float], src: add.ts}
`,
    );
    const problems = await within(5000, checkSources(parseCluster(text, join(dir, "init.yaml"))));
    assert.deepEqual(positions(problems), [
      "16:50: rpc add: cannot read src add.ts: no such file",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCluster() reads trusted and permissions, and rejects unknown permissions", () => {
  const text = [
    "network:",
    "  servers:",
    "    - s1: {ip: 127.0.0.1, port: 8181}",
    "service:",
    "  - svc:",
    "      providers: [s1]",
    "      rpcs: [fast, reader]",
    "rpc:",
    "  - fast:",
    "      src: fast.ts",
    "      trusted: true",
    "  - reader:",
    "      src: reader.ts",
    "      permissions:",
    "        read: [/srv/data]",
    "        net: [api.example.com:443]",
    "        sys: true",
    "",
  ].join("\n");
  const cluster = parseCluster(text, "init.yaml");
  const [fast, reader] = cluster.services.get("svc")!.rpcs;
  assert.equal(fast.trusted, true);
  assert.equal(reader.trusted, undefined);
  assert.deepEqual(reader.permissions, {
    read: ["/srv/data"],
    net: ["api.example.com:443"],
    sys: true,
  });
  assert.throws(
    () => parseCluster(text.replace("sys: true", "ffi: [x]"), "init.yaml"),
    /init\.yaml:17:9: rpc reader: unknown permission "ffi"/,
  );
});
