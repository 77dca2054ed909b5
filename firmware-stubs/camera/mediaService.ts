import type { Operation } from './deviceService.js';
import { type CameraModel, type StubProfile, snapshotUri, videoSource } from './model.js';
import { el } from './soap.js';
import { escapeXml, textAt, type XmlElement } from './xml.js';

/** Thrown for a request naming a profile or configuration the camera does not have (ter:NoProfile / NoConfig). */
export class NoProfileError extends Error {}

const range = (tag: string, min: number, max: number) =>
  `<${tag}>${el('tt:Min', min)}${el('tt:Max', max)}</${tag}>`;
const size = (tag: string, width: number, height: number) =>
  `<${tag}>${el('tt:Width', width)}${el('tt:Height', height)}</${tag}>`;

/** Profile i: the first 1920×1080, the others 640×360, all H.264 of the one video source. */
function encoderOf(index: number) {
  return index === 0
    ? { width: 1920, height: 1080, bitrate: 4096 }
    : { width: 640, height: 360, bitrate: 512 };
}

function sourceConfigurationXml(tag: string): string {
  const { configurationToken, token, width, height } = videoSource;
  return (
    `<${tag} token="${configurationToken}">${el('tt:Name', 'video source')}${el('tt:UseCount', 1)}` +
    `${el('tt:SourceToken', token)}<tt:Bounds x="0" y="0" width="${width}" height="${height}"/></${tag}>`
  );
}

function encoderConfigurationXml(tag: string, index: number): string {
  const { width, height, bitrate } = encoderOf(index);
  return (
    `<${tag} token="vec${index}">${el('tt:Name', `encoder ${index}`)}${el('tt:UseCount', 1)}` +
    `${el('tt:Encoding', 'H264')}${size('tt:Resolution', width, height)}` +
    `${el('tt:Quality', 5)}<tt:RateControl>${el('tt:FrameRateLimit', videoSource.fps)}${el('tt:EncodingInterval', 1)}` +
    `${el('tt:BitrateLimit', bitrate)}</tt:RateControl><tt:H264>${el('tt:GovLength', 50)}${el('tt:H264Profile', 'Main')}</tt:H264>` +
    `<tt:Multicast><tt:Address>${el('tt:Type', 'IPv4')}${el('tt:IPv4Address', '0.0.0.0')}</tt:Address>` +
    `${el('tt:Port', 0)}${el('tt:TTL', 1)}${el('tt:AutoStart', false)}</tt:Multicast>` +
    `${el('tt:SessionTimeout', 'PT60S')}</${tag}>`
  );
}

function profileXml(tag: string, profile: StubProfile, index: number): string {
  return (
    `<${tag} token="${escapeXml(profile.token)}" fixed="true">${el('tt:Name', profile.name)}` +
    `${sourceConfigurationXml('tt:VideoSourceConfiguration')}${encoderConfigurationXml('tt:VideoEncoderConfiguration', index)}</${tag}>`
  );
}

function findProfile(model: CameraModel, request: XmlElement | undefined, operation: string): StubProfile {
  const token = textAt(request, operation, 'ProfileToken');
  const profile = model.profiles.find((p) => p.token === token);
  if (!profile) throw new NoProfileError(`no profile ${JSON.stringify(token ?? '')}`);
  return profile;
}

/** The encoder configuration a request names (`vec<i>`), or the first when it names none. */
function encoderIndex(model: CameraModel, request: XmlElement | undefined, operation: string): number {
  const token =
    textAt(request, operation, 'ConfigurationToken') ?? textAt(request, operation, 'ProfileToken');
  if (token === undefined) return 0;
  const byProfile = model.profiles.findIndex((p) => p.token === token);
  const index = byProfile >= 0 ? byProfile : Number(/^vec(\d+)$/.exec(token)?.[1] ?? Number.NaN);
  if (!Number.isInteger(index) || index < 0 || index >= model.profiles.length)
    throw new NoProfileError(`no configuration ${JSON.stringify(token)}`);
  return index;
}

const mediaUri = (uri: string) =>
  `<trt:MediaUri>${el('tt:Uri', uri)}${el('tt:InvalidAfterConnect', false)}` +
  `${el('tt:InvalidAfterReboot', false)}${el('tt:Timeout', 'PT0S')}</trt:MediaUri>`;

function encoderOptions(index: number): string {
  const sizes = [encoderOf(0), encoderOf(1)].map((e) => size('tt:ResolutionsAvailable', e.width, e.height));
  const h264 =
    `${sizes.join('')}${range('tt:GovLengthRange', 1, 150)}${range('tt:FrameRateRange', 1, videoSource.fps)}` +
    `${range('tt:EncodingIntervalRange', 1, 1)}${el('tt:H264ProfilesSupported', 'Main')}`;
  return (
    `<trt:Options>${range('tt:QualityRange', 0, 10)}<tt:H264>${h264}</tt:H264>` +
    `<tt:Extension><tt:H264>${h264}${range('tt:BitrateRange', 64, encoderOf(index).bitrate * 2)}</tt:H264></tt:Extension>` +
    '</trt:Options>'
  );
}

export const mediaOperations: Record<string, Operation> = {
  GetProfiles: (model) =>
    `<trt:GetProfilesResponse>${model.profiles.map((p, i) => profileXml('trt:Profiles', p, i)).join('')}</trt:GetProfilesResponse>`,
  GetProfile: (model, request) => {
    const profile = findProfile(model, request, 'GetProfile');
    return `<trt:GetProfileResponse>${profileXml('trt:Profile', profile, model.profiles.indexOf(profile))}</trt:GetProfileResponse>`;
  },
  GetStreamUri: (model, request) =>
    `<trt:GetStreamUriResponse>${mediaUri(model.streamUri(findProfile(model, request, 'GetStreamUri').token))}</trt:GetStreamUriResponse>`,
  GetSnapshotUri: (model, request) =>
    `<trt:GetSnapshotUriResponse>${mediaUri(snapshotUri(model, findProfile(model, request, 'GetSnapshotUri').token))}</trt:GetSnapshotUriResponse>`,
  GetVideoSources: () =>
    `<trt:GetVideoSourcesResponse><trt:VideoSources token="${videoSource.token}">${el('tt:Framerate', videoSource.fps)}` +
    `${size('tt:Resolution', videoSource.width, videoSource.height)}</trt:VideoSources></trt:GetVideoSourcesResponse>`,
  GetVideoSourceConfigurations: () =>
    `<trt:GetVideoSourceConfigurationsResponse>${sourceConfigurationXml('trt:Configurations')}</trt:GetVideoSourceConfigurationsResponse>`,
  GetVideoEncoderConfigurations: (model) =>
    `<trt:GetVideoEncoderConfigurationsResponse>${model.profiles.map((_, i) => encoderConfigurationXml('trt:Configurations', i)).join('')}</trt:GetVideoEncoderConfigurationsResponse>`,
  GetVideoEncoderConfiguration: (model, request) =>
    `<trt:GetVideoEncoderConfigurationResponse>${encoderConfigurationXml('trt:Configuration', encoderIndex(model, request, 'GetVideoEncoderConfiguration'))}</trt:GetVideoEncoderConfigurationResponse>`,
  GetVideoEncoderConfigurationOptions: (model, request) =>
    `<trt:GetVideoEncoderConfigurationOptionsResponse>${encoderOptions(encoderIndex(model, request, 'GetVideoEncoderConfigurationOptions'))}</trt:GetVideoEncoderConfigurationOptionsResponse>`,
};
