import type { ErrorCode } from './protocol.js';
/**
 * An error of the gateway (`code` is the protocol's error code or
 * unsubscribe reason) or of the client (`code` "client").
 */
export declare class FiregateError extends Error {
    readonly code: ErrorCode | 'org_changed' | 'upstream_error' | 'client' | 'closed';
    /** Present when the gateway said when retrying can help. */
    readonly retryAfterMs: number | undefined;
    /** For a refused write: the index of the operation that failed. */
    readonly index: number | undefined;
    constructor(code: FiregateError['code'], message: string, extra?: {
        retryAfterMs?: number;
        index?: number;
    });
}
