package sqlite

// Counting every row of a kind (copy-store's progress and its check of the
// copy) reads the whole table by definition; it is never on a request
// path. The dumps page through primary keys and stay checked.
func init() {
	for _, q := range countQueries {
		wholeTableReads[q] = "SCAN"
	}
}
