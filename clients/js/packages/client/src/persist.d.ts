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
/**
 * The IndexedDB store. Every method may be called at any time; operations
 * run in the order they were called (one queue), so a wipe is never
 * overtaken by an earlier write.
 */
export declare class IndexedDBPersistence {
    #private;
    constructor(opts?: PersistenceOptions);
    /**
     * Switches to the namespace of (userId, orgId) and loads it. When the
     * stored user differs from userId, every row is deleted first.
     */
    load(userId: string, orgId: string): Promise<LoadedState>;
    putTarget(t: PersistedTarget): Promise<void>;
    deleteTarget(targetKey: string): Promise<void>;
    putWrite(w: PersistedWrite): Promise<void>;
    deleteWrite(idempotencyKey: string): Promise<void>;
    /** Deletes everything (sign-out, user change). */
    wipe(): Promise<void>;
    /** Counts the stored rows (diagnostics and tests). */
    count(): Promise<{
        targets: number;
        writes: number;
    }>;
    close(): void;
}
