/**
 * What the camera broker reads from its environment. The stream comes from the Device's properties, which the
 * leafbridge device plugin hands to the pod as environment variables (discovery-handlers/onvif/properties.ts):
 * `ONVIF_PROFILES` (profile tokens, comma-separated) and one `ONVIF_STREAM_URI_<TOKEN>` per profile. The rest
 * are the broker's own settings, set in the DiscoveryConfig's `brokerPodSpec`.
 */

export class SettingsError extends Error {
  readonly code = 'SETTINGS';
}

export interface CameraSettings {
  /** The Device this pod was given (`LEAFBRIDGE_DEVICES`), else the camera's uuid: for the logs. */
  device: string;
  /** The profile whose stream is read (undefined when CAMERA_STREAM_URI was given). */
  profile: string | undefined;
  /** The stream URI with the credentials in it: never log this one. */
  streamUri: string;
  /** The same URI for logs: credentials replaced by `***`. */
  streamUriForLog: string;
  /** Frames grabbed per second. */
  frameRate: number;
  /** Where frame-NNNNNN.jpg and latest.jpg are written; undefined: nowhere. */
  framesDir: string | undefined;
  /** How many numbered frames stay in framesDir. */
  keepFrames: number;
  /** HTTP port for /frame.jpg and /healthz; -1: no HTTP server. */
  httpPort: number;
  httpHost: string;
  ffmpeg: string;
  /** No frame for this long: ffmpeg is restarted. */
  stallTimeoutMs: number;
}

type Env = Record<string, string | undefined>;

/** `main.Stream-1` → `MAIN_STREAM_1`: how the onvif handler turns a profile token into a property name. */
export function upperSnake(token: string): string {
  return token
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toUpperCase();
}

const STREAM_PREFIX = 'ONVIF_STREAM_URI_';

/** The stream to read: CAMERA_STREAM_URI, else CAMERA_PROFILE's, else the first profile that has one. */
export function pickStream(env: Env): { profile: string | undefined; uri: string } {
  if (env.CAMERA_STREAM_URI) return { profile: undefined, uri: env.CAMERA_STREAM_URI };
  const wanted = env.CAMERA_PROFILE;
  const profiles = wanted ? [wanted] : (env.ONVIF_PROFILES ?? '').split(',').filter(Boolean);
  for (const profile of profiles) {
    const uri = env[`${STREAM_PREFIX}${upperSnake(profile)}`];
    if (uri) return { profile, uri };
  }
  if (wanted) {
    throw new SettingsError(
      `CAMERA_PROFILE=${wanted}: no ${STREAM_PREFIX}${upperSnake(wanted)} in the environment ` +
        `(the camera's profiles: ${env.ONVIF_PROFILES ?? 'none'})`,
    );
  }
  const any = Object.keys(env)
    .filter((k) => k.startsWith(STREAM_PREFIX) && env[k])
    .sort()[0];
  if (any) return { profile: any.slice(STREAM_PREFIX.length).toLowerCase(), uri: env[any]! };
  throw new SettingsError(
    `no stream URI: expected ${STREAM_PREFIX}<PROFILE> from the camera's Device (request a ` +
      'leafbridge.io/<device> resource) or CAMERA_STREAM_URI',
  );
}

/** `rtsp://host/x` with RTSP_USERNAME / RTSP_PASSWORD put in (URL-encoded), unless it has credentials already. */
export function withCredentials(uri: string, username?: string, password?: string): string {
  if (!username) return uri;
  const url = new URL(uri);
  if (url.username) return uri;
  url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(password ?? '');
  return url.toString();
}

/** Credentials in any URL within `text` replaced by `***` (ffmpeg's error lines repeat the URL). */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1***@');
}

function number(env: Env, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new SettingsError(`${name}=${text}: must be a number from ${min} to ${max}`);
  }
  return value;
}

export function loadSettings(env: Env): CameraSettings {
  const { profile, uri } = pickStream(env);
  const streamUri = withCredentials(uri, env.RTSP_USERNAME, env.RTSP_PASSWORD);
  return {
    device: env.LEAFBRIDGE_DEVICES?.split(',')[0] || env.ONVIF_DEVICE_UUID || 'camera',
    profile,
    streamUri,
    streamUriForLog: redact(streamUri),
    frameRate: number(env, 'FRAME_RATE', 1, 0.01, 60),
    framesDir: env.FRAMES_DIR || undefined,
    keepFrames: Math.trunc(number(env, 'KEEP_FRAMES', 10, 1, 100_000)),
    httpPort: Math.trunc(number(env, 'HTTP_PORT', 8080, -1, 65_535)),
    httpHost: env.HTTP_HOST || '0.0.0.0',
    ffmpeg: env.FFMPEG || 'ffmpeg',
    stallTimeoutMs: number(env, 'STALL_TIMEOUT_MS', 15_000, 1_000, 600_000),
  };
}
