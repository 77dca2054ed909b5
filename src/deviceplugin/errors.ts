import { status } from '@grpc/grpc-js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';

/** The gRPC status codes an allocate callback may ask for, by name. */
export const AllocateErrorCode = {
  exhausted: 'RESOURCE_EXHAUSTED',
  precondition: 'FAILED_PRECONDITION',
  notFound: 'NOT_FOUND',
  invalid: 'INVALID_ARGUMENT',
  aborted: 'ABORTED',
  unavailable: 'UNAVAILABLE',
  internal: 'INTERNAL',
} as const;

export type AllocateErrorCode = (typeof AllocateErrorCode)[keyof typeof AllocateErrorCode];

/**
 * Thrown by an allocate callback (or the plugin itself) to fail a kubelet call with a chosen gRPC status:
 * `new DevicePluginError('RESOURCE_EXHAUSTED', 'all 2 slots of front-door-1a2b3c are in use')`.
 */
export class DevicePluginError extends LeafbridgeError {
  declare readonly code: AllocateErrorCode;
  constructor(code: AllocateErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A gRPC error for the kubelet: the status the error asks for (UNKNOWN otherwise) and a message with context. */
export function toServiceError(err: unknown, context: string): { code: status; details: string } {
  const code = err instanceof DevicePluginError ? status[err.code] : status.UNKNOWN;
  return { code, details: `${context}: ${errorMessage(err)}` };
}

/** The plugin directory is too long for a unix socket path in it (108 bytes on Linux, NUL included). */
export class SocketPathError extends LeafbridgeError {
  constructor(
    readonly dir: string,
    readonly socketPath: string,
    readonly maxBytes: number,
  ) {
    const bytes = Buffer.byteLength(socketPath);
    const room = maxBytes - (bytes - Buffer.byteLength(dir));
    super(
      'DEVICEPLUGIN_SOCKET_PATH',
      `the device-plugin directory ${dir} is too long for a unix socket in it: ${socketPath} is ${bytes} ` +
        `bytes and unix socket paths are limited to ${maxBytes}; the directory may have at most ${room} bytes`,
    );
  }
}
