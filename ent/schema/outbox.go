package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Outbox holds the schema definition for the Outbox entity: an event written in the same
// transaction as the change it announces, published to RabbitMQ by the relay afterwards.
type Outbox struct {
	ent.Schema
}

// Mixin of the Outbox.
func (Outbox) Mixin() []ent.Mixin { return []ent.Mixin{CreatedMixin{}} }

// Fields of the Outbox.
func (Outbox) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id"),
		field.UUID("event_id", uuid.UUID{}).Unique().Immutable(),
		field.String("event_type").MaxLen(100).Immutable(),
		field.String("routing_key").MaxLen(255).Immutable(),
		field.JSON("payload", json.RawMessage{}).
			SchemaType(map[string]string{dialect.Postgres: "jsonb"}).Immutable(),
		field.JSON("headers", map[string]string{}).
			SchemaType(map[string]string{dialect.Postgres: "jsonb"}).Optional(),
		field.Time("published_at").Optional().Nillable(),
		field.Int("attempts").Default(0).NonNegative(),
		field.Text("last_error").Optional().Nillable(),
		// next_attempt_at holds back a row whose publishing failed until then, so that it
		// does not take a place in every batch; NULL is due at once.
		field.Time("next_attempt_at").Optional().Nillable(),
	}
}

// Indexes of the Outbox.
func (Outbox) Indexes() []ent.Index {
	return []ent.Index{
		// The relay reads unpublished rows oldest first; a partial index stays as small
		// as the backlog.
		index.Fields("id").
			Annotations(entsql.IndexWhere("published_at IS NULL")).
			StorageKey("outbox_unpublished_idx"),
		// Pruning finds published rows by age.
		index.Fields("published_at").
			Annotations(entsql.IndexWhere("published_at IS NOT NULL")).
			StorageKey("outbox_published_at_idx"),
	}
}

// Annotations of the Outbox.
func (Outbox) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("outbox"),
		entsql.Checks(map[string]string{
			"outbox_attempts_non_negative": "attempts >= 0",
		}),
	}
}
