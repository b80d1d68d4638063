import assert from "node:assert/strict";
import { RpcError } from "../core/errors.ts";
import { parseType } from "../core/types/types.ts";
import {
  chooseSignature,
  coerceArguments,
  declaredTypes,
  formatResults,
  signaturesFromServer,
} from "./call.ts";
import { UsageError } from "./settings.ts";

const signature = (args: string[], returns: string[] = ["str"]) => ({
  args: args.map(parseType),
  returns: returns.map(parseType),
});

Deno.test("chooseSignature() prefers int over float over str", () => {
  const candidates = [signature(["str"]), signature(["float"]), signature(["int"])];
  assert.equal(chooseSignature(candidates, ["3"]), candidates[2]);
  assert.equal(chooseSignature(candidates, ["3.5"]), candidates[1]);
  assert.equal(chooseSignature(candidates, ["x"]), candidates[0]);
  assert.equal(chooseSignature(candidates, ["1", "2"]), undefined);
});

Deno.test("chooseSignature() refuses a tie as a usage error", () => {
  assert.throws(
    () => chooseSignature([signature(["str", "int"]), signature(["int", "str"])], ["1", "1"]),
    (error: unknown) => error instanceof UsageError && /several overloads/.test(error.message),
  );
});

Deno.test("coerceArguments() converts texts to the chosen signature", () => {
  const { values, chosen } = coerceArguments(
    [signature(["int", "List[str]"])],
    ["3", "a,b"],
    "s.r",
  );
  assert.deepEqual(values, [3, ["a", "b"]]);
  assert.deepEqual(declaredTypes(chosen), {
    argumentTypes: ["int", "List[str]"],
    returnTypes: ["str"],
  });
});

Deno.test("coerceArguments() sends texts as strings when nothing is known of the RPC", () => {
  assert.deepEqual(coerceArguments([], ["1", "x"], "s.r"), { values: ["1", "x"] });
  assert.deepEqual(declaredTypes(undefined), {});
});

Deno.test("coerceArguments() fails with Invalid Arguments naming the signatures", () => {
  assert.throws(
    () => coerceArguments([signature(["int"]), signature(["int", "int"])], ["x"], "s.r"),
    (error: unknown) =>
      error instanceof RpcError && error.kind === "Invalid Arguments" &&
      error.message === `Arguments ["x"] fit no signature of s.r: (int), (int, int)`,
  );
});

Deno.test("signaturesFromServer() parses the overloads of one RPC", () => {
  const found = signaturesFromServer(
    [{
      name: "s",
      rpcs: [
        { name: "r", args: ["int"], returns: ["str"] },
        { name: "r", args: ["List[int]"], returns: [] },
        { name: "q", args: [], returns: [] },
      ],
    }],
    "s",
    "r",
  );
  assert.deepEqual(found, [signature(["int"]), signature(["List[int]"], [])]);
  assert.deepEqual(signaturesFromServer([], "s", "r"), []);
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
