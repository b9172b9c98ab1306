/**
 * Self-signed certificates for the TLS tests, made with Debian's `openssl` (installed by
 * scripts/setup.js): an EC P-256 key and a certificate for 127.0.0.1 and localhost, valid one day.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface TestCertificate {
  readonly certPath: string;
  readonly keyPath: string;
  /** The PEM certificate: a client's `ca` to trust exactly this server certificate. */
  readonly cert: string;
  readonly fingerprint256: string;
}

/** Makes `NAME.cert.pem` and `NAME.key.pem` in `dir`. */
export function makeCertificate(dir: string, name: string): TestCertificate {
  const certPath = join(dir, `${name}.cert.pem`);
  const keyPath = join(dir, `${name}.key.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'pipe' });
  const cert = readFileSync(certPath, 'utf8');
  return { certPath, keyPath, cert, fingerprint256: new X509Certificate(cert).fingerprint256 };
}

/** Copies a certificate's files over `certPath`/`keyPath` (what a renewal does before SIGHUP). */
export function install(from: TestCertificate, certPath: string, keyPath: string): void {
  copyFileSync(from.certPath, certPath);
  copyFileSync(from.keyPath, keyPath);
}

/** An HTTPS request trusting only `ca`; resolves with status, body and the server certificate's fingerprint. */
export function httpsRequest(url: string, ca: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: init.method ?? 'GET', headers: init.headers, ca, agent: false }, (res) => {
      const fingerprint256 = (res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint256 }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}
