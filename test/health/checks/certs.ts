/**
 * Test certificates made with openssl at test time: a private CA and leaves
 * it signs for given DNS names / IPs, valid for a number of days.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  /** Path of the CA certificate (PEM). */
  caFile: string;
  caPem: string;
  /** A leaf for `names` (`DNS:x` or `IP:x` entries), valid `days`. */
  leaf(name: string, sans: string[], days: number): { key: string; cert: string };
}

export function makeCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'ia-ca-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '30', '-subj', '/CN=integration-agent test CA'], { stdio: 'ignore' });
  return {
    dir,
    caFile,
    caPem: readFileSync(caFile, 'utf8'),
    leaf(name, sans, days) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const crt = join(dir, `${name}.crt`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, `subjectAltName=${sans.join(',')}\n`);
      execFileSync('openssl', ['req', '-new', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`], { stdio: 'ignore' });
      execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', crt, '-days', String(days), '-extfile', ext], { stdio: 'ignore' });
      return { key: readFileSync(key, 'utf8'), cert: readFileSync(crt, 'utf8') };
    },
  };
}
