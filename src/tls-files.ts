/**
 * TLS certificate and key files (the gateway's `--tls-cert`/`--tls-key`, the HTTP ingress's
 * `--http-tls-cert`/`--http-tls-key`): read, checked as a matching pair, and described for the logs.
 * Read again on SIGHUP, so a renewed certificate is served without dropping a connection.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';

/** A PEM certificate chain and its private key, as read from the files. */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new TypeError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Reads `certPath` and `keyPath` and checks that they are a PEM certificate and its key (Node builds
 * a secure context from them). Throws TypeError saying what is wrong.
 */
export function readTlsFiles(certPath: string, keyPath: string): TlsMaterial {
  const material = { cert: read(certPath), key: read(keyPath) };
  try {
    createSecureContext(material);
  } catch (error) {
    throw new TypeError(`${certPath} and ${keyPath} are not a PEM certificate and its private key: ${(error as Error).message}`);
  }
  return material;
}

/** What a log line says about a certificate: subject, expiry and SHA-256 fingerprint. */
export function describeCertificate(material: TlsMaterial): { subject: string; validTo: string; fingerprint256: string } {
  const cert = new X509Certificate(material.cert);
  return { subject: cert.subject.replace(/\n/g, ', '), validTo: cert.validTo, fingerprint256: cert.fingerprint256 };
}

/**
 * The problem with a cert/key pair of options, or null when both are unset or both are a good pair:
 * for the option tables' cross-option rules.
 */
export function tlsPairProblem(certPath: string, keyPath: string): { key: 'cert' | 'key'; must: string } | null {
  if (certPath === '' && keyPath === '') return null;
  if (certPath === '') return { key: 'cert', must: 'a PEM certificate file (given with the key)' };
  if (keyPath === '') return { key: 'key', must: 'a PEM private key file (given with the certificate)' };
  try {
    readTlsFiles(certPath, keyPath);
    return null;
  } catch (error) {
    return { key: 'cert', must: `a readable PEM certificate matching the key (${(error as Error).message})` };
  }
}
