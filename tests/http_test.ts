/**
 * The HTTP gateway end to end: a real `rpc server --http` process, called
 * with `fetch`, raw sockets and curl over loopback. Every refusal is checked
 * for its status, its JSON error and its log line, and is followed by a
 * call that still works.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { ROOT, waitFor, withTimeout } from "./helpers.ts";
import { TestPki } from "./pki.ts";
import {
  bearer,
  get,
  parseRawResponse,
  post,
  RawHttp,
  SECRETS,
  startHttpServer,
} from "./http_helpers.ts";

/** One metric family as Prometheus' own Python client parses it. */
interface MetricFamily {
  name: string;
  type: string;
  samples: { name: string; labels: Record<string, string>; value: number | string }[];
}

/**
 * Parses exposition text with the official Python client's parser (the
 * JavaScript parsers on npm drop the labels of histograms). Debian's
 * python3-prometheus-client installs it for /usr/bin/python3.
 */
async function parseMetrics(text: string): Promise<MetricFamily[]> {
  const child = new Deno.Command("/usr/bin/python3", {
    args: [join(ROOT, "tests", "fixtures", "parse_metrics.py")],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await withTimeout(child.output(), 20_000, "the metrics parser");
  const stderr = new TextDecoder().decode(output.stderr);
  assert.ok(output.success, `The parser refused the metrics: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** Waits until the server has logged a line matching `pattern`. */
function logged(server: { stderrText(): string }, pattern: RegExp, what: string) {
  return waitFor(() => pattern.test(server.stderrText()), what, 10_000);
}

Deno.test("HTTP gateway: calls, errors, streams, identity, OpenAPI and metrics", async (t) => {
  await using http = await startHttpServer();
  const { url, server } = http;
  const alice = bearer("alice");
  const call = (path: string, body: unknown, headers: Record<string, string> = alice) =>
    post(`${url}/v1/${path}`, body, headers);
  /** After every refusal: the server still answers. */
  const stillServing = async () => {
    const reply = await call("math/add", [2, 3]);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { "return-values": [5] });
  };

  await t.step("a JSON array calls; the overload is chosen as on TCP", async () => {
    const ints = await call("math/add", [2, 3]);
    assert.equal(ints.status, 200);
    assert.equal(ints.headers.get("content-type"), "application/json");
    assert.deepEqual(ints.json, { "return-values": [5] });
    const floats = await call("math/add", [2.5, 0.25]);
    assert.deepEqual(floats.json, { "return-values": [2.75] });
  });

  await t.step("an object with arguments and argument-types picks that overload", async () => {
    const reply = await call("math/add", {
      arguments: [2, 3],
      "argument-types": ["float", "float"],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { "return-values": [5] });
    const wrong = await call("math/add", { arguments: [2, 3], "argument-types": ["str", "str"] });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.kind, "Invalid Arguments");
    assert.match(wrong.json.message, /Valid signatures: add\(int, int\) -> int/);
  });

  await t.step("big integers stay exact both ways, as JSON numbers", async () => {
    const reply = await call("math/big", "[123456789012345678901]");
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.text, '{"return-values":[123456789012345678902]}');
  });

  await t.step("text-arguments are converted as rpc call converts its command line", async () => {
    const reply = await call("math/scale", {
      "text-arguments": ["2", "1,2.5"],
      "argument-types": ["float", "List[float]"],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { "return-values": [[2, 5]] });
    const json = await call("math/scale", {
      "text-arguments": ["0.5", "[4, 8]"],
      "argument-types": ["float", "List[float]"],
    });
    assert.deepEqual(json.json, { "return-values": [[2, 4]] });
    const bad = await call("math/big", { "text-arguments": ["x"], "argument-types": ["int"] });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, {
      kind: "Invalid Arguments",
      message: 'Argument 1: Cannot read "x" as int',
    });
  });

  await t.step("each error kind has its status and a JSON body", async () => {
    const cases: [string, unknown, number, string][] = [
      ["math/big", ["x"], 400, "Invalid Arguments"],
      ["math/fail", ["boom here"], 500, "Execution Exception"],
      ["nope/big", [1], 404, "Service Not Found"],
      ["math/nope", [1], 404, "RPC Not Found"],
      ["vault/echo", ["x"], 403, "Client Not Registered"],
      ["math/slow", [5], 504, "Timeout"],
    ];
    for (const [path, body, status, kind] of cases) {
      const reply = await call(path, body);
      assert.equal(reply.status, status, `${path}: ${reply.text}`);
      assert.equal(reply.json.kind, kind, `${path}: ${reply.text}`);
      assert.equal(typeof reply.json.message, "string");
    }
    const failed = await call("math/fail", ["boom here"]);
    assert.equal(failed.json.message, "Error: boom here");
    await stillServing();
  });

  await t.step("a streaming RPC answers as Server-Sent Events, one per part", async () => {
    const response = await fetch(`${url}/v1/math/countdown`, {
      method: "POST",
      headers: { "content-type": "application/json", ...alice },
      body: "[3]",
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const text = await withTimeout(response.text(), 20_000, "the countdown");
    assert.equal(
      text,
      [3, 2, 1].map((n) => `event: part\ndata: {"values":[${n}]}\n\n`).join("") +
        'event: result\ndata: {"return-values":["liftoff"]}\n\n',
    );
  });

  await t.step("a streaming call refused outright is a plain JSON error", async () => {
    const reply = await call("math/countdown", ["three"]);
    assert.equal(reply.status, 400);
    assert.equal(reply.json.kind, "Invalid Arguments");
  });

  await t.step("a caller that goes away cancels its streaming call", async () => {
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/math/countdown`, {
      method: "POST",
      headers: { "content-type": "application/json", ...alice },
      body: "[100]",
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /event: part\ndata: \{"values":\[100\]\}/);
    controller.abort();
    await logged(server, /math\.countdown\(int\) Cancelled/, "the cancelled countdown in the log");
    await stillServing();
  });

  await t.step("a caller that goes away cancels its call", async () => {
    const controller = new AbortController();
    const pending = fetch(`${url}/v1/math/slow`, {
      method: "POST",
      headers: { "content-type": "application/json", ...alice },
      body: "[0.9]",
      signal: controller.signal,
    }).catch((error) => error);
    await logged(server, /connection attempt/, "the call's connection");
    await new Promise((resolve) => setTimeout(resolve, 200));
    controller.abort();
    assert.equal((await pending).name, "AbortError");
    await logged(server, /math\.slow\(float\) Cancelled/, "the cancelled call in the log");
  });

  await t.step("GET /v1 lists what the caller may call, by tenant", async () => {
    const names = async (headers: Record<string, string>) =>
      ((await get(`${url}/v1`, headers)).json.services as { name: string }[]).map((s) => s.name)
        .sort();
    assert.deepEqual(await names(alice), ["math", "open"]);
    assert.deepEqual(await names(bearer("bob")), ["open", "vault"]);
    assert.deepEqual(await names({}), ["open"]);
  });

  await t.step(
    "identity: missing, wrong and unreadable credentials, and the address check",
    async () => {
      const missing = await call("vault/echo", ["x"], { authorization: "Bearer bob" });
      assert.equal(missing.status, 401);
      assert.deepEqual(missing.json, {
        kind: "Unauthorized",
        message: "Client bob must present its secret",
      });
      assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="rpc"');
      const wrong = await call("vault/echo", ["x"], { authorization: "Bearer bob:guess" });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.message, "Wrong secret for client bob");
      const scheme = await call("vault/echo", ["x"], { authorization: "Basic Ym9iOmd1ZXNz" });
      assert.equal(scheme.status, 401);
      assert.match(scheme.json.message, /expected Bearer NAME:SECRET/);
      const far = await call("open/echo", ["x"], { authorization: "Bearer far" });
      assert.equal(far.status, 403);
      assert.deepEqual(far.json, {
        kind: "Client Not Registered",
        message: "Client far may not connect from 127.0.0.1",
      });
      const anonymous = await call("math/add", [1, 2], {});
      assert.equal(anonymous.status, 403);
      assert.equal(anonymous.json.kind, "Client Not Registered");
      const right = await call("vault/echo", ["hi"], bearer("bob"));
      assert.deepEqual(right.json, { "return-values": ["hi"] });
      // Repeated refusals of one peer for one reason are summarised: the first is logged in full.
      // The log is written a tick after the reply, so wait for each line.
      await logged(server, /WARN .*Client bob must present its secret/, "bob's refusal");
      await logged(server, /WARN .*Client far may not connect from 127\.0\.0\.1/, "far's refusal");
      await logged(
        server,
        /WARN .*HTTP 127\.0\.0\.1:\d+ POST \/v1\/vault\/echo: 401 Unauthorized/,
        "the 401",
      );
      // The secret never appears in the log.
      assert.ok(!server.stderrText().includes(SECRETS.bob), "the log holds bob's secret");
    },
  );

  await t.step("one keep-alive connection can change credentials between requests", async () => {
    await using raw = await RawHttp.open(http.port);
    const request = (auth: string, body: string, close = false) =>
      `POST /v1/open/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Authorization: ${auth}\r\nContent-Length: ${body.length}\r\n` +
      (close ? "Connection: close\r\n" : "") + `\r\n${body}`;
    await raw.send(request(`Bearer bob:${SECRETS.bob}`, '["one"]'));
    await raw.send(request(`Bearer alice:${SECRETS.alice}`, '["two"]', true));
    const text = await raw.readToEnd();
    const bodies = [...text.matchAll(/\{"return-values":\["(\w+)"\]\}/g)].map((m) => m[1]);
    assert.deepEqual(bodies, ["one", "two"]);
    await logged(server, /alice@127\.0\.0\.1:\d+ open\.echo\(str\) ok/, "alice's call");
  });

  await t.step(
    "bad input: each its status and JSON error, logged, and serving goes on",
    async () => {
      const malformed = await call("math/add", "[1, 2");
      assert.equal(malformed.status, 400);
      assert.equal(malformed.json.kind, "Malformed Frame");
      assert.match(malformed.json.message, /^Cannot parse request body: /);
      await stillServing();

      const shape = await call("math/add", '{"args": [1, 2]}');
      assert.equal(shape.status, 400);
      assert.match(shape.json.message, /unknown field "args"/);

      const typed = await post(`${url}/v1/math/add`, "[1, 2]", {
        ...alice,
        "content-type": "text/plain",
      });
      assert.equal(typed.status, 415);
      assert.deepEqual(typed.json, {
        kind: "Unsupported Media Type",
        message:
          'Cannot read request body: Content-Type is "text/plain", expected application/json',
      });
      await stillServing();

      const unknown = await get(`${url}/v2/things`, alice);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.json.kind, "Not Found");
      const method = await get(`${url}/v1/math/add`, alice);
      assert.equal(method.status, 405);
      assert.equal(method.headers.get("allow"), "POST");
      assert.equal(method.json.kind, "Method Not Allowed");
      const deleted = await fetch(`${url}/v1`, { method: "DELETE" });
      assert.equal(deleted.status, 405);
      await deleted.body?.cancel();
      await stillServing();

      // The log is written a tick after the reply, so wait for each line.
      for (
        const line of [
          /HTTP 127\.0\.0\.1:\d+ POST \/v1\/math\/add: 400 Malformed Frame/,
          /HTTP 127\.0\.0\.1:\d+ POST \/v1\/math\/add: 415 Unsupported Media Type/,
          /HTTP 127\.0\.0\.1:\d+ GET \/v2\/things: 404 Not Found/,
          /HTTP 127\.0\.0\.1:\d+ GET \/v1\/math\/add: 405 Method Not Allowed/,
        ]
      ) await logged(server, line, String(line));
    },
  );

  await t.step("a body over the frame limit is refused before it is read", async () => {
    await using raw = await RawHttp.open(http.port);
    // Announce 9 MiB and send none of it: the answer comes from the headers alone.
    await raw.send(
      "POST /v1/math/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Content-Length: 9437184\r\n\r\n",
    );
    const { status, json, head } = parseRawResponse(await raw.readToEnd());
    assert.equal(status, 413);
    assert.match(head, /connection: close/i);
    assert.deepEqual(json, {
      kind: "Frame Too Large",
      message: "Cannot read request: body of 9437184 bytes exceeds limit 8388608",
    });
    await logged(server, /HTTP 127\.0\.0\.1:\d+: 413 Frame Too Large/, "the refusal in the log");
    await stillServing();
  });

  await t.step("headers over 16 KiB and unreadable requests are refused", async () => {
    {
      await using raw = await RawHttp.open(http.port);
      await raw.send(`GET /v1 HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
      const { status, json } = parseRawResponse(await raw.readToEnd());
      assert.equal(status, 431);
      assert.deepEqual(json, {
        kind: "Headers Too Large",
        message: "Cannot read request: headers exceed limit 16384 bytes",
      });
    }
    {
      await using raw = await RawHttp.open(http.port);
      await raw.send("this is not http\r\n\r\n");
      const { status, json } = parseRawResponse(await raw.readToEnd());
      assert.equal(status, 400);
      assert.equal((json as { kind: string }).kind, "Bad Request");
    }
    await stillServing();
  });

  await t.step(
    "GET /openapi.json is a valid OpenAPI 3.1 document of the caller's RPCs",
    async () => {
      const reply = await get(`${url}/openapi.json`, alice);
      assert.equal(reply.status, 200);
      const validator = new Validator();
      const result = await validator.validate(reply.json);
      assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
      assert.equal(validator.version, "3.1");
      const paths = Object.keys(reply.json.paths).sort();
      assert.deepEqual(paths, [
        "/v1",
        "/v1/math/add",
        "/v1/math/big",
        "/v1/math/countdown",
        "/v1/math/fail",
        "/v1/math/scale",
        "/v1/math/slow",
        "/v1/open/echo",
      ]);
      const add = reply.json.paths["/v1/math/add"].post;
      assert.deepEqual(add.requestBody.content["application/json"].schema.anyOf[0], {
        anyOf: [
          {
            type: "array",
            prefixItems: [{ type: "integer" }, { type: "integer" }],
            minItems: 2,
            maxItems: 2,
            items: false,
          },
          {
            type: "array",
            prefixItems: [{ type: "number" }, { type: "number" }],
            minItems: 2,
            maxItems: 2,
            items: false,
          },
        ],
      });
      const countdown = reply.json.paths["/v1/math/countdown"].post;
      assert.ok(countdown.responses["200"].content["text/event-stream"]);
      const bob = await get(`${url}/openapi.json`, bearer("bob"));
      assert.equal((await new Validator().validate(bob.json)).valid, true);
      assert.ok(bob.json.paths["/v1/vault/echo"]);
      assert.ok(!bob.json.paths["/v1/math/add"], "bob sees math, which he may not call");
    },
  );

  await t.step("GET /metrics: the Prometheus text format, read by a real parser", async () => {
    const response = await fetch(`${url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const families = await parseMetrics(await response.text());
    const family = (name: string) => {
      const found = families.find((f) => f.name === name);
      assert.ok(found, `no metric ${name}`);
      return found;
    };
    /** The value of the one sample of `name` whose labels include `labels`. */
    const value = (name: string, labels: Record<string, string> = {}, sample = name) => {
      const found = family(name).samples.find((s) =>
        s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      );
      return found === undefined ? 0 : Number(found.value);
    };
    const calls = (service: string, rpc: string, outcome: string) =>
      value("rpc_calls", { service, rpc, outcome }, "rpc_calls_total");
    assert.equal(family("rpc_calls").type, "counter");
    assert.ok(calls("math", "add", "ok") >= 5, "math.add ok");
    assert.equal(calls("math", "fail", "Execution Exception"), 2);
    assert.equal(calls("math", "slow", "Timeout"), 1);
    assert.ok(calls("math", "countdown", "Cancelled") >= 1, "the cancelled countdown");
    // Names no RPC serves are pooled, so callers cannot add series.
    assert.ok(calls("(unknown)", "(unknown)", "Service Not Found") >= 1);
    assert.ok(!JSON.stringify(family("rpc_calls").samples).includes('"nope"'));
    const latency = "rpc_call_duration_seconds";
    assert.equal(family(latency).type, "histogram");
    const add = { service: "math", rpc: "add" };
    const count = value(latency, add, `${latency}_count`);
    assert.ok(count >= 5);
    assert.equal(value(latency, { ...add, le: "+Inf" }, `${latency}_bucket`), count);
    assert.ok(value(latency, add, `${latency}_sum`) > 0);
    const big = family("rpc_procedure_info").samples.find((s) => s.labels.rpc === "big")!;
    assert.match(big.labels.sha256, /^[0-9a-f]{64}$/);
    assert.equal(big.labels.signature, "(int)");
    assert.equal(value("rpc_installed_generation"), 1);
    assert.ok(value("rpc_http_connections_open") >= 1);
    assert.ok(value("rpc_connections_open") >= 1);
    assert.ok(value("rpc_connections_refused", {}, "rpc_connections_refused_total") >= 3);
    assert.equal(value("rpc_calls_in_flight"), 0);
    assert.ok(
      value("rpc_received_bytes", { transport: "http" }, "rpc_received_bytes_total") > 1000,
    );
    assert.ok(value("rpc_http_responses", { status: "415" }, "rpc_http_responses_total") >= 1);
    for (
      const name of [
        "rpc_sent_bytes",
        "rpc_sandbox_workers_alive",
        "rpc_sandbox_workers_restarted",
        "rpc_python_interpreters_alive",
        "rpc_python_interpreters_restarted",
      ]
    ) family(name);
  });

  await t.step("the console's page and files come from the binary under a strict CSP", async () => {
    for (const [path, type] of [["/", "text/html"], ["/console.js", "text/javascript"]]) {
      const response = await fetch(`${url}${path}`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type")!, new RegExp(`^${type}`));
      assert.match(response.headers.get("content-security-policy")!, /script-src 'self'/);
      const text = await response.text();
      if (path === "/") {
        assert.ok(!/<script>|<script [^>]*>[^<]/.test(text), "an inline script");
        assert.ok(!/ on\w+=|style=/.test(text), "an inline handler or style");
        assert.ok(!/https?:\/\//.test(text), "a link to another origin");
      }
    }
  });
});

Deno.test("HTTP gateway: the server's limits and audit log apply to HTTP connections and callers", async (t) => {
  const audit = await Deno.makeTempFile({ prefix: "rpc-http-audit-", suffix: ".jsonl" });
  await using http = await startHttpServer([
    "--audit-log",
    audit,
    "--max-connections-per-ip",
    "3",
    "--admin-reserve",
    "0",
    "--frame-timeout",
    "1s",
    "--rate",
    "2",
    "--burst",
    "2",
  ]);
  const { url, server } = http;

  await t.step("a caller over its rate is answered 429", async () => {
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await post(`${url}/v1/open/echo`, ["x"], bearer("alice"))).status);
    }
    assert.deepEqual(statuses.slice(0, 2), [200, 200]);
    assert.ok(statuses.includes(429), `no 429 among ${statuses}`);
  });

  await t.step("the audit log records HTTP calls and refusals as it records TCP ones", async () => {
    await post(`${url}/v1/open/echo`, ["x"], { authorization: "Bearer alice:wrong" });
    const records = await waitFor(async () => {
      const lines = (await Deno.readTextFile(audit)).trim().split("\n").filter(Boolean);
      const parsed = lines.map((line) => JSON.parse(line));
      return parsed.some((r) => /Wrong secret for client alice/.test(JSON.stringify(r))) &&
        parsed;
    }, "the audit records");
    const calls = records.filter((r: { rpc?: string }) => r.rpc === "echo");
    const outcomes = calls.map((r: { outcome: string }) => r.outcome);
    assert.ok(outcomes.includes("ok") && outcomes.includes("Rate Limited"), `${outcomes}`);
    assert.match(JSON.stringify(calls[0]), /"client":"alice".*"remote":"127\.0\.0\.1:\d+"/);
  });

  await t.step("a request that arrives too slowly is answered 408 and dropped", async () => {
    await using raw = await RawHttp.open(http.port);
    await raw.send("POST /v1/open/echo HTTP/1.1\r\nHost: x\r\n");
    const { status, json } = parseRawResponse(await raw.readToEnd());
    assert.equal(status, 408);
    assert.deepEqual(json, {
      kind: "Request Timeout",
      message: "Cannot read request: it took longer than 1000 ms to arrive (slow sender)",
    });
    await waitFor(() => /408 Request Timeout/.test(server.stderrText()), "the 408 in the log");
  });

  await t.step("connections past the per-IP limit are refused with 503", async () => {
    const open = [await RawHttp.open(http.port), await RawHttp.open(http.port)];
    try {
      // Each HTTP connection holds one session; with the two above, a third is allowed.
      await waitFor(
        () => (server.stderrText().match(/connection attempt from/g) ?? []).length >= 2,
        "the two connections",
      );
      const third = await RawHttp.open(http.port);
      const fourth = await RawHttp.open(http.port);
      open.push(third, fourth);
      const { status, json } = parseRawResponse(await fourth.readToEnd());
      assert.equal(status, 503);
      assert.deepEqual(json, {
        kind: "Unavailable",
        message: "Connection refused: 127.0.0.1 has 3 connections (limit 3)",
      });
    } finally {
      for (const raw of open) raw.close();
    }
    await waitFor(async () => {
      const reply = await post(`${url}/v1/open/echo`, ["again"], bearer("bob"));
      return reply.status === 200;
    }, "serving again once the connections closed");
  });
  await Deno.remove(audit);
});

Deno.test("HTTP gateway over HTTPS: the server's TLS flags, a client certificate names the caller", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-https-" });
  try {
    const pki = await TestPki.create(dir);
    await pki.issue("alice", { subject: "/CN=alice" });
    await using http = await startHttpServer([
      "--tls-cert",
      join(dir, "server.pem"),
      "--tls-key",
      join(dir, "server.key"),
      "--tls-client-ca",
      join(dir, "ca.pem"),
    ]);
    assert.match(http.url, /^https:/);
    const curl = async (...args: string[]) => {
      const output = await new Deno.Command("curl", {
        args: ["-sS", "--max-time", "20", "--cacert", join(dir, "ca.pem"), ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: output.code,
        stdout: new TextDecoder().decode(output.stdout),
        stderr: new TextDecoder().decode(output.stderr),
      };
    };
    const body = ["-H", "content-type: application/json", "-d", "[41]"];

    await t.step("alice's certificate makes her alice, without a secret", async () => {
      const result = await curl(
        "--cert",
        join(dir, "alice.pem"),
        "--key",
        join(dir, "alice.key"),
        ...body,
        `${http.url}/v1/math/big`,
      );
      assert.equal(result.stdout, '{"return-values":[42]}', result.stderr);
      await waitFor(
        () => /alice@127\.0\.0\.1:\d+ math\.big\(int\) ok/.test(http.server.stderrText()),
        "alice's call in the log",
      );
    });

    await t.step("a credential naming someone else than the certificate is refused", async () => {
      const result = await curl(
        "--cert",
        join(dir, "alice.pem"),
        "--key",
        join(dir, "alice.key"),
        "-H",
        `authorization: Bearer bob:${SECRETS.bob}`,
        ...body,
        `${http.url}/v1/math/big`,
      );
      assert.deepEqual(JSON.parse(result.stdout), {
        kind: "Unauthorized",
        message: "Client certificate names alice, not bob",
      });
    });

    await t.step("without a client certificate there is no connection", async () => {
      const result = await curl(...body, `${http.url}/v1/math/big`);
      assert.notEqual(result.code, 0);
      await waitFor(
        () => /HTTPS connection from 127\.0\.0\.1:\d+ refused/.test(http.server.stderrText()),
        "the refusal in the log",
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
