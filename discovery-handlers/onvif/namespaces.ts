/** XML namespaces of WS-Discovery (the 2005/04 draft ONVIF uses), SOAP 1.2, WS-Security and ONVIF. */
export const ns = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  wsa: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  wsd: 'http://schemas.xmlsoap.org/ws/2005/04/discovery',
  dn: 'http://www.onvif.org/ver10/network/wsdl',
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  trt: 'http://www.onvif.org/ver10/media/wsdl',
  tt: 'http://www.onvif.org/ver10/schema',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
} as const;

export const wsDiscovery = {
  group: '239.255.255.250',
  port: 3702,
  to: 'urn:schemas-xmlsoap-org:ws:2005:04:discovery',
  probeAction: `${ns.wsd}/Probe`,
  /** SOAP-over-UDP caps a message at 32767 octets; anything larger is dropped unread. */
  maxDatagramBytes: 32_767,
} as const;

export const wsSecurity = {
  passwordDigest:
    'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest',
  base64Binary:
    'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary',
} as const;
