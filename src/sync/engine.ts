import { randomUUID } from 'node:crypto';
import type { PublishPacket } from 'aedes';
import type { Identity } from '../broker/auth.js';
import { filterCovers } from '../broker/auth.js';
import type { OutgoingMessage } from '../broker/edgeBroker.js';
import type { MessageProps, Outbox, OutboxMessage } from '../database/outbox.js';
import {
  type EdgeTopic,
  edgeTopic,
  MESSAGE_ID_PROPERTY,
  parseEdgeTopic,
  UPSTREAM_KINDS,
} from '../model/topics.js';
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
}

/** Where the engine publishes to devices: the edge broker, handed over at `start()`. */
export interface EdgePublisher {
  publish(message: OutgoingMessage): Promise<void>;
}

export const STATUS_VALUES = new Set(['online', 'offline']);

/** Told once: the message is durable (no argument), or why it was refused. */
export type IngestDone = (err?: Error) => void;

const ignore: IngestDone = () => {};

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
  private edge?: EdgePublisher;
  private readonly logger: Logger;

  constructor(private readonly o: SyncEngineOptions) {
    this.logger = o.logger;
  }

  /**
   * Starts expiring commands, and publishing to devices through `edge`. The broker is built with this engine's
   * `ingest` and `onSubscribed`, so the engine gets the broker here rather than in its constructor; start the
   * engine before the broker listens, so the first subscriber finds it ready.
   */
  start(edge: EdgePublisher): void {
    this.edge = edge;
    const every = Math.max(250, Math.min(5000, this.o.commandTtlMs / 4));
    this.expiryTimer = setInterval(() => this.expireCommands(), every);
    this.expiryTimer.unref();
  }

  stop(): void {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
  }

  /**
   * Called by the edge broker for each PUBLISH that passed the ACL; `done` is called once it is durable, or with the
   * reason it was refused. A callback, not a promise: this runs once per device message.
   */
  readonly ingest = (
    _identity: Identity,
    _clientId: string,
    packet: PublishPacket,
    done: IngestDone,
  ): void => {
    const topic = parseEdgeTopic(packet.topic);
    if (!topic || !UPSTREAM_KINDS.has(topic.kind)) {
      this.received.other++;
      done();
      return;
    }
    let msg: OutboxMessage | undefined;
    try {
      msg = this.accept(topic, packet);
    } catch (err) {
      done(err as Error);
      return;
    }
    this.received[topic.kind]++;
    if (!msg || !this.o.outbox) done();
    else if (packet.qos === 0) {
      this.o.outbox.appendThen(msg, ignore); // nobody to tell: its outcome is counted by the outbox
      done();
    } else this.o.outbox.appendThen(msg, done);
  };

  /** What goes upstream for this device message (twins merged, results correlated); throws PayloadError. */
  private accept(topic: EdgeTopic, packet: PublishPacket): OutboxMessage | undefined {
    let props = messageProps(packet);
    let payload = packet.payload as Buffer;
    switch (topic.kind) {
      case 'telemetry':
        break;
      case 'status':
        if (!STATUS_VALUES.has(payload.toString('utf8')))
          throw new PayloadError('STATUS_INVALID', 'status must be online or offline');
        break;
      case 'reported': {
        const twin = this.o.twins.applyReported(topic.device, payload);
        payload = Buffer.from(JSON.stringify({ ...twin.reported, $version: twin.reportedVersion }));
        this.publishDelta(topic.device, twin);
        break;
      }
      case 'birth':
        // A retained announcement (`{"properties": {...}}`) read by the mqtt discovery handler; an empty one clears it.
        if (payload.length > 0) parseObject(payload, 'birth message');
        break;
      case 'commandResult': {
        const result = this.o.commands.complete(topic.device, topic.name, props?.correlationData);
        if (result && !props?.correlationData) props = { ...props, correlationData: result.correlation };
        break;
      }
      default:
        return undefined;
    }
    const msg: OutboxMessage = { device: topic.device, topic: packet.topic, payload };
    if (props) msg.props = props;
    return msg;
  }

  private forward(
    device: string,
    topic: string,
    payload: Buffer,
    props: MessageProps | undefined,
    done: IngestDone,
  ): void {
    if (!this.o.outbox) {
      done();
      return;
    }
    const msg: OutboxMessage = { device, topic, payload };
    if (props) msg.props = props;
    this.o.outbox.appendThen(msg, done);
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

  /** A client subscribed: hand it the commands waiting for its device that its filter covers. */
  onSubscribed(identity: Identity, topics: string[]): void {
    for (const filter of topics) {
      const device = identity.kind === 'device' ? identity.device : filter.split('/')[1];
      if (!device || device === '+' || device === '#') continue;
      // After the SUBACK has gone out. Per command: a filter may name one command (`devices/d1/commands/reboot`).
      setImmediate(() => {
        for (const cmd of this.o.commands.pendingFor(device))
          if (filterCovers(filter, edgeTopic.command(device, cmd.name))) this.deliver(cmd);
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
        { correlationData: cmd.correlation },
        (err) => err && this.logger.warn({ err: errorMessage(err) }, 'expiry result not queued'),
      );
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
    if (!this.edge) {
      this.logger.warn({ topic: message.topic }, 'edge publish before the engine started: not sent');
      return;
    }
    this.edge
      .publish(message)
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
