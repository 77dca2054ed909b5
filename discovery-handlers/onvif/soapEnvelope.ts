import { createHash, randomBytes } from 'node:crypto';
import { ns, wsSecurity } from './namespaces.js';
import { escapeXml } from './xml.js';

export interface Credentials {
  username: string;
  password: string;
}

/** WS-UsernameToken PasswordDigest: Base64(SHA1(nonce + created + password)), nonce as raw bytes. */
export function passwordDigest(nonce: Buffer, created: string, password: string): string {
  return createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(created, 'utf8'), Buffer.from(password, 'utf8')]))
    .digest('base64');
}

/** The WS-Security header for one request; `createdMs` is the camera's idea of now. */
export function usernameTokenHeader(credentials: Credentials, createdMs: number): string {
  const nonce = randomBytes(16);
  const created = new Date(createdMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const digest = passwordDigest(nonce, created, credentials.password);
  return (
    `<wsse:Security s:mustUnderstand="1" xmlns:wsse="${ns.wsse}" xmlns:wsu="${ns.wsu}">` +
    '<wsse:UsernameToken>' +
    `<wsse:Username>${escapeXml(credentials.username)}</wsse:Username>` +
    `<wsse:Password Type="${wsSecurity.passwordDigest}">${digest}</wsse:Password>` +
    `<wsse:Nonce EncodingType="${wsSecurity.base64Binary}">${nonce.toString('base64')}</wsse:Nonce>` +
    `<wsu:Created>${created}</wsu:Created>` +
    '</wsse:UsernameToken></wsse:Security>'
  );
}

/** A SOAP 1.2 envelope around `body`, with the device, media and schema namespaces declared. */
export function soapEnvelope(body: string, header = ''): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<s:Envelope xmlns:s="${ns.soap}" xmlns:tds="${ns.tds}" xmlns:trt="${ns.trt}" xmlns:tt="${ns.tt}">` +
    `<s:Header>${header}</s:Header><s:Body>${body}</s:Body></s:Envelope>`
  );
}
