/**
 * Example broker for ONVIF cameras: reads the stream of the camera a leafbridge Device gives this pod and
 * grabs frames from it (with ffmpeg), logging each one, serving the latest over HTTP (/frame.jpg, /healthz)
 * and, with FRAMES_DIR, writing them to disk. See examples/README.md.
 *
 * Environment: the Device's properties (ONVIF_PROFILES, ONVIF_STREAM_URI_<PROFILE>, LEAFBRIDGE_DEVICES) and
 * CAMERA_PROFILE, CAMERA_STREAM_URI, RTSP_USERNAME, RTSP_PASSWORD, FRAME_RATE (1), FRAMES_DIR, KEEP_FRAMES (10),
 * HTTP_PORT (8080; -1 for none), HTTP_HOST (0.0.0.0), FFMPEG (ffmpeg), STALL_TIMEOUT_MS (15000).
 */
import type { Server } from 'node:http';
import { pino } from 'pino';
import { FrameGrabber } from './frameGrabber.js';
import { portOf, startFrameServer } from './frameServer.js';
import { FrameStore } from './frameStore.js';
import { type CameraSettings, loadSettings, SettingsError } from './settings.js';

const logger = pino({ base: { broker: 'camera' } });

async function run(settings: CameraSettings): Promise<() => Promise<void>> {
  const log = logger.child({ device: settings.device });
  const store = new FrameStore(settings.framesDir, settings.keepFrames, log);
  await store.open();
  let server: Server | undefined;
  if (settings.httpPort >= 0) {
    server = await startFrameServer(store, settings.httpPort, settings.httpHost);
    log.info({ port: portOf(server), host: settings.httpHost }, 'serving /frame.jpg and /healthz');
  }
  const grabber = new FrameGrabber({
    ffmpeg: settings.ffmpeg,
    streamUri: settings.streamUri,
    frameRate: settings.frameRate,
    stallTimeoutMs: settings.stallTimeoutMs,
    logger: log,
    onFrame: (frame) => {
      const stored = store.add(frame);
      log.info(
        { frame: stored.number, bytes: frame.data.length, width: frame.width, height: frame.height },
        'frame',
      );
    },
  });
  log.info(
    { stream: settings.streamUriForLog, profile: settings.profile, frameRate: settings.frameRate },
    'grabbing frames',
  );
  grabber.start();
  return async () => {
    await grabber.stop();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  };
}

async function main(): Promise<number> {
  let settings: CameraSettings;
  try {
    settings = loadSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    logger.error({ err: err.message }, 'bad settings');
    return 2;
  }
  const stop = await run(settings);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  logger.info({ signal }, 'stopping');
  await stop();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    logger.fatal({ err: err.message, stack: err.stack }, 'camera broker failed');
    process.exitCode = 1;
  },
);
