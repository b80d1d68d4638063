import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import {
  chooseOverload,
  coerceTexts,
  coerceWith,
  describedSignatures,
  OverloadError,
  type OverloadProblem,
  type TextArgument,
  TEXTS,
  validSignatures,
  VALUES,
} from "./overload.ts";
import { parseSignature, type Signature, stringifyJson } from "./types.ts";

const sig = (args: string[], returns: string[] = ["str"]): Signature =>
  parseSignature(args, returns);
const target = { service: "s", rpc: "r" };

/** The index `chooseOverload` picks for values, and for their texts as `rpc call` gets them. */
function both(overloads: Signature[], values: unknown[]): { values: number; texts: number } {
  const texts = values.map((value) => typeof value === "string" ? value : stringifyJson(value));
  return {
    values: chooseOverload(overloads, values, VALUES, target),
    texts: chooseOverload(overloads, texts, TEXTS, target),
  };
}

function problem(run: () => unknown): OverloadProblem {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof OverloadError, `an OverloadError, got ${error}`);
    assert.equal(error.kind, ErrorKind.InvalidArguments);
    return error.problem;
  }
  assert.fail("expected an OverloadError");
}

// ---------------------------------------------------------------------------
// Declared argument types

Deno.test("chooseOverload() takes the overload with exactly the declared types, in any spelling", () => {
  const overloads = [sig(["int"]), sig(["List[int]"]), sig(["float"])];
  for (const reader of [VALUES, TEXTS] as const) {
    const pick = (types: string[]) =>
      chooseOverload(overloads, ["1"] as never[], reader, { ...target, argumentTypes: types });
    assert.equal(pick(["int"]), 0);
    assert.equal(pick(["list[ int ]"]), 1);
    assert.equal(pick(["float"]), 2);
  }
});

Deno.test("chooseOverload() refuses declared types no overload takes, or that are no types", () => {
  const overloads = [sig(["int"]), sig(["float"])];
  assert.equal(
    problem(() => chooseOverload(overloads, [1], VALUES, { ...target, argumentTypes: ["str"] })),
    "no such types",
  );
  assert.equal(
    problem(() =>
      chooseOverload(overloads, [1], VALUES, { ...target, argumentTypes: ["integer"] })
    ),
    "bad type name",
  );
});

Deno.test("chooseOverload() declared types win over the values' own types", () => {
  const overloads = [sig(["int"]), sig(["float"])];
  assert.equal(chooseOverload(overloads, [3], VALUES, { ...target, argumentTypes: ["float"] }), 1);
  assert.equal(chooseOverload(overloads, ["3"], TEXTS, { ...target, argumentTypes: ["float"] }), 1);
});

// ---------------------------------------------------------------------------
// By the arguments: one rule for values and texts

Deno.test("chooseOverload() takes the only overload the arguments fit", () => {
  const overloads = [sig(["int", "str"]), sig(["float"]), sig(["bool", "bool"])];
  assert.deepEqual(both(overloads, [3, "ab"]), { values: 0, texts: 0 });
  assert.deepEqual(both(overloads, [2.5]), { values: 1, texts: 1 });
  assert.deepEqual(both(overloads, [3]), { values: 1, texts: 1 }, "an int fits a float");
  assert.deepEqual(both(overloads, [true, false]), { values: 2, texts: 2 });
});

Deno.test("chooseOverload() prefers the overload of the arguments' own types: int, then float, then str", () => {
  const overloads = [sig(["str"]), sig(["float"]), sig(["int"])];
  assert.equal(chooseOverload(overloads, [3], VALUES, target), 2);
  assert.equal(chooseOverload(overloads, [3.5], VALUES, target), 1);
  assert.equal(chooseOverload(overloads, ["x"], VALUES, target), 0);
  assert.equal(chooseOverload(overloads, ["3"], TEXTS, target), 2);
  assert.equal(chooseOverload(overloads, ["3.5"], TEXTS, target), 1);
  assert.equal(chooseOverload(overloads, ["x"], TEXTS, target), 0);
});

Deno.test("chooseOverload() prefers List[int] for whole numbers and List[float] otherwise", () => {
  const overloads = [sig(["List[float]"]), sig(["List[int]"]), sig(["List[str]"])];
  assert.deepEqual(both(overloads, [[1, 2]]), { values: 1, texts: 1 });
  assert.deepEqual(both(overloads, [[1, 2.5]]), { values: 0, texts: 0 });
  assert.deepEqual(both(overloads, [["a"]]), { values: 2, texts: 2 });
  assert.equal(chooseOverload(overloads, ["1,2"], TEXTS, target), 1);
  assert.equal(chooseOverload(overloads, ["1,2.5"], TEXTS, target), 0);
  assert.equal(chooseOverload(overloads, ["a,b"], TEXTS, target), 2);
});

Deno.test("chooseOverload() reads a quoted text as a str", () => {
  const overloads = [sig(["int"]), sig(["str"])];
  const quoted: TextArgument[] = [{ text: "3", quoted: true }];
  assert.equal(chooseOverload(overloads, quoted, TEXTS, target), 1);
  assert.equal(chooseOverload(overloads, ["3"], TEXTS, target), 0);
  // Quoted or not, a text that fits only an int is read as one.
  assert.equal(chooseOverload([sig(["int"])], quoted, TEXTS, target), 0);
});

Deno.test("chooseOverload() calls several fitting overloads none of which is the arguments' own ambiguous", () => {
  const crossed = [sig(["str", "int"]), sig(["int", "str"])];
  assert.equal(problem(() => chooseOverload(crossed, ["1", "1"], TEXTS, target)), "ambiguous");
  const widened = [sig(["int", "float"]), sig(["float", "float"])];
  assert.equal(problem(() => both(widened, [1, 2])), "ambiguous");
  const lists = [sig(["List[int]"]), sig(["List[str]"])];
  assert.equal(problem(() => chooseOverload(lists, [[]], VALUES, target)), "ambiguous");
  assert.equal(problem(() => chooseOverload(lists, [""], TEXTS, target)), "ambiguous");
  assert.equal(problem(() => chooseOverload(lists, ["[]"], TEXTS, target)), "ambiguous");
  // A text fits str as well: 7 is neither float nor str by its own type.
  assert.equal(
    problem(() => chooseOverload([sig(["float"]), sig(["str"])], ["7"], TEXTS, target)),
    "ambiguous",
  );
});

Deno.test("chooseOverload() takes a lone overload the arguments do not fit, for its check to name the mismatch", () => {
  assert.deepEqual(both([sig(["int", "str"])], ["x", "y"]), { values: 0, texts: 0 });
  assert.equal(chooseOverload([sig(["int"])], [1, 2], VALUES, target), 0);
});

Deno.test("chooseOverload() refuses arguments no overload of several accepts", () => {
  const overloads = [sig(["int"]), sig(["int", "int"])];
  assert.equal(problem(() => chooseOverload(overloads, ["x"], VALUES, target)), "no match");
  assert.equal(problem(() => chooseOverload(overloads, ["x"], TEXTS, target)), "no match");
  assert.equal(problem(() => chooseOverload(overloads, [1, 2, 3], VALUES, target)), "no match");
});

Deno.test("chooseOverload() checks declared return types against the chosen overload", () => {
  const overloads = [sig(["int"], ["int"]), sig(["float"], ["str"])];
  assert.equal(chooseOverload(overloads, [1], VALUES, { ...target, returnTypes: ["int"] }), 0);
  assert.equal(
    problem(() => chooseOverload(overloads, [1], VALUES, { ...target, returnTypes: ["str"] })),
    "other returns",
  );
  assert.equal(
    problem(() => chooseOverload(overloads, [1], VALUES, { ...target, returnTypes: ["List["] })),
    "bad type name",
  );
});

Deno.test("OverloadError messages name the call and list every valid signature", () => {
  const overloads = [sig(["int"]), sig(["float", "float"], ["float"])];
  const cases: [() => unknown, string][] = [
    [
      () => chooseOverload(overloads, [1], VALUES, { ...target, argumentTypes: ["str"] }),
      "No overload of s.r takes (str)",
    ],
    [
      () => chooseOverload(overloads, ["x"], VALUES, target),
      "No overload of s.r accepts these 1 arguments",
    ],
    [
      () => chooseOverload(overloads, [1], VALUES, { ...target, returnTypes: ["int"] }),
      "s.r(int) returns (str), not (int)",
    ],
  ];
  const valid = "Valid signatures: r(int) -> str; r(float, float) -> float";
  assert.equal(validSignatures("r", overloads), valid);
  for (const [run, summary] of cases) {
    assert.throws(run, (error: unknown) => {
      assert.ok(error instanceof OverloadError);
      assert.equal(error.summary, summary);
      assert.equal(error.valid, valid);
      assert.equal(error.message, `${summary}. ${valid}`);
      return true;
    });
  }
});

// ---------------------------------------------------------------------------
// Texts to values

Deno.test("coerceTexts() reads the texts as the chosen overload's values", () => {
  const overloads = [sig(["int", "List[str]"]), sig(["float"])];
  const { values, signature } = coerceTexts(overloads, ["3", "a,b"], target);
  assert.deepEqual(values, [3, ["a", "b"]]);
  assert.equal(signature, overloads[0]);
  assert.deepEqual(coerceTexts(overloads, ["12345678901234567890"], target).values, [
    12345678901234567890,
  ]);
});

Deno.test("coerceTexts() sends texts as strings when nothing is known of the RPC", () => {
  assert.deepEqual(coerceTexts([], ["1", { text: "x", quoted: true }], target), {
    values: ["1", "x"],
  });
});

Deno.test("coerceTexts() names the text a lone overload cannot read, and the signatures", () => {
  assert.throws(
    () => coerceTexts([sig(["int", "str"])], ["x", "y"], target),
    (error: unknown) =>
      error instanceof RpcError && error.kind === ErrorKind.InvalidArguments &&
      error.message ===
        'argument 1: Cannot read "x" as int. Valid signatures: r(int, str) -> str',
  );
});

Deno.test("coerceWith() checks the count before reading", () => {
  assert.throws(
    () => coerceWith(sig(["int"]).args, ["1", "2"]),
    (error: unknown) => error instanceof RpcError && error.message === "Expected 1 argument, got 2",
  );
});

Deno.test("describedSignatures() parses the overloads of one RPC from a LIST reply", () => {
  const found = describedSignatures(
    [{
      name: "s",
      rpcs: [
        { name: "r", args: ["int"], returns: ["str"] },
        { name: "r", args: ["List[int]"], returns: [], yields: ["int"] },
        { name: "q", args: [], returns: [] },
      ],
    }],
    "s",
    "r",
  );
  assert.deepEqual(found, [sig(["int"]), parseSignature(["List[int]"], [], ["int"])]);
  assert.deepEqual(describedSignatures([], "s", "r"), []);
});
