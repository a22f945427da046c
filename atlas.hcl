# Atlas CLI environments for orderflow's versioned migrations.
#
# orderflow applies these migrations itself (`orderflow migrate`, and `orderflow api` at
# start-up), recording revisions in the table the CLI uses, so with the CLI installed
#   atlas migrate status --env local
#   atlas migrate apply  --env local
# work on the same database. Migrations are written by `go run ./cmd/migrationgen <name>`
# (the CLI's `migrate diff --to ent://ent/schema` needs Atlas's ent loader, which the
# community build does not have).

env "local" {
  # The schema the migrations describe. Kept for reference: `ent://` sources need an
  # Atlas build with the ent loader.
  # src = "ent://ent/schema"

  # The database to migrate, e.g.
  # postgres://postgres@localhost:5432/orderflow?sslmode=disable
  # Leave search_path out of it: the revisions then live in
  # "atlas_schema_revisions"."atlas_schema_revisions", where orderflow keeps them.
  url = getenv("DATABASE_URL")

  # An empty scratch database for `migrate diff`, `migrate lint` and `migrate validate`.
  dev = "docker://postgres/15/dev?search_path=public"

  migration {
    dir = "file://migrations"
  }
}
