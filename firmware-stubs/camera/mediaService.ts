import type { Operation } from './deviceService.js';
import type { CameraModel, StubProfile } from './model.js';
import { el } from './soap.js';
import { escapeXml, textAt, type XmlElement } from './xml.js';

/** Thrown for a request naming a profile the camera does not have (answered as ter:NoProfile). */
export class NoProfileError extends Error {}

function profileXml(tag: string, profile: StubProfile, index: number): string {
  const [width, height] = index === 0 ? [1920, 1080] : [640, 360];
  return (
    `<${tag} token="${escapeXml(profile.token)}" fixed="true">${el('tt:Name', profile.name)}` +
    `<tt:VideoSourceConfiguration token="vsc0">${el('tt:Name', 'video source')}${el('tt:UseCount', 1)}` +
    `${el('tt:SourceToken', 'vs0')}<tt:Bounds x="0" y="0" width="1920" height="1080"/></tt:VideoSourceConfiguration>` +
    `<tt:VideoEncoderConfiguration token="vec${index}">${el('tt:Name', `encoder ${index}`)}${el('tt:UseCount', 1)}` +
    `${el('tt:Encoding', 'H264')}<tt:Resolution>${el('tt:Width', width)}${el('tt:Height', height)}</tt:Resolution>` +
    `${el('tt:Quality', 5)}<tt:RateControl>${el('tt:FrameRateLimit', 25)}${el('tt:EncodingInterval', 1)}` +
    `${el('tt:BitrateLimit', 4096)}</tt:RateControl><tt:H264>${el('tt:GovLength', 50)}${el('tt:H264Profile', 'Main')}</tt:H264>` +
    `${el('tt:SessionTimeout', 'PT60S')}</tt:VideoEncoderConfiguration></${tag}>`
  );
}

function findProfile(model: CameraModel, request: XmlElement | undefined, operation: string): StubProfile {
  const token = textAt(request, operation, 'ProfileToken');
  const profile = model.profiles.find((p) => p.token === token);
  if (!profile) throw new NoProfileError(`no profile ${JSON.stringify(token ?? '')}`);
  return profile;
}

const getProfiles: Operation = (model) =>
  `<trt:GetProfilesResponse>${model.profiles.map((p, i) => profileXml('trt:Profiles', p, i)).join('')}</trt:GetProfilesResponse>`;

const getProfile: Operation = (model, request) => {
  const profile = findProfile(model, request, 'GetProfile');
  return `<trt:GetProfileResponse>${profileXml('trt:Profile', profile, model.profiles.indexOf(profile))}</trt:GetProfileResponse>`;
};

const getStreamUri: Operation = (model, request) => {
  const profile = findProfile(model, request, 'GetStreamUri');
  return (
    `<trt:GetStreamUriResponse><trt:MediaUri>${el('tt:Uri', model.streamUri(profile.token))}` +
    `${el('tt:InvalidAfterConnect', false)}${el('tt:InvalidAfterReboot', false)}${el('tt:Timeout', 'PT0S')}` +
    '</trt:MediaUri></trt:GetStreamUriResponse>'
  );
};

export const mediaOperations: Record<string, Operation> = {
  GetProfiles: getProfiles,
  GetProfile: getProfile,
  GetStreamUri: getStreamUri,
};
