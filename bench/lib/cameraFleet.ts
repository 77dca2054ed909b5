// Many simulated ONVIF cameras (firmware-stubs/camera) in one process of their own, for the discovery bench.
// Every camera's WS-Discovery socket is pinned to 127.0.0.1 (multicast interface, group membership, TTL 1)
// and its SOAP server listens on 127.0.0.1: nothing leaves loopback. Forked with an IPC channel; says
// {ev:'ready'} once it takes commands.
//   {cmd:'start', count, uuidPrefix}  -> all cameras started at once (Promise.all; each start ends with its Hello);
//                                        {ev:'started', firstCallAt, allReturnedAt, uuids, failed}
//   {cmd:'stop'}                      -> all stopped at once (each sends Bye first);
//                                        {ev:'stopped', firstCallAt, allReturnedAt}
//   {cmd:'close'}                     -> stops whatever runs and exits
import { type CameraStub, startCameraStub } from '../../firmware-stubs/camera/index.js';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

let cameras: CameraStub[] = [];

async function start(count: number, uuidPrefix: string): Promise<void> {
  const firstCallAt = now();
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      startCameraStub({
        multicastInterface: '127.0.0.1',
        httpAddress: '127.0.0.1',
        uuid: `urn:uuid:${uuidPrefix}${i.toString(16).padStart(12, '0')}`,
        serialNumber: `FLEET${i}`,
      }),
    ),
  );
  const allReturnedAt = now();
  cameras = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  process.send?.({
    ev: 'started',
    firstCallAt,
    allReturnedAt,
    uuids: cameras.map((c) => c.uuid),
    failed: failed.length,
    firstFailure: failed[0],
  });
}

async function stop(): Promise<void> {
  const firstCallAt = now();
  const all = cameras;
  cameras = [];
  await Promise.allSettled(all.map((c) => c.stop()));
  process.send?.({ ev: 'stopped', firstCallAt, allReturnedAt: now() });
}

process.on('message', (m: { cmd?: string; count?: number; uuidPrefix?: string }) => {
  if (m.cmd === 'start') start(m.count ?? 1, m.uuidPrefix ?? '00000000-0000-4000-8000-').catch(childFatal);
  else if (m.cmd === 'stop') stop().catch(childFatal);
  else if (m.cmd === 'close') {
    const exit = () => process.exit(0);
    stop().then(exit, exit);
    setTimeout(exit, 3_000).unref();
  }
});
process.send?.({ ev: 'ready' });
