/**
 * The server's logs under abuse and under logrotate, with real `rpc server`
 * processes: a flood of refused connections, calls and admin requests writes
 * a bounded log and audit log whose summary lines account for every refusal;
 * `--log-max-bytes` and `--log-keep` keep N files of bounded size; SIGHUP
 * reopens `--log-file` and `--audit-log` after they were moved away.
 *
 * Run: `deno test --allow-all tests/logs_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import {
  describeResult,
  frame,
  RawConnection,
  rpc,
  type ServerProcess,
  startServer,
  waitFor,
} from "./helpers.ts";

type LogRecord = Record<string, unknown> & { event: string; msg: string };

async function readRecords(path: string): Promise<LogRecord[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

/** The sum of `count` over the summary records of `reason`. */
function summarised(records: LogRecord[], reason: string): number {
  return records
    .filter((record) => record.event === "refused-repeatedly" && record.reason === reason)
    .reduce((sum, record) => sum + Number(record.count), 0);
}

async function withTempDir<T>(use: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-logs-" });
  try {
    return await use(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Starts s1 of the repository's init.yaml (c3 must come from 127.0.0.3; service1 has tenants). */
function server(...extraArgs: string[]): Promise<ServerProcess> {
  return startServer({ name: "s1", extraArgs });
}

Deno.test("a flood of refusals writes a bounded log whose summaries count every one", async () => {
  await withTempDir(async (dir) => {
    const logFile = join(dir, "server.jsonl");
    const auditLog = join(dir, "audit.jsonl");
    const s1 = await server(
      "--log-file",
      logFile,
      "--audit-log",
      auditLog,
      "--refusal-summary",
      "1s",
    );
    const SPOOFED = 400; // connections claiming c3, who must come from 127.0.0.3
    const NOT_TENANT = 5_000; // anonymous calls to service1, which has tenants
    const ADMIN = 300; // admin requests without the admin token
    try {
      // Four at a time, each connection refused at its HELLO and closed by the server.
      let next = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (next < SPOOFED) {
          next++;
          await using raw = await RawConnection.open(s1.port);
          await raw.send({ type: "HELLO", serial: 1, value: { versions: [1], client: "c3" } });
          const [reply] = await raw.rest(10_000);
          assert.equal(reply?.value["exception-type"], "Client Not Registered");
        }
      }));
      {
        // One connection pipelining calls it may not make, then admin requests without a token.
        await using raw = await RawConnection.open(s1.port);
        await raw.send({ type: "HELLO", serial: 0, value: { versions: [1] } });
        assert.equal((await raw.next())?.type, "HELLO");
        const calls = Array.from({ length: NOT_TENANT }, (_, i) =>
          frame(JSON.stringify({
            type: "RPC-REQ",
            serial: i + 1,
            value: { service: "service1", rpc: "echo", arguments: ["x"] },
          })));
        const admin = Array.from({ length: ADMIN }, (_, i) =>
          frame(JSON.stringify({
            type: "ADMIN",
            serial: NOT_TENANT + i + 1,
            value: { op: "stats", token: "guess" },
          })));
        const all = [...calls, ...admin];
        const bytes = new Uint8Array(all.reduce((sum, part) => sum + part.length, 0));
        all.reduce((offset, part) => (bytes.set(part, offset), offset + part.length), 0);
        await raw.write(bytes);
        const kinds = new Map<string, number>();
        for (let i = 0; i < all.length; i++) {
          const kind = (await raw.next(20_000))?.value["exception-type"];
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        }
        assert.deepEqual(
          Object.fromEntries(kinds),
          { "Client Not Registered": NOT_TENANT, "Unauthorized": ADMIN },
        );
      }
      const connections = SPOOFED + 1;

      // The server keeps serving everyone else, and still logs their calls one by one.
      const ok = await rpc(["call", "--as", "c1", s1.address, "service1", "echo", "still here"]);
      assert.equal(ok.stdout, "still here\n", describeResult(ok));

      // Every refusal is either written or counted in a summary; wait for the last summaries.
      const [log, audit] = await waitFor(
        async () => {
          const log = await readRecords(logFile);
          const audit = await readRecords(auditLog);
          const written = (records: LogRecord[], test: (record: LogRecord) => boolean) =>
            records.filter((record) => record.event !== "refused-repeatedly" && test(record))
              .length;
          const spoofed = (record: LogRecord) =>
            record.event === "unauthorized" && record.reason === "address";
          const notTenant = (record: LogRecord) =>
            record.service === "service1" &&
            (record.kind ?? record.outcome) === "Client Not Registered";
          const admin = (record: LogRecord) =>
            (record.event === "unauthorized" && record.op === "stats") ||
            record.event === "admin-refused";
          const attempts = log.filter((record) => record.event === "connect");
          const counted = attempts.reduce((sum, record) => sum + Number(record.count ?? 1), 0);
          const done = [log, audit].every((records) =>
            written(records, spoofed) + summarised(records, "address c3") === SPOOFED &&
            written(records, notTenant) + summarised(records, "not a tenant of service1") ===
              NOT_TENANT &&
            written(records, admin) + summarised(records, "admin stats without the token") === ADMIN
          ) && counted >= connections + 1; // the flood's, and rpc call's
          return done && [log, audit];
        },
        "summaries that account for every refusal",
        30_000,
      );

      for (const records of [log, audit]) {
        // The first of each kind is there in full; the rest are counted in summaries.
        assert.ok(records.some((r) =>
          r.event === "unauthorized" && r.reason === "address"
        ));
        assert.ok(summarised(records, "not a tenant of service1") > 0);
      }
      assert.ok(
        log.some((record) =>
          /^127\.0\.0\.1: refused [\d,]+ more times in the last [\d.]+ s \(not a tenant of service1\)$/
            .test(record.msg)
        ),
      );
      assert.ok(
        log.some((record) =>
          /^127\.0\.0\.1: [\d,]+ more connection attempts in the last [\d.]+ s, not logged one by one/
            .test(record.msg)
        ),
      );
      assert.ok(
        log.some((record) => record.event === "call" && record.client === "c1"),
        "the good call is logged",
      );
      // Bounded: a handful of lines per second of flood, against one or more per refusal.
      const refusals = SPOOFED + NOT_TENANT + ADMIN;
      assert.ok(log.length < 400, `${log.length} log records for ${refusals} refusals`);
      assert.ok(audit.length < 200, `${audit.length} audit records for ${refusals} refusals`);
      const size = (await Deno.stat(logFile)).size;
      assert.ok(size < 128 * 1024, `log of ${size} bytes`);
    } finally {
      await s1.stop();
    }
  });
});

Deno.test("--log-max-bytes and --log-keep: N rotated files of bounded size, whole lines", async () => {
  await withTempDir(async (dir) => {
    const logFile = join(dir, "server.jsonl");
    const auditLog = join(dir, "audit.jsonl");
    const s1 = await server(
      "--log-file",
      logFile,
      "--audit-log",
      auditLog,
      "--log-max-bytes",
      "4096",
      "--log-keep",
      "3",
    );
    let stopped = false;
    try {
      const client = await connect(s1.address, { client: "c1", connectTimeoutMs: 10_000 });
      try {
        await Promise.all(
          Array.from({ length: 400 }, (_, i) => client.call("service1", "echo", [`call ${i}`])),
        );
      } finally {
        client.close();
      }
      assert.equal((await s1.stop()).code, 0);
      stopped = true;
      const names: string[] = [];
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
      for (const base of ["server.jsonl", "audit.jsonl"]) {
        assert.deepEqual(
          names.filter((name) => name.startsWith(base)).sort(),
          [base, `${base}.1`, `${base}.2`, `${base}.3`],
        );
        for (const name of [base, `${base}.1`, `${base}.2`, `${base}.3`]) {
          const path = join(dir, name);
          const { size } = await Deno.stat(path);
          assert.ok(size > 0 && size <= 4096, `${name}: ${size} bytes`);
          const records = await readRecords(path); // every line whole JSON
          assert.ok(records.length > 0, name);
        }
      }
      // The newest records are in the current file: the server's last words, the last calls.
      const last = await readRecords(logFile);
      assert.match(last.at(-1)!.msg, /^stopped/);
      const audited = await readRecords(auditLog);
      assert.ok(audited.some((record) => record.event === "call" && record.outcome === "ok"));
    } finally {
      if (!stopped) await s1.stop();
    }
  });
});

Deno.test("SIGHUP reopens --log-file and --audit-log after logrotate moved them", async () => {
  await withTempDir(async (dir) => {
    const logFile = join(dir, "server.jsonl");
    const auditLog = join(dir, "audit.jsonl");
    const s1 = await server("--log-file", logFile, "--audit-log", auditLog);
    try {
      const call = async (rpcName: string, ...args: string[]) => {
        const result = await rpc(["call", "--as", "c1", s1.address, "service1", rpcName, ...args]);
        assert.equal(result.code, 0, describeResult(result));
      };
      const hasCall = async (path: string, rpcName: string) =>
        (await readRecords(path)).some((record) =>
          record.event === "call" && record.rpc === rpcName
        );
      await call("echo", "before");
      await waitFor(() => hasCall(logFile, "echo"), "the first call in the log");
      await waitFor(() => hasCall(auditLog, "echo"), "the first call in the audit log");
      // What logrotate does: move the files away, then signal the server.
      await Deno.rename(logFile, `${logFile}.1`);
      await Deno.rename(auditLog, `${auditLog}.1`);
      s1.process.kill("SIGHUP");
      await waitFor(
        async () => (await readRecords(logFile)).some((record) => record.event === "reopen"),
        "the reopen record in a new log file",
        10_000,
      );
      await call("divmod", "17", "5");
      await waitFor(() => hasCall(logFile, "divmod"), "the second call in the new log");
      await waitFor(() => hasCall(auditLog, "divmod"), "the second call in the new audit log");
      assert.ok(s1.running(), "SIGHUP did not end the server");
      for (const path of [logFile, auditLog]) {
        assert.ok(!(await hasCall(path, "echo")), `${path} starts after the move`);
        assert.ok(await hasCall(`${path}.1`, "echo"), `${path}.1 kept what came before`);
        assert.ok(!(await hasCall(`${path}.1`, "divmod")), `${path}.1 got nothing after`);
      }
    } finally {
      await s1.stop();
    }
  });
});
