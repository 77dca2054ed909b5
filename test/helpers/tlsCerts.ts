import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A certificate and its key, as PEM files. */
export interface CertFiles {
  cert: string;
  key: string;
}

export const openssl = (args: string[], cwd: string) =>
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });

export function ecKey(dir: string, name: string): string {
  openssl(['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', `${name}.key`], dir);
  return join(dir, `${name}.key`);
}

/** A self-signed CA named `name` in `dir` (name.crt, name.key). */
export function makeCa(dir: string, name: string, subject = `/CN=${name}`): CertFiles {
  const key = ecKey(dir, name);
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      subject,
      '-days',
      '7',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      `${name}.crt`,
    ],
    dir,
  );
  return { cert: join(dir, `${name}.crt`), key };
}

/**
 * A leaf certificate `name` signed by `ca`: a server's (serverAuth, for 127.0.0.1 and localhost) or a
 * client's (clientAuth), with subject CN `cn` and any more subject alternative names.
 */
export function makeLeaf(
  dir: string,
  ca: CertFiles,
  name: string,
  o: { cn: string; usage: 'server' | 'client'; sans?: string[] },
): CertFiles {
  const sans = o.usage === 'server' ? ['IP:127.0.0.1', 'DNS:localhost', ...(o.sans ?? [])] : (o.sans ?? []);
  return signCert(dir, ca, name, `/CN=${o.cn}`, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${o.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
    ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
  ]);
}

/** A certificate `name` for `subject`, signed by `ca`, with the given X.509v3 extensions. */
export function signCert(
  dir: string,
  ca: CertFiles,
  name: string,
  subject: string,
  extensions: string[],
): CertFiles {
  const key = ecKey(dir, name);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), `${extensions.join('\n')}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-CAcreateserial',
      '-days',
      '7',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
  return { cert: join(dir, `${name}.crt`), key };
}
