import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The certificates a test control plane needs, made with openssl at start: a CA, the apiserver's serving
 * certificate for 127.0.0.1, an admin client certificate (group system:masters) for the harness, the
 * controller-manager and the scheduler, and the key pair that signs service-account tokens.
 */
export interface ControlPlaneCerts {
  dir: string;
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

const openssl = (args: string[], cwd: string) =>
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });

function ecKey(dir: string, name: string): string {
  openssl(['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', `${name}.key`], dir);
  return join(dir, `${name}.key`);
}

/** A certificate for `subject` signed by the CA in `dir`, with the given X.509v3 extensions. */
function signed(dir: string, name: string, subject: string, extensions: string[]): void {
  ecKey(dir, name);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), `${extensions.join('\n')}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
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
}

export function makeControlPlaneCerts(dir: string): ControlPlaneCerts {
  ecKey(dir, 'ca');
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=leafbridge-test-ca',
      '-days',
      '7',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'ca.crt',
    ],
    dir,
  );
  const leaf = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment'];
  signed(dir, 'serving', '/CN=kube-apiserver', [
    ...leaf,
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc',
  ]);
  signed(dir, 'admin', '/O=system:masters/CN=leafbridge-test-admin', [
    ...leaf,
    'extendedKeyUsage=clientAuth',
  ]);
  ecKey(dir, 'sa');
  openssl(['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    servingCert: p('serving.crt'),
    servingKey: p('serving.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
}

export const base64File = (file: string): string => readFileSync(file).toString('base64');
