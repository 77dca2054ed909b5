import { randomUUID } from 'node:crypto';
import type { PublishPacket } from 'aedes';
import type { Identity } from '../broker/auth.js';
import { filterCovers } from '../broker/auth.js';
import type { OutgoingMessage } from '../broker/edgeBroker.js';
import {
  type EdgeTopic,
  edgeTopic,
  MESSAGE_ID_PROPERTY,
  parseEdgeTopic,
  UPSTREAM_KINDS,
} from '../model/topics.js';
import type { MessageProps, Outbox } from '../store/outbox.js';
import { errorMessage, PayloadError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { CommandStore, PendingCommand } from './commands.js';
import { parseObject, type Twin, type TwinStore, twinDelta } from './twins.js';

export interface DownstreamProps {
  correlationData?: Buffer;
  messageExpiryInterval?: number;
  userProperties?: Record<string, string | string[]>;
}

export interface SyncEngineOptions {
  logger: Logger;
  /** Absent when no upstream is configured: the edge then works alone and forwards nothing. */
  outbox: Outbox | undefined;
  twins: TwinStore;
  commands: CommandStore;
  commandTtlMs: number;
  edgePublish: (message: OutgoingMessage) => Promise<void>;
}

export const STATUS_VALUES = new Set(['online', 'offline']);

/**
 * The sync layer on the edge: device messages into the outbox (twins merged on the way), and desired twins
 * and commands from the cloud onto the edge broker, cached for devices that connect later.
 */
export class SyncEngine {
  /** Device messages accepted, by topic kind. */
  readonly received: Record<EdgeTopic['kind'] | 'other', number> = {
    telemetry: 0,
    reported: 0,
    desired: 0,
    delta: 0,
    command: 0,
    commandResult: 0,
    status: 0,
    birth: 0,
    other: 0,
  };
  private expiryTimer?: NodeJS.Timeout;
  private readonly logger: Logger;

  constructor(private readonly o: SyncEngineOptions) {
    this.logger = o.logger;
  }

  start(): void {
    const every = Math.max(250, Math.min(5000, this.o.commandTtlMs / 4));
    this.expiryTimer = setInterval(() => this.expireCommands(), every);
    this.expiryTimer.unref();
  }

  stop(): void {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
  }

  /** Called by the edge broker for each PUBLISH that passed the ACL; resolves once it is durable. */
  readonly ingest = (_identity: Identity, _clientId: string, packet: PublishPacket): Promise<void> => {
    const topic = parseEdgeTopic(packet.topic);
    if (!topic || !UPSTREAM_KINDS.has(topic.kind)) {
      this.received.other++;
      return Promise.resolve();
    }
    try {
      const forwarded = this.accept(topic, packet);
      this.received[topic.kind]++;
      if (packet.qos === 0) {
        forwarded.catch(() => {}); // counted by the outbox; QoS 0 has nobody to tell
        return Promise.resolve();
      }
      return forwarded;
    } catch (err) {
      return Promise.reject(err);
    }
  };

  private accept(topic: EdgeTopic, packet: PublishPacket): Promise<void> {
    const props = messageProps(packet);
    switch (topic.kind) {
      case 'telemetry':
        return this.forward(topic.device, packet.topic, packet.payload as Buffer, props);
      case 'status': {
        const value = (packet.payload as Buffer).toString('utf8');
        if (!STATUS_VALUES.has(value))
          throw new PayloadError('STATUS_INVALID', 'status must be online or offline');
        return this.forward(topic.device, packet.topic, packet.payload as Buffer, props);
      }
      case 'reported': {
        const twin = this.o.twins.applyReported(topic.device, packet.payload as Buffer);
        const doc = Buffer.from(JSON.stringify({ ...twin.reported, $version: twin.reportedVersion }));
        this.publishDelta(topic.device, twin);
        return this.forward(topic.device, packet.topic, doc, props);
      }
      case 'birth': {
        // A retained announcement (`{"properties": {...}}`) read by the mqtt discovery handler; an empty one clears it.
        const payload = packet.payload as Buffer;
        if (payload.length > 0) parseObject(payload, 'birth message');
        return this.forward(topic.device, packet.topic, payload, props);
      }
      case 'commandResult': {
        const done = this.o.commands.complete(topic.device, topic.name, props?.correlationData);
        const withCorrelation =
          done && !props?.correlationData ? { ...props, correlationData: done.correlation } : props;
        return this.forward(topic.device, packet.topic, packet.payload as Buffer, withCorrelation);
      }
      default:
        return Promise.resolve();
    }
  }

  private forward(
    device: string,
    topic: string,
    payload: Buffer,
    props: MessageProps | undefined,
  ): Promise<void> {
    if (!this.o.outbox) return Promise.resolve();
    return this.o.outbox.append({ device, topic, payload, ...(props ? { props } : {}) });
  }

  /** A desired twin or a command from upstream. Throws PayloadError for a malformed one. */
  downstream(topic: EdgeTopic, payload: Buffer, props: DownstreamProps): void {
    if (topic.kind === 'desired') {
      const twin = this.o.twins.applyDesired(topic.device, payload);
      if (!twin) {
        this.logger.debug({ device: topic.device }, 'stale desired twin ignored');
        return;
      }
      this.publishDesired(topic.device, twin);
      this.publishDelta(topic.device, twin);
    } else if (topic.kind === 'command') {
      const cmd = this.storeCommand(topic.device, topic.name, payload, props);
      if (cmd) this.deliver(cmd);
    }
  }

  /** A client subscribed: hand it the commands waiting for its device. */
  onSubscribed(identity: Identity, topics: string[]): void {
    for (const filter of topics) {
      const device = identity.kind === 'device' ? identity.device : filter.split('/')[1];
      if (!device || device === '+' || device === '#') continue;
      if (!filterCovers(filter, edgeTopic.command(device, 'x'))) continue;
      // After the SUBACK has gone out.
      setImmediate(() => {
        for (const cmd of this.o.commands.pendingFor(device)) this.deliver(cmd);
      });
    }
  }

  private storeCommand(
    device: string,
    name: string,
    payload: Buffer,
    props: DownstreamProps,
  ): PendingCommand | undefined {
    const msgId = props.userProperties?.[MESSAGE_ID_PROPERTY];
    const id = (Array.isArray(msgId) ? msgId[0] : msgId) ?? randomUUID();
    const ttl =
      props.messageExpiryInterval !== undefined ? props.messageExpiryInterval * 1000 : this.o.commandTtlMs;
    const cmd: PendingCommand = {
      id,
      device,
      name,
      payload,
      correlation: props.correlationData ?? Buffer.from(id),
      expires: Date.now() + ttl,
    };
    return this.o.commands.add(cmd) ? cmd : undefined;
  }

  private deliver(cmd: PendingCommand): void {
    this.edgePublish({
      topic: edgeTopic.command(cmd.device, cmd.name),
      payload: cmd.payload,
      qos: 1,
      retain: false,
      properties: {
        correlationData: cmd.correlation,
        responseTopic: edgeTopic.commandResult(cmd.device, cmd.name),
      },
    });
  }

  private expireCommands(): void {
    for (const cmd of this.o.commands.takeExpired()) {
      this.logger.warn(
        { device: cmd.device, command: cmd.name },
        'command expired before its device answered',
      );
      const result = {
        status: 'error',
        error: { code: 'COMMAND_EXPIRED', message: 'the device did not answer in time' },
      };
      this.forward(
        cmd.device,
        edgeTopic.commandResult(cmd.device, cmd.name),
        Buffer.from(JSON.stringify(result)),
        {
          correlationData: cmd.correlation,
        },
      ).catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'expiry result not queued'));
    }
  }

  private publishDesired(device: string, twin: Twin): void {
    const doc = { ...twin.desired, $version: twin.desiredVersion };
    this.edgePublish({
      topic: edgeTopic.desired(device),
      payload: Buffer.from(JSON.stringify(doc)),
      qos: 1,
      retain: true,
    });
  }

  private publishDelta(device: string, twin: Twin): void {
    if (twin.desiredVersion === 0) return;
    const doc = { ...twinDelta(twin), $version: twin.desiredVersion };
    this.edgePublish({
      topic: edgeTopic.delta(device),
      payload: Buffer.from(JSON.stringify(doc)),
      qos: 1,
      retain: true,
    });
  }

  private edgePublish(message: OutgoingMessage): void {
    this.o
      .edgePublish(message)
      .catch((err: unknown) =>
        this.logger.warn({ topic: message.topic, err: errorMessage(err) }, 'edge publish failed'),
      );
  }
}

function messageProps(packet: PublishPacket): MessageProps | undefined {
  const p = packet.properties;
  if (!p) return undefined;
  const out: MessageProps = {};
  if (p.correlationData) out.correlationData = p.correlationData;
  if (p.contentType) out.contentType = p.contentType;
  if (p.userProperties) {
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(p.userProperties))
      flat[k] = Array.isArray(v) ? v.join(',') : String(v);
    out.userProperties = flat;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
