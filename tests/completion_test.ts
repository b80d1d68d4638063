/**
 * Shell completion in real shells at a real prompt: bash, zsh and fish, each
 * in a tmux pane, with `rpc completions SHELL` loaded as a user would load
 * it, Tab pressed, and the screen read. A server runs on 127.0.0.1, so that
 * completing an RPC name asks it.
 *
 * Run: `deno test --allow-all tests/completion_test.ts`
 */

import assert from "node:assert/strict";
import { freePort, INIT_YAML, startServer, writeInitYaml } from "./helpers.ts";
import { rpcOnPath, Terminal } from "./terminal.ts";

/** How each shell is started, with nothing of the user's own setup, and told to load the script. */
const SHELLS = {
  bash: {
    argv: ["bash", "--norc", "--noprofile", "-i"],
    // show-all-if-ambiguous: one Tab lists the candidates, as zsh and fish do.
    load: "bind 'set show-all-if-ambiguous on'; source <(rpc completions bash)",
    /** Pressed to complete, or to list several candidates. */
    list: ["Tab"],
  },
  zsh: {
    argv: ["zsh", "-f", "-i"],
    // no_list_ambiguous: one Tab lists the candidates even when it also inserts their prefix.
    load:
      "setopt no_list_ambiguous; autoload -U compinit && compinit -u && source <(rpc completions zsh)",
    list: ["Tab"],
  },
  fish: {
    argv: ["fish", "--no-config", "-i"],
    load: "rpc completions fish | source",
    list: ["Tab"],
  },
} as const;

const PROMPT_MARK = "ready>";

/** The shell's prompt, made recognizable; `fish` sets it with a function. */
function promptSetup(shell: keyof typeof SHELLS): string {
  return shell === "fish"
    ? `function fish_prompt; echo -n '${PROMPT_MARK} '; end`
    : `PS1='${PROMPT_MARK} '`;
}

Deno.test({
  name: "Tab completes in real bash, zsh and fish",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const port = freePort();
    // The server serves service1 with an RPC the completion's init.yaml does not declare:
    // offering it proves that completion asked the server.
    await using served = await writeInitYaml({
      base: INIT_YAML,
      servers: { s1: { ip: "127.0.0.1", port } },
      services: {
        service1: {
          providers: ["s1", "s2"],
          tenants: ["c1", "c2", "c3"],
          rpcs: ["rpc1", "echo", "secretive"],
        },
      },
      rpcs: [{ name: "secretive", args: ["str"], returns: ["str"], src: "secretive.ts" }],
      files: { "secretive.ts": "export function secretive(text: string) { return text; }\n" },
    });
    await using server = await startServer({ config: served.path, name: "s1", port });
    // Where the shells run: ./init.yaml names s1 at the server's port.
    await using here = await writeInitYaml({
      base: INIT_YAML,
      servers: { s1: { ip: "127.0.0.1", port } },
    });
    const path = await rpcOnPath();
    try {
      for (
        const [shell, setup] of Object.entries(SHELLS) as [
          keyof typeof SHELLS,
          typeof SHELLS[keyof typeof SHELLS],
        ][]
      ) {
        await t.step(shell, async (t) => {
          await using terminal = await Terminal.start(setup.argv, {
            PATH: `${path.bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
            TERM: "xterm-256color",
            HOME: here.dir,
          }, here.dir);
          await terminal.type(promptSetup(shell));
          await terminal.press("Enter");
          await terminal.type(setup.load);
          await terminal.press("Enter");
          await terminal.type("clear");
          await terminal.press("Enter");
          await terminal.waitFor(
            (screen) => screen.trim() === PROMPT_MARK,
            `a clear ${shell} prompt`,
            30_000,
          );
          /** Types `line`, presses Tab (and more), returns the screen, and clears the line. */
          const complete = async (
            line: string,
            check: (screen: string) => boolean,
            what: string,
          ) => {
            await terminal.type(line);
            await terminal.press(...setup.list);
            try {
              return await terminal.waitFor(check, `${shell}: ${what}`, 30_000);
            } finally {
              await terminal.press("C-c");
              await terminal.type("clear");
              await terminal.press("Enter");
              await terminal.waitFor((screen) => screen.trim() === PROMPT_MARK, "prompt", 30_000);
            }
          };
          const words = (screen: string) => screen.split(/\s+/);

          await t.step("--as offers the clients of init.yaml, not the servers", async () => {
            const screen = await complete(
              "rpc call --as ",
              (screen) => ["c1", "c2", "c3"].every((name) => words(screen).includes(name)),
              "c1 c2 c3",
            );
            assert.ok(!words(screen).includes("s1"), screen);
          });

          await t.step("completions offers the shells", async () => {
            await complete(
              "rpc completions ",
              (screen) => ["bash", "zsh", "fish"].every((name) => words(screen).includes(name)),
              "bash zsh fish",
            );
          });

          await t.step("the service after SERVER, asked of the server as the client", async () => {
            await complete(
              "rpc call --as c1 s1 ser",
              (screen) => screen.includes("rpc call --as c1 s1 service1"),
              "service1 on the line",
            );
          });

          await t.step("an RPC after the service, as the server lists it", async () => {
            await complete(
              "rpc call --as c1 s1 service1 secr",
              (screen) => screen.includes("rpc call --as c1 s1 service1 secretive"),
              "secretive on the line",
            );
          });

          await t.step("server --name offers the servers of init.yaml", async () => {
            await complete(
              "rpc server --name ",
              (screen) => ["s1", "s2"].every((name) => words(screen).includes(name)),
              "s1 s2",
            );
          });
        });
      }
    } finally {
      await path.remove();
    }
    assert.ok(server.running());
  },
});
