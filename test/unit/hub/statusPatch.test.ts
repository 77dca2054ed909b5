// The hub's version ordering (src/hub/statusPatch.ts): which report and presence may replace which, how two
// pending states fold, and the merge patch a status write sends. The promise under all of it: a stale report or
// presence never overwrites a newer one, the hub touches only what it owns, and lastSeen never moves back.
import { describe, expect, it } from 'vitest';
import type { Presence, Report } from '../../../src/hub/messages.js';
import {
  connectedCondition,
  fold,
  iso,
  presenceNewer,
  reportNewer,
  statusPatch,
} from '../../../src/hub/statusPatch.js';

const AT = Date.parse('2026-06-01T12:00:00Z');

const report = (version: number, doc: Record<string, unknown>, o: Partial<Report> = {}): Report => ({
  node: 'n1',
  epoch: 'e1',
  receivedAt: AT,
  doc: { ...doc, $version: version },
  version,
  ...o,
});

const msgId = (epoch: string, seq: number) => ({ epoch, seq, text: `${epoch}-${seq}` });

const presence = (online: boolean, seq: number | undefined, o: Partial<Presence> = {}): Presence => ({
  node: 'n1',
  receivedAt: AT,
  online,
  ...(seq === undefined ? {} : { msgId: msgId('e1', seq) }),
  ...o,
});

/** A Connected condition as the hub stores it. */
const connected = (message: string, status = 'True') => ({
  type: 'Connected',
  status,
  reason: status === 'True' ? 'MqttOnline' : 'MqttOffline',
  message,
  lastTransitionTime: '2026-01-01T00:00:00Z',
});

describe('reportNewer', () => {
  it('anything replaces nothing', () => {
    expect(reportNewer({ version: 1, node: 'n1', epoch: 'e1' }, undefined)).toBe(true);
  });

  it('within one edge database (epoch) only a higher $version wins, whatever the node', () => {
    const held = { version: 5, node: 'n1', epoch: 'e1' };
    expect(reportNewer({ version: 6, node: 'n1', epoch: 'e1' }, held)).toBe(true);
    expect(reportNewer({ version: 5, node: 'n1', epoch: 'e1' }, held)).toBe(false);
    expect(reportNewer({ version: 4, node: 'n1', epoch: 'e1' }, held)).toBe(false);
    // The same database seen through another node still orders by version.
    expect(reportNewer({ version: 4, node: 'n2', epoch: 'e1' }, held)).toBe(false);
  });

  it('another epoch replaces the held report whatever its version: versions of two databases do not compare', () => {
    const held = { version: 5, node: 'n1', epoch: 'e1' };
    expect(reportNewer({ version: 1, node: 'n1', epoch: 'e2' }, held)).toBe(true);
    // One side without an epoch (an MQTT 3.1.1 upstream) is another source too, either way round.
    expect(reportNewer({ version: 1, node: 'n1' }, held)).toBe(true);
    expect(reportNewer({ version: 1, node: 'n1', epoch: 'e1' }, { version: 5, node: 'n1' })).toBe(true);
  });

  it('without epochs a report orders by version per node; another node replaces it', () => {
    const held = { version: 5, node: 'n1' };
    expect(reportNewer({ version: 6, node: 'n1' }, held)).toBe(true);
    expect(reportNewer({ version: 5, node: 'n1' }, held)).toBe(false);
    expect(reportNewer({ version: 4, node: 'n1' }, held)).toBe(false);
    expect(reportNewer({ version: 1, node: 'n2' }, held)).toBe(true);
  });
});

describe('presenceNewer', () => {
  it('within one epoch a higher sequence number wins, compared as a number', () => {
    const held = { msgId: msgId('e1', 10) };
    expect(presenceNewer({ msgId: msgId('e1', 11) }, held)).toBe(true);
    expect(presenceNewer({ msgId: msgId('e1', 10) }, held)).toBe(false);
    expect(presenceNewer({ msgId: msgId('e1', 9) }, held)).toBe(false);
  });

  it('another epoch, or a message id missing on either side, goes by arrival: the incoming one wins', () => {
    const held = { msgId: msgId('e1', 10) };
    expect(presenceNewer({ msgId: msgId('e2', 1) }, held)).toBe(true);
    expect(presenceNewer({}, held)).toBe(true);
    expect(presenceNewer({ msgId: msgId('e1', 1) }, {})).toBe(true);
    expect(presenceNewer({ msgId: msgId('e1', 1) }, undefined)).toBe(true);
  });
});

describe('fold', () => {
  it('keeps per part the newer one, whichever side it is on (a failed write folds back under newer changes)', () => {
    const older = { report: report(2, { fw: '1.1' }), presence: presence(true, 9) };
    const newer = { report: report(3, { fw: '1.2' }), presence: presence(false, 10) };
    expect(fold(older, newer)).toEqual(newer);
    expect(fold(newer, older)).toEqual(newer);
    // Mixed: the report of one side, the presence of the other.
    const mixed = { report: report(4, { fw: '1.3' }), presence: presence(true, 8) };
    expect(fold(mixed, newer)).toEqual({ report: mixed.report, presence: newer.presence });
    expect(fold(newer, mixed)).toEqual({ report: mixed.report, presence: newer.presence });
  });

  it('a part only one side has is kept; nothing on either side is nothing', () => {
    const r = { report: report(1, { fw: '1.0' }) };
    const p = { presence: presence(true, 1) };
    expect(fold(r, p)).toStrictEqual({ ...r, ...p });
    expect(fold(p, r)).toStrictEqual({ ...r, ...p });
    expect(fold(undefined, r)).toBe(r);
    expect(fold(r, undefined)).toBe(r);
    expect(fold(undefined, undefined)).toEqual({});
  });

  it('among equals the one already held stays', () => {
    const held = { report: report(3, { fw: 'held' }), presence: presence(true, 5) };
    const same = { report: report(3, { fw: 'same version' }), presence: presence(false, 5) };
    expect(fold(held, same)).toEqual(held);
  });
});

describe('statusPatch', () => {
  it('a newer report is written as the change against what the server holds; a removed field becomes null', () => {
    const status = {
      online: true,
      reported: { fw: '1.0', mode: 'eco', gone: 1, $version: 1, $node: 'n1', $epoch: 'e1' },
    };
    const r = statusPatch(status, { report: report(2, { fw: '1.0', mode: 'boost' }) });
    expect(r).toEqual({
      patch: { reported: { mode: 'boost', gone: null, $version: 2 }, lastSeen: '2026-06-01T12:00:00Z' },
      reportWritten: true,
      staleParts: 0,
    });
  });

  it('a report onto no reported twin (none, null, or an array) is written whole, with where it came from', () => {
    for (const reported of [undefined, null, ['x']]) {
      const r = statusPatch({ online: true, reported }, { report: report(1, { fw: '1.0' }, { node: 'n7' }) });
      expect(r.patch.reported).toEqual({ fw: '1.0', $version: 1, $node: 'n7', $epoch: 'e1' });
      expect(r.reportWritten).toBe(true);
    }
    // Without an epoch (MQTT 3.1.1) none is stored.
    const r = statusPatch({ online: true }, { report: report(1, { fw: '1.0' }, { epoch: undefined }) });
    expect(r.patch.reported).toStrictEqual({ fw: '1.0', $version: 1, $node: 'n1' });
  });

  it('a stale report is counted and changes nothing, not even lastSeen', () => {
    const status = {
      online: true,
      lastSeen: '2020-01-01T00:00:00Z',
      reported: { fw: '2.0', $version: 5, $node: 'n1', $epoch: 'e1' },
    };
    for (const version of [4, 5]) {
      expect(statusPatch(status, { report: report(version, { fw: 'old' }) })).toEqual({
        patch: {},
        reportWritten: false,
        staleParts: 1,
      });
    }
  });

  it('orders a report against the stored $version, $epoch and $node', () => {
    // Stored without an epoch, from n1: the same node without an epoch orders by version.
    const byNode = { online: true, reported: { fw: '2.0', $version: 5, $node: 'n1' } };
    const stale = report(4, { fw: 'x' }, { epoch: undefined });
    expect(statusPatch(byNode, { report: stale }).staleParts).toBe(1);
    expect(statusPatch(byNode, { report: { ...stale, node: 'n2' } }).reportWritten).toBe(true);
    // A stored twin without a $node string is from no node this one can be.
    const noNode = { online: true, reported: { fw: '2.0', $version: 5, $node: 7 } };
    expect(statusPatch(noNode, { report: stale }).reportWritten).toBe(true);
    // A stored $epoch that is not a string is no epoch: the report of n1 without an epoch orders by version.
    const oddEpoch = { online: true, reported: { fw: '2.0', $version: 5, $node: 'n1', $epoch: 3 } };
    expect(statusPatch(oddEpoch, { report: stale }).staleParts).toBe(1);
    // A stored twin without a numeric $version (written by something else) is replaced.
    const noVersion = { online: true, reported: { fw: '2.0', $version: '9', $node: 'n1', $epoch: 'e1' } };
    expect(statusPatch(noVersion, { report: report(1, { fw: '1.0' }) }).patch.reported).toEqual({
      fw: '1.0',
      $version: 1,
    });
  });

  it('writes online: false only when the object has no boolean online (the agents own it)', () => {
    expect(statusPatch(undefined, {}).patch).toEqual({ online: false });
    expect(statusPatch({ online: 'yes' }, {}).patch).toEqual({ online: false });
    expect(statusPatch({ online: true }, {}).patch).toEqual({});
    expect(statusPatch({ online: false }, {}).patch).toEqual({});
  });

  it('a newer presence sets the Connected condition with its message id and keeps the other conditions', () => {
    const other = {
      type: 'Online',
      status: 'True',
      reason: 'Discovered',
      message: 'seen',
      lastTransitionTime: 'x',
    };
    const status = { online: true, conditions: [other, connected('online at n1 (lb-msg-id e1-4)')] };
    const r = statusPatch(status, { presence: presence(false, 5, { receivedAt: AT + 1_500 }) });
    expect(r.patch).toEqual({
      conditions: [
        other,
        {
          type: 'Connected',
          status: 'False',
          reason: 'MqttOffline',
          message: 'offline at n1 (lb-msg-id e1-5)',
          lastTransitionTime: '2026-06-01T12:00:01Z',
        },
      ],
      lastSeen: '2026-06-01T12:00:01Z',
    });
    expect(r.staleParts).toBe(0);
  });

  it('an older presence of the same epoch is stale; one of another epoch wins', () => {
    // The agents' own condition comes first; the order is read from the Connected one only.
    const online = {
      type: 'Online',
      status: 'True',
      reason: 'Discovered',
      message: 'seen by mqtt from n1',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    };
    const status = { online: true, conditions: [online, connected('online at n1 (lb-msg-id e1-10)')] };
    for (const seq of [9, 10]) {
      expect(statusPatch(status, { presence: presence(false, seq) })).toEqual({
        patch: {},
        reportWritten: false,
        staleParts: 1,
      });
    }
    const r = statusPatch(status, { presence: presence(false, 1, { msgId: msgId('Ab9', 1) }) });
    expect(r.patch.conditions).toEqual([
      online,
      expect.objectContaining({ status: 'False', message: 'offline at n1 (lb-msg-id Ab9-1)' }),
    ]);
  });

  it('reads the message id only at the end of the stored Connected message', () => {
    // The stored id of a long epoch and a long sequence: an older one is stale.
    const long = { online: true, conditions: [connected('online at n1 (lb-msg-id Epoch42-123456789012)')] };
    const older = presence(false, 1, { msgId: msgId('Epoch42', 123456789011) });
    expect(statusPatch(long, { presence: older }).staleParts).toBe(1);
    // Text after the id, or no id at all (a presence without one): the stored one orders nothing, so it is replaced.
    for (const message of ['online at n1 (lb-msg-id e1-10) and more', 'online at n1', 'e1-10']) {
      const status = { online: true, conditions: [connected(message)] };
      const r = statusPatch(status, { presence: presence(false, 9) });
      expect(r.patch.conditions).toEqual([
        expect.objectContaining({ message: 'offline at n1 (lb-msg-id e1-9)' }),
      ]);
    }
    // A Connected condition whose message is not a string holds no id, even one that reads as a newer id.
    const odd = {
      online: true,
      conditions: [{ ...connected(''), message: ['online at n1 (lb-msg-id e1-10)'] }],
    };
    expect(statusPatch(odd, { presence: presence(false, 9) }).staleParts).toBe(0);
  });

  it('a presence that changes no condition writes only lastSeen; one that flips keeps the transition time when the status stays', () => {
    const stored = connected('online at n1');
    const status = { online: true, lastSeen: '2026-01-01T00:00:00Z', conditions: [stored] };
    expect(statusPatch(status, { presence: presence(true, undefined) }).patch).toEqual({
      lastSeen: '2026-06-01T12:00:00Z',
    });
    const r = statusPatch(status, { presence: presence(true, 3, { node: 'n2' }) });
    expect(r.patch.conditions).toEqual([
      { ...stored, message: 'online at n2 (lb-msg-id e1-3)', lastTransitionTime: stored.lastTransitionTime },
    ]);
  });

  it('drops what is not a condition from the stored list, and reads a non-list as none', () => {
    const good = connected('online at n1 (lb-msg-id e1-1)');
    const status = { online: true, conditions: ['x', null, { type: 'A' }, { status: 'True' }, good] };
    const r = statusPatch(status, { presence: presence(true, 2) });
    expect(r.patch.conditions).toEqual([
      expect.objectContaining({ type: 'Connected', message: 'online at n1 (lb-msg-id e1-2)' }),
    ]);
    const notList = statusPatch(
      { online: true, conditions: { type: 'Connected' } },
      { presence: presence(true, 1) },
    );
    expect(notList.patch.conditions).toEqual([
      expect.objectContaining({ type: 'Connected', status: 'True' }),
    ]);
  });

  it('lastSeen moves to the newest part written, to the second, and never back', () => {
    const pending = {
      report: report(2, { fw: '1' }, { receivedAt: AT + 7_900 }),
      presence: presence(true, 2, { receivedAt: AT + 3_000 }),
    };
    const at = (lastSeen: unknown) => statusPatch({ online: true, lastSeen }, pending).patch.lastSeen;
    expect(at(undefined)).toBe('2026-06-01T12:00:07Z');
    expect(at('not a time')).toBe('2026-06-01T12:00:07Z');
    expect(at(12)).toBe('2026-06-01T12:00:07Z');
    expect(at('2026-06-01T12:00:06Z')).toBe('2026-06-01T12:00:07Z');
    expect(at('2026-06-01T12:00:07Z')).toBeUndefined();
    expect(at('2026-06-01T12:00:08Z')).toBeUndefined();
    // The presence is the newer part.
    const later = { ...pending, presence: presence(true, 2, { receivedAt: AT + 9_000 }) };
    expect(statusPatch({ online: true }, later).patch.lastSeen).toBe('2026-06-01T12:00:09Z');
  });

  it('a stale part does not move lastSeen; the fresh one does', () => {
    const status = {
      online: true,
      lastSeen: '2026-06-01T12:00:00Z',
      reported: { $version: 5, $node: 'n1', $epoch: 'e1' },
      conditions: [connected('online at n1 (lb-msg-id e1-10)')],
    };
    const staleReport = statusPatch(status, {
      report: report(4, {}, { receivedAt: AT + 9_000 }),
      presence: presence(false, 11, { receivedAt: AT + 2_000 }),
    });
    expect(staleReport.patch.lastSeen).toBe('2026-06-01T12:00:02Z');
    expect(staleReport.staleParts).toBe(1);
    const stalePresence = statusPatch(status, {
      report: report(6, {}, { receivedAt: AT + 2_000 }),
      presence: presence(false, 9, { receivedAt: AT + 9_000 }),
    });
    expect(stalePresence.patch.lastSeen).toBe('2026-06-01T12:00:02Z');
    expect(stalePresence.staleParts).toBe(1);
    expect(stalePresence.reportWritten).toBe(true);
  });
});

describe('connectedCondition and iso', () => {
  it('the Connected condition says online or offline, where, and with which message id', () => {
    expect(connectedCondition(presence(true, 3))).toEqual({
      type: 'Connected',
      status: 'True',
      reason: 'MqttOnline',
      message: 'online at n1 (lb-msg-id e1-3)',
    });
    expect(connectedCondition(presence(false, undefined, { node: 'n2' }))).toEqual({
      type: 'Connected',
      status: 'False',
      reason: 'MqttOffline',
      message: 'offline at n2',
    });
  });

  it('times are RFC 3339 to the second, rounded down, as Kubernetes writes them', () => {
    expect(iso(AT + 999)).toBe('2026-06-01T12:00:00Z');
    expect(iso(AT + 1_000)).toBe('2026-06-01T12:00:01Z');
  });
});
