/**
 * Minimal X.509 certificate building: node-forge encodes the ASN.1, node:crypto holds the keys
 * and signs. Forge's own signing is RSA-only and slow in pure JS; signing the TBS natively keeps
 * a per-host leaf to about a millisecond and lets the CA be RSA or EC.
 */
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { unusableSigningKey } from './signing-key.js';

const { asn1 } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

const OID = {
  commonName: '2.5.4.3',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
};

export interface CertSpec {
  commonName: string;
  /** DER of the issuer's subject Name; omit for a self-signed certificate. */
  issuerName?: Buffer;
  /** The issuer's subject key identifier, for the authority key identifier extension. */
  issuerKeyId?: Buffer;
  publicKey: KeyObject;
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  /** DNS names and IP addresses for the subjectAltName (leaf certificates). */
  hosts?: readonly string[];
}

const bin = (b: Buffer): string => b.toString('binary');
const der = (o: forge.asn1.Asn1): Buffer => Buffer.from(asn1.toDer(o).getBytes(), 'binary');
const seq = (items: forge.asn1.Asn1[]): forge.asn1.Asn1 => asn1.create(U, T.SEQUENCE, true, items);
const oid = (o: string): forge.asn1.Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(o).getBytes());
const octets = (b: Buffer): forge.asn1.Asn1 => asn1.create(U, T.OCTETSTRING, false, bin(b));
/** Parse DER without forge's guess that BIT STRING contents are ASN.1, so re-encoding is exact. */
const parse = (b: Buffer): forge.asn1.Asn1 =>
  (asn1.fromDer as unknown as (bytes: string, opts: { decodeBitStrings: boolean }) => forge.asn1.Asn1)(bin(b), { decodeBitStrings: false });
const time = (d: Date): forge.asn1.Asn1 =>
  d.getUTCFullYear() < 2050 ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d)) : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));

function name(cn: string): forge.asn1.Asn1 {
  return seq([asn1.create(U, T.SET, true, [seq([oid(OID.commonName), asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(cn))])])]);
}

function extension(id: string, critical: boolean, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  const parts = [oid(id)];
  if (critical) parts.push(asn1.create(U, T.BOOLEAN, false, '\xff'));
  parts.push(octets(der(value)));
  return seq(parts);
}

/** keyUsage bits, DER BIT STRING: the first octet counts the unused trailing bits. */
function keyUsage(ca: boolean): forge.asn1.Asn1 {
  // CA: digitalSignature, keyCertSign, cRLSign. Leaf: digitalSignature, keyEncipherment.
  return asn1.create(U, T.BITSTRING, false, ca ? '\x01\x86' : '\x05\xa0');
}

function altNames(hosts: readonly string[]): forge.asn1.Asn1 {
  return seq(
    hosts.map((h) =>
      isIP(h)
        ? asn1.create(asn1.Class.CONTEXT_SPECIFIC, 7, false, (forge.util as unknown as { bytesFromIP(ip: string): string }).bytesFromIP(h))
        : asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, h),
    ),
  );
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey bit string. */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = parse(publicKey.export({ type: 'spki', format: 'der' }));
  const bits = (spki.value as forge.asn1.Asn1[])[1].value as string;
  // The first octet of a BIT STRING's contents counts unused bits; the key follows.
  return createHash('sha1').update(Buffer.from(bits, 'binary').subarray(1)).digest();
}

function signatureAlgorithm(key: KeyObject): forge.asn1.Asn1 {
  if (key.asymmetricKeyType === 'rsa') return seq([oid(OID.sha256WithRSA), asn1.create(U, T.NULL, false, '')]);
  if (key.asymmetricKeyType === 'ec') return seq([oid(OID.ecdsaWithSHA256)]);
  throw new Error(unusableSigningKey(key));
}

/** Build and sign a certificate; returns it as PEM. */
export function buildCertificate(spec: CertSpec): string {
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // a positive INTEGER
  serial[0] |= 0x01; // and no leading zero octet
  const keyId = keyIdentifier(spec.publicKey);
  const exts = [
    extension(OID.basicConstraints, true, seq(spec.ca ? [asn1.create(U, T.BOOLEAN, false, '\xff')] : [])),
    extension(OID.keyUsage, true, keyUsage(spec.ca)),
    extension(OID.subjectKeyId, false, octets(keyId)),
  ];
  if (!spec.ca) exts.push(extension(OID.extKeyUsage, false, seq([oid(OID.serverAuth)])));
  if (spec.hosts && spec.hosts.length > 0) exts.push(extension(OID.subjectAltName, false, altNames(spec.hosts)));
  if (spec.issuerKeyId) {
    exts.push(extension(OID.authorityKeyId, false, seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, bin(spec.issuerKeyId))])));
  }
  const sigAlg = signatureAlgorithm(spec.signingKey);
  const subject = name(spec.commonName);
  const tbs = seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(U, T.INTEGER, false, '\x02')]),
    asn1.create(U, T.INTEGER, false, bin(serial)),
    sigAlg,
    spec.issuerName ? parse(spec.issuerName) : subject,
    seq([time(spec.notBefore), time(spec.notAfter)]),
    subject,
    parse(spec.publicKey.export({ type: 'spki', format: 'der' })),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 3, true, [seq(exts)]),
  ]);
  const tbsDer = der(tbs);
  const signature = sign('sha256', tbsDer, spec.signingKey);
  const cert = seq([tbs, sigAlg, asn1.create(U, T.BITSTRING, false, '\x00' + bin(signature))]);
  const b64 = der(cert).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** The subject Name of a certificate, as DER, to use verbatim as a leaf's issuer. */
export function subjectNameDer(certDer: Buffer): Buffer {
  const cert = parse(certDer);
  const tbs = (cert.value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[];
  // TBSCertificate: [0] version (optional), serial, signature, issuer, validity, subject.
  const off = tbs[0].tagClass === asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  return der(tbs[off + 4]);
}
