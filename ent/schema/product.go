package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Product holds the schema definition for the Product entity.
type Product struct {
	ent.Schema
}

// Mixin of the Product.
func (Product) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of the Product.
func (Product) Fields() []ent.Field {
	return []ent.Field{
		// Lengths are in characters, as the checks below count them (MaxLen counts bytes).
		field.String("name").MinLen(1).MaxRuneLen(100),
		field.String("description").MaxRuneLen(500).Optional().Nillable(),
		money("price"),
		field.Int("stock").NonNegative(),
	}
}

// Edges of the Product.
func (Product) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("order_items", OrderItem.Type).
			Annotations(entsql.OnDelete(entsql.Restrict)),
	}
}

// Annotations of the Product.
func (Product) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("products"),
		entsql.Checks(map[string]string{
			"products_name_length":        "char_length(name) BETWEEN 1 AND 100",
			"products_description_length": "description IS NULL OR char_length(description) <= 500",
			"products_price_non_negative": "price >= 0",
			// Stock never goes below zero: concurrent orders reserve it with a conditional
			// update, and this is the last line of defence against overselling.
			"products_stock_non_negative": "stock >= 0",
		}),
	}
}
