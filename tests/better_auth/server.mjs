// A real Better Auth server on loopback for task_mcp's end-to-end tests.
//
//   node tests/better_auth/server.mjs      ->  prints `READY http://127.0.0.1:<port>` on stdout
//
// Email + password sign-up, the jwt() plugin (GET /api/auth/token, /api/auth/jwks) and the
// bearer() plugin (session token in `Authorization: Bearer`), on the in-memory adapter: pure JS,
// nothing persists, every instance has its own users, signing keys and secret.
//
// Environment:
//   BA_JWT_EXPIRATION   JWT lifetime, e.g. "5s" (default "15m"; a string, see FACTS.md)
//   BA_SECRET           the Better Auth secret (default: random per instance)
//   BA_OAUTH_RESOURCE   when set, also an OAuth 2.1 provider (@better-auth/oauth-provider) whose
//                       one protected resource is this URL (the task-mcp endpoint): its access
//                       tokens are `typ: at+jwt` with `aud` = this URL, `iss` = baseURL + /api/auth,
//                       `azp`/`client_id` = the OAuth client and `scope` from tasks:read tasks:write.
//                       Clients register at POST /api/auth/oauth2/create-client (a signed-in user)
//                       and get tokens by authorization code + PKCE (/oauth2/authorize, /oauth2/consent,
//                       /oauth2/token); the login and consent "pages" are never rendered, a test
//                       follows their redirects itself.
//
// The port is picked first (listen on 0) so that baseURL, and with it the JWTs' iss/aud, is the
// exact origin the tests talk to. Only the READY line goes to stdout; Better Auth logs go to
// stderr. The process exits on SIGTERM/SIGINT or when its stdin closes (the test run died).

import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { getAuthTables } from "better-auth/db";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt, organization } from "better-auth/plugins";
import { adminAc, defaultAc, memberAc, ownerAc } from "better-auth/plugins/organization/access";
import { oauthProvider } from "@better-auth/oauth-provider";

let handler = (_req, res) => {
  res.writeHead(503).end("starting");
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(0, "127.0.0.1", resolve);
});
const baseURL = `http://127.0.0.1:${server.address().port}`;

const resource = process.env.BA_OAUTH_RESOURCE;
const oauth = resource
  ? [
      oauthProvider({
        loginPage: "/sign-in",
        consentPage: "/consent",
        scopes: ["openid", "profile", "email", "offline_access", "tasks:read", "tasks:write"],
        resources: [resource],
        clientRegistrationDefaultResources: [resource], // every registered client may ask for it
        // The same memberships as the JWT plugin's tokens carry (README: Workspaces).
        customAccessTokenClaims: async ({ user }) => ({ organizations: user ? await organizationsOf(user.id) : [] }),
      }),
    ]
  : [];

const db = {};
let auth;

// Roles: Better Auth's owner, admin and member, plus a custom read-only `viewer`.
const ac = defaultAc;
const viewer = ac.newRole({ organization: [], member: [], invitation: [] });

// What a Better Auth app adds to its JWTs so that task_mcp knows the caller's workspaces: every
// organization the user belongs to, with the member's role (several roles stay comma-separated).
async function organizationsOf(userId) {
  const adapter = (await auth.$context).adapter;
  const members = await adapter.findMany({ model: "member", where: [{ field: "userId", value: userId }] });
  const organizations = [];
  for (const member of members) {
    const org = await adapter.findOne({ model: "organization", where: [{ field: "id", value: member.organizationId }] });
    if (org) organizations.push({ id: org.id, slug: org.slug, name: org.name, role: member.role });
  }
  return organizations;
}
const options = {
  baseURL,
  secret: process.env.BA_SECRET || randomBytes(32).toString("hex"),
  database: memoryAdapter(db),
  emailAndPassword: { enabled: true },
  plugins: [
    jwt({
      jwt: {
        expirationTime: process.env.BA_JWT_EXPIRATION || "15m",
        definePayload: async ({ user }) => ({ ...user, organizations: await organizationsOf(user.id) }),
      },
    }),
    bearer(),
    organization({ ac, roles: { owner: ownerAc, admin: adminAc, member: memberAc, viewer } }),
    ...oauth,
  ],
  rateLimit: { enabled: false }, // tests sign up many users from one address
  telemetry: { enabled: false },
  logger: { level: "warn", log: (level, message, ...args) => console.error(`[better-auth ${level}]`, message, ...args) },
};
// The memory adapter throws "Model X not found" for a table it has never seen: create them all,
// before the plugins' init (the OAuth provider writes its resource row there).
for (const table of Object.values(getAuthTables(options))) db[table.modelName] ??= [];
auth = betterAuth(options);
await auth.$context;

// Test-only route: add a user to an organization with a role (Better Auth's addMember is server-only;
// a real app calls it after its own invitation flow).
const authHandler = toNodeHandler(auth);
handler = async (req, res) => {
  if (req.method === "POST" && req.url === "/test/add-member") {
    let body = "";
    for await (const chunk of req) body += chunk;
    try {
      const member = await auth.api.addMember({ body: JSON.parse(body) });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(member));
    } catch (error) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: String(error?.message ?? error) }));
    }
    return;
  }
  return authHandler(req, res);
};
process.stdout.write(`READY ${baseURL}\n`);

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive clients would hold close() open
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop).on("error", stop).resume();
