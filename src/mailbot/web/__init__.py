"""The clerk's console (`mailbot web`, SPEC §8): cases, templates, policy, reports, health
and the audit log, as server-rendered pages.

Each page's rules live in a module without Flask, so they are tested without a server:

| module | decides |
|---|---|
| `settings` | the `[web]` and `[web.oidc]` tables of mailbot.toml |
| `roles` | what each role (clerk, manager, officer, admin) may do |
| `accounts` | console users: local passwords (argon2), single sign-on, sign-in rate limit |
| `audit` | the record of every change made in the console |
| `wording` | template checks, versions, drafts, previews, rollback |
| `policy_page` | the policy in plain English; editing hours, closure days or all of it |
| `attention` | messages that need the clerk; mailbox health |

and the Flask side: `server` (the application, security headers, `mailbot web`),
`views` (every page), `sso` (OpenID Connect), with the pages' HTML in `pages/`.

This package's `__init__` imports nothing, so `mailbot.config` can read `[web]` without
loading Flask.
"""
