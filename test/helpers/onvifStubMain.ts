/**
 * Runs one camera stub in its own process (under vite-node), for tests that need it inside a network
 * namespace. Options come as JSON in argv[2]; prints `READY <device service URL>`; stops on SIGTERM.
 */
import { type CameraStubOptions, startCameraStub } from '../../firmware-stubs/camera/index.js';
import { createLogger } from '../../src/util/logger.js';

const options = JSON.parse(process.argv[2] ?? '{}') as CameraStubOptions;
const stub = await startCameraStub({ ...options, logger: createLogger({ level: 'debug' }) });
process.stdout.write(`READY ${stub.deviceServiceUrl}\n`);
process.on('SIGTERM', () => {
  stub.stop().finally(() => process.exit(0));
});
