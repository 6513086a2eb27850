// React bindings for @firegate/client: a provider wired to Clerk's
// useAuth() shape, and hooks that return {data, status, error}.
import {
  createClient,
  DocRef,
  doc as docRef,
  type Client,
  type ClientOptions,
  type ConnectionState,
  type Doc,
  type FiregateError,
  type GetToken,
  type Precondition,
  type Query,
  type SetOptions,
  type Snapshot,
  type Status,
  type Target,
  type WriteAck,
  type WriteBatch,
} from '@firegate/client';
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from 'react';

const FiregateContext = createContext<Client | null>(null);

/** Props of FiregateProvider: pass Clerk's useAuth() values straight through. */
export interface FiregateProviderProps {
  /** ws(s) or http(s) URL of the gateway's /v1/stream (default: this origin). */
  url?: string;
  /** Clerk's getToken (or anything returning a token, or null when signed out). */
  getToken: GetToken;
  /** Clerk's userId: null/undefined when signed out. A change reconnects and clears the cache. */
  userId?: string | null;
  /** Clerk's orgId: a change refreshes the token in band (subscriptions re-plan). */
  orgId?: string | null;
  /** Persist the cache and pending writes in IndexedDB (keyed by user and org). */
  persistence?: ClientOptions['persistence'];
  /** Share one socket among tabs (default true in browsers that can). */
  multiTab?: boolean;
  /** WebSocket implementation (tests, React Native). */
  WebSocket?: ClientOptions['WebSocket'];
  /** A client made elsewhere (then the other options are ignored). */
  client?: Client;
  children?: ReactNode;
}

/**
 * Provides one Firegate client to the tree. Signed out (userId null, or
 * getToken returning null): the socket closes and the cache is cleared.
 * Another user: reconnect with a wiped cache. Another org: in-band
 * refresh.
 */
export function FiregateProvider(props: FiregateProviderProps): ReactNode {
  const tokenRef = useRef(props.getToken);
  tokenRef.current = props.getToken;
  const [client] = useState<Client>(
    () =>
      props.client ??
      createClient({
        getToken: (o) => tokenRef.current(o),
        autoConnect: false,
        userId: props.userId ?? null,
        orgId: props.orgId ?? null,
        ...(props.url !== undefined ? { url: props.url } : {}),
        ...(props.persistence !== undefined ? { persistence: props.persistence } : {}),
        ...(props.multiTab !== undefined ? { multiTab: props.multiTab } : {}),
        ...(props.WebSocket !== undefined ? { WebSocket: props.WebSocket } : {}),
      }),
  );
  useEffect(() => {
    client.setIdentity({ userId: props.userId ?? null, orgId: props.orgId ?? null });
  }, [client, props.userId, props.orgId]);
  useEffect(() => {
    client.connect();
    return () => client.close();
  }, [client]);
  return createElement(FiregateContext.Provider, { value: client }, props.children);
}

/** The provider's client. Throws outside a FiregateProvider. */
export function useFiregate(): Client {
  const c = useContext(FiregateContext);
  if (!c) throw new Error('useFiregate: no <FiregateProvider> above this component');
  return c;
}

/** The connection state, re-rendering on change. */
export function useConnectionState(): ConnectionState {
  const client = useFiregate();
  const subscribe = useCallback((cb: () => void) => client.on('state', cb), [client]);
  return useSyncExternalStore(subscribe, () => client.state, () => client.state);
}

/** What useCollection returns. */
export interface CollectionResult<T> {
  data: readonly Doc<T>[];
  status: Status;
  error: FiregateError | null;
  fromCache: boolean;
  hasPendingWrites: boolean;
  snapshot: Snapshot<T> | null;
}

/** What useDocument returns. */
export interface DocumentResult<T> {
  data: Doc<T> | null;
  status: Status;
  error: FiregateError | null;
  fromCache: boolean;
  snapshot: Snapshot<T> | null;
}

const EMPTY: readonly never[] = Object.freeze([]);

function useTarget<T>(target: Target<T> | null): Snapshot<T> | null {
  const client = useFiregate();
  const key = target ? target.key() : '';
  const ref = useRef(target);
  ref.current = target;
  const store = useMemo(() => {
    const t = ref.current;
    let current: Snapshot<T> | null = t ? client.peek(t) : null;
    return {
      subscribe(cb: () => void): () => void {
        const tt = ref.current;
        if (!tt) return () => undefined;
        return client.onSnapshot(tt, (s) => {
          current = s;
          cb();
        });
      },
      get(): Snapshot<T> | null {
        return current;
      },
    };
    // key identifies the target; a new Query object with the same key is the same subscription
  }, [client, key]);
  return useSyncExternalStore(store.subscribe, store.get, store.get);
}

/**
 * Live documents of a query (null: none). Equal queries share one
 * subscription, so building the query inline on every render is fine.
 */
export function useCollection<T>(query: Query<T> | null): CollectionResult<T> {
  const snap = useTarget(query);
  return {
    data: snap?.docs ?? EMPTY,
    status: query ? (snap?.status ?? 'loading') : 'ready',
    error: snap?.error ?? null,
    fromCache: snap?.fromCache ?? false,
    hasPendingWrites: snap?.hasPendingWrites ?? false,
    snapshot: snap,
  };
}

/** One live document by path or DocRef (null: none). */
export function useDocument<T>(path: string | DocRef<T> | null): DocumentResult<T> {
  const target = path === null ? null : typeof path === 'string' ? docRef<T>(path) : path;
  const snap = useTarget(target);
  return {
    data: snap?.doc ?? null,
    status: target ? (snap?.status ?? 'loading') : 'ready',
    error: snap?.error ?? null,
    fromCache: snap?.fromCache ?? false,
    snapshot: snap,
  };
}

/** Status of useWrite's last write. */
export type WriteStatus = 'idle' | 'pending' | 'done' | 'error';

/** What useWrite returns: the last write's {data, status, error} and the write functions. */
export interface WriteResult {
  data: WriteAck | null;
  status: WriteStatus;
  error: FiregateError | null;
  add(collectionPath: string | Query<unknown>, data: Record<string, unknown>): Promise<WriteAck & { path: string; id: string }>;
  set(path: string | DocRef<unknown>, data: Record<string, unknown>, options?: SetOptions): Promise<WriteAck>;
  update(path: string | DocRef<unknown>, fields: Record<string, unknown>, precondition?: Precondition): Promise<WriteAck>;
  remove(path: string | DocRef<unknown>, precondition?: Precondition): Promise<WriteAck>;
  /** Runs a batch built by fn and commits it. */
  batch(fn: (b: WriteBatch) => void): Promise<WriteAck>;
}

/**
 * Optimistic writes. The documents change in every hook at once (pending),
 * then are confirmed or rolled back; the returned promises settle with the
 * server's answer. Errors also land in `error` (promises never reject
 * unhandled: a rejection is caught after it is recorded).
 */
export function useWrite(): WriteResult {
  const client = useFiregate();
  const [state, setState] = useState<{ data: WriteAck | null; status: WriteStatus; error: FiregateError | null }>({
    data: null,
    status: 'idle',
    error: null,
  });
  const track = useCallback(<R extends WriteAck>(p: Promise<R>): Promise<R> => {
    setState((s) => ({ ...s, status: 'pending' }));
    p.then(
      (ack) => setState({ data: ack, status: 'done', error: null }),
      (err: FiregateError) => setState({ data: null, status: 'error', error: err }),
    );
    return p;
  }, []);
  return useMemo(
    () => ({
      ...state,
      add: (c, d) => track(client.add(c, d)),
      set: (p, d, o) => track(client.set(p, d, o)),
      update: (p, f, pre) => track(client.update(p, f, pre)),
      remove: (p, pre) => track(client.delete(p, pre)),
      batch: (fn) => {
        const b = client.batch();
        fn(b);
        return track(b.commit());
      },
    }),
    [client, state, track],
  );
}

export { DocRef };
export * from '@firegate/client';
