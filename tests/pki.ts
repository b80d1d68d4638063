/**
 * A throwaway X.509 PKI for TLS tests, made with the real `openssl` command:
 * a root CA, intermediate CAs, a server certificate for 127.0.0.1, and
 * client certificates with whatever subject, extensions, issuer and validity
 * period a test needs. Every certificate is v3 (with extensions), as rustls,
 * which verifies them, requires; keys are EC P-256 (quick to make).
 *
 * @module
 */

import { join } from "node:path";

/** Paths of an issued certificate and its key. */
export interface Issued {
  /** PEM certificate (for a certificate from an intermediate, followed by the intermediate). */
  cert: string;
  key: string;
}

/** Extension profiles of {@linkcode TestPki.issue}. */
export type Profile = "client" | "server" | "noEku" | "serverEku" | "san" | "authority";

const CONFIG = `[ ca ]
default_ca = test

[ test ]
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none

[ anything ]

[ client ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth

[ server ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost

[ noEku ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature

[ serverEku ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth

[ san ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:c1

[ authority ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
`;

/** Runs `openssl` in `dir`; throws with its stderr when it fails. */
export async function openssl(dir: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/** A self-signed certificate for 127.0.0.1 (an EC key, valid one day), made with openssl in `dir`. */
export async function selfSignedCertificate(dir: string): Promise<{ cert: string; key: string }> {
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "key.pem",
    "-out",
    "cert.pem",
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  );
  return {
    cert: await Deno.readTextFile(join(dir, "cert.pem")),
    key: await Deno.readTextFile(join(dir, "key.pem")),
  };
}

/** A PKI in a directory. `ca` (the root, CN "rpc test CA") and `server` exist from the start. */
export class TestPki {
  #intermediates = new Set<string>();

  private constructor(readonly dir: string) {}

  /** Makes the root CA and the server certificate in `dir`. */
  static async create(dir: string): Promise<TestPki> {
    await Deno.writeTextFile(join(dir, "openssl.cnf"), CONFIG);
    await Deno.writeTextFile(join(dir, "index.txt"), "");
    await Deno.writeTextFile(join(dir, "serial"), "1000\n");
    await Deno.mkdir(join(dir, "issued"));
    const pki = new TestPki(dir);
    await pki.root("ca", "/CN=rpc test CA");
    await pki.issue("server", { subject: "/CN=s1", profile: "server" });
    return pki;
  }

  /** The absolute path of a file in the PKI. */
  path(file: string): string {
    return join(this.dir, file);
  }

  /** The text of a file in the PKI. */
  read(file: string): Promise<string> {
    return Deno.readTextFile(this.path(file));
  }

  /** A self-signed root CA `NAME.pem` with `NAME.key`. */
  async root(name: string, subject: string): Promise<Issued> {
    await openssl(
      this.dir,
      "ecparam",
      "-name",
      "prime256v1",
      "-genkey",
      "-noout",
      "-out",
      `${name}.key`,
    );
    await openssl(
      this.dir,
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-subj",
      subject,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    );
    return { cert: this.path(`${name}.pem`), key: this.path(`${name}.key`) };
  }

  /**
   * Issues `NAME.pem` (and `NAME.key`) with `subject` in openssl's `-subj`
   * form (`/CN=c1/O=x`; a value may hold any character but `/`), signed by
   * `issuer` (default `ca`), with the extensions of `profile` (default
   * `client`: clientAuth, not a CA). `start` and `end` (`YYYYMMDDHHMMSSZ`)
   * replace the default validity of two days from now. A certificate signed
   * by an intermediate is followed by the intermediate in `NAME.pem`.
   */
  async issue(
    name: string,
    options: { subject: string; issuer?: string; profile?: Profile; start?: string; end?: string },
  ): Promise<Issued> {
    const issuer = options.issuer ?? "ca";
    await openssl(
      this.dir,
      "ecparam",
      "-name",
      "prime256v1",
      "-genkey",
      "-noout",
      "-out",
      `${name}.key`,
    );
    await openssl(
      this.dir,
      "req",
      "-new",
      "-utf8",
      "-key",
      `${name}.key`,
      "-subj",
      options.subject,
      "-out",
      `${name}.csr`,
    );
    await openssl(
      this.dir,
      "ca",
      "-batch",
      "-config",
      "openssl.cnf",
      "-preserveDN",
      "-notext",
      "-cert",
      `${issuer}.pem`,
      "-keyfile",
      `${issuer}.key`,
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.leaf.pem`,
      "-extensions",
      options.profile ?? "client",
      ...(options.start ? ["-startdate", options.start] : []),
      ...(options.end ? ["-enddate", options.end] : ["-days", "2"]),
    );
    const leaf = await this.read(`${name}.leaf.pem`);
    const chain = this.#intermediates.has(issuer) ? await this.read(`${issuer}.pem`) : "";
    await Deno.writeTextFile(this.path(`${name}.pem`), leaf + chain);
    return { cert: this.path(`${name}.pem`), key: this.path(`${name}.key`) };
  }

  /** An intermediate CA `NAME.pem`, signed by the root. */
  async intermediate(name: string, subject: string): Promise<Issued> {
    const issued = await this.issue(name, { subject, profile: "authority" });
    this.#intermediates.add(name);
    return issued;
  }

  /** `NAME.pem` with one byte of its signature flipped, as `TARGET.pem` (the key is copied). */
  async tamper(name: string, target: string): Promise<Issued> {
    const pem = await this.read(`${name}.pem`);
    const body = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
    const der = Uint8Array.from(atob(body), (char) => char.charCodeAt(0));
    der[der.length - 5] ^= 0x01; // inside the signature, the last field of the certificate
    const base64 = btoa(String.fromCharCode(...der)).replace(/.{64}/g, "$&\n");
    await Deno.writeTextFile(
      this.path(`${target}.pem`),
      `-----BEGIN CERTIFICATE-----\n${base64.trimEnd()}\n-----END CERTIFICATE-----\n`,
    );
    await Deno.copyFile(this.path(`${name}.key`), this.path(`${target}.key`));
    return { cert: this.path(`${target}.pem`), key: this.path(`${target}.key`) };
  }
}
