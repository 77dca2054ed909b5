import type { StubCredentials } from './auth.js';

export interface StubProfile {
  name: string;
  token: string;
}

/** Everything a simulated camera says about itself, defaults filled in. */
export interface CameraModel {
  /** `urn:uuid:…` */
  uuid: string;
  manufacturer: string;
  model: string;
  serialNumber: string;
  firmwareVersion: string;
  hardwareId: string;
  macAddress: string;
  hostname: string;
  scopes: string[];
  profiles: StubProfile[];
  credentials: StubCredentials | undefined;
  /** Reported stream URI for a profile token. */
  streamUri: (token: string) => string;
  metadataVersion: number;
  /** Filled in once the HTTP server listens. */
  address: string;
  port: number;
}

export function deviceServiceUrl(model: CameraModel): string {
  return `http://${model.address}:${model.port}/onvif/device_service`;
}

export function mediaServiceUrl(model: CameraModel): string {
  return `http://${model.address}:${model.port}/onvif/media_service`;
}

export function imagingServiceUrl(model: CameraModel): string {
  return `http://${model.address}:${model.port}/onvif/imaging_service`;
}

/** A JPEG of the profile's video, over HTTP with the camera's credentials (snapshot.ts). */
export function snapshotUri(model: CameraModel, token: string): string {
  return `http://${model.address}:${model.port}/onvif/snapshot?profile=${encodeURIComponent(token)}`;
}

/** The camera's one video source, which every profile encodes. */
export const videoSource = { token: 'vs0', configurationToken: 'vsc0', width: 1920, height: 1080, fps: 25 };

/** The default gateway (and DNS and NTP server) a camera on a /24 would report: `.1`, or `.254` when it is `.1`. */
export function gatewayOf(address: string): string {
  const parts = address.split('.');
  if (parts.length !== 4) return '0.0.0.0';
  return [...parts.slice(0, 3), parts[3] === '1' ? '254' : '1'].join('.');
}

export function defaultScopes(model: string, location: string): string[] {
  const name = encodeURIComponent(model);
  return [
    'onvif://www.onvif.org/type/video_encoder',
    'onvif://www.onvif.org/Profile/Streaming',
    `onvif://www.onvif.org/name/${name}`,
    `onvif://www.onvif.org/hardware/${name}`,
    `onvif://www.onvif.org/location/${encodeURIComponent(location)}`,
  ];
}
