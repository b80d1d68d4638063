import assert from "node:assert/strict";
import type { CallOptions, ClientOptions, Endpoint, RpcClient } from "../core/client/client.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import type { ServiceDescription } from "../core/wire/message.ts";
import { readLines, ReplSession } from "./repl.ts";

const SERVICES: ServiceDescription[] = [{
  name: "service1",
  rpcs: [
    { name: "rpc1", args: ["int", "str"], returns: ["str"], doc: "Repeat a string n times." },
    { name: "echo", args: ["str"], returns: ["str"] },
    { name: "add", args: ["int", "int"], returns: ["int"] },
    { name: "add", args: ["float", "float"], returns: ["float"] },
    { name: "pick", args: ["int"], returns: ["str"] },
    { name: "pick", args: ["str"], returns: ["str"] },
    { name: "divmod", args: ["int", "int"], returns: ["int", "int"] },
    { name: "sum", args: ["List[int]"], returns: ["int"] },
  ],
}];

const CLUSTER = {
  servers: new Map([
    ["s1", { name: "s1", host: "127.0.0.1", port: 8181 }],
    ["s2", { name: "s2", host: "127.0.0.1", port: 8282 }],
  ]),
  clients: new Map([["c1", {}], ["c2", {}]]),
  services: new Map(),
} as unknown as Cluster;

interface Recorded {
  service: string;
  rpc: string;
  args: unknown[];
  options: CallOptions;
}

/** A session whose connections are fakes recording calls; `answer` replies to them. */
function harness(
  answer: (call: Recorded) => Promise<unknown[]> = () => Promise.resolve(["ok"]),
  json = false,
) {
  const out: string[] = [];
  const errors: string[] = [];
  const notices: string[] = [];
  const calls: Recorded[] = [];
  const connects: { endpoint: Endpoint; options: ClientOptions }[] = [];
  const clients: { close(): void }[] = [];
  let refuse = false;
  const connector = (endpoint: Endpoint, options: ClientOptions) => {
    connects.push({ endpoint, options });
    if (refuse) {
      return Promise.reject(new RpcError(ErrorKind.Unavailable, "Cannot connect: refused"));
    }
    const closed = Promise.withResolvers<void>();
    const client = {
      list: () => Promise.resolve(structuredClone(SERVICES)),
      stream: (service: string, rpc: string, args: unknown[], options: CallOptions) => {
        const call = { service, rpc, args, options };
        calls.push(call);
        const result = answer(call);
        const parts: unknown[][] = [];
        return {
          result,
          cancel() {},
          // One part per value of `parts`, then the call's failure, if any, ends the iteration.
          async *[Symbol.asyncIterator]() {
            for (const part of parts) yield part;
            await result;
          },
        };
      },
      close: () => closed.resolve(),
      done: closed.promise,
    };
    clients.push(client);
    return Promise.resolve(client as unknown as RpcClient);
  };
  const session = new ReplSession({
    cluster: CLUSTER,
    timeoutMs: 5000,
    json,
    connector,
    sinks: {
      out: (line) => out.push(line),
      error: (label, message) => errors.push(`${label}: ${message}`),
      notice: (line) => notices.push(line),
    },
  });
  return {
    session,
    out,
    errors,
    notices,
    calls,
    connects,
    clients,
    refuse: (value: boolean) => refuse = value,
  };
}

Deno.test("ReplSession prompt shows the server and the client", async () => {
  const { session } = harness();
  assert.equal(session.prompt(), "(not connected)> ");
  await session.open("s1", "c1");
  assert.equal(session.prompt(), "s1 c1> ");
  await session.open("127.0.0.1:9000", undefined);
  assert.equal(session.prompt(), "127.0.0.1:9000> ");
  session.close();
});

Deno.test("ReplSession resolves server names from init.yaml and claims the client", async () => {
  const { session, connects } = harness();
  await session.open("s2", "c2");
  assert.deepEqual(connects[0].endpoint, { hostname: "127.0.0.1", port: 8282, name: "s2" });
  assert.equal(connects[0].options.client, "c2");
  assert.match(
    session.describeConnection(),
    /^connected to s2 \(127\.0\.0\.1:8282\) as c2: 1 service$/,
  );
});

Deno.test("ReplSession coerces arguments to the listed signature and prints results like rpc call", async () => {
  const { session, calls, out } = harness(() => Promise.resolve(["ababab"]));
  await session.open("s1", "c1");
  assert.deepEqual(await session.run(`service1.rpc1 3 ab`), { ok: true, exitCode: 0 });
  assert.deepEqual(calls[0].args, [3, "ab"]);
  assert.deepEqual(calls[0].options.argumentTypes, ["int", "str"]);
  assert.deepEqual(calls[0].options.returnTypes, ["str"]);
  assert.equal(calls[0].options.timeoutMs, 5000);
  assert.deepEqual(out, ["ababab"]);
});

Deno.test("ReplSession picks the overload the arguments fit best", async () => {
  const { session, calls } = harness(() => Promise.resolve([0]));
  await session.open("s1", "c1");
  await session.run("service1.add 2 3");
  await session.run("service1.add 2.5 3");
  assert.deepEqual(calls.map((call) => call.options.argumentTypes), [["int", "int"], [
    "float",
    "float",
  ]]);
  assert.deepEqual(calls[1].args, [2.5, 3]);
});

Deno.test("ReplSession reads JSON lists and quoted strings", async () => {
  const { session, calls } = harness(() => Promise.resolve([0]));
  await session.open("s1", "c1");
  await session.run("service1.sum [1, 2, 3]");
  await session.run(`service1.echo "hello world"`);
  assert.deepEqual(calls[0].args, [[1, 2, 3]]);
  assert.deepEqual(calls[1].args, ["hello world"]);
});

Deno.test("ReplSession sends a quoted number to a str overload, but to int when there is none", async () => {
  const { session, calls } = harness(() => Promise.resolve(["x"]));
  await session.open("s1", "c1");
  await session.run(`service1.pick "42"`);
  await session.run("service1.pick 42");
  await session.run(`service1.rpc1 "3" ab`);
  assert.deepEqual(calls.map((call) => call.args), [["42"], [42], [3, "ab"]]);
});

Deno.test("ReplSession prints several return values one per line, or JSON", async () => {
  const plain = harness(() => Promise.resolve([3, 2]));
  await plain.session.open("s1", "c1");
  await plain.session.run("service1.divmod 17 5");
  assert.deepEqual(plain.out, ["3", "2"]);
  const json = harness(() => Promise.resolve([3, 2]), true);
  await json.session.open("s1", "c1");
  await json.session.run("service1.divmod 17 5");
  await json.session.run(".describe service1.echo");
  assert.deepEqual(json.out, [
    `{"return-values":[3,2]}`,
    `{"service":"service1","rpc":"echo","overloads":[{"name":"echo","args":["str"],"returns":["str"]}]}`,
  ]);
});

Deno.test("ReplSession reports a failed call as Kind: message with its exit code", async () => {
  const { session, errors } = harness(() =>
    Promise.reject(new RpcError(ErrorKind.ExecutionException, "boom"))
  );
  await session.open("s1", "c1");
  assert.deepEqual(await session.run("service1.echo x"), { ok: false, exitCode: 10 });
  assert.deepEqual(errors, ["Execution Exception: boom"]);
});

Deno.test("ReplSession reports arguments that fit no signature as Invalid Arguments, naming the text", async () => {
  const { session, errors, calls } = harness();
  await session.open("s1", "c1");
  assert.deepEqual(await session.run("service1.rpc1 x y"), { ok: false, exitCode: 11 });
  assert.match(
    errors[0],
    /^Invalid Arguments: argument 1: Cannot read "x" as int\. Valid signatures: rpc1\(int, str\) -> str$/,
  );
  assert.equal(calls.length, 0);
});

Deno.test("ReplSession sends an unknown RPC as strings, letting the server answer", async () => {
  const { session, calls } = harness(() =>
    Promise.reject(new RpcError(ErrorKind.RpcNotFound, "Service service1 has no RPC nope"))
  );
  await session.open("s1", "c1");
  assert.deepEqual(await session.run("service1.nope 1"), { ok: false, exitCode: 13 });
  assert.deepEqual(calls[0].args, ["1"]);
  assert.equal(calls[0].options.argumentTypes, undefined);
});

Deno.test("ReplSession reports syntax and usage errors with exit code 2", async () => {
  const { session, errors } = harness();
  await session.open("s1", "c1");
  assert.deepEqual(await session.run(`service1.echo "open`), { ok: false, exitCode: 2 });
  assert.deepEqual(await session.run(".use"), { ok: false, exitCode: 2 });
  assert.deepEqual(await session.run(".timing maybe"), { ok: false, exitCode: 2 });
  assert.deepEqual(errors, [
    "Syntax error: Unterminated string at column 15",
    "Usage error: Usage: .use SERVER",
    "Usage error: Usage: .timing on|off",
  ]);
});

Deno.test("ReplSession passes the abort signal, so Ctrl-C cancels the call", async () => {
  const { session, errors } = harness((call) =>
    new Promise((_, reject) => {
      const signal = call.options.signal!;
      const cancel = () => reject(new RpcError(ErrorKind.Cancelled, "Call cancelled"));
      if (signal.aborted) cancel();
      else signal.addEventListener("abort", cancel);
    })
  );
  await session.open("s1", "c1");
  const controller = new AbortController();
  const running = session.run("service1.echo slow", controller.signal);
  setTimeout(() => controller.abort(), 5);
  assert.deepEqual(await running, { ok: false, exitCode: 5 });
  assert.deepEqual(errors, ["Cancelled: Call cancelled"]);
});

Deno.test("ReplSession .timing on prints the round-trip time after each result", async () => {
  const { session, out, notices } = harness(() => Promise.resolve(["r"]));
  await session.open("s1", "c1");
  await session.run(".timing on");
  await session.run("service1.echo x");
  assert.equal(out[0], "r");
  assert.match(out[1], /^\(\d+\.\d\d ms\)$/);
  assert.deepEqual(notices, ["timing on"]);
  await session.run(".timing off");
  await session.run(".timing");
  assert.equal(out.at(-1), "timing off");
});

Deno.test("ReplSession .use switches servers and keeps the client; a failure keeps the old one", async () => {
  const { session, connects, clients, errors, refuse } = harness();
  await session.open("s1", "c1");
  assert.deepEqual(await session.run(".use s2"), { ok: true, exitCode: 0 });
  assert.equal(session.prompt(), "s2 c1> ");
  assert.equal(connects[1].options.client, "c1");
  refuse(true);
  assert.deepEqual(await session.run(".use s1"), { ok: false, exitCode: 3 });
  assert.equal(session.prompt(), "s2 c1> ");
  assert.match(errors[0], /^Unavailable: /);
  assert.equal(clients.length, 2);
  assert.deepEqual(await session.run(".use nowhere"), { ok: false, exitCode: 2 });
});

Deno.test("ReplSession .as reconnects to the same server as another client", async () => {
  const { session, connects, out } = harness();
  await session.open("s1", "c1");
  await session.run(".as c2");
  assert.equal(session.prompt(), "s1 c2> ");
  assert.equal(connects[1].options.client, "c2");
  assert.deepEqual(connects[1].endpoint, connects[0].endpoint);
  await session.run(".as");
  assert.deepEqual(out, ["calling as c2"]);
});

Deno.test("ReplSession .list and .describe print like rpc list and rpc describe", async () => {
  const { session, out } = harness();
  await session.open("s1", "c1");
  await session.run(".list");
  assert.equal(out[0], "service1");
  assert.match(out[1], /^ {2}rpc1\(int, str\) -> str +Repeat a string n times\.$/);
  out.length = 0;
  await session.run(".describe service1.rpc1");
  assert.deepEqual(out, ["service1.rpc1(int, str) -> str", "    Repeat a string n times."]);
});

Deno.test("ReplSession .describe of an unknown RPC fails with RPC Not Found", async () => {
  const { session } = harness();
  await session.open("s1", "c1");
  assert.deepEqual(await session.run(".describe service1.nope"), { ok: false, exitCode: 13 });
});

Deno.test("ReplSession .help prints the syntax and .exit asks to leave", async () => {
  const { session, out } = harness();
  await session.open("s1", "c1");
  await session.run(".help");
  assert.ok(out.some((line) => line.includes(".timing on|off")));
  assert.deepEqual(await session.run(".exit"), { ok: true, exitCode: 0, exit: true });
  assert.deepEqual(await session.run("# comment"), { ok: true, exitCode: 0 });
});

Deno.test("ReplSession reconnects once the server has closed the connection", async () => {
  const { session, clients, connects, notices } = harness(() => Promise.resolve(["back"]));
  await session.open("s1", "c1");
  clients[0].close();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(await session.run("service1.echo x"), { ok: true, exitCode: 0 });
  assert.equal(connects.length, 2);
  assert.match(notices[0], /^reconnected: /);
});

Deno.test("ReplSession completion context lists servers, clients and the services listed", async () => {
  const { session } = harness();
  await session.open("s1", "c1");
  const context = session.completionContext();
  assert.deepEqual(context.servers, ["s1", "s2"]);
  assert.deepEqual(context.clients, ["c1", "c2"]);
  assert.deepEqual(context.services.map((service) => service.name), ["service1"]);
});

Deno.test("readLines() splits on LF and CRLF and keeps a last line without an end", async () => {
  const encoder = new TextEncoder();
  const input = ReadableStream.from([encoder.encode("a\r\nb"), encoder.encode("c\n\nd")]);
  const lines: string[] = [];
  for await (const line of readLines(input)) lines.push(line);
  assert.deepEqual(lines, ["a", "bc", "", "d"]);
});
