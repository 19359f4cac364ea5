// Package demographics keeps pre-aggregated counts of the users who let
// their data into aggregate statistics, and answers partners' reports from
// them with differential privacy (partition selection on noisy counts and
// discrete Laplace noise).
//
// # Cells
//
// A counting user contributes one Tuple: birth year (the age band is derived
// when a report is made), country, gender, language and signup month, with
// UNKNOWN for what they did not give. For each of the 32 subsets of the five
// dimensions there is one collection (demographics_cells_AC for age and
// country, ..._total for the empty subset) holding one document per
// combination of values that occurs, with its count. A report grouped by a
// subset reads exactly that collection, so its cost depends on how many
// value combinations exist (bounded by the dimensions' ranges), not on how
// many users there are. Cell ids are a keyed hash of subset and values, and
// the values are sealed under the master key, so neither a cell id nor a
// dump of the store shows anyone's demographics in clear.
//
// # Keeping cells right without transactions
//
// Each user's contribution is recorded in demographics_members: the sealed
// tuple the cells count for them. That record is the single source of truth
// the cells derive from. A change (Sync, after a sign-up, profile edit,
// consent change or erasure) moves a user from tuple A to tuple B:
//
//  1. Begin: one conditional update of the record (on its version) stores a
//     pending move {op, since, from A, to B}. Losing the condition means a
//     concurrent change of the same user; the sync starts over.
//  2. Apply: for every subset whose values differ, $inc -1 on A's cell and
//     +1 on B's cell (upserted). Each is a single-document update.
//  3. Commit: one update conditional on the op id sets the record to B and
//     clears the pending move (or deletes the record when B is "nowhere").
//
// A crash, timeout or error inside step 2 leaves some cells moved and some
// not. That is never permanent:
//
//   - The move is bounded in time (opTimeout); after abandonAfter, well
//     beyond it, anyone who meets the pending record (the user's next Sync,
//     or the reconciliation) recovers it: it first records a reconciliation
//     request in demographics_state, then resets the record to the user's
//     current tuple. The request survives a crash and is acted on within a
//     minute (ReconcileIfDirty).
//   - Reconcile recounts the cells from the records and repairs them. It
//     reads all cells, then all records, then all cells again; a cell is
//     repaired only if its version did not change between the two reads and
//     no pending move touches it, and the repair is conditional on that
//     version. Any move either completed before the first read (the records
//     show it), began after the records were read (the cells show the old
//     state too, and a later write makes the repair's condition fail), or
//     is pending when the records are read (its cells are skipped and the
//     next run retries). So a repair never overwrites a concurrent change.
//   - Reconcile also compares every user's record with their current
//     profile and consent, which catches changes whose Sync never ran (a
//     crash right after the accounts or consent write), and runs Sync for
//     them. It runs periodically, on request, and from the admin mutation
//     reconcileDemographics.
//
// Cell writes are therefore deliberately not idempotent: recovery recounts
// rather than replays. The normal path costs one write per changed cell
// (at most 32 subsets × 2) plus two writes of the record.
//
// # Reports
//
// Report reads the cells of the requested subset and sums them into groups
// (folding birth years into age bands). Its epsilon is paid before anything
// is read: a request's reports are charged together, once, through a Batch
// (one conditional single-document update; refused means nothing charged
// and nothing released), and refunded if the answer does not reach the
// partner. The groups are released through Mechanism: each draws discrete
// Laplace noise with P(z) ∝ exp(-epsilon·|z|/2) (one person changes at most
// two counts of a subset, by one each) and is shown only when its noisy
// count reaches the public threshold max(K, τ_δ), so which groups appear is
// itself differentially private. docs/privacy.md proves the (ε, δ)
// guarantee; dp_test.go checks it statistically. Answers carry dimension
// values and noisy counts only.
//
// # The embedded store
//
// FerretDB v1 on SQLite evaluates every filter, _id included, by scanning
// the collection, and updates a document by scanning for it. Reports stay
// flat (one collection read), but on the embedded store a Sync costs scans
// of the member and cell collections, and bulk loads use Import/Rebuild,
// which insert rather than update. On MongoDB every step is an indexed
// single-document operation.
package demographics
