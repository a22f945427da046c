package api

import (
	"encoding/json"
	"testing"

	"github.com/ogen-go/ogen"
)

// TestTypeWords checks the words for what the contract's schemas expect, those of types that
// no request body of the contract has yet included.
func TestTypeWords(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		schema *ogen.Schema
		want   string
	}{
		{&ogen.Schema{Type: "boolean"}, "must be true or false"},
		{&ogen.Schema{Type: "number"}, "must be a number"},
		{&ogen.Schema{Type: "string", Enum: ogen.Enum{json.RawMessage(`"a"`), json.RawMessage(`"b"`)}}, "must be one of a, b"},
		{&ogen.Schema{Type: "integer", Enum: ogen.Enum{json.RawMessage(`1`), json.RawMessage(`2`)}}, "must be one of 1, 2"},
		{&ogen.Schema{}, ""},
		{nil, ""},
	} {
		if got := typeWords(c.schema); got != c.want {
			t.Errorf("typeWords(%+v) = %q, want %q", c.schema, got, c.want)
		}
	}
}

// TestSchemaAtFollowsTheContract checks that the schema of a value is found through
// references, properties and array elements, and that a path the schema does not have, or a
// reference in a circle, finds none.
func TestSchemaAtFollowsTheContract(t *testing.T) {
	t.Parallel()
	item := &ogen.Schema{Type: "object", Properties: ogen.Properties{{Name: "flag", Schema: &ogen.Schema{Type: "boolean"}}}}
	c := bodySchemas{components: map[string]*ogen.Schema{
		"Item":   item,
		"Loop":   {Ref: "#/components/schemas/Loop"},
		"Holder": {Type: "object", Properties: ogen.Properties{{Name: "list", Schema: &ogen.Schema{Type: "array", Items: &ogen.Items{Item: &ogen.Schema{Ref: "#/components/schemas/Item"}}}}}},
	}}
	body := &ogen.Schema{Ref: "#/components/schemas/Holder"}
	for path, want := range map[string]string{
		"list":          "must be an array",
		"list[3]":       "must be an object",
		"list[3].flag":  "must be true or false",
		"list[3].other": "",
		"list.flag":     "",
		"list[x]":       "",
		"list[3":        "",
	} {
		if got := typeWords(c.schemaAt(body, path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if s := c.schemaAt(&ogen.Schema{Ref: "#/components/schemas/Loop"}, ""); s != nil {
		t.Errorf("a reference in a circle found %+v", s)
	}
}
