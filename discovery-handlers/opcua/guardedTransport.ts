import type { IClientTransport, IClientTransportFactory } from 'node-opcua';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Opcua } from './opcuaModule.js';

interface SocketDataHandler {
  _on_socket_data(data: Buffer): void;
}

/**
 * node-opcua's TCP transport, with its socket `data` handler made unable to throw.
 *
 * With node-opcua 2.182 a peer that answers HEL with an ACK followed by bytes that are not a chunk header
 * makes the packet assembler throw out of the socket's `data` listener (it re-creates the assembler in the
 * middle of a `feed`, dropping its `error` listener): an uncaughtException that ends the agent. Here such a
 * throw ends that one connection instead, with a TCP error (BadTcpInternalError), and pending requests fail.
 */
export function guardedTransportFactory(opcua: Opcua, logger: Logger): IClientTransportFactory {
  return {
    create(settings) {
      const transport = new opcua.ClientTCP_transport(settings);
      const hook = transport as unknown as SocketDataHandler;
      const original = hook._on_socket_data.bind(transport);
      hook._on_socket_data = (data: Buffer) => {
        try {
          original(data);
        } catch (err) {
          logger.warn(
            { url: transport.endpointUrl, err: errorMessage(err) },
            'broken OPC UA reply, connection closed',
          );
          terminate(opcua, transport, err);
        }
      };
      return transport;
    },
  };
}

function terminate(opcua: Opcua, transport: IClientTransport, err: unknown): void {
  try {
    transport.prematureTerminate(
      err instanceof Error ? err : new Error(String(err)),
      opcua.StatusCodes.BadTcpInternalError,
    );
  } catch {
    transport.dispose();
  }
}
