import assert from "node:assert/strict";
import { hashSecret } from "../hash.ts";
import { authProof, proofKey } from "../wire/auth.ts";
import type { HelloReply, Message } from "../wire/message.ts";
import { ConnectionGate } from "./gate.ts";
import { Identification } from "./identify.ts";
import { resolveLimits } from "./limits.ts";
import { RefusalLog } from "./refusals.ts";
import type { KnownClient, Session } from "./session.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

const CLIENT_NONCE = "client-nonce-0123456789";

function identification(clients: KnownClient[], adminTokenHash?: string) {
  const { logger, records } = recordingLogger();
  const audit = recordingLogger();
  const stats = newStats();
  const refusals = new RefusalLog({ logger, intervalMs: 0 });
  const gate = new ConnectionGate({
    limits: resolveLimits(),
    logger,
    refusals,
    stats,
    sessions: new Set(),
  });
  const stage = new Identification({
    name: "s1",
    clients: new Map(clients.map((client) => [client.name, client])),
    ...(adminTokenHash ? { adminAuth: { adminTokenHash } } : {}),
    logger,
    audit: audit.logger,
    refusals,
    stats,
    gate,
  });
  return { stage, records, audits: audit.records, stats };
}

/** The proof of `secret` for `session`'s HELLO, as a client computes it. */
function proof(session: Session, secret: string, role: "client" | "admin" = "client"): string {
  return authProof(proofKey(secret), {
    role,
    client: session.claimed,
    server: "s1",
    serverNonce: session.nonce!,
    clientNonce: CLIENT_NONCE,
  });
}

const exception = (message: Message) =>
  message.type === "RPC-EX" ? message.value["exception-message"] : `${message.type} reply`;

Deno.test("identify: HELLO agrees on a version and gives a nonce; no common version is refused and closed", async () => {
  const { stage } = identification([]);
  const { session, peer } = sessionOverMemory();
  stage.hello(session, 1, { versions: [1, 99] });
  const [reply] = await peer.next();
  assert.equal(reply.type, "HELLO");
  const value = reply.value as HelloReply;
  assert.equal(value.server, "s1");
  assert.equal(value.nonce, session.nonce);
  assert.equal(session.client, undefined);

  const other = sessionOverMemory({ name: "old" });
  stage.hello(other.session, 1, { versions: [99] });
  const [refused] = await other.peer.next();
  assert.equal(refused.type, "RPC-EX");
  assert.match(exception(refused), /^Server speaks protocol versions .*; client offered 99$/);
  await other.peer.done;
});

Deno.test("identify: a client with a secret proves it with AUTH; until then nothing else is handled", async () => {
  const { stage } = identification([{ name: "c2", secretHash: hashSecret("s3cret") }]);
  const { session, peer } = sessionOverMemory();
  stage.hello(session, 1, { versions: [1], client: "c2" });
  const [hello] = await peer.next();
  assert.equal((hello.value as HelloReply)["auth-required"], true);
  assert.equal(session.client, undefined);
  stage.auth(session, 2, { nonce: CLIENT_NONCE, proof: proof(session, "s3cret") });
  const [, auth] = await peer.next(2);
  assert.deepEqual(auth, { type: "AUTH", serial: 2, value: { client: "c2", admin: false } });
  assert.equal(session.client, "c2");
  const call: Message = { type: "LIST", serial: 3, value: {} };
  assert.equal(stage.mayProceed(session, call), true);

  const early = sessionOverMemory({ name: "early" });
  stage.hello(early.session, 1, { versions: [1], client: "c2" });
  assert.equal(stage.mayProceed(early.session, call), false);
  const [, refused] = await early.peer.next(2);
  assert.equal(exception(refused), "Client c2 must prove its secret with AUTH before LIST");
});

Deno.test("identify: a wrong secret is refused, logged and audited as unauthorized, and the connection closed", async () => {
  const { stage, records, audits, stats } = identification([
    { name: "c2", secretHash: hashSecret("s3cret") },
  ]);
  const { session, peer } = sessionOverMemory();
  stage.hello(session, 1, { versions: [1], client: "c2" });
  stage.auth(session, 2, { nonce: CLIENT_NONCE, proof: proof(session, "guess") });
  const [, refused] = await peer.next(2);
  assert.deepEqual(refused.value, {
    "exception-type": "Unauthorized",
    "exception-message": "Wrong secret for client c2",
  });
  await peer.done;
  assert.equal(session.refused, true);
  assert.equal(stats.refused, 1);
  assert.equal(records.at(-1)?.msg, "memory:test: Wrong secret for client c2");
  assert.deepEqual(audits.map((r) => [r.event, r.msg]), [[
    "unauthorized",
    "Wrong secret for client c2",
  ]]);
});

Deno.test("identify: without HELLO, a client with a secret cannot be claimed, and a bound IP is checked", async () => {
  const { stage } = identification([
    { name: "c2", secretHash: hashSecret("s3cret") },
    { name: "c3", ip: "10.0.0.3" },
  ]);
  const first = sessionOverMemory();
  assert.equal(stage.identify(first.session, "c2", 5, false), false);
  const [secret] = await first.peer.next();
  assert.equal(exception(secret), "Client c2 must prove its secret: send HELLO, then AUTH");

  const second = sessionOverMemory({ name: "elsewhere" });
  assert.equal(stage.identify(second.session, "c3", 5, false), false);
  const [address] = await second.peer.next();
  assert.deepEqual(address.value, {
    "exception-type": "Client Not Registered",
    "exception-message": "Client c3 may not connect from memory:elsewhere",
  });
});

Deno.test("identify: a verified certificate names the client; a different claim is refused", async () => {
  const { stage } = identification([]);
  const ok = sessionOverMemory({ peerName: "c1" });
  assert.equal(stage.identify(ok.session, undefined, 1, false), true);
  assert.equal(ok.session.client, "c1");

  const claim = sessionOverMemory({ name: "claim", peerName: "c1" });
  assert.equal(stage.identify(claim.session, "c9", 1, false), false);
  const [refused] = await claim.peer.next();
  assert.equal(exception(refused), "Client certificate names c1, not c9");
});

Deno.test("identify: a client bound to an IP is known by it, and accepted only from it", () => {
  const { stage } = identification([{ name: "c3", ip: "10.0.0.3" }]);
  const from = (hostname: string) =>
    sessionOverMemory({ name: hostname, remote: { hostname, port: 40000 } }).session;
  const unnamed = from("::ffff:10.0.0.3");
  assert.equal(stage.identify(unnamed, undefined, 1, false), true);
  assert.equal(unnamed.client, "c3");
  const claimed = from("10.0.0.3");
  assert.equal(stage.identify(claimed, "c3", 1, false), true);
  assert.equal(claimed.client, "c3");
  const stranger = from("10.0.0.4");
  assert.equal(stage.identify(stranger, undefined, 1, false), true);
  assert.equal(stranger.client, undefined);
  assert.equal(stage.identify(from("10.0.0.5"), "c3", 1, false), false);
});

Deno.test("identify: AUTH proves the admin token; a wrong one is refused", async () => {
  const { stage } = identification([], hashSecret("admin-token"));
  const { session, peer } = sessionOverMemory();
  stage.hello(session, 1, { versions: [1] });
  stage.auth(session, 2, {
    nonce: CLIENT_NONCE,
    "admin-proof": proof(session, "admin-token", "admin"),
  });
  const [, auth] = await peer.next(2);
  assert.deepEqual(auth.value, { client: null, admin: true });
  assert.equal(session.admin, true);

  const wrong = sessionOverMemory({ name: "wrong" });
  stage.hello(wrong.session, 1, { versions: [1] });
  stage.auth(wrong.session, 2, {
    nonce: CLIENT_NONCE,
    "admin-proof": proof(wrong.session, "guess", "admin"),
  });
  const [, refused] = await wrong.peer.next(2);
  assert.equal(exception(refused), "Wrong or missing admin token");
  assert.equal(wrong.session.admin, false);
});

Deno.test("identify: HELLO only once and first; AUTH only after HELLO, once, with a nonce of the right size", async () => {
  const { stage } = identification([]);
  const { session, peer } = sessionOverMemory();
  stage.auth(session, 1, { nonce: CLIENT_NONCE });
  stage.hello(session, 2, { versions: [1] });
  stage.hello(session, 3, { versions: [1] });
  stage.auth(session, 4, { nonce: CLIENT_NONCE });
  stage.auth(session, 5, { nonce: CLIENT_NONCE });
  const replies = await peer.next(5);
  assert.deepEqual(replies.map((m) => [m.serial, exception(m)]), [
    [1, "AUTH must follow the server's HELLO reply"],
    [2, "HELLO reply"],
    [3, "HELLO may be sent only once, first"],
    [4, "AUTH reply"],
    [5, "AUTH may be sent only once"],
  ]);

  const short = sessionOverMemory({ name: "short" });
  stage.hello(short.session, 1, { versions: [1] });
  stage.auth(short.session, 2, { nonce: "abc" });
  const [, refused] = await short.peer.next(2);
  assert.equal(exception(refused), "AUTH needs a nonce of 16 to 128 characters");
  await short.peer.done;
});
