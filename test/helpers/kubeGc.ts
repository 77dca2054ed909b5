import type { KubeResources } from './kubeResources.js';
import type { KubeObject, OwnerReference, ResourceType } from './kubeStore.js';

/**
 * The garbage collector's part (https://kubernetes.io/docs/concepts/architecture/garbage-collection/):
 * after a delay, a dependent whose owners are all gone is deleted (background cascade); references to
 * owners that are gone are removed when other owners remain; an owner deleted in the foreground keeps its
 * `foregroundDeletion` finalizer until its dependents are gone. An owner is gone when no object of that
 * kind, name (and namespace) with that uid exists. Owners of kinds the server does not serve are assumed
 * present.
 */
export class GarbageCollector {
  private timer: NodeJS.Timeout | undefined;
  private idle: (() => void)[] = [];

  constructor(
    private readonly resources: KubeResources,
    private readonly delayMs: number,
  ) {}

  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run();
    }, this.delayMs);
  }

  /** Resolves once no collection is pending. */
  settled(): Promise<void> {
    if (!this.timer) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const f of this.idle.splice(0)) f();
  }

  /** Sweeps until nothing changes (a cascade deletes one level per sweep). */
  run(): void {
    for (let i = 0; i < 100 && this.sweep() > 0; i++);
    if (!this.timer) for (const f of this.idle.splice(0)) f();
  }

  private sweep(): number {
    let changed = 0;
    const store = this.resources.store;
    for (const t of store.types.values()) {
      for (const o of store.all(t)) {
        if (o.metadata.ownerReferences?.length && !o.metadata.deletionTimestamp)
          changed += this.collect(t, o);
        if (o.metadata.deletionTimestamp && o.metadata.finalizers?.includes('foregroundDeletion')) {
          if (this.resources.dependentsOf(o).length === 0) {
            this.resources.commitMeta(t, o, {
              finalizers: o.metadata.finalizers.filter((f) => f !== 'foregroundDeletion'),
            });
            changed++;
          }
        }
      }
    }
    return changed;
  }

  private collect(t: ResourceType, o: KubeObject): number {
    const refs = o.metadata.ownerReferences!;
    const states = refs.map((r) => this.ownerState(r, o));
    if (states.every((s) => s === 'gone') || states.includes('deleting')) {
      this.resources.delete(t, o.metadata.namespace, o.metadata.name, { propagationPolicy: 'Background' });
      return 1;
    }
    if (states.includes('gone')) {
      this.resources.commitMeta(t, o, { ownerReferences: refs.filter((_, i) => states[i] !== 'gone') });
      return 1;
    }
    return 0;
  }

  private ownerState(ref: OwnerReference, dependent: KubeObject): 'present' | 'gone' | 'deleting' {
    const group = ref.apiVersion.includes('/') ? ref.apiVersion.split('/')[0] : '';
    const t = [...this.resources.store.types.values()].find((x) => x.group === group && x.kind === ref.kind);
    if (!t) return 'present';
    const owner = this.resources.store.find(
      t,
      t.namespaced ? dependent.metadata.namespace : undefined,
      ref.name,
    );
    if (!owner || owner.metadata.uid !== ref.uid) return 'gone';
    if (owner.metadata.deletionTimestamp && owner.metadata.finalizers?.includes('foregroundDeletion'))
      return 'deleting';
    return 'present';
  }
}
