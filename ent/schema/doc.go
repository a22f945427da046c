// Package schema is orderflow's data model, one file per entity; the rest of ent/ is
// generated from it. A change here takes, in order:
//
//   - the field, edge or index here, and its invariants as named CHECKs in Annotations
//     (entsql.Checks): ent's enums are plain varchar to PostgreSQL, and a length here
//     (MaxRuneLen counts characters, MaxLen bytes) is checked only by ent. A check whose
//     expression changes needs a new name: under its old one it makes no diff, and
//     cmd/migrationgen refuses to go on;
//   - go generate ./... (make generate), which writes ent/ and ent/migrate, from which
//     cmd/migrationgen reads the schema;
//   - make migration name=<name>, then a review of the SQL for the locks it takes
//     (migrations/README.md), and go run ./cmd/migrationgen -check;
//   - platform/migrate's tests: a case in violations(), and a valid row in
//     TestConstraintsAcceptValidRows, for each new constraint (TestEveryConstraintHasACase
//     names each one without a case); a row using a new column in
//     upgradeRows (upgrade_test.go), so that the migrations after it run on data in it;
//   - where the API takes the field: openapi.yaml (then go generate ./... again), the
//     handler in api/, and its limits, which the contract (minLength, maxLength), the
//     handler (the constants in domain/validate.go) and the CHECK here all state and must
//     agree on; a unique field's duplicate is a 409 only where the handler maps the
//     violation (db.Code(err) == db.UniqueViolation, as for users' e-mail), and a 500
//     otherwise.
package schema
