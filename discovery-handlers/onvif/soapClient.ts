import http from 'node:http';
import https from 'node:https';
import type { Clock } from '../../src/util/clock.js';
import { OnvifError, OnvifErrorCode } from './errors.js';
import { type Credentials, soapEnvelope, usernameTokenHeader } from './soapEnvelope.js';
import { at, parseXml, textAt, type XmlElement } from './xml.js';

export interface SoapClientOptions {
  clock: Clock;
  timeoutMs: number;
  maxResponseBytes: number;
  /** Aborts every request in flight (discovery ended, or the camera said Bye). */
  signal: AbortSignal;
  agent?: { http: http.Agent; https: https.Agent };
}

export interface SoapCall {
  url: string;
  /** The operation element, e.g. `<tds:GetDeviceInformation/>`. */
  body: string;
  credentials?: Credentials;
  /** Camera clock minus ours, in ms, so the token's Created matches the camera's time. */
  clockOffsetMs?: number;
}

interface RawResponse {
  status: number;
  text: string;
}

/** Sends one SOAP 1.2 request and returns the parsed Body; SOAP faults and HTTP errors become OnvifErrors. */
export async function soapCall(call: SoapCall, options: SoapClientOptions): Promise<XmlElement> {
  const header = call.credentials
    ? usernameTokenHeader(call.credentials, options.clock.now() + (call.clockOffsetMs ?? 0))
    : '';
  const response = await post(call.url, soapEnvelope(call.body, header), options);
  return interpret(response);
}

function interpret(response: RawResponse): XmlElement {
  const authStatus = response.status === 401 || response.status === 403;
  let envelope: XmlElement | undefined;
  try {
    envelope = at(parseXml(response.text), 'Envelope');
  } catch (err) {
    if (authStatus) throw notAuthorized(`HTTP ${response.status}`);
    if (response.status >= 300) throw httpError(response.status);
    throw err;
  }
  const fault = at(envelope, 'Body', 'Fault');
  if (fault) throw faultError(fault, response.status);
  if (authStatus) throw notAuthorized(`HTTP ${response.status}`);
  if (response.status >= 300) throw httpError(response.status);
  const body = at(envelope, 'Body');
  if (!body)
    throw new OnvifError(OnvifErrorCode.malformedResponse, 'reply is not a SOAP envelope with a Body');
  return body;
}

function faultError(fault: XmlElement, status: number): OnvifError {
  const subcode = textAt(fault, 'Code', 'Subcode', 'Value') ?? textAt(fault, 'faultcode') ?? '';
  const reason = textAt(fault, 'Reason', 'Text') ?? textAt(fault, 'faultstring') ?? 'no reason given';
  if (/NotAuthorized|FailedAuthentication|InvalidSecurity/i.test(subcode) || status === 401) {
    return notAuthorized(`${subcode || 'HTTP 401'}: ${reason}`);
  }
  return new OnvifError(OnvifErrorCode.soapFault, `SOAP fault ${subcode}: ${reason}`.slice(0, 500));
}

function notAuthorized(detail: string): OnvifError {
  return new OnvifError(
    OnvifErrorCode.notAuthorized,
    `camera refused the credentials (${detail})`.slice(0, 500),
  );
}

function httpError(status: number): OnvifError {
  return new OnvifError(OnvifErrorCode.httpError, `HTTP ${status}`);
}

/** POSTs `payload`, bounding time (connect to last byte) and response size; never follows redirects. */
function post(url: string, payload: string, options: SoapClientOptions): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const target = parseUrl(url);
    const transport = target.protocol === 'https:' ? https : http;
    const body = Buffer.from(payload, 'utf8');
    const req = transport.request(target, {
      method: 'POST',
      agent: target.protocol === 'https:' ? options.agent?.https : options.agent?.http,
      headers: { 'content-type': 'application/soap+xml; charset=utf-8', 'content-length': body.length },
    });
    const fail = (err: OnvifError) => {
      cleanup();
      req.destroy(err);
      reject(err);
    };
    const timer = options.clock.setTimeout(
      () => fail(new OnvifError(OnvifErrorCode.timeout, `no complete reply within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const onAbort = () => fail(new OnvifError(OnvifErrorCode.aborted, 'request aborted'));
    options.signal.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => {
      options.clock.clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
    };
    req.on('error', (err) => {
      cleanup();
      reject(err instanceof OnvifError ? err : connectionFailed(err));
    });
    req.on('response', (res) =>
      readBounded(res, options.maxResponseBytes, fail, (text) => {
        cleanup();
        resolve({ status: res.statusCode ?? 0, text });
      }),
    );
    if (options.signal.aborted) onAbort();
    else req.end(body);
  });
}

function readBounded(
  res: http.IncomingMessage,
  maxBytes: number,
  fail: (err: OnvifError) => void,
  done: (text: string) => void,
): void {
  const tooLarge = () =>
    fail(new OnvifError(OnvifErrorCode.responseTooLarge, `reply larger than ${maxBytes} bytes, aborted`));
  if (Number(res.headers['content-length'] ?? 0) > maxBytes) {
    tooLarge();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) {
      chunks.length = 0;
      res.destroy();
      tooLarge();
      return;
    }
    chunks.push(chunk);
  });
  res.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
  res.on('error', () => undefined);
}

function parseUrl(url: string): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch (err) {
    throw new OnvifError(OnvifErrorCode.badAddress, `not a URL: ${url.slice(0, 200)}`, { cause: err });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new OnvifError(OnvifErrorCode.badAddress, `not an http(s) URL: ${url.slice(0, 200)}`);
  }
  return target;
}

function connectionFailed(err: Error): OnvifError {
  return new OnvifError(OnvifErrorCode.connectionFailed, `cannot reach the camera: ${err.message}`, {
    cause: err,
  });
}
