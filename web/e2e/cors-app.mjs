// A browser app on another origin than the API, written the way a frontend
// team would with urql (@urql/core, loaded by an import map from the
// package's own ESM files): credentialed requests, a custom client-name
// header, and the response headers a support page needs (X-Request-Id) and
// a retry needs (Retry-After), read from JavaScript. Loaded by the page that
// web/e2e/cors_test.go serves; web/e2e/cors.mjs calls
// window.corsApp.
import { Client, fetchExchange, gql } from '@urql/core';

const log = (line) => {
  const li = document.createElement('li');
  li.textContent = line;
  document.getElementById('log').append(li);
};

// The headers of each response, in order: urql hands results over without
// them, so the client's fetch records them (readable only if the API
// exposes them through CORS).
function client(api, { clientName } = {}) {
  const seen = [];
  const headers = clientName ? { 'apollographql-client-name': clientName, 'apollographql-client-version': '1' } : {};
  const c = new Client({
    url: `${api}/graphql`,
    exchanges: [fetchExchange],
    requestPolicy: 'network-only',
    preferGetMethod: false,
    fetchOptions: { credentials: 'include', headers },
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      seen.push({ status: res.status, requestId: res.headers.get('X-Request-Id'), retryAfter: res.headers.get('Retry-After') });
      return res;
    },
  });
  return { c, seen };
}

const REGISTER = gql`mutation Register($in: RegisterInput!) { register(input: $in) { user { id username } } }`;
const ME = gql`query Me { me { username consents { purpose { id } granted } } }`;
const GRANT = gql`mutation Grant($p: ID!) { grantConsent(purpose: $p) { changed consent { purpose { id } granted } } }`;
const LOGIN = gql`mutation Login($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`;
const PURPOSES = gql`query Purposes { purposes { id } }`;

const plain = (r) => ({ data: r.data ?? null, error: r.error ? r.error.message : null, codes: r.error?.graphQLErrors?.map((e) => e.extensions?.code) ?? [] });

window.corsApp = {
  // Sign up (the API's session cookie comes back to this browser), then
  // use that session: who am I, grant a purpose, and read it back.
  async signUpAndUse(api, username) {
    const { c, seen } = client(api, { clientName: 'cors-test-app' });
    const reg = plain(await c.mutation(REGISTER, { in: { username, password: 'correct horse battery' } }).toPromise());
    log(`register: ${reg.error ?? reg.data.register.user.username}`);
    const grant = plain(await c.mutation(GRANT, { p: 'surveys' }).toPromise());
    log(`grantConsent(surveys): ${grant.error ?? JSON.stringify(grant.data.grantConsent.consent)}`);
    const me = plain(await c.query(ME, {}).toPromise());
    log(`me: ${me.error ?? JSON.stringify(me.data.me)}`);
    for (const s of seen) log(`HTTP ${s.status}, X-Request-Id ${s.requestId}`);
    return { reg, grant, me, seen };
  },
  // Signs in with a wrong password until the per-IP sign-in limit answers
  // RATE_LIMITED; returns what the app could read of that answer.
  async hitRateLimit(api, username, tries) {
    const { c, seen } = client(api, { clientName: 'cors-test-app' });
    for (let i = 1; i <= tries; i++) {
      const r = plain(await c.mutation(LOGIN, { u: username, p: 'wrong password here' }).toPromise());
      if (r.codes.includes('RATE_LIMITED')) {
        const last = seen[seen.length - 1];
        log(`login #${i}: RATE_LIMITED, HTTP ${last.status}, Retry-After ${last.retryAfter}, X-Request-Id ${last.requestId}`);
        return { attempts: i, ...r, ...last };
      }
    }
    return { attempts: tries, error: 'never rate limited', seen };
  },
  // One query with the client-name header and one without.
  async withAndWithoutHeader(api) {
    const withHeader = plain(await client(api, { clientName: 'cors-test-app' }).c.query(PURPOSES, {}).toPromise());
    const without = plain(await client(api).c.query(PURPOSES, {}).toPromise());
    log(`${api} with apollographql-client-name: ${withHeader.error ?? 'ok'}; without: ${without.error ?? 'ok'}`);
    return { withHeader, without };
  },
};
document.getElementById('state').textContent = 'ready';
