// oidc-provider ships no type declarations and @types/oidc-provider is not
// installed, so this declares just the surface the test stand-ins use.
// Ambient module declarations take precedence over node_modules resolution,
// so delete this file if real typings are ever added.

declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  type Awaitable<T> = T | Promise<T>;
  type ClaimValue = string | number | boolean | null | undefined;

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris?: string[];
    grant_types?: string[];
    response_types?: string[];
    token_endpoint_auth_method?: string;
    [key: string]: unknown;
  }

  export interface Account {
    accountId: string;
    claims(use: string, scope: string): Awaitable<{ sub: string; [claim: string]: ClaimValue }>;
  }

  /** The subset of the Client model used in configuration callbacks. */
  export interface ClientView {
    clientId: string;
    clientAuthMethod: string;
    grantTypeAllowed(grantType: string): boolean;
  }

  export interface AdapterPayload { [key: string]: unknown }
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }
  export type AdapterFactory = (model: string) => Adapter;

  export interface JWK { kty: string; [member: string]: unknown }

  export interface Configuration {
    adapter?: AdapterFactory;
    clients?: ClientMetadata[];
    jwks?: { keys: JWK[] };
    cookies?: { keys?: string[]; long?: Record<string, unknown>; short?: Record<string, unknown> };
    features?: Record<string, { enabled?: boolean; [option: string]: unknown }>;
    scopes?: string[];
    claims?: Record<string, string[] | null>;
    findAccount?: (ctx: unknown, sub: string, token?: unknown) => Awaitable<Account | undefined>;
    interactions?: { url?: (ctx: unknown, interaction: Interaction) => Awaitable<string> };
    issueRefreshToken?: (ctx: unknown, client: ClientView, code: unknown) => Awaitable<boolean>;
    rotateRefreshToken?: boolean | ((ctx: unknown) => Awaitable<boolean>);
    ttl?: Record<string, number | ((ctx: unknown, token: unknown, client: ClientView) => number)>;
    [option: string]: unknown;
  }

  export interface PromptDetails {
    missingOIDCScope?: string[];
    missingOIDCClaims?: string[];
    missingResourceScopes?: Record<string, string[]>;
    [detail: string]: unknown;
  }

  export interface Interaction {
    uid: string;
    returnTo: string;
    prompt: { name: string; reasons: string[]; details: PromptDetails };
    params: { client_id?: string; scope?: string; [param: string]: unknown };
    session?: { accountId: string; uid: string };
    grantId?: string;
  }

  export interface InteractionResults {
    login?: { accountId: string; [key: string]: unknown };
    consent?: { grantId?: string; [key: string]: unknown };
    [key: string]: unknown;
  }

  export class Grant {
    constructor(properties: { accountId: string; clientId: string });
    accountId?: string;
    clientId?: string;
    addOIDCScope(scope: string | string[]): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string | string[]): void;
    save(): Promise<string>;
    static find(id: string): Promise<Grant | undefined>;
  }

  /** A refresh token as oidc-provider stores it; `jti` is its opaque value (tests seed one with a known value). */
  export class RefreshToken {
    constructor(properties: { jti?: string; accountId: string; clientId: string; grantId: string; scope: string; gty: string; [key: string]: unknown });
    save(): Promise<string>;
  }

  /** The parts of Koa's context the stand-in's middleware reads and writes. */
  export interface KoaContext {
    method: string;
    path: string;
    query: Record<string, string | string[] | undefined>;
    headers: Record<string, string | undefined>;
    status: number;
    body: unknown;
    type: string;
    oidc?: { body?: Record<string, unknown> };
  }

  /** oidc-provider's OAuth errors, thrown from configuration callbacks. */
  export const errors: {
    InvalidTarget: new (description?: string) => Error;
    InvalidScope: new (description: string, scope?: string) => Error;
  };

  /** Provider extends Koa; only the members the stand-ins need are declared. */
  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    proxy: boolean;
    readonly Grant: typeof Grant;
    readonly RefreshToken: typeof RefreshToken;
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    on(event: string, listener: (...args: unknown[]) => void): this;
    off(event: string, listener: (...args: unknown[]) => void): this;
    /** Koa middleware, run before oidc-provider's own routes (and after them, past `await next()`). */
    use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): this;
  }

  export default Provider;
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  import type { AdapterFactory } from 'oidc-provider';

  /** A per-provider in-memory store (what oidc-provider uses by default). */
  export function createMemoryAdapter(clockTolerance?: number): AdapterFactory;
}
