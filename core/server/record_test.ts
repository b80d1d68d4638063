import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import type { CallRequest } from "../wire/message.ts";
import { CallRecorder } from "./record.ts";
import { RefusalLog } from "./refusals.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

function recording() {
  const log = recordingLogger();
  const audit = recordingLogger();
  const stats = newStats();
  const called: [string, string, string][] = [];
  const recorder = new CallRecorder({
    logger: log.logger,
    audit: audit.logger,
    refusals: new RefusalLog({ logger: log.logger, audit: audit.logger }),
    stats,
  });
  recorder.observer = { called: (service, rpc, outcome) => called.push([service, rpc, outcome]) };
  return { recorder, log: log.records, audit: audit.records, stats, called };
}

const request: CallRequest = { service: "conf", rpc: "add", arguments: [1, 2] };

Deno.test("record: a served call is counted, logged with its signature and time, audited, observed", () => {
  const { recorder, log, audit, stats, called } = recording();
  const { session } = sessionOverMemory();
  session.client = "c1";
  const started = performance.now();
  recorder.served(session, request, "int, int", started);
  recorder.ended(session, request, "int, int", "ok", started, true);
  assert.equal(stats.callsServed, 1);
  assert.equal(log.length, 1);
  assert.equal(log[0].event, "call");
  assert.match(log[0].msg, /^c1@memory:test conf\.add\(int, int\) ok \d+\.\d\d ms$/);
  const { time: _time, ms, ...record } = audit[0];
  assert.equal(typeof ms, "number");
  assert.deepEqual(record, {
    level: "info",
    event: "call",
    msg: "ok",
    client: "c1",
    remote: "memory:test",
    service: "conf",
    rpc: "add",
    signature: "int, int",
    outcome: "ok",
  });
  assert.deepEqual(called, [["conf", "add", "ok"]]);
});

Deno.test("record: a failed call is logged with its kind and message", () => {
  const { recorder, log, stats } = recording();
  const { session } = sessionOverMemory();
  const error = new RpcError(ErrorKind.ExecutionException, "boom");
  assert.equal(recorder.failed(session, request, undefined, error), true);
  assert.equal(stats.callsFailed, 1);
  assert.deepEqual([log[0].level, log[0].event, log[0].msg], [
    "info",
    "exception",
    "memory:test conf.add Execution Exception: boom",
  ]);
});

Deno.test("record: a peer refused again and again as no tenant is summarised, not logged each time", () => {
  const { recorder, log, audit, called } = recording();
  const { session } = sessionOverMemory();
  const error = new RpcError(ErrorKind.ClientNotRegistered, "Client (anonymous) is not registered");
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    const recorded = recorder.failed(session, request, "int, int", error);
    assert.equal(recorded, i === 0);
    recorder.ended(session, request, "int, int", error.kind, started, recorded);
  }
  assert.deepEqual(log.map((r) => [r.level, r.event]), [["warn", "unauthorized"]]);
  assert.equal(audit.length, 1);
  assert.equal(called.length, 5); // metrics count every call
});
