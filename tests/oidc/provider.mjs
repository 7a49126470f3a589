// A real OpenID Connect provider for the sign-in tests: the certified `oidc-provider` package with
// its own login and consent pages (devInteractions: any password; the login names the account),
// its users from OIDC_TEST_USERS, a groups claim, PKCE required.
//
// For the refusal tests, POST /__test/tamper?mode=aud|nonce|exp|iss re-signs the next ID tokens
// the token endpoint answers, with the provider's own key and that claim made wrong: what a
// misbehaving or hostile provider would send. mode=none stops it.
//
//   PORT=... CLIENT_ID=... CLIENT_SECRET=... REDIRECT_URIS=a,b OIDC_TEST_USERS='{"ada": {...}}' node provider.mjs
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, importJWK } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(process.env.OIDC_TEST_USERS || '{}');

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(jwk, 'RS256');

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: process.env.REDIRECT_URIS.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['a test provider cookie key'] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...user }; } };
  },
});

let tamper = 'none';
const now = () => Math.floor(Date.now() / 1000);
const broken = {
  aud: (c) => ({ ...c, aud: 'another-client' }),
  nonce: (c) => ({ ...c, nonce: 'not-the-nonce-we-were-given' }),
  exp: (c) => ({ ...c, iat: now() - 7200, exp: now() - 3600 }),
  iss: (c) => ({ ...c, iss: 'http://127.0.0.1:1' }),
};

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = ctx.query.mode || 'none';
    ctx.body = { tamper };
    return;
  }
  await next();
  if (ctx.path === '/token' && tamper in broken && ctx.body && ctx.body.id_token) {
    const claims = broken[tamper](decodeJwt(ctx.body.id_token));
    ctx.body = {
      ...ctx.body,
      id_token: await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'test-key', typ: 'JWT' })
        .sign(signingKey),
    };
  }
});

provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
