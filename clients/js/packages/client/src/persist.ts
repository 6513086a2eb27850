// Optional IndexedDB persistence of the cache and of pending writes. Rows
// are keyed by namespace = user and org; opening as another user wipes
// every row first, so one user's data is never shown to another.
import type { WireDoc, WireWriteOp } from './protocol.js';

/** A subscription's last state: enough to render it and to resume it. */
export interface PersistedTarget {
  key: string;
  epoch: string;
  seq: number;
  docs: WireDoc[];
}

/** A write not yet confirmed, replayed with its idempotency key after a reload. */
export interface PersistedWrite {
  idempotencyKey: string;
  ops: WireWriteOp[];
  order: number;
}

export interface PersistenceOptions {
  /** The IndexedDB factory (default: globalThis.indexedDB; fake-indexeddb in Node). */
  indexedDB?: IDBFactory;
  /** Database name (default "firegate"). */
  name?: string;
}

export interface LoadedState {
  targets: Map<string, PersistedTarget>;
  writes: PersistedWrite[];
}

const SEP = '\u0000';

interface Row<T> {
  ns: string;
  v: T;
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/**
 * The IndexedDB store. Every method may be called at any time; operations
 * run in the order they were called (one queue), so a wipe is never
 * overtaken by an earlier write.
 */
export class IndexedDBPersistence {
  readonly #factory: IDBFactory;
  readonly #name: string;
  #db: Promise<IDBDatabase> | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #ns = '';

  constructor(opts: PersistenceOptions = {}) {
    const f = opts.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!f) throw new Error('persistence: no IndexedDB here (pass persistence.indexedDB, e.g. from fake-indexeddb in Node)');
    this.#factory = f;
    this.#name = opts.name ?? 'firegate';
  }

  #open(): Promise<IDBDatabase> {
    if (!this.#db) {
      this.#db = new Promise((resolve, reject) => {
        const r = this.#factory.open(this.#name, 1);
        r.onupgradeneeded = () => {
          const db = r.result;
          for (const s of ['meta', 'targets', 'writes']) if (!db.objectStoreNames.contains(s)) db.createObjectStore(s);
        };
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error ?? new Error('IndexedDB open failed'));
        r.onblocked = () => reject(new Error('IndexedDB open blocked'));
      });
    }
    return this.#db;
  }

  #run<T>(fn: (db: IDBDatabase) => Promise<T>): Promise<T> {
    const p = this.#queue.then(() => this.#open()).then(fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Switches to the namespace of (userId, orgId) and loads it. When the
   * stored user differs from userId, every row is deleted first.
   */
  load(userId: string, orgId: string): Promise<LoadedState> {
    const ns = `${userId}${SEP}${orgId}`;
    this.#ns = ns;
    return this.#run(async (db) => {
      const tx = db.transaction(['meta', 'targets', 'writes'], 'readwrite');
      const meta = tx.objectStore('meta');
      const stored = await req(meta.get('user'));
      if (stored !== userId) {
        tx.objectStore('targets').clear();
        tx.objectStore('writes').clear();
        meta.put(userId, 'user');
      }
      // Rows carry their namespace (no IDBKeyRange: not every IndexedDB has it global).
      const targets = ((await req(tx.objectStore('targets').getAll())) as Row<PersistedTarget>[]).filter((r) => r.ns === ns).map((r) => r.v);
      const writes = ((await req(tx.objectStore('writes').getAll())) as Row<PersistedWrite>[]).filter((r) => r.ns === ns).map((r) => r.v);
      await done(tx);
      writes.sort((a, b) => a.order - b.order);
      return { targets: new Map(targets.map((t) => [t.key, t])), writes };
    });
  }

  putTarget(t: PersistedTarget): Promise<void> {
    const key = this.#ns + SEP + t.key;
    return this.#run(async (db) => {
      const tx = db.transaction('targets', 'readwrite');
      tx.objectStore('targets').put({ ns: this.#ns, v: t }, key);
      await done(tx);
    });
  }

  deleteTarget(targetKey: string): Promise<void> {
    const key = this.#ns + SEP + targetKey;
    return this.#run(async (db) => {
      const tx = db.transaction('targets', 'readwrite');
      tx.objectStore('targets').delete(key);
      await done(tx);
    });
  }

  putWrite(w: PersistedWrite): Promise<void> {
    const key = this.#ns + SEP + w.idempotencyKey;
    return this.#run(async (db) => {
      const tx = db.transaction('writes', 'readwrite');
      tx.objectStore('writes').put({ ns: this.#ns, v: w }, key);
      await done(tx);
    });
  }

  deleteWrite(idempotencyKey: string): Promise<void> {
    const key = this.#ns + SEP + idempotencyKey;
    return this.#run(async (db) => {
      const tx = db.transaction('writes', 'readwrite');
      tx.objectStore('writes').delete(key);
      await done(tx);
    });
  }

  /** Deletes everything (sign-out, user change). */
  wipe(): Promise<void> {
    return this.#run(async (db) => {
      const tx = db.transaction(['meta', 'targets', 'writes'], 'readwrite');
      for (const s of ['meta', 'targets', 'writes']) tx.objectStore(s).clear();
      await done(tx);
    });
  }

  /** Counts the stored rows (diagnostics and tests). */
  count(): Promise<{ targets: number; writes: number }> {
    return this.#run(async (db) => {
      const tx = db.transaction(['targets', 'writes'], 'readonly');
      const targets = await req(tx.objectStore('targets').count());
      const writes = await req(tx.objectStore('writes').count());
      return { targets, writes };
    });
  }

  close(): void {
    void this.#db?.then((db) => db.close()).catch(() => undefined);
    this.#db = null;
  }
}
