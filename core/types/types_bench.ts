/**
 * The type system: checking scalars and a 1,000-element `List[int]` against
 * their types, and parsing type names (first time and again).
 *
 *     deno bench core/types/types_bench.ts
 *
 * @module
 */

import { checkValue, checkValues, parseType } from "./types.ts";

const int = parseType("int");
const str = parseType("str");
const float = parseType("float");
const listOfInt = parseType("List[int]");
const ints = Array.from({ length: 1000 }, (_, i) => i * 7);
const nested = parseType("List[List[str]]");
const strings = Array.from({ length: 100 }, () => ["a", "b", "c"]);

Deno.bench("checkValue: int", { group: "check", baseline: true }, () => {
  checkValue(int, 42);
});
Deno.bench("checkValue: str", { group: "check" }, () => {
  checkValue(str, "hello");
});
Deno.bench("checkValue: float", { group: "check" }, () => {
  checkValue(float, 2.5);
});
Deno.bench("checkValues: (int, str)", { group: "check" }, () => {
  checkValues([int, str], [3, "ab"], "argument");
});
Deno.bench("checkValue: List[int] of 1,000", { group: "list" }, () => {
  checkValue(listOfInt, ints);
});
Deno.bench("checkValue: List[List[str]] of 100 x 3", { group: "list" }, () => {
  checkValue(nested, strings);
});

Deno.bench("parseType: int (a name seen before)", { group: "parse", baseline: true }, () => {
  parseType("int");
});
Deno.bench("parseType: List[List[float]] (seen before)", { group: "parse" }, () => {
  parseType("List[List[float]]");
});
let fresh = 0;
Deno.bench("parseType: a spelling never seen (full parse)", { group: "parse" }, () => {
  // Spaces make every text new, so the parse cache cannot answer.
  parseType(`List[${" ".repeat(fresh++ % 50)}int]`);
});
