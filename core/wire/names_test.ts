import assert from "node:assert/strict";
import { clip, MAX_NAME_LENGTH, nameProblem, quote } from "./names.ts";

Deno.test("nameProblem() accepts the names init.yaml uses", () => {
  for (const name of ["service1", "rpc1", "c1", "s-2", "a.b", "alice@example.com", "v1:x", "_"]) {
    assert.equal(nameProblem(name), undefined, name);
  }
  assert.equal(nameProblem("n".repeat(MAX_NAME_LENGTH)), undefined);
});

Deno.test("nameProblem() refuses empty, long and odd names, saying why", () => {
  assert.equal(nameProblem(""), "name is empty");
  assert.equal(
    nameProblem("n".repeat(MAX_NAME_LENGTH + 1)),
    `name of ${MAX_NAME_LENGTH + 1} characters exceeds limit ${MAX_NAME_LENGTH}`,
  );
  for (const name of ["a b", "a\nb", "a\u001b[31m", "caf\u00e9", "a/b", "a\u0000"]) {
    assert.match(nameProblem(name)!, /^name ".*" may hold only letters, digits and _ \. - @ :$/);
  }
  // The quoted name shows control characters escaped: no line break reaches a log.
  assert.equal(
    nameProblem("c1\nINFO forged"),
    'name "c1\\nINFO forged" may hold only letters, digits and _ . - @ :',
  );
});

Deno.test("clip() keeps short text and cuts long text, saying how long it was", () => {
  assert.equal(clip("short"), "short");
  assert.equal(clip("x".repeat(10), 4), "xxxx… (10 characters)");
  assert.equal(clip("x".repeat(100_000)).length < 600, true);
});

Deno.test("quote() is a JSON string of at most 40 characters of the text", () => {
  assert.equal(quote("a\tb"), '"a\\tb"');
  assert.equal(quote("y".repeat(50)), JSON.stringify(`${"y".repeat(40)}…`));
});
