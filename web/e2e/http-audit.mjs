// Runs the GraphQL-over-HTTP specification's own server audits
// (graphql-http's auditServer) against the URL given as the argument and
// prints each result as JSON: {id, name, status, reason}. Run by
// internal/app/httpspec_audit_test.go.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node http-audit.mjs URL');
  process.exit(2);
}
const results = await auditServer({ url });
console.log(JSON.stringify(results.map((r) => ({ id: r.id, name: r.name, status: r.status, reason: r.reason ?? '' }))));
