import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../../src/util/logger.js';
import { AuthResult, verifyUsernameToken } from './auth.js';
import { deviceOperations, type Operation, unauthenticatedOperations } from './deviceService.js';
import { imagingOperations } from './imagingService.js';
import { mediaOperations, NoProfileError } from './mediaService.js';
import type { CameraModel } from './model.js';
import { serveSnapshot, snapshotPath } from './snapshot.js';
import { soapFault, soapResponse } from './soap.js';
import { at, firstChildName, parseXml } from './xml.js';

export const defaultMaxRequestBytes = 1_048_576;

const services: Record<string, Record<string, Operation>> = {
  '/onvif/device_service': deviceOperations,
  '/onvif/media_service': mediaOperations,
  '/onvif/imaging_service': imagingOperations,
};

interface Reply {
  status: number;
  body: string;
  operation?: string;
}

/** Always a Content-Length and never chunked: libonvif (onvif-util) reads nothing else. */
function send(res: ServerResponse, reply: Reply): void {
  res.writeHead(reply.status, {
    'Content-Type': 'application/soap+xml; charset=utf-8',
    'Content-Length': Buffer.byteLength(reply.body),
  });
  res.end(reply.body);
}

function readBody(req: IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    if (Number(req.headers['content-length'] ?? 0) > maxBytes) return resolve(undefined);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        chunks.length = 0;
        req.pause();
        resolve(undefined);
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(undefined));
  });
}

function authorize(
  model: CameraModel,
  operationName: string,
  envelope: ReturnType<typeof parseXml>,
): Reply | undefined {
  if (!model.credentials || unauthenticatedOperations.has(operationName)) return undefined;
  const result = verifyUsernameToken(at(envelope, 'Envelope'), model.credentials, Date.now());
  if (result === AuthResult.ok) return undefined;
  return {
    status: 400,
    body: soapFault('s:Sender', 'ter:NotAuthorized', `Sender not authorized (${result})`),
  };
}

function dispatch(model: CameraModel, operations: Record<string, Operation>, text: string): Reply {
  const envelope = parseXml(text);
  const body = at(envelope, 'Envelope', 'Body');
  const name = firstChildName(body);
  if (!envelope || !body || !name) {
    return { status: 400, body: soapFault('s:Sender', 'ter:WellFormed', 'not a well-formed SOAP envelope') };
  }
  const operation = operations[name];
  if (!operation) {
    const body = soapFault('s:Receiver', 'ter:ActionNotSupported', `${name} is not supported`);
    return { status: 500, body, operation: name };
  }
  const denied = authorize(model, name, envelope);
  if (denied) return { ...denied, operation: name };
  try {
    return { status: 200, body: soapResponse(operation(model, body)), operation: name };
  } catch (err) {
    if (!(err instanceof NoProfileError)) throw err;
    return { status: 400, body: soapFault('s:Sender', 'ter:NoProfile', err.message), operation: name };
  }
}

async function handle(
  model: CameraModel,
  maxBytes: number,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Reply> {
  const operations = services[(req.url ?? '').split('?')[0] ?? ''];
  if (!operations) return { status: 404, body: soapFault('s:Sender', 'ter:NotFound', 'no such service') };
  if (req.method !== 'POST') return { status: 405, body: soapFault('s:Sender', 'ter:NotPost', 'use POST') };
  const text = await readBody(req, maxBytes);
  if (text === undefined) {
    res.setHeader('connection', 'close');
    return {
      status: 413,
      body: soapFault('s:Sender', 'ter:TooLarge', `request larger than ${maxBytes} bytes`),
    };
  }
  return dispatch(model, operations, text);
}

/** The camera's SOAP endpoint: device service and media service on one HTTP server. */
export function createSoapServer(
  model: CameraModel,
  logger: Logger,
  maxBytes = defaultMaxRequestBytes,
): Server {
  return createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === snapshotPath) {
      const status = serveSnapshot(model, req, res);
      logger.debug({ url: req.url, status }, 'snapshot request');
      return;
    }
    handle(model, maxBytes, req, res)
      .then((reply) => {
        logger.debug({ url: req.url, operation: reply.operation, status: reply.status }, 'soap request');
        send(res, reply);
      })
      .catch((err: unknown) => {
        logger.error({ err: String(err) }, 'soap request failed');
        send(res, { status: 500, body: soapFault('s:Receiver', 'ter:Internal', 'internal error') });
      });
  });
}
