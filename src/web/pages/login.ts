// The sign-in page (issue 12): a plain form, posted to /login (access/login-routes.ts).
import { html } from '../html.ts'
import { ASSETS_PREFIX } from '../layout.ts'

export function renderLoginPage (problem: string | undefined, next: string): string {
  return `<!doctype html>\n${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Shoal</title>
<link rel="icon" href="${ASSETS_PREFIX}/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${ASSETS_PREFIX}/style.css">
</head>
<body>
<main id="content" class="login">
  <h1><span class="logo" aria-hidden="true">◆</span> Sign in to Shoal</h1>
  ${problem === undefined ? '' : html`<p class="form-error" role="alert">${problem}</p>`}
  <form method="post" action="/login">
    <input type="hidden" name="next" value="${next}">
    <p><label for="username">User name</label> <input id="username" name="username" autocomplete="username" required autofocus></p>
    <p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
    <p><button type="submit">Sign in</button></p>
  </form>
</main>
</body>
</html>
`}`
}
