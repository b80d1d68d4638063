import assert from "node:assert/strict";
import { listenEvents } from "./listen_events.ts";
import { RefusalLog } from "./refusals.ts";
import { newStats, recordingLogger } from "./test_support.ts";

function events() {
  const log = recordingLogger();
  const audit = recordingLogger();
  const stats = newStats();
  const refusals = new RefusalLog({ logger: log.logger, audit: audit.logger });
  const events = listenEvents({ logger: log.logger, audit: audit.logger, refusals, stats });
  return { events, log: log.records, audit: audit.records, stats, refusals };
}

const peer = { hostname: "::ffff:127.0.0.9", port: 4000 };

Deno.test("listen events: a rejected TLS connection is counted, logged and audited; repeats are summarised", () => {
  const { events: e, log, audit, stats, refusals } = events();
  e.onRejected!(peer, "no client certificate");
  e.onRejected!({ ...peer, port: 4001 }, "no client certificate");
  assert.equal(stats.refused, 2);
  assert.deepEqual(log.map((r) => [r.level, r.event, r.msg]), [[
    "warn",
    "unauthorized",
    "TLS connection from [::ffff:127.0.0.9]:4000 refused: no client certificate",
  ]]);
  assert.equal(audit.length, 1);
  refusals.close(); // writes the summary of the one counted
  assert.match(
    log.at(-1)!.msg,
    /^127\.0\.0\.9: refused 1 more times in the last .* \(TLS: no client certificate\)$/,
  );
});

Deno.test("listen events: accept failures are logged at the 1st, 2nd, 4th, 8th failure in a row, then recovery", () => {
  const { events: e, log } = events();
  const error = new Error("Too many open files (os error 24)");
  for (let failures = 1; failures <= 8; failures++) e.onAcceptError!(error, failures, 100);
  e.onAcceptRecovered!(8, 1234.4);
  assert.deepEqual(log.map((r) => [r.level, r.msg]), [
    ...[1, 2, 4, 8].map((n) => [
      "error",
      `Cannot accept connections: Too many open files (os error 24) (${n} failures in a row); retrying in 100 ms`,
    ]),
    ["warn", "accepting connections again after 8 failed accepts over 1234 ms"],
  ]);
});
