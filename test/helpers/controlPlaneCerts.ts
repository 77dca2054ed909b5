import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ecKey, makeCa, openssl, signCert } from './tlsCerts.js';

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

export function makeControlPlaneCerts(dir: string): ControlPlaneCerts {
  const ca = makeCa(dir, 'ca', '/CN=leafbridge-test-ca');
  const leaf = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment'];
  signCert(dir, ca, 'serving', '/CN=kube-apiserver', [
    ...leaf,
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc',
  ]);
  signCert(dir, ca, 'admin', '/O=system:masters/CN=leafbridge-test-admin', [
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
