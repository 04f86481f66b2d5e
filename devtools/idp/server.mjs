// The local stack's OpenID provider: the OpenID-certified `oidc-provider` package, configured for
// Waymark. devtools/stack/idp.py writes the configuration (config.json: issuer, port, signing
// keys, the Waymark clients and their secrets, the demo users) and starts this file with Node.js.
// Nothing here is for production: an ICS runs its own provider (NHS CIS2, Entra ID, Keycloak).
//
// What it serves:
// - discovery, JWKS, authorization code + PKCE (required), refresh tokens, RP-initiated logout,
//   revocation, introspection, client credentials;
// - JWT access tokens (RFC 9068) for the resource `urn:waymark:api` with audience
//   config.audience, carrying Waymark's claims (roles, org, ics, name) from the account or,
//   for a client credentials token, from the client's registration;
// - dynamic client registration (RFC 7591/7592) behind an initial access token that only
//   Waymark's partner onboarding holds: register, read, update (and rotate the secret by raising
//   `waymark_secret_version`), delete (revoke);
// - a sign-in page listing the demo users (synthetic people; no passwords: local only).
//
// Keys: config.jwks_path holds the private JWKS; the first key signs, the others stay published
// so tokens signed before a rotation verify until they expire. `waymark idp rotate-keys` puts a
// new key first and restarts this process.

import { readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = JSON.parse(readFileSync(config.jwks_path, 'utf8'));
const RESOURCE = config.resource;
const USERS = new Map(config.users.map((u) => [u.sub, u]));

// --- storage: one JSON file, so registered clients and grants survive a restart --------------
const store = existsSync(config.store_path)
  ? JSON.parse(readFileSync(config.store_path, 'utf8'))
  : {};
let saving = null;
function persist() {
  if (saving) return;
  saving = setTimeout(() => {
    saving = null;
    const now = Math.floor(Date.now() / 1000);
    for (const [k, v] of Object.entries(store)) if (v.expiresAt && v.expiresAt < now) delete store[k];
    writeFileSync(`${config.store_path}.tmp`, JSON.stringify(store), { mode: 0o600 });
    renameSync(`${config.store_path}.tmp`, config.store_path);
  }, 50);
}
class FileAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Math.floor(Date.now() / 1000) + expiresIn : undefined;
    store[this.key(id)] = { payload, expiresAt };
    if (payload.grantId) {
      const g = `grant:${payload.grantId}`;
      store[g] = { payload: [...new Set([...(store[g]?.payload || []), this.key(id)])], expiresAt };
    }
    if (payload.userCode) store[`userCode:${payload.userCode}`] = { payload: id, expiresAt };
    if (payload.uid) store[`uid:${payload.uid}`] = { payload: id, expiresAt };
    persist();
  }
  async find(id) {
    const found = store[this.key(id)];
    if (!found) return undefined;
    if (found.expiresAt && found.expiresAt < Math.floor(Date.now() / 1000)) return undefined;
    return found.payload;
  }
  async findByUserCode(code) { const id = store[`userCode:${code}`]?.payload; return id && this.find(id); }
  async findByUid(uid) { const id = store[`uid:${uid}`]?.payload; return id && this.find(id); }
  async consume(id) {
    const found = store[this.key(id)];
    if (found) { found.payload.consumed = Math.floor(Date.now() / 1000); persist(); }
  }
  async destroy(id) { delete store[this.key(id)]; persist(); }
  async revokeByGrantId(grantId) {
    for (const k of store[`grant:${grantId}`]?.payload || []) delete store[k];
    delete store[`grant:${grantId}`];
    persist();
  }
}

// --- Waymark's claims ---------------------------------------------------------------------------
function userClaims(user) {
  return { name: user.name, roles: user.roles, org: user.org, ics: user.ics };
}

const SCOPES = config.api_scopes;

const provider = new Provider(config.issuer, {
  adapter: FileAdapter,
  clients: config.clients,
  jwks,
  cookies: { keys: config.cookie_keys },
  pkce: { required: () => true },
  // the signing keys are EC P-256 (devtools/stack/idp.py): every token is ES256
  clientDefaults: { id_token_signed_response_alg: 'ES256', token_endpoint_auth_method: 'client_secret_basic' },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  scopes: ['openid', 'profile', 'offline_access', 'waymark', ...SCOPES],
  claims: { openid: ['sub'], profile: ['name'], waymark: ['roles', 'org', 'ics'] },
  conformIdTokenClaims: false,
  clockTolerance: 5,
  extraClientMetadata: {
    properties: ['org', 'ics', 'waymark_roles', 'waymark_secret_version'],
    validator(ctx, key, value) {
      if (value === undefined) return;
      if (key === 'waymark_roles' && !(Array.isArray(value) && value.every((r) => typeof r === 'string'))) {
        throw new Error('waymark_roles must be a list of role names');
      }
      if ((key === 'org' || key === 'ics') && typeof value !== 'string') throw new Error(`${key} must be a string`);
    },
  },
  async findAccount(ctx, sub) {
    const user = USERS.get(sub);
    if (!user) return undefined;
    return { accountId: sub, async claims() { return { sub, ...userClaims(user) }; } };
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' && token.kind !== 'ClientCredentials') return undefined;
    if (token.accountId) {
      const user = USERS.get(token.accountId);
      return user ? userClaims(user) : undefined;
    }
    const client = await provider.Client.find(token.clientId);
    const m = client?.metadata() || {};
    return { roles: m.waymark_roles || [], org: m.org, ics: m.ics, name: m.client_name };
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    registration: {
      enabled: true,
      initialAccessToken: true,
      policies: {
        async waymark(ctx, properties) {
          // onboarding raises waymark_secret_version to rotate the secret (RFC 7592 has no verb)
          const before = ctx.oidc.client?.metadata().waymark_secret_version ?? 0;
          if (ctx.oidc.client && (properties.waymark_secret_version ?? 0) > before) {
            properties.client_secret = randomBytes(32).toString('base64url');
          }
        },
      },
      secretFactory: async () => randomBytes(32).toString('base64url'),
    },
    registrationManagement: { enabled: true, rotateRegistrationAccessToken: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator, client) {
        if (indicator !== RESOURCE) throw new Error(`unknown resource ${indicator}`);
        const allowed = (client.scope || '').split(' ').filter((s) => SCOPES.includes(s));
        const user = ctx.oidc.params?.grant_type !== 'client_credentials';
        return {
          scope: user ? 'waymark' : allowed.join(' '),
          audience: config.audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: user ? config.ttl.access_token : config.ttl.client_credentials,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: config.ttl.access_token,
    ClientCredentials: config.ttl.client_credentials,
    IdToken: config.ttl.access_token,
    RefreshToken: config.ttl.refresh_token,
    Session: config.ttl.session,
    Grant: config.ttl.session,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in problem', `<p>${esc(out.error)}: ${esc(out.error_description || '')}</p>`);
  },
});
provider.proxy = false;

// the onboarding's initial access token, with the policy that lets it rotate secrets
await new provider.InitialAccessToken({ jti: config.registration_token, policies: ['waymark'] }).save();

// --- the sign-in page ---------------------------------------------------------------------------
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;
}

async function grantFor(details, accountId) {
  const { params, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope || 'openid'));
  grant.addOIDCClaims(['roles', 'org', 'ics', 'name']);
  grant.addResourceScope(RESOURCE, 'waymark');
  return grant.save();
}

async function interaction(req, res, uid, form) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (details.prompt.name === 'login') {
    if (!form) {
      const buttons = [...USERS.values()].map((u) => `<li><button type="submit" name="user" value="${esc(u.sub)}">Sign in as ${esc(u.name)}</button> <span>${esc(u.roles.join(', '))}, ${esc(u.org)}</span></li>`).join('');
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Sign in to Waymark (local identity provider)',
        `<p>Demo users: synthetic people of the local stack.</p><form method="post" action="/interaction/${esc(uid)}/login"><ul>${buttons}</ul></form>`));
      return;
    }
    const user = USERS.get(form.get('user') || '');
    if (!user) {
      res.statusCode = 400;
      res.end(page('Sign in', '<p>Choose one of the demo users.</p>'));
      return;
    }
    const result = { login: { accountId: user.sub }, consent: { grantId: await grantFor(details, user.sub) } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    return;
  }
  // consent: Waymark's own clients are first-party; the grant is what they asked for
  const grantId = await grantFor(details, details.session.accountId);
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

const oidc = provider.callback();
const server = createServer(async (req, res) => {
  const m = /^\/interaction\/([\w-]+)(\/login)?$/.exec(req.url.split('?')[0]);
  if (!m) return oidc(req, res);
  try {
    if (req.method === 'POST' && m[2]) return await interaction(req, res, m[1], await readForm(req));
    if (req.method === 'GET' && !m[2]) return await interaction(req, res, m[1], null);
    res.statusCode = 405;
    res.end();
  } catch (err) {
    res.statusCode = 400;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(page('Sign-in problem', `<p>${esc(err.message)}. Go back to the dashboard and sign in again.</p>`));
  }
});
server.listen(config.port, config.host, () => {
  console.log(`waymark local identity provider: ${config.issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    if (saving) { clearTimeout(saving); saving = null; }
    writeFileSync(`${config.store_path}.tmp`, JSON.stringify(store), { mode: 0o600 });
    renameSync(`${config.store_path}.tmp`, config.store_path);
    process.exit(0);
  });
}
