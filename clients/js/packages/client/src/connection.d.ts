import { type BackoffOptions } from './backoff.js';
import { type ClientFrame, type ServerFrame, type WelcomeFrame } from './protocol.js';
/** The part of the WebSocket API the client uses (browsers' WebSocket and the `ws` package both fit). */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/**
 * Returns a session token, or null when signed out. Clerk's `getToken`
 * fits; `skipCache` asks for a freshly minted token (after an expiry, a
 * refused token or an org switch).
 */
export type GetToken = (options?: {
    skipCache?: boolean;
}) => Promise<string | null> | string | null;
/** Timer functions (injectable for tests). */
export interface Timers {
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}
/** Connection states. */
export type ConnectionState = 'idle' | 'connecting' | 'authenticating' | 'ready' | 'waiting' | 'signed_out' | 'closed';
/** Why the socket went down and what happens next. */
export interface DownInfo {
    code: number;
    reason: string;
    willReconnect: boolean;
    delayMs?: number;
}
export interface ConnectionOptions {
    url: string;
    getToken: GetToken;
    WebSocket: WebSocketConstructor;
    backoff?: BackoffOptions;
    /** Ping interval (default 25000 ms; 0 disables pings). */
    pingIntervalMs?: number;
    /** Close the socket when a pong takes longer (default 10000 ms). */
    pongTimeoutMs?: number;
    timers?: Timers;
    random?: () => number;
    /** Debug hook: every frame in and out (tokens redacted). */
    onFrame?: (direction: 'in' | 'out', frame: unknown) => void;
}
/** Callbacks of a Connection. */
export interface ConnectionHandler {
    state(state: ConnectionState, detail?: DownInfo): void;
    /** The first welcome on a new socket: resubscribe now. */
    ready(welcome: WelcomeFrame): void;
    /** A later welcome (a refresh was accepted). */
    refreshed(welcome: WelcomeFrame, previous: WelcomeFrame): void;
    frame(frame: ServerFrame): void;
    down(info: DownInfo): void;
    /** getToken returned null: everything of the previous user must go. */
    signedOut(): void;
}
/** Close codes after which reconnecting cannot help. */
export declare const FINAL_CLOSE_CODES: ReadonlySet<number>;
/** Shortens a token for logs: never log a whole token. */
export declare function redactToken(token: string): string;
/**
 * One logical connection that survives socket failures. Not thread-safe in
 * any sense that matters in JS: every method runs on the event loop.
 */
export declare class Connection {
    #private;
    state: ConnectionState;
    welcome: WelcomeFrame | null;
    constructor(opts: ConnectionOptions, handler: ConnectionHandler);
    /** Starts connecting (no-op unless idle, closed, waiting or signed out). */
    start(): void;
    /** Reconnects now when waiting (network back, tab visible); re-checks the token when signed out. */
    nudge(): void;
    /** Closes for good; start() opens again. */
    stop(): void;
    /** Drops the socket and connects again with a fresh token (a user switch). */
    reconnect(): void;
    /**
     * Sends an in-band `auth` with a fresh token (an org switch, or
     * auth_expiring) and resolves with the welcome that acknowledges it. When
     * not connected it (re)connects instead and resolves with the next
     * welcome. A null token signs out.
     */
    refresh(): Promise<WelcomeFrame>;
    /** Sends a frame when ready (auth and ping also before); returns whether it went out. */
    send(frame: ClientFrame): boolean;
    /** Whether a token is currently in use (false when signed out). */
    get hasToken(): boolean;
}
export declare function errorMessage(err: unknown): string;
