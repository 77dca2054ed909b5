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
