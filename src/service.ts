// The service contract: how every long-running part of cloister starts and stops (undici's Client model).
//
//   const svc = await startX(slice, deps);   // listening when it resolves; a bind error rejects
//   svc.env, svc.address ...                 // what the process that started it needs to know
//   await svc.close();                       // graceful, with a deadline
//   await svc.destroy(err);                  // abort
//
// - `slice` is the service's part of the runtime plan (src/plan/): every decision it needs, made once.
//   A service does not read the config or the manifest, and does not re-derive what the plan decided.
// - `deps` is what it needs from the process that starts it: the transport, a logger, the NSM, another
//   service's bound address (the KMS proxy gets the egress proxy's). Services never import each other;
//   the supervisor (or `cloister host` / `dev`) composes them.
// - close(): stop accepting at once; let connections and requests in flight finish within the service's
//   grace period, then cut off what is left; release timers and agents. Resolves once nothing the service
//   opened is left, so a process that closed all its services exits by itself (src/exit.ts).
// - destroy(err): the same, without the grace: every connection is cut off now.
// - Both are idempotent and may be called in any order, any number of times: each returns the one promise
//   of the service being closed (a destroy() during a close() cuts the grace short).
//
// The pieces: ConnectionSet and closeServer in src/connections.ts (live connections, stop accepting),
// serviceLifetime below (close/destroy built from them), withDeadline in src/deadline.ts (timeouts).
import type { ConnectionSet } from './connections.ts';

export interface Service {
  /** Environment variables the app should get because this service runs (proxy URLs, endpoints). */
  readonly env?: Record<string, string>;
  /** Graceful: stop accepting, let in-flight work finish within the grace period, then cut it off. */
  close(): Promise<void>;
  /** Abort: stop accepting and cut every connection off now. `err` says why (for the service's log). */
  destroy(err?: Error): Promise<void>;
}

/** A service's start function: its slice of the plan, and what the process that starts it provides. */
export type StartService<Slice, Deps, S extends Service = Service> = (slice: Slice, deps: Deps) => Promise<S>;

export interface LifetimeParts {
  /** Stop accepting; resolves once the listeners are closed (src/connections.ts closeServer). */
  stopAccepting(): Promise<unknown>;
  /** Every live connection of the service. */
  connections: ConnectionSet;
  /** How long close() lets connections in flight finish before cutting them off. */
  graceMs: number;
  /** Runs last, once no connection is left: timers, agents, caches the service holds. */
  release?(): void | Promise<void>;
}

/** close() and destroy() of a service, by the contract above, from its listeners and connections. */
export function serviceLifetime(parts: LifetimeParts): Pick<Service, 'close' | 'destroy'> & {
  /** True once close() or destroy() was called. */
  readonly closing: boolean;
} {
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      const stopped = parts.stopAccepting();
      await parts.connections.drain(parts.graceMs);
      await stopped;
      await parts.release?.();
    })();
    return closed;
  };
  return {
    get closing() {
      return closed !== null;
    },
    close,
    destroy(_err?: Error) {
      parts.connections.destroyAll();
      return close();
    },
  };
}
