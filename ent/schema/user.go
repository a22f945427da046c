package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// User holds the schema definition for the User entity.
type User struct {
	ent.Schema
}

// Mixin of the User.
func (User) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of the User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		// Lengths are in characters, as the checks below count them (MaxLen counts bytes).
		field.String("name").MinLen(1).MaxRuneLen(100),
		field.String("email").MaxRuneLen(100),
		field.String("password_hash").Sensitive(),
		field.Enum("role").Values("admin", "customer").Default("customer"),
		// Counts the changes of the password. A token names the version it was issued at,
		// and is refused once the version has moved on: a changed password ends every
		// session opened before it.
		field.Int("token_version").NonNegative().Default(0),
	}
}

// Edges of the User.
func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("orders", Order.Type),
		edge.To("idempotency_keys", IdempotencyKey.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the User.
func (User) Indexes() []ent.Index {
	return []ent.Index{
		// Emails are stored in lower case (see the check below), so this makes them
		// unique regardless of the case a user typed.
		index.Fields("email").Unique().StorageKey("users_email_key"),
	}
}

// Annotations of the User.
func (User) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("users"),
		entsql.Checks(map[string]string{
			"users_name_length":                "char_length(name) BETWEEN 1 AND 100",
			"users_email_length":               "char_length(email) <= 100",
			"users_email_lower":                "email = lower(email)",
			"users_role_valid":                 "role IN ('admin', 'customer')",
			"users_token_version_non_negative": "token_version >= 0",
		}),
	}
}
