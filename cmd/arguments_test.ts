import assert from "node:assert/strict";
import { OverloadError } from "../core/types/overload.ts";
import { parseSignature } from "../core/types/types.ts";
import { coerceCommandLine, declaredTypes, typedArguments } from "./arguments.ts";
import { formatResults } from "./common.ts";
import { UsageError } from "./settings.ts";

const signature = (args: string[], returns: string[] = ["str"]) => parseSignature(args, returns);
const target = { service: "s", rpc: "r" };
const noServer = {
  list: (): never => {
    throw new Error("the server must not be asked");
  },
};

Deno.test("coerceCommandLine() turns an ambiguous call into a usage error naming --types", () => {
  assert.throws(
    () =>
      coerceCommandLine([signature(["str", "int"]), signature(["int", "str"])], ["1", "1"], target),
    (error: unknown) =>
      error instanceof UsageError &&
      error.message ===
        "Arguments of s.r fit several overloads equally: pass --types to pick one. Valid signatures: r(str, int) -> str; r(int, str) -> str",
  );
});

Deno.test("coerceCommandLine() leaves other overload errors as Invalid Arguments", () => {
  assert.throws(
    () => coerceCommandLine([signature(["int"]), signature(["int", "int"])], ["x"], target),
    (error: unknown) => error instanceof OverloadError && error.problem === "no match",
  );
});

Deno.test("typedArguments() with --types reads the texts as those types and asks no one", async () => {
  const typed = await typedArguments(
    { types: "float,List[int]", service: "s", rpc: "r", args: ["3", "1,2"] },
    undefined,
    noServer,
    {},
  );
  assert.deepEqual(typed.values, [3, [1, 2]]);
  assert.deepEqual(declaredTypes(typed.chosen), { argumentTypes: ["float", "List[int]"] });
});

Deno.test("typedArguments() refuses --types of the wrong count or spelling as usage errors", async () => {
  await assert.rejects(
    () =>
      typedArguments(
        { types: "int", service: "s", rpc: "r", args: ["1", "2"] },
        undefined,
        noServer,
        {},
      ),
    UsageError,
    "--types names 1 types but 2 arguments were given",
  );
  await assert.rejects(
    () =>
      typedArguments(
        { types: "integer", service: "s", rpc: "r", args: ["1"] },
        undefined,
        noServer,
        {},
      ),
    UsageError,
    "--types: Cannot parse type",
  );
});

Deno.test("typedArguments() asks the server, with the command's time limit, when init.yaml does not describe the RPC", async () => {
  const asked: unknown[] = [];
  const server = {
    list: (request?: unknown) => {
      asked.push(request);
      return Promise.resolve([{
        name: "s",
        rpcs: [
          { name: "r", args: ["float"], returns: ["str"] },
          { name: "r", args: ["int"], returns: ["int"] },
        ],
      }]);
    },
  };
  const limit = { timeoutMs: 1500 };
  const typed = await typedArguments(
    { service: "s", rpc: "r", args: ["7"] },
    undefined,
    server,
    limit,
  );
  assert.deepEqual(asked, [limit]);
  assert.deepEqual(typed.values, [7]);
  assert.deepEqual(declaredTypes(typed.chosen), { argumentTypes: ["int"], returnTypes: ["int"] });
  const unknown = await typedArguments(
    { service: "s", rpc: "q", args: ["7"] },
    undefined,
    server,
    limit,
  );
  assert.deepEqual(unknown, { values: ["7"] });
});

Deno.test("formatResults() prints strings as they are and other values as JSON, or one JSON object", () => {
  assert.deepEqual(formatResults(["a b", 3, [1, 2], true, 12345678901234567890n], false), [
    "a b",
    "3",
    "[1,2]",
    "true",
    "12345678901234567890",
  ]);
  assert.deepEqual(formatResults(["x", 1], true), [`{"return-values":["x",1]}`]);
});
