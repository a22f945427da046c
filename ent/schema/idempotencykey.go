package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// IdempotencyKey holds the schema definition for the IdempotencyKey entity: an
// Idempotency-Key that a user sent with POST /api/orders, the fingerprint of the request
// body it came with, and the order that request created. A retry with the same key gets the
// same order back instead of a second one, or, once that order was deleted, an error.
type IdempotencyKey struct {
	ent.Schema
}

// Fields of the IdempotencyKey.
func (IdempotencyKey) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id"),
		field.Int("user_id"),
		field.String("key").MaxLen(255).NotEmpty(),
		// request_hash is the SHA-256 of the normalized request, in hex.
		field.String("request_hash").
			SchemaType(map[string]string{dialect.Postgres: "char(64)"}),
		// order_id is NULL once the order was deleted.
		field.Int("order_id").Optional().Nillable(),
		field.Time("created_at").Default(func() time.Time { return time.Now().UTC() }).Immutable(),
	}
}

// Edges of the IdempotencyKey.
func (IdempotencyKey) Edges() []ent.Edge {
	return []ent.Edge{
		// Deleting the user forgets its keys; deleting the order keeps them (Order's edge).
		edge.From("user", User.Type).Ref("idempotency_keys").Field("user_id").Unique().Required(),
		edge.From("order", Order.Type).Ref("idempotency_keys").Field("order_id").Unique(),
	}
}

// Indexes of the IdempotencyKey.
func (IdempotencyKey) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("user_id", "key").Unique(),
		// Pruning removes keys by age.
		index.Fields("created_at"),
		index.Fields("order_id"),
	}
}

// Annotations of the IdempotencyKey.
func (IdempotencyKey) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("idempotency_keys"),
		entsql.Checks(map[string]string{
			// The Idempotency-Key header's length in the contract; the orders' intake
			// writes keys in SQL, past ent's validators.
			"idempotency_keys_key_length": "char_length(key) BETWEEN 1 AND 255",
		}),
	}
}
