// A real OpenID Connect provider for the console's sign-in tests: node's oidc-provider
// with its development sign-in pages (any login name, any password), which play the part
// of Microsoft Entra ID or Google. Whoever signs in as "name@domain" gets the claims
// email = "name@domain", email_verified = true.
//
//   node oidc-provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Prints "listening http://127.0.0.1:PORT" once it answers; stops on SIGTERM.
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!redirectUri) {
  console.error("usage: node oidc-provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI");
  process.exit(1);
}
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, name: id.split("@")[0] };
      },
    };
  },
  cookies: { keys: ["mailbot-test-only-cookie-key"] },
  features: { devInteractions: { enabled: true } },
});
// Plain http on loopback: no proxy in front, so no X-Forwarded-* to trust.
provider.proxy = false;

const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
