import type { MessageId } from './messages.js';

/** Message ids remembered per node: this many sequence numbers below the highest seen. */
export const SEEN_WINDOW = 8192;
/** Nodes remembered at once (beyond that, the one first heard from is forgotten). */
export const SEEN_NODES = 50_000;

interface Window {
  epoch: string;
  /** Highest seq seen in this epoch. */
  high: number;
  /** Bit `seq % SEEN_WINDOW` set: that seq was seen (valid for seqs in (high − SEEN_WINDOW, high]). */
  bits: Uint8Array;
}

/**
 * Which message ids this replica has handled, per node: a bounded, constant-size record (1 KiB per node and
 * epoch) instead of an LRU of id strings. An edge numbers its messages with increasing outbox sequence
 * numbers and resends after a lost PUBACK from the oldest unacknowledged one, at most `upstream.inflight`
 * (default 1000) back, so a window of the last 8192 sequence numbers catches every resend that comes
 * back to this replica. Ids below the window are let through: the writes are monotonic anyway (statusPatch.ts),
 * so a duplicate that gets past here changes nothing. Two epochs per node are kept (an edge whose database
 * was replaced); under a shared subscription this replica sees only its share of each node's ids, which
 * is fine: a gap is a message another replica handled.
 */
export class SeenIds {
  private readonly nodes = new Map<string, Window[]>();

  /** Records `id` from `node`; true when it was seen before (a duplicate). */
  check(node: string, id: MessageId): boolean {
    let windows = this.nodes.get(node);
    if (!windows) {
      windows = [];
      if (this.nodes.size >= SEEN_NODES) {
        const first = this.nodes.keys().next().value; // the node heard from first goes first
        if (first !== undefined) this.nodes.delete(first);
      }
      this.nodes.set(node, windows);
    }
    let w = windows.find((x) => x.epoch === id.epoch);
    if (!w) {
      w = { epoch: id.epoch, high: id.seq, bits: new Uint8Array(SEEN_WINDOW / 8) };
      windows.unshift(w);
      if (windows.length > 2) windows.pop();
      mark(w, id.seq);
      return false;
    }
    if (id.seq > w.high) {
      const gap = id.seq - w.high;
      if (gap >= SEEN_WINDOW) w.bits.fill(0);
      else for (let s = w.high + 1; s < id.seq; s++) clear(w, s);
      w.high = id.seq;
      mark(w, id.seq);
      return false;
    }
    if (w.high - id.seq >= SEEN_WINDOW) return false; // too old to tell: let the monotonic write judge
    if (isMarked(w, id.seq)) return true;
    mark(w, id.seq);
    return false;
  }
}

function mark(w: Window, seq: number): void {
  const i = seq % SEEN_WINDOW;
  w.bits[i >> 3] = (w.bits[i >> 3] as number) | (1 << (i & 7));
}

function clear(w: Window, seq: number): void {
  const i = seq % SEEN_WINDOW;
  w.bits[i >> 3] = (w.bits[i >> 3] as number) & ~(1 << (i & 7));
}

function isMarked(w: Window, seq: number): boolean {
  const i = seq % SEEN_WINDOW;
  return ((w.bits[i >> 3] as number) & (1 << (i & 7))) !== 0;
}
