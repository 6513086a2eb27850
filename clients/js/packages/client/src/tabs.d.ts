import { type ConnectionHandler, type ConnectionOptions, type ConnectionState } from './connection.js';
import type { ClientFrame, WelcomeFrame } from './protocol.js';
/** Whether this environment can share a socket among tabs. */
export declare function tabsSupported(): boolean;
export declare class TabLink {
    #private;
    state: ConnectionState;
    welcome: WelcomeFrame | null;
    readonly tabId: string;
    constructor(opts: ConnectionOptions, handler: ConnectionHandler);
    get isLeader(): boolean;
    start(): void;
    send(frame: ClientFrame): boolean;
    stop(): void;
    nudge(): void;
    reconnect(): void;
    refresh(): Promise<WelcomeFrame>;
}
