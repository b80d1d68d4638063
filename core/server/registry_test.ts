import assert from "node:assert/strict";
import { ErrorKind, ErrorReason, RpcError } from "../errors.ts";
import type { CallRequest } from "../wire/message.ts";
import {
  languageOf,
  type Procedure,
  type ProcedureSpec,
  Registry,
  returnValues,
  type Runner,
  type ServiceSpec,
} from "./registry.ts";
import { parseSignature } from "../types/types.ts";

/** A call a fake procedure received. */
interface Call {
  service: string;
  rpc: string;
  args: unknown[];
}

/** A runner whose procedures record their calls and return `result(spec, args)`. */
class FakeRunner implements Runner {
  readonly loaded: ProcedureSpec[] = [];
  readonly calls: Call[] = [];
  closed = false;

  constructor(
    readonly result: (spec: ProcedureSpec, args: unknown[]) => unknown = (spec) => spec.rpc,
  ) {}

  load(spec: ProcedureSpec): Promise<Procedure> {
    this.loaded.push(spec);
    const procedure: Procedure = {
      spec,
      invoke: (args: unknown[], _signal: AbortSignal) => {
        this.calls.push({ service: spec.service, rpc: spec.rpc, args });
        return Promise.resolve(this.result(spec, args));
      },
    };
    return Promise.resolve(procedure);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

function procedure(
  service: string,
  rpc: string,
  args: string[],
  returns: string[],
  extra: Partial<ProcedureSpec> = {},
): ProcedureSpec {
  return {
    service,
    rpc,
    signature: parseSignature(args, returns),
    language: "typescript",
    path: `/srv/${service}/${rpc}.ts`,
    hash: "0".repeat(64),
    ...extra,
  };
}

/** service1 (tenants c1, c2): add overloads, rpc1; service2 (tenant c2): rpc3; open: echo. */
function specs(): ServiceSpec[] {
  return [
    {
      name: "service1",
      tenants: ["c1", "c2"],
      procedures: [
        procedure("service1", "add", ["int", "int"], ["int"]),
        procedure("service1", "add", ["float", "float"], ["float"]),
        procedure("service1", "add", ["List[int]"], ["int"]),
        procedure("service1", "rpc1", ["int", "str"], ["str"], { doc: "Repeat a string" }),
        procedure("service1", "mix", ["float", "int"], ["str"]),
        procedure("service1", "mix", ["int", "float"], ["str"]),
      ],
    },
    {
      name: "service2",
      tenants: ["c2"],
      procedures: [procedure("service2", "rpc3", ["float", "List[float]"], ["str"])],
    },
    {
      name: "open",
      procedures: [procedure("open", "echo", ["str"], ["str"])],
    },
  ];
}

async function load(
  runner = new FakeRunner(),
): Promise<{ registry: Registry; runner: FakeRunner }> {
  const registry = await Registry.load(specs(), { typescript: runner });
  return { registry, runner };
}

function call(service: string, rpc: string, args: unknown[], extra: Partial<CallRequest> = {}) {
  return { service, rpc, arguments: args, ...extra } satisfies CallRequest;
}

/** Runs `fn`, expecting an RpcError of `kind`; returns it. */
function expectRpcError(fn: () => unknown, kind: string): RpcError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RpcError, `expected RpcError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    return error;
  }
  assert.fail(`expected ${kind}, nothing was thrown`);
}

const ALL_ADD_SIGNATURES =
  "Valid signatures: add(int, int) -> int; add(float, float) -> float; add(List[int]) -> int";

Deno.test("languageOf() picks the language from the source extension", () => {
  assert.equal(languageOf("a/b.ts"), "typescript");
  assert.equal(languageOf("b.mjs"), "typescript");
  assert.equal(languageOf("b.js"), "typescript");
  assert.equal(languageOf("path/to/rpc1.py"), "python");
  assert.equal(languageOf("rpc1.rb"), undefined);
  assert.equal(languageOf("ts"), undefined);
});

Deno.test("Registry.load() loads every procedure with its language's runner", async () => {
  const { registry, runner } = await load();
  assert.equal(runner.loaded.length, 8);
  assert.equal([...registry.procedures()].length, 8);
  assert.deepEqual(registry.specs.map((spec) => spec.name), ["service1", "service2", "open"]);
});

Deno.test("Registry.load() fails when no runner serves a procedure's language", async () => {
  const python = procedure("s", "r", [], [], { language: "python", path: "/x/r.py" });
  await assert.rejects(
    () => Registry.load([{ name: "s", procedures: [python] }], { typescript: new FakeRunner() }),
    /No runner for python procedures \(\/x\/r\.py\)/,
  );
});

Deno.test("Registry.load() refuses two overloads with the same argument types", async () => {
  const twice = [
    procedure("s", "add", ["int", "int"], ["int"]),
    procedure("s", "add", ["int", "int"], ["float"]),
  ];
  await assert.rejects(
    () => Registry.load([{ name: "s", procedures: twice }], { typescript: new FakeRunner() }),
    /Two overloads of s\.add take \(int, int\)/,
  );
});

Deno.test("Registry.load() fails as a whole when a procedure fails to load", async () => {
  const runner: Runner = {
    load: () => Promise.reject(new Error("syntax error in add.ts")),
    close: () => Promise.resolve(),
  };
  await assert.rejects(() => Registry.load(specs(), { typescript: runner }), /syntax error/);
});

Deno.test("Registry.load() gives up on a procedure whose load never settles, naming it", async () => {
  const late = Promise.withResolvers<Procedure>();
  const fake = new FakeRunner();
  const runner: Runner = {
    // service1.rpc1 hangs, as a module whose top-level await never settles does.
    load: (spec) => spec.rpc === "rpc1" ? late.promise : fake.load(spec),
    close: () => Promise.resolve(),
  };
  await assert.rejects(
    () => Registry.load(specs(), { typescript: runner }, { loadTimeoutMs: 50 }),
    (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.reason, ErrorReason.LoadTimeout);
      assert.match(
        error.message,
        /^service1\.rpc1\(int, str\) did not finish loading within 50 ms \(the server's load limit\)/,
      );
      assert.doesNotMatch(error.message, /--/, "core names no flags");
      return true;
    },
  );
  // The same runner still loads the rest; the abandoned load failing later is not unhandled.
  const others = specs().slice(1);
  const registry = await Registry.load(others, { typescript: runner }, { loadTimeoutMs: 50 });
  assert.equal([...registry.procedures()].length, 2);
  late.reject(new Error("failed long after it was given up"));
  await new Promise((resolve) => setTimeout(resolve, 10));
});

Deno.test("Registry.empty() provides no services", () => {
  const registry = Registry.empty();
  assert.deepEqual(registry.describe("c1"), []);
  expectRpcError(() => registry.resolve("c1", call("service1", "add", [])), "Service Not Found");
});

Deno.test("resolve() picks the overload named by argument-types exactly", async () => {
  const { registry } = await load();
  const ints = registry.resolve(
    "c1",
    call("service1", "add", [1, 2], { "argument-types": ["int", "int"] }),
  );
  assert.equal(ints.overload.key, "int,int");
  assert.deepEqual(ints.args, [1, 2]);
  const floats = registry.resolve(
    "c1",
    call("service1", "add", [1, 2], { "argument-types": ["float", "float"] }),
  );
  assert.equal(floats.overload.key, "float,float", "declared types win over inference");
  assert.deepEqual(floats.overload.signature, parseSignature(["float", "float"], ["float"]));
});

Deno.test("resolve() reads argument-types in any spelling of the type grammar", async () => {
  const { registry } = await load();
  const resolved = registry.resolve(
    "c1",
    call("service1", "add", [[1, 2]], { "argument-types": [" list[ int ] "] }),
  );
  assert.equal(resolved.overload.key, "List[int]");
});

Deno.test("resolve() refuses argument-types no overload takes, listing every signature", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () =>
      registry.resolve(
        "c1",
        call("service1", "add", ["a", "b"], { "argument-types": ["str", "str"] }),
      ),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /No overload of service1\.add takes \(str, str\)/);
  assert.ok(error.message.endsWith(ALL_ADD_SIGNATURES), error.message);
});

Deno.test("resolve() refuses a bad type name in argument-types as Invalid Arguments", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("c1", call("service1", "add", [1], { "argument-types": ["integer"] })),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /Bad argument-types: Cannot parse type "integer"/);
  assert.ok(error.message.endsWith(ALL_ADD_SIGNATURES), error.message);
});

Deno.test("resolve() refuses values that do not fit the declared argument-types", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () =>
      registry.resolve(
        "c1",
        call("service1", "add", [1.5, 2], { "argument-types": ["int", "int"] }),
      ),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /^argument 1: expected int, got the number 1\.5\. /);
  assert.ok(error.message.endsWith(ALL_ADD_SIGNATURES), error.message);
});

Deno.test("resolve() infers int, float and List[int] overloads of add from the values", async () => {
  const { registry } = await load();
  assert.equal(registry.resolve("c1", call("service1", "add", [1, 2])).overload.key, "int,int");
  assert.equal(
    registry.resolve("c1", call("service1", "add", [1.5, 2])).overload.key,
    "float,float",
  );
  assert.equal(
    registry.resolve("c1", call("service1", "add", [1.5, 2.5])).overload.key,
    "float,float",
  );
  assert.equal(
    registry.resolve("c1", call("service1", "add", [[1, 2, 3]])).overload.key,
    "List[int]",
  );
  assert.equal(
    registry.resolve("c1", call("service1", "add", [[]])).overload.key,
    "List[int]",
    "an empty list fits the one list overload",
  );
  const big = registry.resolve("c1", call("service1", "add", [12345678901234567890n, 1]));
  assert.equal(big.overload.key, "int,int");
  assert.deepEqual(big.args, [12345678901234567890n, 1]);
});

Deno.test("resolve() refuses values no overload accepts, listing every signature", async () => {
  const { registry } = await load();
  for (const args of [["a", "b"], [1, 2, 3], [], [[1.5]], [true, false]]) {
    const error = expectRpcError(
      () => registry.resolve("c1", call("service1", "add", args)),
      ErrorKind.InvalidArguments,
    );
    assert.match(error.message, /^No overload of service1\.add accepts these \d+ arguments\. /);
    assert.ok(error.message.endsWith(ALL_ADD_SIGNATURES), error.message);
  }
});

Deno.test("resolve() calls an ambiguous choice between overloads an error", async () => {
  const { registry } = await load();
  // (1, 2) fits both mix(float, int) and mix(int, float); inference says (int, int).
  const error = expectRpcError(
    () => registry.resolve("c1", call("service1", "mix", [1, 2])),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /Call of service1\.mix is ambiguous without argument-types/);
  assert.match(error.message, /mix\(float, int\) -> str; mix\(int, float\) -> str$/);
  // Declaring the types settles it.
  const settled = registry.resolve(
    "c1",
    call("service1", "mix", [1, 2], { "argument-types": ["int", "float"] }),
  );
  assert.equal(settled.overload.key, "int,float");
  // So do values that fit only one.
  assert.equal(registry.resolve("c1", call("service1", "mix", [1.5, 2])).overload.key, "float,int");
});

Deno.test("resolve() with a single overload reports the bad argument and the signature", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("c1", call("service1", "rpc1", ["3", "x"])),
    ErrorKind.InvalidArguments,
  );
  assert.equal(
    error.message,
    'argument 1: expected int, got the string "3". Valid signatures: rpc1(int, str) -> str',
  );
  const arity = expectRpcError(
    () => registry.resolve("c1", call("service1", "rpc1", [3])),
    ErrorKind.InvalidArguments,
  );
  assert.equal(
    arity.message,
    "Expected 2 arguments, got 1. Valid signatures: rpc1(int, str) -> str",
  );
});

Deno.test("resolve() names the bad element of a list argument", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("c2", call("service2", "rpc3", [1.5, [1, "x"]])),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /^argument 2: expected float at \[1\], got the string "x"\./);
});

Deno.test("resolve() accepts return-types that match the chosen overload", async () => {
  const { registry } = await load();
  const resolved = registry.resolve(
    "c1",
    call("service1", "add", [1, 2], { "return-types": ["int"] }),
  );
  assert.equal(resolved.overload.key, "int,int");
});

Deno.test("resolve() refuses return-types that differ from the chosen overload's", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("c1", call("service1", "add", [1, 2], { "return-types": ["float"] })),
    ErrorKind.InvalidArguments,
  );
  assert.match(error.message, /^service1\.add\(int, int\) returns \(int\), not \(float\)\. /);
  assert.ok(error.message.endsWith(ALL_ADD_SIGNATURES), error.message);
  expectRpcError(
    () =>
      registry.resolve("c1", call("service1", "add", [1, 2], { "return-types": ["int", "int"] })),
    ErrorKind.InvalidArguments,
  );
  expectRpcError(
    () => registry.resolve("c1", call("service1", "add", [1, 2], { "return-types": [] })),
    ErrorKind.InvalidArguments,
  );
  const bad = expectRpcError(
    () => registry.resolve("c1", call("service1", "add", [1, 2], { "return-types": ["List["] })),
    ErrorKind.InvalidArguments,
  );
  assert.match(bad.message, /Bad return-types/);
});

Deno.test("resolve() checks the service first: Service Not Found", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("nobody", call("service9", "nothing", ["bad"])),
    ErrorKind.ServiceNotFound,
  );
  assert.match(error.message, /service9/);
});

Deno.test("resolve() checks the tenant before the RPC, even for unknown RPC names", async () => {
  const { registry } = await load();
  const known = expectRpcError(
    () => registry.resolve("c3", call("service1", "add", [1, 2])),
    ErrorKind.ClientNotRegistered,
  );
  assert.match(known.message, /Client c3 is not registered for service service1/);
  // A non-tenant must not learn which RPC names exist.
  const unknown = expectRpcError(
    () => registry.resolve("c3", call("service1", "rpc9", [])),
    ErrorKind.ClientNotRegistered,
  );
  assert.equal(unknown.message.replace("rpc9", ""), unknown.message, "does not echo the RPC name");
  expectRpcError(
    () => registry.resolve(undefined, call("service1", "rpc9", [])),
    ErrorKind.ClientNotRegistered,
  );
  expectRpcError(
    () => registry.resolve("c1", call("service2", "rpc3", [1.5, []])),
    ErrorKind.ClientNotRegistered,
  );
});

Deno.test("resolve() names an anonymous non-tenant as (anonymous)", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve(undefined, call("service1", "add", [1, 2])),
    ErrorKind.ClientNotRegistered,
  );
  assert.match(error.message, /\(anonymous\)/);
});

Deno.test("resolve() checks the RPC after the tenant: RPC Not Found", async () => {
  const { registry } = await load();
  const error = expectRpcError(
    () => registry.resolve("c1", call("service1", "rpc9", ["bad"])),
    ErrorKind.RpcNotFound,
  );
  assert.equal(error.message, "Service service1 has no RPC rpc9");
  // RPC names of another service are not found here.
  expectRpcError(
    () => registry.resolve("c2", call("service1", "rpc3", [1.5, []])),
    ErrorKind.RpcNotFound,
  );
});

Deno.test("resolve() checks the arguments last: Invalid Arguments", async () => {
  const { registry } = await load();
  expectRpcError(
    () => registry.resolve("c1", call("service1", "rpc1", [])),
    ErrorKind.InvalidArguments,
  );
});

Deno.test("resolve() lets any client, named or not, call a service without tenants", async () => {
  const { registry } = await load();
  for (const client of ["c1", "c3", "stranger", undefined]) {
    const resolved = registry.resolve(client, call("open", "echo", ["hi"]));
    assert.deepEqual(resolved.args, ["hi"]);
  }
  expectRpcError(
    () => registry.resolve("stranger", call("open", "nope", [])),
    ErrorKind.RpcNotFound,
  );
});

Deno.test("resolve() returns canonical arguments with exact big integers", async () => {
  const { registry } = await load();
  const resolved = registry.resolve("c1", call("service1", "add", [[1n, 12345678901234567890n]]));
  assert.deepEqual(resolved.args, [[1, 12345678901234567890n]]);
});

Deno.test("a resolved overload invokes its loaded procedure with the checked arguments", async () => {
  const { registry, runner } = await load(new FakeRunner((_spec, args) => `got ${args.join("+")}`));
  const { overload, args } = registry.resolve("c1", call("service1", "add", [1.5, 2]));
  const result = await overload.procedure.invoke(args, new AbortController().signal);
  assert.equal(result, "got 1.5+2");
  assert.deepEqual(runner.calls, [{ service: "service1", rpc: "add", args: [1.5, 2] }]);
  assert.deepEqual(
    overload.procedure.spec.signature,
    parseSignature(["float", "float"], ["float"]),
  );
});

Deno.test("describe() shows only the services the client is a tenant of, plus open ones", async () => {
  const { registry } = await load();
  const names = (client: string | undefined) => registry.describe(client).map((s) => s.name);
  assert.deepEqual(names("c1"), ["service1", "open"]);
  assert.deepEqual(names("c2"), ["service1", "service2", "open"]);
  assert.deepEqual(names("c3"), ["open"]);
  assert.deepEqual(names(undefined), ["open"]);
});

Deno.test("describe() lists every overload with canonical type names and docs", async () => {
  const { registry } = await load();
  const service1 = registry.describe("c1").find((service) => service.name === "service1")!;
  assert.deepEqual(service1.rpcs, [
    { name: "add", args: ["int", "int"], returns: ["int"] },
    { name: "add", args: ["float", "float"], returns: ["float"] },
    { name: "add", args: ["List[int]"], returns: ["int"] },
    { name: "rpc1", args: ["int", "str"], returns: ["str"], doc: "Repeat a string" },
    { name: "mix", args: ["float", "int"], returns: ["str"] },
    { name: "mix", args: ["int", "float"], returns: ["str"] },
  ]);
});

// ---------------------------------------------------------------------------
// returnValues

Deno.test("returnValues() gives no values for a procedure without return types", () => {
  const spec = procedure("s", "ping", [], []);
  assert.deepEqual(returnValues(spec, undefined), []);
  assert.deepEqual(returnValues(spec, null), []);
});

Deno.test("returnValues() wraps the single return value", () => {
  assert.deepEqual(returnValues(procedure("s", "r", [], ["str"]), "x"), ["x"]);
  assert.deepEqual(returnValues(procedure("s", "r", [], ["List[int]"]), [1, 2]), [[1, 2]]);
  assert.deepEqual(returnValues(procedure("s", "r", [], ["int"]), 12345678901234567890n), [
    12345678901234567890n,
  ]);
});

Deno.test("returnValues() takes a list of the declared length for several return types", () => {
  const spec = procedure("s", "divmod", ["int", "int"], ["int", "int"]);
  assert.deepEqual(returnValues(spec, [3, 1]), [3, 1]);
});

Deno.test("returnValues() refuses a wrong count of values with Execution Exception", () => {
  const spec = procedure("s", "divmod", ["int", "int"], ["int", "int"]);
  for (const result of [3, [3], [3, 1, 0], "31", undefined, { 0: 3, 1: 1 }]) {
    const error = expectRpcError(() => returnValues(spec, result), ErrorKind.ExecutionException);
    assert.equal(error.message, "divmod must return a list of 2 values (int, int)");
  }
});

Deno.test("returnValues() refuses a value of the wrong type with Execution Exception", () => {
  const one = expectRpcError(
    () => returnValues(procedure("s", "r", [], ["str"]), 5),
    ErrorKind.ExecutionException,
  );
  assert.equal(
    one.message,
    "r returned a value that does not match its signature: return value 1: expected str, got the integer 5",
  );
  const two = expectRpcError(
    () => returnValues(procedure("s", "divmod", [], ["int", "int"]), [3, 1.5]),
    ErrorKind.ExecutionException,
  );
  assert.match(two.message, /return value 2: expected int, got the number 1\.5/);
  expectRpcError(
    () => returnValues(procedure("s", "r", [], ["int"]), undefined),
    ErrorKind.ExecutionException,
  );
  expectRpcError(
    () => returnValues(procedure("s", "r", [], ["List[int]"]), [1, "2"]),
    ErrorKind.ExecutionException,
  );
});
