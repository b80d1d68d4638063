import assert from "node:assert/strict";
import { RpcError } from "../errors.ts";
import {
  parseDesiredState,
  parseInstallReport,
  parseInstallRequest,
  parseStateReport,
} from "./messages.ts";

const HASH = "a".repeat(64);

function goodProcedure(): Record<string, unknown> {
  return {
    service: "svc",
    rpc: "hi",
    args: ["int"],
    returns: ["str"],
    language: "typescript",
    hash: HASH,
    extension: ".ts",
  };
}

function goodState(): Record<string, unknown> {
  return {
    server: "s1",
    generation: 3,
    installedAt: "2026-11-27T06:00:00.000Z",
    services: [{ name: "svc", tenants: ["c1"] }],
    procedures: [goodProcedure()],
    clients: [{ name: "c1", ip: "127.0.0.1", secret: true }, { name: "c2" }],
    clientsDigest: "b".repeat(64),
  };
}

/** Asserts that `parse` refuses `value` with `kind` and exactly `message`. */
function refuses(parse: () => unknown, kind: string, message: string): void {
  assert.throws(parse, (error: unknown) => {
    assert.ok(error instanceof RpcError, `not an RpcError: ${error}`);
    assert.equal(error.kind, kind);
    assert.equal(error.message, message);
    return true;
  });
}

Deno.test("parseStateReport(): a good reply comes back as it was, with only known fields", () => {
  const reply = {
    ...goodState(),
    extra: "dropped",
    procedures: [{ ...goodProcedure(), sneaky: 1 }],
  };
  const parsed = parseStateReport(reply);
  assert.deepEqual(parsed, goodState());
});

Deno.test("parseStateReport(): malformed replies are refused naming the field and the value", () => {
  const state = "Cannot read the state reply";
  const cases: [unknown, string][] = [
    [null, "the reply must be an object, got null"],
    [[], "the reply must be an object, got []"],
    [{ ...goodState(), generation: -1 }, "generation must be a count, got -1"],
    [{ ...goodState(), generation: "3" }, 'generation must be a count, got "3"'],
    [{ ...goodState(), server: 7 }, "server must be text, got 7"],
    [{ ...goodState(), installedAt: "yesterday" }, 'installedAt must be a time, got "yesterday"'],
    [{ ...goodState(), procedures: {} }, "procedures must be a list, got {}"],
    [{ ...goodState(), services: [{}] }, "services[0].name must be text, got undefined"],
    [{ ...goodState(), clientsDigest: "xyz" }, 'clientsDigest must be a SHA-256 in hex, got "xyz"'],
    [
      { ...goodState(), clients: [{ name: "c1", secret: "yes" }] },
      'secret of client c1 must be true when given, got "yes"',
    ],
    [
      { ...goodState(), procedures: [{ ...goodProcedure(), hash: "short" }] },
      'hash of svc.hi must be a SHA-256 in hex, got "short"',
    ],
    [
      { ...goodState(), procedures: [{ ...goodProcedure(), service: "other" }] },
      'procedures[0] is of unknown service "other"',
    ],
    [
      { ...goodState(), procedures: [{ ...goodProcedure(), args: "int" }] },
      'args of svc.hi must be a list, got "int"',
    ],
    [
      { ...goodState(), procedures: [{ ...goodProcedure(), language: "cobol" }] },
      'language of svc.hi must be typescript or python, got "cobol"',
    ],
    [
      { ...goodState(), procedures: [goodProcedure(), goodProcedure()] },
      "svc.hi(int) appears twice",
    ],
  ];
  for (const [value, message] of cases) {
    refuses(() => parseStateReport(value), "Malformed Frame", `${state}: ${message}`);
  }
});

Deno.test("parseStateReport(): a type the grammar does not know is refused with its reason", () => {
  const reply = { ...goodState(), procedures: [{ ...goodProcedure(), returns: ["strng"] }] };
  assert.throws(
    () => parseStateReport(reply),
    /^RpcError: Cannot read the state reply: returns of svc\.hi\[0\]: /,
  );
});

Deno.test("parseStateReport(): a long value is cut short in the message", () => {
  const reply = { ...goodState(), server: ["x".repeat(1000)] };
  assert.throws(() => parseStateReport(reply), (error: Error) => error.message.length < 160);
});

Deno.test("parseInstallReport(): every count must be a count", () => {
  const good = {
    generation: 2,
    added: 1,
    changed: 0,
    removed: 0,
    unchanged: 3,
    received: 1,
    bytes: 40,
  };
  assert.deepEqual(parseInstallReport({ ...good, note: "dropped" }), good);
  refuses(
    () => parseInstallReport("ok"),
    "Malformed Frame",
    'Cannot read the install reply: the reply must be an object, got "ok"',
  );
  refuses(
    () => parseInstallReport({ ...good, bytes: 1.5 }),
    "Malformed Frame",
    "Cannot read the install reply: bytes must be a count, got 1.5",
  );
  const { received: _, ...missing } = good;
  refuses(
    () => parseInstallReport(missing),
    "Malformed Frame",
    "Cannot read the install reply: received must be a count, got undefined",
  );
});

Deno.test("parseInstallRequest(): reads generation, state and sources", () => {
  const source = `${HASH}.ts`;
  const request = parseInstallRequest({
    op: "install",
    generation: 3,
    state: { services: [{ name: "svc" }], procedures: [goodProcedure()], clients: [] },
    sources: { [source]: "export const hi = () => 'hi';" },
  });
  assert.equal(request.generation, 3);
  assert.equal(request.state.procedures[0].rpc, "hi");
  assert.deepEqual([...request.sources.keys()], [source]);
});

Deno.test("parseInstallRequest(): malformed requests are Invalid Arguments, naming what is wrong", () => {
  const state = { services: [{ name: "svc" }], procedures: [goodProcedure()], clients: [] };
  const cases: [Record<string, unknown>, string][] = [
    [
      { op: "install", state },
      "generation must be the generation the state was planned against (from the state op), got undefined",
    ],
    [{ op: "install", generation: 0, state: "all" }, 'state must be an object, got "all"'],
    [
      { op: "install", generation: 0, state, sources: { "../../etc/passwd": "x" } },
      'sources must be named <sha256>.<extension>, got "../../etc/passwd"',
    ],
    [
      { op: "install", generation: 0, state, sources: { [`${HASH}.sh`]: "x" } },
      `sources must be named <sha256>.<extension>, got "${HASH}.sh"`,
    ],
    [
      { op: "install", generation: 0, state, sources: { [`${HASH}.ts`]: 1 } },
      `sources["${HASH}.ts"] must be text, got 1`,
    ],
    [
      {
        op: "install",
        generation: 0,
        state: { ...state, clients: [{ name: "c1", secretHash: "plain" }] },
      },
      'secretHash of client c1 must be a SHA-256 in hex, got "plain"',
    ],
    [
      {
        op: "install",
        generation: 0,
        state: {
          ...state,
          procedures: [{ ...goodProcedure(), permissions: { read: ["/"], root: true } }],
        },
      },
      'permissions of svc.hi may name read, write, net, env, run and sys, got "root"',
    ],
    [
      {
        op: "install",
        generation: 0,
        state: { ...state, procedures: [{ ...goodProcedure(), extension: ".sh" }] },
      },
      'extension of svc.hi must be .ts, .mts, .js, .mjs or .py, got ".sh"',
    ],
  ];
  for (const [value, message] of cases) {
    refuses(() => parseInstallRequest(value), "Invalid Arguments", `Cannot install: ${message}`);
  }
});

Deno.test("parseDesiredState(): types are spelled as the server spells them", () => {
  const state = parseDesiredState({
    services: [{ name: "svc" }],
    procedures: [{ ...goodProcedure(), args: ["list[ int ]"], yields: ["int"] }],
    clients: [],
  });
  assert.deepEqual(state.procedures[0].args, ["List[int]"]);
  assert.deepEqual(state.procedures[0].yields, ["int"]);
});
