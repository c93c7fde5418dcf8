// A real OpenID provider for the tests: panva's oidc-provider on 127.0.0.1, configured by one
// JSON argument, with its development login and consent pages (any login, any password).
//
//   node tests/oidc/provider.mjs '{"clients": [...], "jwks": {...}, "issuer": "..."}'
//
// Prints one JSON line {"issuer", "port"} once it listens. Test-only endpoints, used by the
// security tests to put a token the provider (or another one) really signed into a flow:
//   POST /test/next-id-token   body: the token; the next token response carries it instead
//   POST /test/id-token-ttl    body: seconds; lifetime of the ID tokens issued from now on
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? '{}');
let idTokenTtl = config.idTokenTtl ?? 600;
const swapped = [];

async function text(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

const server = http.createServer();
server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = config.issuer ?? `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: config.jwks,
    cookies: { keys: ['test-only-cookie-key-0123456789abcdef'] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: `${id}@example.test`,
            email_verified: true,
            name: `Test ${id}`,
            preferred_username: id,
          };
        },
      };
    },
    ttl: {
      IdToken: () => idTokenTtl,
      AccessToken: 600,
      AuthorizationCode: 60,
      Grant: 600,
      Interaction: 600,
      Session: 600,
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/test/next-id-token') {
      swapped.push(await text(ctx.req));
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'POST' && ctx.path === '/test/id-token-ttl') {
      idTokenTtl = Number(await text(ctx.req));
      ctx.status = 204;
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && swapped.length && ctx.body?.id_token) {
      ctx.body = { ...ctx.body, id_token: swapped.shift() };
    }
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, port }));
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
