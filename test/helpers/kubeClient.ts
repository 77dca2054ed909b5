import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import type { KubeApiServer } from './kubeApiServer.js';
import type { Status } from './kubeStatus.js';

/** @kubernetes/client-node pointed at a test API server (importing the client costs ~70 MB; only tests that use it do). */
export function kubeClients(api: KubeApiServer) {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return { kc, custom: kc.makeApiClient(CustomObjectsApi), core: kc.makeApiClient(CoreV1Api) };
}

/** Options that make a client-node patch call send a JSON merge patch (its default is JSON patch). */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
export const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/** The Status an API call failed with (client-node keeps the body as text). */
export function statusOf(err: unknown): Status {
  if (!(err instanceof ApiException)) throw err;
  return JSON.parse(String(err.body)) as Status;
}

/** The rejection of a call that must fail, for assertions. */
export async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

export interface WatchedEvent {
  type: string;
  object: {
    metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> };
  } & Record<string, unknown>;
}

/** A watch through client-node's Watch class, its events collected; `ended` resolves with done()'s error. */
export async function watchWith(
  kc: KubeConfig,
  path: string,
  params: Record<string, string | number | boolean | undefined> = {},
) {
  const events: WatchedEvent[] = [];
  let finish: (err: unknown) => void = () => {};
  const ended = new Promise<unknown>((resolve) => {
    finish = resolve;
  });
  const controller = await new Watch(kc).watch(
    path,
    params,
    (type, object) => events.push({ type, object }),
    (err) => finish(err),
  );
  return { events, ended, stop: () => controller.abort() };
}

export { until, within } from './wait.js';
