/** Reconnect backoff: exponential with full jitter, and a floor. */
export interface BackoffOptions {
    /** First cap, in ms (default 250). */
    minMs?: number;
    /** Largest delay, in ms (default 15000). */
    maxMs?: number;
}
/**
 * Returns the delay before reconnect attempt `attempt` (0-based): a uniform
 * random value in [min/2, min(max, min·2^attempt)]. `random` is injectable
 * for tests.
 */
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;
