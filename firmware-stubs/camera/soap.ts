import { escapeXml } from './xml.js';

export const ns = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  wsa: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  wsd: 'http://schemas.xmlsoap.org/ws/2005/04/discovery',
  dn: 'http://www.onvif.org/ver10/network/wsdl',
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  trt: 'http://www.onvif.org/ver10/media/wsdl',
  timg: 'http://www.onvif.org/ver20/imaging/wsdl',
  tt: 'http://www.onvif.org/ver10/schema',
  ter: 'http://www.onvif.org/ver10/error',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
} as const;

const declarations = Object.entries({
  s: ns.soap,
  tds: ns.tds,
  trt: ns.trt,
  timg: ns.timg,
  tt: ns.tt,
  ter: ns.ter,
})
  .map(([prefix, uri]) => `xmlns:${prefix}="${uri}"`)
  .join(' ');

/** A SOAP 1.2 response envelope. */
export function soapResponse(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope ${declarations}><s:Body>${body}</s:Body></s:Envelope>`;
}

/** A SOAP 1.2 fault, e.g. `soapFault('s:Sender', 'ter:NotAuthorized', 'Sender not authorized')`. */
export function soapFault(code: 's:Sender' | 's:Receiver', subcode: string, reason: string): string {
  return soapResponse(
    `<s:Fault><s:Code><s:Value>${code}</s:Value><s:Subcode><s:Value>${subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en">${escapeXml(reason)}</s:Text></s:Reason></s:Fault>`,
  );
}

/** A tag with escaped text, `<tt:Name>v</tt:Name>`. */
export function el(name: string, value: string | number | boolean): string {
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}
