// Runs graphql-js's canonical introspection query (getIntrospectionQuery,
// as @graphql-codegen, graphql-inspector and get-graphql-schema send it)
// against BASE_URL/graphql, builds the client schema from the answer and
// prints its SDL on stdout. Used by internal/app/devmode_test.go; exits
// non-zero with the server's answer on any error.
import { buildClientSchema, getIntrospectionQuery, printSchema } from "graphql";

const base = process.env.BASE_URL;
if (!base) {
  console.error("BASE_URL is not set");
  process.exit(2);
}
const res = await fetch(base + "/graphql", {
  method: "POST",
  headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" },
  body: JSON.stringify({ query: getIntrospectionQuery(), operationName: "IntrospectionQuery" }),
});
const text = await res.text();
let body;
try {
  body = JSON.parse(text);
} catch {
  console.error(`status ${res.status}: not JSON: ${text}`);
  process.exit(1);
}
if (!res.ok || body.errors || !body.data) {
  console.error(`status ${res.status}: ${text}`);
  process.exit(1);
}
process.stdout.write(printSchema(buildClientSchema(body.data)));
