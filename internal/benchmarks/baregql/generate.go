// Package baregql is a bare gqlgen server that answers
// `me { id username consents { purpose { id } granted } }` from memory:
// no session, no store, no limits. Benchmarks compare the real server's
// throughput for the same query against it, measured in the same run.
package baregql

//go:generate go tool gqlgen generate --config gqlgen.yml
