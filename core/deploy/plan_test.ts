import assert from "node:assert/strict";
import { sha256Hex } from "../hash.ts";
import {
  blobName,
  clientsDigest,
  describeProcedure,
  type DesiredState,
  planInstall,
  planIsEmpty,
  procedureKey,
  sourcesToSend,
} from "./plan.ts";
import type { ProcedureRecord } from "./store.ts";

const A = "export function a() { return 'a'; }\n";
const B = "export function b() { return 'b'; }\n";

function procedure(rpc: string, source: string, extra: Partial<ProcedureRecord> = {}) {
  return {
    service: "svc",
    rpc,
    args: ["int"],
    returns: ["str"],
    language: "typescript" as const,
    hash: sha256Hex(source),
    extension: ".ts",
    ...extra,
  };
}

function state(procedures: ProcedureRecord[], extra: Partial<DesiredState> = {}): DesiredState {
  return { services: [{ name: "svc" }], procedures, clients: [], ...extra };
}

const empty = { services: [], procedures: [], clients: [] };

Deno.test("planInstall(): against an empty server everything is added and every source sent", () => {
  const desired = state([procedure("a", A), procedure("b", B)]);
  const plan = planInstall(empty, desired);
  assert.deepEqual(plan.added.map(procedureKey), ["svc.a(int)", "svc.b(int)"]);
  assert.deepEqual(plan.missing, [
    blobName(desired.procedures[0]),
    blobName(desired.procedures[1]),
  ]);
  assert.deepEqual(plan.services, ["svc"]);
  assert.equal(plan.clientsChanged, false);
  assert.equal(planIsEmpty(plan), false);
});

Deno.test("planInstall(): a source the server holds is not sent again, even under another RPC", () => {
  const held = state([procedure("a", A)]);
  // b has the same text as a: same SHA-256, same blob.
  const desired = state([procedure("a", A), procedure("b", A)]);
  const plan = planInstall(held, desired);
  assert.deepEqual(plan.added.map(procedureKey), ["svc.b(int)"]);
  assert.deepEqual(plan.unchanged.map(procedureKey), ["svc.a(int)"]);
  assert.deepEqual(plan.missing, []);
});

Deno.test("planInstall(): one source shared by two new RPCs is sent once", () => {
  const plan = planInstall(empty, state([procedure("a", A), procedure("b", A)]));
  assert.equal(plan.missing.length, 1);
});

Deno.test("planInstall(): a changed source, return type or setting is a change; a dropped RPC a removal", () => {
  const held = state([
    procedure("a", A),
    procedure("b", B),
    procedure("c", B),
    procedure("gone", B),
  ]);
  const desired = state([
    procedure("a", B), // new text
    procedure("b", B, { returns: ["int"] }),
    procedure("c", B, { timeoutMs: 500 }),
  ]);
  const plan = planInstall(held, desired);
  assert.deepEqual(plan.changed.map(({ to }) => procedureKey(to)), [
    "svc.a(int)",
    "svc.b(int)",
    "svc.c(int)",
  ]);
  assert.equal(plan.changed[0].from.hash, sha256Hex(A));
  assert.deepEqual(plan.removed.map(procedureKey), ["svc.gone(int)"]);
  // B is held already (b, c and gone used it): nothing to send.
  assert.deepEqual(plan.missing, []);
});

Deno.test("planInstall(): an overload is its own procedure, keyed by argument types", () => {
  const held = state([procedure("a", A)]);
  const plan = planInstall(held, state([procedure("a", A), procedure("a", A, { args: ["str"] })]));
  assert.deepEqual(plan.added.map(procedureKey), ["svc.a(str)"]);
});

Deno.test("planInstall(): services whose tenants change, appear or go are named", () => {
  const held = state([], {
    services: [{ name: "svc" }, { name: "old" }, { name: "same", tenants: ["c1"] }],
  });
  const desired = state([], {
    services: [{ name: "svc", tenants: ["c1"] }, { name: "same", tenants: ["c1"] }, {
      name: "new",
    }],
  });
  assert.deepEqual(planInstall(held, desired).services.sort(), ["new", "old", "svc"]);
});

Deno.test("planInstall(): the client table is compared by digest, in any order", () => {
  const clients = [{ name: "c2", ip: "127.0.0.2" }, { name: "c1", secretHash: "f".repeat(64) }];
  const desired = state([], { clients });
  const reversed = [...clients].reverse();
  assert.equal(planInstall(state([], { clients: reversed }), desired).clientsChanged, false);
  // A state reply carries only the digest (it leaves the secret hashes out).
  const reported = { ...state([]), clientsDigest: clientsDigest(reversed) };
  assert.equal(planIsEmpty(planInstall(reported, desired)), true);
  const otherSecret = [{ ...clients[0] }, { name: "c1", secretHash: "e".repeat(64) }];
  const changed = { ...state([]), clientsDigest: clientsDigest(otherSecret) };
  assert.equal(planInstall(changed, desired).clientsChanged, true);
});

Deno.test("planIsEmpty(): the same state plans to nothing", () => {
  const desired = state([procedure("a", A, { doc: "Says a.", permissions: { net: ["x"] } })]);
  assert.equal(planIsEmpty(planInstall(desired, structuredClone(desired))), true);
});

Deno.test("sourcesToSend(): the text of each missing blob; a missing text is an error", () => {
  const desired = state([procedure("a", A), procedure("b", B)]);
  const plan = planInstall(state([procedure("a", A)]), desired);
  const sources = new Map([[blobName(desired.procedures[0]), A], [
    blobName(desired.procedures[1]),
    B,
  ]]);
  assert.deepEqual(sourcesToSend(plan, sources), { [blobName(desired.procedures[1])]: B });
  assert.throws(() => sourcesToSend(plan, new Map()), /No source text for [0-9a-f]{64}\.ts/);
});

Deno.test("describeProcedure() shows yields and several returns", () => {
  assert.equal(
    describeProcedure(procedure("a", A, { returns: ["int", "str"], yields: ["int"] })),
    "svc.a(int) yields int -> (int, str)",
  );
});
