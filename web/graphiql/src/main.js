// GraphiQL for --dev, bundled by build.mjs. Everything, the Monaco workers
// included, comes from this origin (/_dev/graphiql/), so the page's CSP
// needs no other host.
import "./workers.js";
import "graphiql/style.css";
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";

// Same-origin POST with the session cookie, the way the Privacy Center
// calls the API; a token typed into the headers tab is sent as well.
async function fetcher(params, opts) {
  const res = await fetch("/graphql", {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
      ...(opts?.headers ?? {}),
    },
    body: JSON.stringify(params),
  });
  return res.json();
}

const initialQuery = `# Consentgraph API (development mode). Run with Ctrl-Enter.
{
  purposes {
    id
  }
}
`;

createRoot(document.getElementById("graphiql")).render(
  createElement(GraphiQL, { fetcher, defaultQuery: initialQuery, shouldPersistHeaders: false }),
);
