/**
 * Who a verified client certificate names, and whether it may name a client
 * at all. The TLS stack has already checked the chain, signatures and
 * validity period against the client CA; this module reads the structured
 * fields of the leaf certificate (with `@peculiar/asn1-x509`, never by
 * parsing a printed subject) and applies rpc's policy:
 *
 * - it is not a CA certificate (basicConstraints CA:TRUE) and not the
 *   server's own certificate;
 * - its extended key usage includes clientAuth;
 * - the client's name is the value of the subject's one CN attribute, taken
 *   exactly; a subject without CN names the client by its one DNS name in
 *   subjectAltName. Two CN attributes, or no name at all, are refused.
 *
 * @module
 */

import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_subjectAltName,
  id_kp_clientAuth,
  SubjectAlternativeName,
} from "@peculiar/asn1-x509";
import { ErrorKind, RpcError } from "../errors.ts";

/** The OID of the CN (commonName) attribute. */
const COMMON_NAME = "2.5.4.3";

/** Options of {@linkcode clientNameOf}. */
export interface ClientCertificatePolicy {
  /** DER of the server's own certificate, which is never accepted from a client. */
  ownCertificate?: Uint8Array;
}

function refuse(reason: string): RpcError {
  return new RpcError(ErrorKind.Unauthorized, `Client certificate refused: ${reason}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The client name a (chain-verified) client certificate gives.
 *
 * @throws {RpcError} `Unauthorized` saying why the certificate may not name a client.
 */
export function clientNameOf(der: Uint8Array, policy: ClientCertificatePolicy = {}): string {
  let certificate: Certificate;
  try {
    certificate = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw refuse(`cannot parse it (${(error as Error).message})`);
  }
  const tbs = certificate.tbsCertificate;
  const extension = (id: string) => tbs.extensions?.find((candidate) => candidate.extnID === id);
  const basic = extension(id_ce_basicConstraints);
  if (basic && AsnConvert.parse(basic.extnValue, BasicConstraints).cA) {
    throw refuse("it is a CA certificate (basicConstraints CA:TRUE)");
  }
  if (policy.ownCertificate && sameBytes(der, policy.ownCertificate)) {
    throw refuse("it is this server's own certificate");
  }
  const usage = extension(id_ce_extKeyUsage);
  if (!usage) throw refuse("it has no extended key usage; clientAuth is required");
  const usages = [...AsnConvert.parse(usage.extnValue, ExtendedKeyUsage)];
  if (!usages.includes(id_kp_clientAuth)) {
    throw refuse(`its extended key usage (${usages.join(", ")}) does not include clientAuth`);
  }
  const commonNames = tbs.subject.flatMap((rdn) => [...rdn])
    .filter((attribute) => attribute.type === COMMON_NAME)
    .map((attribute) => attribute.value.toString());
  if (commonNames.length > 1) {
    throw refuse(`its subject has ${commonNames.length} CN attributes; exactly one is allowed`);
  }
  if (commonNames.length === 1) {
    if (commonNames[0] === "") throw refuse("its CN is empty");
    return commonNames[0];
  }
  const alternative = extension(id_ce_subjectAltName);
  const dnsNames = alternative
    ? AsnConvert.parse(alternative.extnValue, SubjectAlternativeName)
      .flatMap((name) => (name.dNSName === undefined ? [] : [name.dNSName]))
    : [];
  if (dnsNames.length !== 1 || dnsNames[0] === "") {
    throw refuse(`its subject has no CN and its subjectAltName has ${dnsNames.length} DNS names`);
  }
  return dnsNames[0];
}
