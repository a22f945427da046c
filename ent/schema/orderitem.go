package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// OrderItem holds the schema definition for the OrderItem entity: one product line of an order.
type OrderItem struct {
	ent.Schema
}

// Fields of the OrderItem.
func (OrderItem) Fields() []ent.Field {
	return []ent.Field{
		field.Int("order_id"),
		field.Int("product_id"),
		field.Int("quantity").Positive(),
		// price is the unit price at the time of ordering, copied from the product.
		money("price"),
	}
}

// Edges of the OrderItem.
func (OrderItem) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("items").Field("order_id").Unique().Required(),
		edge.From("product", Product.Type).Ref("order_items").Field("product_id").Unique().Required(),
	}
}

// Indexes of the OrderItem.
func (OrderItem) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("order_id"),
		index.Fields("product_id"),
	}
}

// Annotations of the OrderItem.
func (OrderItem) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("order_items"),
		entsql.Checks(map[string]string{
			"order_items_quantity_positive":  "quantity > 0",
			"order_items_price_non_negative": "price >= 0",
		}),
	}
}
