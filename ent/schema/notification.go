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

// Notification holds the schema definition for the Notification entity: what the customer
// was told about an order, at most once per event type.
type Notification struct {
	ent.Schema
}

// Mixin of the Notification.
func (Notification) Mixin() []ent.Mixin { return []ent.Mixin{CreatedMixin{}} }

// Fields of the Notification.
func (Notification) Fields() []ent.Field {
	return []ent.Field{
		field.Int("order_id"),
		field.Enum("event_type").
			Values("OrderCreated", "OrderCompleted", "OrderExpired").
			SchemaType(map[string]string{dialect.Postgres: "varchar(32)"}),
		field.Text("message"),
		field.Bool("is_email_sent").Default(false),
	}
}

// Edges of the Notification.
func (Notification) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("notifications").Field("order_id").Unique().Required(),
	}
}

// Indexes of the Notification.
func (Notification) Indexes() []ent.Index {
	return []ent.Index{
		// A redelivered event must not notify twice. The index also serves the look-ups
		// by order_id alone (an order's notifications, the cascade from orders).
		index.Fields("order_id", "event_type").Unique(),
	}
}

// Annotations of the Notification.
func (Notification) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("notifications"),
		entsql.Checks(map[string]string{
			"notifications_event_type_valid": "event_type IN ('OrderCreated', 'OrderCompleted', 'OrderExpired')",
		}),
	}
}
