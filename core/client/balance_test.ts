import assert from "node:assert/strict";
import { Balancer } from "./balance.ts";

/** Randomness that returns the given numbers in turn. */
function sequence(...numbers: number[]): () => number {
  let at = 0;
  return () => {
    assert.ok(at < numbers.length, "asked for more randomness than the test gave");
    return numbers[at++];
  };
}

Deno.test("round-robin starts at a random provider and goes round, skipping the ejected", () => {
  let now = 0;
  const balancer = new Balancer(3, {
    policy: "round-robin",
    random: sequence(0.5),
    now: () => now,
  });
  assert.deepEqual([balancer.pick(), balancer.pick(), balancer.pick(), balancer.pick()], [
    1,
    2,
    0,
    1,
  ]);
  balancer.failed(2);
  assert.deepEqual([balancer.pick(), balancer.pick(), balancer.pick()], [0, 1, 0]);
  // Not tried twice in one call.
  assert.equal(
    balancer.pick(new Set([0, 1])),
    2,
    "only the ejected one is left: it is tried anyway",
  );
  assert.equal(balancer.pick(new Set([0, 1, 2])), undefined);
  now = 5_000;
  assert.equal(balancer.admitted(2), false, "time alone does not readmit");
});

Deno.test("p2c picks the cheaper of two random providers by calls in flight and latency", () => {
  // Four providers; the randomness names the pair: first floor(r*4), second floor(r*3) skipping the first.
  const balancer = new Balancer(4, {
    policy: "p2c",
    random: sequence(
      0,
      /* pair */ 0.0,
      0.0,
      /* pair */ 0.0,
      0.0,
      /* pair */ 0.9,
      0.9,
      /* pair */ 0.5,
      0.0,
    ),
  });
  balancer.answered(0, 10);
  balancer.answered(1, 100);
  // Pair (0, 1): 0 is ten times faster.
  assert.equal(balancer.pick(), 0);
  // Ten calls in flight on 0 make it dearer than 1: (10 + 1) × 10 = 110 > 100.
  const ends = Array.from({ length: 10 }, () => balancer.start(0));
  assert.equal(balancer.cost(0), 110);
  assert.equal(balancer.pick(), 1);
  for (const end of ends) end();
  assert.equal(balancer.inFlight(0), 0);
  // Pair (3, 2): neither measured, cost 0 each: the first drawn.
  assert.equal(balancer.pick(), 3);
  // Pair (2, 0): 2 unmeasured costs 0, so it is tried before the measured 0.
  assert.equal(balancer.pick(), 2);
});

Deno.test("p2c moves its latency average towards new answers", () => {
  const balancer = new Balancer(2, { policy: "p2c", random: sequence(0) });
  balancer.answered(0, 10);
  assert.equal(balancer.cost(0), 10);
  balancer.answered(0, 110);
  assert.equal(balancer.cost(0), 40); // 10 + 0.3 × 100
});

Deno.test("an ejected provider is due after its back-off, probed once, and readmitted; failures double the back-off", () => {
  let now = 0;
  const balancer = new Balancer(2, {
    policy: "round-robin",
    random: sequence(0),
    now: () => now,
    ejectMs: 100,
    maxEjectMs: 250,
  });
  assert.equal(balancer.failed(1), 100);
  assert.deepEqual(balancer.due(), []);
  assert.deepEqual([balancer.pick(), balancer.pick()], [0, 0]);
  now = 100;
  assert.deepEqual(balancer.due(), [1]);
  assert.deepEqual(balancer.due(), [], "one probe at a time");
  assert.equal(balancer.pick(), 0, "no calls before the probe answers");
  // The probe fails: ejected again, twice as long.
  assert.equal(balancer.failed(1), 200);
  now = 250;
  assert.deepEqual(balancer.due(), []);
  now = 300;
  assert.deepEqual(balancer.due(), [1]);
  assert.equal(balancer.failed(1), 250, "capped at maxEjectMs");
  now = 550;
  assert.deepEqual(balancer.due(), [1]);
  balancer.readmit(1);
  assert.equal(balancer.admitted(1), true);
  assert.deepEqual([balancer.pick(), balancer.pick()], [1, 0]);
  // An answer ends the run of failures: the next ejection is short again.
  balancer.answered(1, 5);
  assert.equal(balancer.failed(1), 100);
});
