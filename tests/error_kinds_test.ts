/**
 * Configuration problems are their own kind with their own exit code, not
 * an internal error: real `rpc` processes, real files. (State directory
 * problems, `Store Error`, are in state_dir_test.ts.)
 *
 * Run: `deno test --allow-all tests/error_kinds_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EXIT_CODES } from "../cmd/exit_codes.ts";
import { describeResult, rpc } from "./helpers.ts";

/** An init.yaml whose client c1 proves a secret kept in `secretFile`; nothing listens on its server. */
function initYaml(secretFile: string): string {
  return `network:
  servers:
    - s1: { ip: 127.0.0.1, port: 9 }
  clients:
    - c1: { ip: 127.0.0.1, secret-file: ${secretFile} }
service:
  - service1: { providers: [s1], rpcs: [echo] }
rpc:
  - echo: { args: [str], returns: [str], src: echo.ts }
`;
}

Deno.test("a client secret file that is missing or empty stops rpc server with Config Error, exit 6", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-config-error-" });
  try {
    const secretFile = join(dir, "c1.secret");
    const config = join(dir, "init.yaml");
    await Deno.writeTextFile(config, initYaml(secretFile));
    await Deno.writeTextFile(join(dir, "echo.ts"), "export default (s: string) => s;\n");
    const serve = () =>
      rpc(["server", "--config", config, "--name", "s1", "--port", "0", "--insecure"], {
        env: { RPC_STATE_DIR: join(dir, "state") },
        cwd: dir,
      });

    const missing = await serve();
    assert.equal(missing.code, EXIT_CODES["Config Error"], describeResult(missing));
    assert.equal(missing.code, 6);
    assert.match(
      missing.stderr,
      new RegExp(`\\nerror: Config Error: Cannot read secret file ${secretFile} of client c1: `),
    );
    assert.doesNotMatch(missing.stderr, /Internal Error|listening/);

    await Deno.writeTextFile(secretFile, "  \n");
    const empty = await serve();
    assert.equal(empty.code, 6, describeResult(empty));
    assert.match(
      empty.stderr,
      new RegExp(`\\nerror: Config Error: Secret file ${secretFile} of client c1 is empty\\n$`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
