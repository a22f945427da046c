package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Order holds the schema definition for the Order entity.
type Order struct {
	ent.Schema
}

// Mixin of the Order.
func (Order) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of the Order.
func (Order) Fields() []ent.Field {
	return []ent.Field{
		field.Int("user_id"),
		money("total"),
		field.Enum("status").
			Values("pending", "processing", "completed", "expired").
			Default("pending").
			SchemaType(map[string]string{dialect.Postgres: "varchar(20)"}),
		// processing_by_admin_at records that an administrator moved the pending order to
		// processing (PUT /api/orders/{id}): its payment is theirs, and no delivery of its
		// OrderCreated, a first one or a redelivery, runs one.
		field.Time("processing_by_admin_at").Optional().Nillable(),
		// payment_declined_at records the worker's declined payment of a processing order,
		// so that no later delivery of its OrderCreated, a redelivery or a copy, pays again.
		field.Time("payment_declined_at").Optional().Nillable(),
	}
}

// Edges of the Order.
func (Order) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("orders").Field("user_id").Unique().Required(),
		edge.To("items", OrderItem.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("notifications", Notification.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		// A deleted order's keys stay, without it, so that a retry learns of the deletion
		// instead of placing the order again.
		edge.To("idempotency_keys", IdempotencyKey.Type).
			Annotations(entsql.OnDelete(entsql.SetNull)),
	}
}

// Indexes of the Order.
func (Order) Indexes() []ent.Index {
	return []ent.Index{
		// The expiry sweep claims the old orders of one status in the order of (created_at,
		// id), a batch at a time, each after the last one the batch before claimed: in the
		// index's order, without sorting, however many share a created_at.
		index.Fields("status", "created_at", "id"),
		// The orders of one status, newest first (GET /api/orders?status=), a page at a
		// time. Without it PostgreSQL walks the primary key and reads every order until it
		// has a page: all of them when fewer match, as pending and processing orders are.
		index.Fields("status", "id"),
		// A customer's orders, newest first (GET /api/orders lists them by id), come from
		// this index in their order, a page at a time, however many the customer has;
		// status, included, filters them without reading the table. It serves the
		// foreign-key check of a deleted user as well.
		index.Fields("user_id", "id").
			Annotations(entsql.IncludeColumns("status")),
	}
}

// Annotations of the Order.
func (Order) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("orders"),
		entsql.Checks(map[string]string{
			"orders_total_non_negative": "total >= 0",
			"orders_status_valid":       "status IN ('pending', 'processing', 'completed', 'expired')",
		}),
	}
}
