import { OnvifError, OnvifErrorCode, onvifErrorCode } from './errors.js';
import type { CameraFacts, CameraTarget, QueryFailure } from './properties.js';
import { type SoapClientOptions, soapCall } from './soapClient.js';
import type { Credentials } from './soapEnvelope.js';
import { at, attribute, children, escapeXml, textAt, type XmlElement } from './xml.js';

const maxProfiles = 16;
/** Errors after which asking the camera anything else is pointless (or unsafe). */
const fatal = new Set<string>([
  OnvifErrorCode.notAuthorized,
  OnvifErrorCode.timeout,
  OnvifErrorCode.responseTooLarge,
  OnvifErrorCode.rejectedXml,
  OnvifErrorCode.malformedResponse,
  OnvifErrorCode.connectionFailed,
  OnvifErrorCode.badAddress,
  OnvifErrorCode.aborted,
]);

export interface QueryResult {
  facts: CameraFacts;
  failure?: QueryFailure;
}

interface Session {
  target: CameraTarget;
  credentials: Credentials | undefined;
  client: SoapClientOptions;
  clockOffsetMs: number;
  facts: CameraFacts;
}

type Step = (session: Session) => Promise<void>;

/**
 * Reads a camera: device information, media service address, MAC, profiles and their stream URIs. Never
 * throws: a failure stops at the first fatal error and is returned next to whatever was read before it.
 */
export async function queryCamera(
  target: CameraTarget,
  credentials: Credentials | undefined,
  client: SoapClientOptions,
): Promise<QueryResult> {
  const session: Session = {
    target,
    credentials,
    client,
    clockOffsetMs: 0,
    facts: { profiles: [], streamUris: new Map() },
  };
  let failure: QueryFailure | undefined;
  for (const [name, step] of steps) {
    try {
      await step(session);
    } catch (err) {
      const code = onvifErrorCode(err);
      failure ??= { code, message: describeFailure(name, err, credentials), error: err };
      if (fatal.has(code)) break;
    }
  }
  return failure ? { facts: session.facts, failure } : { facts: session.facts };
}

function describeFailure(step: string, err: unknown, credentials: Credentials | undefined): string {
  const message = err instanceof Error ? err.message : String(err);
  if (onvifErrorCode(err) === OnvifErrorCode.notAuthorized && !credentials) {
    return `${step}: the camera requires credentials and no credentials are configured for it (${message})`;
  }
  return `${step}: ${message}`;
}

function call(session: Session, url: string, body: string, authenticated = true): Promise<XmlElement> {
  return soapCall(
    {
      url,
      body,
      clockOffsetMs: session.clockOffsetMs,
      ...(authenticated && session.credentials ? { credentials: session.credentials } : {}),
    },
    session.client,
  );
}

/** GetSystemDateAndTime needs no auth (ONVIF Core §5.9.4); its answer fixes the token's Created time. */
const readClock: Step = async (session) => {
  let body: XmlElement;
  try {
    body = await call(session, session.target.deviceServiceUrl, '<tds:GetSystemDateAndTime/>', false);
  } catch (err) {
    if (fatal.has(onvifErrorCode(err)) && onvifErrorCode(err) !== OnvifErrorCode.notAuthorized) throw err;
    return;
  }
  const utc = at(body, 'GetSystemDateAndTimeResponse', 'SystemDateAndTime', 'UTCDateTime');
  const n = (...path: string[]) => Number(textAt(utc, ...path));
  const ms = Date.UTC(
    n('Date', 'Year'),
    n('Date', 'Month') - 1,
    n('Date', 'Day'),
    n('Time', 'Hour'),
    n('Time', 'Minute'),
    n('Time', 'Second'),
  );
  if (Number.isFinite(ms)) session.clockOffsetMs = ms - session.client.clock.now();
};

const readDeviceInformation: Step = async (session) => {
  const body = await call(session, session.target.deviceServiceUrl, '<tds:GetDeviceInformation/>');
  const info = at(body, 'GetDeviceInformationResponse');
  if (!info) throw new OnvifError(OnvifErrorCode.malformedResponse, 'no GetDeviceInformationResponse');
  const facts = session.facts;
  facts.manufacturer = textAt(info, 'Manufacturer');
  facts.model = textAt(info, 'Model');
  facts.firmwareVersion = textAt(info, 'FirmwareVersion');
  facts.serialNumber = textAt(info, 'SerialNumber');
  facts.hardwareId = textAt(info, 'HardwareId');
};

/** The media service address: GetCapabilities, or GetServices for cameras that dropped it. */
const readMediaService: Step = async (session) => {
  const url = session.target.deviceServiceUrl;
  try {
    const body = await call(
      session,
      url,
      '<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>',
    );
    session.facts.mediaServiceUrl = textAt(body, 'GetCapabilitiesResponse', 'Capabilities', 'Media', 'XAddr');
  } catch (err) {
    if (fatal.has(onvifErrorCode(err))) throw err;
  }
  if (session.facts.mediaServiceUrl) return;
  const body = await call(
    session,
    url,
    '<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>',
  );
  const media = children(at(body, 'GetServicesResponse'), 'Service').find(
    (s) => textAt(s, 'Namespace') === 'http://www.onvif.org/ver10/media/wsdl',
  );
  session.facts.mediaServiceUrl = textAt(media, 'XAddr');
};

const readMacAddress: Step = async (session) => {
  const body = await call(session, session.target.deviceServiceUrl, '<tds:GetNetworkInterfaces/>');
  const interfaces = children(at(body, 'GetNetworkInterfacesResponse'), 'NetworkInterfaces');
  const ip = session.target.ipAddress;
  const carrying = interfaces.find((i) => {
    const config = at(i, 'IPv4', 'Config');
    return [...children(config, 'Manual'), ...children(config, 'FromDHCP')].some(
      (a) => textAt(a, 'Address') === ip,
    );
  });
  session.facts.macAddress = textAt(carrying ?? interfaces[0], 'Info', 'HwAddress');
};

const readProfiles: Step = async (session) => {
  const url = session.facts.mediaServiceUrl;
  if (!url) return;
  const body = await call(session, url, '<trt:GetProfiles/>');
  session.facts.profiles = children(at(body, 'GetProfilesResponse'), 'Profiles')
    .slice(0, maxProfiles)
    .map((p) => ({ token: attribute(p, 'token') ?? '', name: textAt(p, 'Name') ?? '' }))
    .filter((p) => p.token.length > 0 && p.token.length <= 64);
};

const readStreamUris: Step = async (session) => {
  const url = session.facts.mediaServiceUrl;
  if (!url) return;
  for (const { token } of session.facts.profiles) {
    const body = await call(
      session,
      url,
      '<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream>' +
        '<tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>' +
        `<trt:ProfileToken>${escapeXml(token)}</trt:ProfileToken></trt:GetStreamUri>`,
    );
    const uri = textAt(body, 'GetStreamUriResponse', 'MediaUri', 'Uri');
    if (uri) session.facts.streamUris.set(token, uri);
  }
};

const steps: [string, Step][] = [
  ['GetSystemDateAndTime', readClock],
  ['GetDeviceInformation', readDeviceInformation],
  ['GetCapabilities/GetServices', readMediaService],
  ['GetNetworkInterfaces', readMacAddress],
  ['GetProfiles', readProfiles],
  ['GetStreamUri', readStreamUris],
];
