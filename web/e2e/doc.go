// Package e2e holds the end-to-end tests of the pages: each starts a real
// server (internal/app/apptest) and drives the Privacy Center, the partner
// console, the consent widget, GraphiQL or a browser app of another origin
// in headless Chromium through the playwright-core scripts beside this file
// (browser.mjs, widget.mjs, …). They are a package of their own so that
// `go test ./...` runs them beside internal/app's tests rather than after.
package e2e
