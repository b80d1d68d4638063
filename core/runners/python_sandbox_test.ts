import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bwrapArguments,
  bwrapFeatures,
  findOnPath,
  findProgram,
  type Grants,
  interpreterEnv,
  probePython,
  type PythonInstall,
  resolveGrants,
} from "./python_sandbox.ts";
import type { Environment } from "./environment.ts";

const INSTALL: PythonInstall = {
  executable: "/opt/py/bin/python3",
  binary: "/opt/py/bin/python3.11",
  readOnly: ["/opt/py/lib/python3.11", "/opt/py/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"],
  links: [["/lib", "usr/lib"], ["/lib64", "usr/lib64"]],
};

const NOTHING: Grants = { read: [], write: [], net: false, env: {}, run: [] };

/** An injected environment holding exactly `variables`. */
function environment(variables: Record<string, string>): Environment {
  return (name) => Object.hasOwn(variables, name) ? variables[name] : undefined;
}

/** The `--flag a b` triples of an argument list, for one flag. */
function operations(args: string[], flag: string, arity: number): string[][] {
  const out: string[][] = [];
  args.forEach((arg, i) => {
    if (arg === flag) out.push(args.slice(i + 1, i + 1 + arity));
  });
  return out;
}

Deno.test("bwrapArguments binds the interpreter read-only and nothing else by default", () => {
  const args = bwrapArguments(INSTALL, NOTHING, { tmpBytes: 1 << 20, dropsPrivileges: false });
  assert.deepEqual(operations(args, "--ro-bind", 2), [
    ["/usr/lib64", "/usr/lib64"],
    ["/opt/py/lib", "/opt/py/lib"],
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"],
    ["/opt/py/bin/python3.11", "/opt/py/bin/python3"],
  ]);
  assert.deepEqual(operations(args, "--bind", 2), []);
  assert.ok(args.includes("--unshare-net"));
  assert.ok(args.includes("--unshare-pid"));
  assert.ok(args.includes("--new-session"));
  assert.ok(args.includes("--die-with-parent"));
  assert.ok(!args.includes("--cap-add"));
  assert.ok(!args.includes("--disable-userns"));
  // Not run by root, a bubblewrap that can forbids user namespaces inside.
  const userns = bwrapArguments(INSTALL, NOTHING, {
    tmpBytes: 1 << 20,
    dropsPrivileges: false,
    disablesUserns: true,
  });
  assert.ok(userns.includes("--unshare-user") && userns.includes("--disable-userns"));
  assert.deepEqual(args.slice(-7), [
    "--remount-ro",
    "/dev",
    "--remount-ro",
    "/",
    "--chdir",
    "/tmp",
    "/opt/py/bin/python3",
  ]);
  // The private /tmp: everyone may write, of bounded size, mounted before anything under it.
  const tmp = args.indexOf("--tmpfs");
  assert.deepEqual(args.slice(tmp - 4, tmp + 2), [
    "--perms",
    "1777",
    "--size",
    String(1 << 20),
    "--tmpfs",
    "/tmp",
  ]);
  assert.deepEqual(operations(args, "--symlink", 2), [["usr/lib", "/lib"], [
    "usr/lib64",
    "/lib64",
  ]]);
});

Deno.test("bwrapArguments keeps /tmp to root where bubblewrap cannot size it", async () => {
  const args = bwrapArguments(INSTALL, NOTHING, { tmpBytes: undefined, dropsPrivileges: true });
  const tmp = args.indexOf("--tmpfs");
  assert.deepEqual(args.slice(tmp - 2, tmp + 2), ["--perms", "0755", "--tmpfs", "/tmp"]);
  assert.ok(!args.includes("--size"));
  // The bubblewrap here is new enough; one that cannot run has none of the newer options.
  assert.deepEqual(await bwrapFeatures("bwrap"), { sizesTmpfs: true, disablesUserns: true });
  assert.deepEqual(await bwrapFeatures("bwrap-not-installed-here"), {
    sizesTmpfs: false,
    disablesUserns: false,
  });
});

Deno.test("bwrapArguments makes every parent directory readable, parents first", () => {
  const args = bwrapArguments(INSTALL, { ...NOTHING, read: ["/srv/data/a.txt"] }, {
    tmpBytes: 1 << 20,
    dropsPrivileges: false,
  });
  const dirs = operations(args, "--dir", 1).map(([path]) => path);
  for (
    const parent of ["/opt", "/opt/py", "/opt/py/bin", "/usr", "/usr/lib", "/srv", "/srv/data"]
  ) {
    assert.ok(dirs.includes(parent), `${parent} missing from ${dirs}`);
    const at = args.indexOf(parent);
    assert.deepEqual(args.slice(at - 3, at), ["--perms", "0755", "--dir"]);
  }
  assert.ok(dirs.indexOf("/srv") < dirs.indexOf("/srv/data"));
  const lastDir = args.lastIndexOf("--dir");
  assert.ok(lastDir < args.indexOf("--ro-bind"), "directories come before the binds");
});

Deno.test("bwrapArguments gives grants: write, run, network, and drops to two capabilities as root", () => {
  const grants: Grants = {
    read: ["/srv/in"],
    write: ["/srv/out"],
    net: true,
    env: {},
    run: ["/usr/bin/id"],
  };
  const args = bwrapArguments(INSTALL, grants, { tmpBytes: 1 << 20, dropsPrivileges: true });
  assert.deepEqual(operations(args, "--bind", 2), [["/srv/out", "/srv/out"]]);
  const readOnly = operations(args, "--ro-bind", 2).map(([, dest]) => dest);
  assert.ok(readOnly.includes("/srv/in"));
  assert.ok(readOnly.includes("/usr/bin/id"));
  assert.ok(!args.includes("--unshare-net"));
  assert.ok(operations(args, "--ro-bind-try", 2).some(([path]) => path === "/etc/resolv.conf"));
  assert.deepEqual(args.slice(args.indexOf("--cap-drop"), args.indexOf("--cap-drop") + 6), [
    "--cap-drop",
    "ALL",
    "--cap-add",
    "CAP_SETUID",
    "--cap-add",
    "CAP_SETGID",
  ]);
});

Deno.test("bwrapArguments binds a granted path under /tmp after the private /tmp", () => {
  const args = bwrapArguments(INSTALL, { ...NOTHING, write: ["/tmp/work"] }, {
    tmpBytes: 1 << 20,
    dropsPrivileges: false,
  });
  assert.ok(args.indexOf("--tmpfs") < args.indexOf("--bind"));
  assert.ok(!operations(args, "--dir", 1).some(([path]) => path === "/tmp"));
});

Deno.test("resolveGrants refuses what bubblewrap cannot express", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [Parameters<typeof resolveGrants>[0], RegExp][] = [
      [
        { read: ["data"] },
        /^Cannot confine s\.f: read path data is not absolute; write it from \/$/,
      ],
      [
        { write: [join(dir, "missing")] },
        /^Cannot confine s\.f: write path \S+missing does not exist/,
      ],
      [{ read: ["/"] }, /^Cannot confine s\.f: read grants \/, the whole file system/],
      [{ read: ["/proc/1"] }, /^Cannot confine s\.f: read path \/proc\/1 is inside \/proc/],
      [
        { net: ["api.example.com:443", "*"] },
        /^Cannot confine s\.f: net grants api\.example\.com:443, but bubblewrap gives a Python procedure the whole network or none; write net: \["\*"\] for the whole network$/,
      ],
      [
        { run: ["no-such-program-here"] },
        /^Cannot confine s\.f: run grants no-such-program-here, which is not a program on this server$/,
      ],
    ];
    for (const [permissions, pattern] of cases) {
      const env = environment({ PATH: "/usr/bin:/bin" });
      await assert.rejects(resolveGrants(permissions, "s.f", env), (error: Error) => {
        assert.match(error.message, pattern);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveGrants resolves paths, programs and variables", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await Deno.mkdir(join(dir, "real"));
    await Deno.symlink(join(dir, "real"), join(dir, "link"));
    const grants = await resolveGrants(
      { read: [join(dir, "link")], env: ["SET", "UNSET"], net: ["*"], run: ["sh"] },
      "s.f",
      environment({ SET: "value", PATH: "/usr/bin:/bin" }),
    );
    assert.deepEqual(grants.read, [join(dir, "real")]);
    assert.deepEqual(grants.env, { SET: "value" });
    assert.equal(grants.net, true);
    assert.equal(grants.run.length, 1);
    assert.match(grants.run[0], /\/(dash|bash|sh)$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("interpreterEnv passes on granted variables only, with HOME and a PATH of granted programs", () => {
  const server = environment({ PATH: "/server/bin", SECRET: "s3cret" });
  assert.deepEqual(interpreterEnv(NOTHING, true, server), { HOME: "/tmp" });
  assert.deepEqual(
    interpreterEnv(
      { ...NOTHING, env: { TZ: "UTC" }, run: ["/usr/bin/id", "/bin/true"] },
      true,
      server,
    ),
    { TZ: "UTC", HOME: "/tmp", PATH: "/usr/bin:/bin" },
  );
  assert.deepEqual(interpreterEnv(NOTHING, false, server), { HOME: "/tmp", PATH: "/server/bin" });
});

Deno.test("resolveGrants reads granted variables and PATH from the injected environment only", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await Deno.writeTextFile(join(dir, "tool"), "#!/bin/sh\n");
    await Deno.chmod(join(dir, "tool"), 0o755);
    // PATH of the process has no `tool`; only the injected PATH finds it.
    const grants = await resolveGrants(
      { env: ["GRANTED", "HOME"], run: ["tool"] },
      "s.f",
      environment({ GRANTED: "injected", PATH: dir }),
    );
    assert.deepEqual(grants.env, { GRANTED: "injected" });
    assert.deepEqual(grants.run, [join(dir, "tool")]);
    // With no variables, nothing of the process's environment leaks in.
    const bare = await resolveGrants({ env: ["HOME", "PATH"] }, "s.f", () => undefined);
    assert.deepEqual(bare.env, {});
    await assert.rejects(
      resolveGrants({ run: ["sh"] }, "s.f", () => undefined),
      /run grants sh, which is not a program on this server/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("findOnPath and findProgram find executables only", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "plain"), "");
    await Deno.writeTextFile(join(dir, "tool"), "#!/bin/sh\n");
    await Deno.chmod(join(dir, "tool"), 0o755);
    assert.equal(await findOnPath("tool", `/nonexistent:${dir}`), join(dir, "tool"));
    assert.equal(await findOnPath("plain", dir), undefined);
    assert.equal(await findOnPath("tool", ""), undefined);
    assert.equal(await findProgram(join(dir, "tool"), ""), join(dir, "tool"));
    assert.equal(await findProgram(join(dir, "plain"), undefined), undefined);
    assert.equal(await findProgram("bin/tool", dir), undefined);
    assert.equal(await findProgram("tool", dir), join(dir, "tool"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probePython finds the real interpreter, its library and the C library", async () => {
  const install = await probePython("python3");
  assert.equal(install.binary, await Deno.realPath(install.executable));
  assert.ok(!install.executable.includes("/shims/"), install.executable);
  const stdlib = await Promise.all(
    install.readOnly.map((path) => Deno.stat(join(path, "os.py")).then(() => true, () => false)),
  );
  assert.ok(stdlib.includes(true), `no standard library in ${install.readOnly}`);
  const libc = await Promise.all(
    install.readOnly.map((path) =>
      Deno.stat(join(path, "libc.so.6")).then(() => true, () => false)
    ),
  );
  assert.ok(libc.includes(true), `no libc in ${install.readOnly}`);
});
